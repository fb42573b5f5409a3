"""TinyLang's fixed word-level vocabulary and its tokenizer.

Every token is a whole word: lower-case letters only (names too: ``mary``, not ``Mary``), plus
the punctuation tokens ``.`` and ``,`` and three special tokens, ``<pad>`` (id 0), ``<bos>`` (id 1)
and ``<eos>`` (id 2). The vocabulary is the concatenation of the fixed word lists below, in the
order written, with repeats dropped; it never depends on a random state, so token ids are the
same in every run and on every machine. Do not reorder or edit the lists: trained checkpoints
depend on the ids (a test pins a checksum of the vocabulary).

Text is written with one space between words and no space before ``.`` or ``,``
("when mary and john went to the store, john gave a drink to"). The tokenizer accepts
punctuation with or without the space, and ``to_string`` writes it back in that canonical form.

The tokenizer mirrors TransformerLens's model methods: ``to_tokens`` (text → [batch, pos] ids,
BOS prepended, right-padded with ``<pad>``), ``to_string`` and ``to_str_tokens``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Any, cast

import torch

__all__ = [
    "ADJECTIVES",
    "BOS",
    "CITIES",
    "COLOURS",
    "COUNTRIES",
    "DAYS",
    "ENTITIES",
    "EOS",
    "FACT_PEOPLE",
    "INSTRUMENTS",
    "IOI_NAMES",
    "IOI_OBJECTS",
    "JOBS",
    "MONTHS",
    "NOUNS_PLURAL",
    "NOUNS_SINGULAR",
    "PAD",
    "PLACES",
    "PREPOSITIONS",
    "PUNCTUATION",
    "SPAN_WORDS",
    "SPECIAL_TOKENS",
    "TOKENIZER",
    "Tokenizer",
    "UnknownWordError",
    "VERBS_PLURAL",
    "VERBS_SINGULAR",
    "VOCAB",
    "to_single_token",
    "to_str_tokens",
    "to_string",
    "to_tokens",
]

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS)
PUNCTUATION: tuple[str, ...] = (".", ",")

#: Words that glue sentences together (templates, grammar, copulas).
FUNCTION_WORDS: tuple[str, ...] = (
    "the", "a", "and", "to", "in", "at", "of", "it", "is", "are", "was", "were",
    "when", "then", "after", "while", "afterwards", "yesterday", "friends",
    "went", "gave", "give", "got", "had", "decided", "said", "arrived", "handed", "found",
    "sent", "showed", "threw", "left", "passed", "met", "brought", "working",
    "long", "argument", "lunch", "lot", "fun",
    "box", "moves",
    "lives", "works", "as", "plays",
)  # fmt: skip

#: The IOI names: 40 common first names, each a single token.
IOI_NAMES: tuple[str, ...] = (
    "mary", "john", "sarah", "tom", "anna", "james", "lisa", "david", "emma", "paul",
    "kate", "mark", "laura", "peter", "susan", "michael", "rachel", "daniel", "julia", "robert",
    "sophie", "george", "helen", "henry", "claire", "jack", "grace", "oliver", "lucy", "william",
    "emily", "thomas", "amy", "ben", "chloe", "adam", "ella", "sam", "nina", "leo",
)  # fmt: skip

#: The people of the fact table (disjoint from the IOI names, so IOI stays free of facts).
FACT_PEOPLE: tuple[str, ...] = (
    "alice", "bob", "carol", "dave", "eve", "frank", "gina", "hugo", "iris", "jane",
    "kevin", "linda", "mike", "nora", "oscar", "paula", "quinn", "rosa", "steve", "tina",
)  # fmt: skip
CITIES: tuple[str, ...] = ("paris", "london", "rome", "berlin", "madrid", "tokyo", "cairo", "lima", "oslo", "vienna")
COUNTRIES: tuple[str, ...] = (
    "france", "england", "italy", "germany", "spain", "japan", "egypt", "peru", "norway", "austria",
)  # fmt: skip
JOBS: tuple[str, ...] = (
    "doctor", "teacher", "baker", "painter", "lawyer", "nurse", "farmer", "pilot", "singer", "writer",
)  # fmt: skip
INSTRUMENTS: tuple[str, ...] = ("piano", "guitar", "violin", "drums", "flute", "trumpet")

DAYS: tuple[str, ...] = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS: tuple[str, ...] = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)  # fmt: skip

COLOURS: tuple[str, ...] = ("red", "blue", "green", "yellow", "white", "black", "brown", "pink")
#: Small things that sit in boxes (entity tracking).
ENTITIES: tuple[str, ...] = ("key", "coin", "ring", "ball", "pen", "cup", "stone", "shell", "card", "bell")

#: Nouns with their plurals, index-aligned (number agreement and filler text).
NOUNS_SINGULAR: tuple[str, ...] = (
    "dog", "cat", "bird", "horse", "boy", "girl", "man", "woman", "child", "book", "car", "tree",
    "door", "window", "table", "chair", "lamp", "cabinet", "picture", "flower", "key", "box", "house", "bottle",
)  # fmt: skip
NOUNS_PLURAL: tuple[str, ...] = (
    "dogs", "cats", "birds", "horses", "boys", "girls", "men", "women", "children", "books", "cars", "trees",
    "doors", "windows", "tables", "chairs", "lamps", "cabinets", "pictures", "flowers", "keys", "boxes", "houses",
    "bottles",
)  # fmt: skip
PREPOSITIONS: tuple[str, ...] = ("near", "by", "behind", "under", "beside", "above", "below")
ADJECTIVES: tuple[str, ...] = (
    "old", "new", "big", "small", "tall", "short", "happy", "sad",
    "quiet", "loud", "dark", "bright", "warm", "cold", "clean", "young",
)  # fmt: skip
#: Present-tense verbs, index-aligned: "the dog sees" / "the dogs see".
VERBS_SINGULAR: tuple[str, ...] = (
    "sees", "likes", "finds", "takes", "holds", "wants", "needs", "makes", "opens", "pushes", "carries", "watches",
)  # fmt: skip
VERBS_PLURAL: tuple[str, ...] = (
    "see", "like", "find", "take", "hold", "want", "need", "make", "open", "push", "carry", "watch",
)  # fmt: skip

PLACES: tuple[str, ...] = (
    "store", "park", "school", "station", "garden", "office", "market", "beach", "library", "restaurant",
    "hospital", "church",
)  # fmt: skip
#: Things given in IOI sentences (all start with a consonant: "a drink").
IOI_OBJECTS: tuple[str, ...] = ("drink", "book", "ball", "letter", "gift", "ring", "bag", "cake", "pen", "card")


def _dedupe(*groups: Sequence[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for group in groups:
        for word in group:
            seen.setdefault(word, None)
    return tuple(seen)


#: The whole vocabulary, in id order.
VOCAB: tuple[str, ...] = _dedupe(
    SPECIAL_TOKENS,
    PUNCTUATION,
    FUNCTION_WORDS,
    IOI_NAMES,
    FACT_PEOPLE,
    CITIES,
    COUNTRIES,
    JOBS,
    INSTRUMENTS,
    DAYS,
    MONTHS,
    COLOURS,
    ENTITIES,
    NOUNS_SINGULAR,
    NOUNS_PLURAL,
    PREPOSITIONS,
    ADJECTIVES,
    VERBS_SINGULAR,
    VERBS_PLURAL,
    PLACES,
    IOI_OBJECTS,
)

#: Content words for random repeated spans: meaningful but carrying no family's structure
#: (no names, days, months, function words or punctuation).
SPAN_WORDS: tuple[str, ...] = _dedupe(
    NOUNS_SINGULAR, NOUNS_PLURAL, ADJECTIVES, VERBS_SINGULAR, VERBS_PLURAL, COLOURS, ENTITIES, PLACES, IOI_OBJECTS
)

# A token is a special token, a run of non-space non-punctuation characters, or one punctuation mark.
_TOKEN_RE = re.compile(r"<[a-z]+>|[^\s.,]+|[.,]")


class UnknownWordError(ValueError):
    """A word that is not in the TinyLang vocabulary."""

    def __init__(self, word: str, suggestions: Sequence[str]) -> None:
        self.word, self.suggestions = word, list(suggestions)
        message = f"{word!r} is not in the TinyLang vocabulary"
        if word != word.lower() and word.lower() in suggestions:
            message += f" (TinyLang is lower-case: use {word.lower()!r})"
        elif suggestions:
            message += "; nearest known words: " + ", ".join(repr(s) for s in suggestions)
        else:
            message += "; TinyLang has only lower-case words, '.', ',' and <pad>/<bos>/<eos>"
        super().__init__(message)


class Tokenizer:
    """Word-level tokenizer over a fixed vocabulary.

    vocab: the tokens in id order; must contain ``<pad>``, ``<bos>`` and ``<eos>``.
    """

    def __init__(self, vocab: Sequence[str] = VOCAB) -> None:
        vocab = tuple(vocab)
        if len(set(vocab)) != len(vocab):
            raise ValueError("vocab must not contain repeated tokens")
        for special in SPECIAL_TOKENS:
            if special not in vocab:
                raise ValueError(f"vocab must contain the special token {special!r}")
        self.vocab: tuple[str, ...] = vocab
        self.token_to_id: dict[str, int] = {tok: i for i, tok in enumerate(vocab)}
        self.pad_token, self.bos_token, self.eos_token = PAD, BOS, EOS
        self.pad_token_id = self.token_to_id[PAD]
        self.bos_token_id = self.token_to_id[BOS]
        self.eos_token_id = self.token_to_id[EOS]
        self._special_ids = {self.pad_token_id, self.bos_token_id, self.eos_token_id}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __len__(self) -> int:
        return len(self.vocab)

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size})"

    # ----------------------------------------------------------------------------- text -> ids
    def split(self, text: str) -> list[str]:
        """The token strings of ``text`` (no BOS), without checking them against the vocabulary."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return _TOKEN_RE.findall(text)

    def _id(self, word: str) -> int:
        try:
            return self.token_to_id[word]
        except KeyError:
            suggestions = difflib.get_close_matches(word.lower(), self.vocab, n=3, cutoff=0.6)
            raise UnknownWordError(word, suggestions) from None

    def encode(self, text: str, prepend_bos: bool = False) -> list[int]:
        """Token ids of one text as a list of ints."""
        ids = [self._id(w) for w in self.split(text)]
        return [self.bos_token_id, *ids] if prepend_bos else ids

    def to_single_token(self, word: str) -> int:
        """The id of one token; raises if ``word`` is not exactly one known token."""
        parts = self.split(word)
        if len(parts) != 1:
            raise ValueError(f"to_single_token: {word!r} is {len(parts)} tokens, expected exactly 1")
        return self._id(parts[0])

    def to_tokens(
        self,
        text: str | Sequence[str],
        prepend_bos: bool = True,
        device: str | torch.device | None = None,
    ) -> torch.Tensor:
        """Tokenize one text or a list of texts.

        Returns a LongTensor [batch, pos] (batch is 1 for a single string), right-padded with
        ``<pad>`` to the longest text. ``device=None`` leaves it on the CPU.
        """
        texts = [text] if isinstance(text, str) else list(text)
        if not texts:
            raise ValueError("to_tokens: got an empty list of texts")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"to_tokens: text[{i}] must be a str, got {type(t).__name__}")
        rows = [self.encode(t, prepend_bos=prepend_bos) for t in texts]
        width = max(len(r) for r in rows)
        if width == 0:
            raise ValueError("to_tokens: every text is empty and prepend_bos=False, so there are no tokens")
        out = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return out if device is None else out.to(device)

    # ----------------------------------------------------------------------------- ids -> text
    def _as_id_list(self, tokens: torch.Tensor | Sequence[int] | int, name: str) -> list[Any]:
        # list[int] for one sequence, list[list[int]] for a batch: callers branch on ids[0]
        if isinstance(tokens, torch.Tensor):
            if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
                raise TypeError(f"{name} must hold integer token ids, got dtype {tokens.dtype}")
            if tokens.ndim > 2:
                raise ValueError(f"{name} must have shape [pos] or [batch, pos], got {list(tokens.shape)}")
            ids = tokens.detach().cpu().tolist()
        elif isinstance(tokens, int):
            ids = [tokens]
        else:
            ids = list(tokens)
        flat = [i for row in ids for i in row] if ids and isinstance(ids[0], list) else ids
        for i in flat:
            if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < self.vocab_size:
                raise ValueError(f"{name} must be token ids in [0, {self.vocab_size}), got {i!r}")
        return ids

    def _detokenize(self, words: Sequence[str]) -> str:
        out: list[str] = []
        for w in words:
            if out and w not in PUNCTUATION:
                out.append(" ")
            out.append(w)
        return "".join(out)

    def to_string(self, tokens: torch.Tensor | Sequence[int], skip_special: bool = False) -> str | list[str]:
        """Decode ids to text: [pos] -> str, [batch, pos] -> list of str.

        Special tokens are written as ``<bos>`` etc. unless ``skip_special=True``.
        """
        ids = self._as_id_list(tokens, "tokens")
        if ids and isinstance(ids[0], list):
            return [cast(str, self.to_string(row, skip_special=skip_special)) for row in ids]  # a row decodes to str
        if skip_special:
            ids = [i for i in ids if i not in self._special_ids]
        return self._detokenize([self.vocab[i] for i in ids])

    def to_str_tokens(self, text: str | torch.Tensor | Sequence[int], prepend_bos: bool = True) -> list[str]:
        """The token strings of one text (BOS prepended unless ``prepend_bos=False``), or of
        one row of ids ([pos] or [1, pos]; ``prepend_bos`` is ignored for ids)."""
        if isinstance(text, str):
            words = self.split(text)
            for w in words:
                self._id(w)
            return [BOS, *words] if prepend_bos else words
        ids = self._as_id_list(text, "tokens")
        if ids and isinstance(ids[0], list):
            if len(ids) != 1:
                raise ValueError(f"to_str_tokens takes one sequence, got a batch of {len(ids)}; index a row first")
            ids = ids[0]
        return [self.vocab[i] for i in ids]

    def detokenize(self, words: Sequence[str]) -> str:
        """Join token strings into canonical text (no space before '.' and ',')."""
        return self._detokenize(words)


#: The tokenizer every TinyLang function uses.
TOKENIZER = Tokenizer(VOCAB)
to_tokens = TOKENIZER.to_tokens
to_string = TOKENIZER.to_string
to_str_tokens = TOKENIZER.to_str_tokens
to_single_token = TOKENIZER.to_single_token

assert len(VOCAB) <= 512, len(VOCAB)
assert VOCAB[:3] == SPECIAL_TOKENS  # pad=0, bos=1, eos=2
assert len(NOUNS_SINGULAR) == len(NOUNS_PLURAL) and len(VERBS_SINGULAR) == len(VERBS_PLURAL)
assert not set(IOI_NAMES) & set(FACT_PEOPLE)
