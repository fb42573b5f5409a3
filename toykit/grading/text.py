"""Untrusted text made safe: to store (valid UTF-8, bounded) and to render (Markdown, HTML).

Everything a kernel produces is hostile data: a message may hold lone surrogates that no
UTF-8 file can hold, megabytes of text, or Markdown and HTML that would restyle the feedback
page a student or an instructor opens.
"""

from __future__ import annotations

import re

MAX_STRING = 100_000  # characters


def clean_text(text: object, limit: int = MAX_STRING) -> str:
    """Any value as text: cut to ``limit`` characters, unencodable characters (lone
    surrogates) replaced by "?"."""
    if not isinstance(text, str):
        try:
            text = str(text)
        except Exception:  # a hostile __str__
            text = f"<{type(text).__name__}>"
    return text[:limit].encode("utf-8", "replace").decode("utf-8")


_PUNCT = re.compile(r"([\\`*_\[\]|~])")


def md_inline(text: object, limit: int = 2000) -> str:
    """``text`` as one line of literal Markdown: HTML and Markdown syntax escaped, line breaks
    turned into spaces, so it can open no heading, link, image, list or HTML element."""
    text = " ".join(clean_text(text, limit).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _PUNCT.sub(r"\\\1", text)
    # no bare URL may become a link (GitHub and jupyter-book link "http://..." and "www....")
    return text.replace("://", ":\\/\\/").replace("www.", "www\\.")


def md_block(text: object, limit: int = 3000) -> list[str]:
    """``text`` as a fenced code block (lines) that it cannot close: the fence is longer than
    any run of backticks inside, and a code block shows HTML as text."""
    text = clean_text(text, limit).replace("\r", "")
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + "text", text, fence]
