"""The TinyLang training corpus: complete family examples and filler text, packed into sequences.

Each sequence is ``n_ctx`` token ids: ``<bos>``, then whole *documents*, each followed by
``<eos>``. A document is one family example, answer included ("... john gave a drink to mary.")
or a filler paragraph of 1-3 sentences from a small English-like grammar ("the old dogs near the
box see the cat."). Which kind comes next is drawn with the mixing weights. A document that does
not fit in the room left is carried over to start the next sequence (so the mix is kept), and
the room is filled with filler text cut off at ``n_ctx``. No ``<pad>`` is ever needed.

The filler grammar obeys number agreement, never says where anything is ("is in"), never
states a fact, and follows a subject with a prepositional phrase only by "is"/"are", so it
neither contradicts a family nor makes any family's answer ambiguous.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Literal, overload

import torch

from toykit.tasks.tinylang.draws import below, between, pick
from toykit.tasks.tinylang.families import AGREEMENT_PAIRS_BY_SPLIT, FAMILIES, SAMPLERS, SPLITS
from toykit.tasks.tinylang.vocab import (
    ADJECTIVES,
    IOI_NAMES,
    NOUNS_PLURAL,
    NOUNS_SINGULAR,
    PREPOSITIONS,
    TOKENIZER,
    VERBS_PLURAL,
    VERBS_SINGULAR,
)

__all__ = ["CORPUS_PARTS", "DEFAULT_MIX", "filler_text", "generate_corpus"]

#: What a document can be: one of the families, or filler text.
CORPUS_PARTS: tuple[str, ...] = (*FAMILIES, "filler")

#: Default share of documents of each kind. IOI and entity tracking get the most, being the
#: hardest to learn; successors and facts are small fixed sets that need fewer repetitions.
DEFAULT_MIX: dict[str, float] = {
    "ioi": 0.25,
    "agreement": 0.12,
    "entity_tracking": 0.2,
    "successor": 0.08,
    "repeated_span": 0.1,
    "fact": 0.15,
    "filler": 0.1,
}

_NOUNS = (NOUNS_SINGULAR, NOUNS_PLURAL)
_VERBS = (VERBS_SINGULAR, VERBS_PLURAL)
_COPULAS = (("is", "was"), ("are", "were"))  # [number][tense]
_PRESENT = ("is", "are")


def _noun_phrase(rng: random.Random, number: int, lemma: int | None = None) -> list[str]:
    words = ["the"]
    if rng.random() < 0.3:
        words.append(pick(rng, ADJECTIVES))
    words.append(_NOUNS[number][below(rng, len(NOUNS_SINGULAR)) if lemma is None else lemma])
    return words


def _filler_sentence(rng: random.Random, split: str = "all") -> list[str]:
    if rng.random() < 0.15:
        number, words = 0, [pick(rng, IOI_NAMES)]
    else:
        number = below(rng, 2)
        if rng.random() < 0.2:
            # A subject with a prepositional phrase takes only is/are (like the agreement
            # family), so "the keys near the box" is always followed by "are"; the pair of
            # nouns respects the agreement split.
            subject, distractor = pick(rng, AGREEMENT_PAIRS_BY_SPLIT["train" if split == "train" else "all"])
            words = _noun_phrase(rng, number, subject)
            words.append(pick(rng, PREPOSITIONS))
            words += _noun_phrase(rng, below(rng, 2), distractor)
            words += [_PRESENT[number], pick(rng, ADJECTIVES), "."]
            return words
        words = _noun_phrase(rng, number)
    if rng.random() < 0.4:
        words += [_COPULAS[number][below(rng, 2)], pick(rng, ADJECTIVES)]
    else:
        words.append(pick(rng, _VERBS[number]))
        words += _noun_phrase(rng, below(rng, 2))
    words.append(".")
    return words


def _filler_words(rng: random.Random, split: str = "all") -> list[str]:
    words: list[str] = []
    for _ in range(between(rng, 1, 3)):
        words += _filler_sentence(rng, split)
    return words


def filler_text(n: int, seed: int = 0) -> list[str]:
    """``n`` filler paragraphs (1-3 sentences each) as text, seeded."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    rng = random.Random(f"tinylang/filler/{seed}")
    return [TOKENIZER.detokenize(_filler_words(rng)) for _ in range(n)]


def _check_mix(mix: Mapping[str, float] | None) -> dict[str, float]:
    if mix is None:
        return dict(DEFAULT_MIX)
    if not isinstance(mix, Mapping):
        raise TypeError(f"mix must be a dict of weights, got {type(mix).__name__}")
    for key, w in mix.items():
        if key not in CORPUS_PARTS:
            raise ValueError(f"mix has unknown part {key!r}; parts are {CORPUS_PARTS}")
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not w >= 0 or w == float("inf"):
            raise ValueError(f"mix[{key!r}] must be a finite non-negative number, got {w!r}")
    if sum(mix.values()) <= 0:
        raise ValueError("mix weights must not all be zero")
    return {part: float(mix.get(part, 0.0)) for part in CORPUS_PARTS}


@overload
def generate_corpus(n_sequences: int, n_ctx: int = ..., seed: int = ..., mix: Mapping[str, float] | None = ...,
                    split: str = ..., return_parts: Literal[False] = ...) -> torch.Tensor: ...
@overload
def generate_corpus(n_sequences: int, n_ctx: int = ..., seed: int = ..., mix: Mapping[str, float] | None = ...,
                    split: str = ..., *, return_parts: Literal[True]) -> tuple[torch.Tensor, torch.Tensor]: ...
def generate_corpus(
    n_sequences: int,
    n_ctx: int = 64,
    seed: int = 0,
    mix: Mapping[str, float] | None = None,
    split: str = "train",
    return_parts: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Token sequences for language-model training.

    n_sequences, n_ctx: the output shape. Every family example fits in 64 tokens with its
        ``<bos>``/``<eos>``; with a smaller n_ctx the examples that can never fit are dropped.
    seed: the same (n_sequences, n_ctx, seed, mix, split) always gives the same tokens.
    mix: {part: weight} over ``CORPUS_PARTS`` (the families and "filler"); parts left out get
        weight 0 and weights need not sum to 1. Default ``DEFAULT_MIX``. Filler still fills the
        ends of sequences when its weight is 0.
    split: "train" (the default), "test" or "all". Train and test use different random streams;
        the train split never contains IOI's held-out name pairs (``IOI_TEST_PAIRS``) nor
        agreement's held-out noun pairs (``AGREEMENT_TEST_PAIRS``).
    return_parts: also return which part each token came from.

    Returns tokens: LongTensor [n_sequences, n_ctx], each row starting with ``<bos>``; with
    return_parts, also parts: LongTensor [n_sequences, n_ctx] holding the index into
    ``CORPUS_PARTS`` of each token's document, -1 for ``<bos>``.
    """
    for name, value in (("n_sequences", n_sequences), ("n_ctx", n_ctx)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if n_ctx < 16:
        raise ValueError(f"n_ctx must be at least 16 so that whole sentences fit, got {n_ctx}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    weights = _check_mix(mix)

    rng = random.Random(f"tinylang/corpus/{split}/{seed}")
    t2i = TOKENIZER.token_to_id
    bos, eos = TOKENIZER.bos_token_id, TOKENIZER.eos_token_id
    filler = len(CORPUS_PARTS) - 1
    parts = list(range(len(CORPUS_PARTS)))
    cum_weights = list(_cumsum([weights[p] for p in CORPUS_PARTS]))
    samplers = [SAMPLERS[f] for f in FAMILIES]

    def next_document() -> tuple[int, list[int]]:
        part = rng.choices(parts, cum_weights=cum_weights)[0]
        if part == filler:
            words = _filler_words(rng, split)
        else:
            prompt, answer, rest, _ = samplers[part](rng, split, corrupted=False)
            words = [*prompt, answer, *rest]
        ids = [t2i[w] for w in words]
        ids.append(eos)
        return part, ids

    rows: list[list[int]] = []
    row_parts: list[list[int]] = []
    carried: tuple[int, list[int]] | None = None
    for _ in range(n_sequences):
        row = [bos]
        owner = [-1]
        while len(row) < n_ctx:
            part, doc = carried if carried is not None else next_document()
            carried = None
            if len(row) + len(doc) <= n_ctx:
                row += doc
                if return_parts:
                    owner += [part] * len(doc)
                continue
            if len(doc) < n_ctx:  # fits in a fresh sequence: keep it for the next one
                carried = (part, doc)
            while len(row) < n_ctx:  # fill the room left with filler sentences, cut at n_ctx
                fill = [t2i[w] for w in _filler_sentence(rng, split)][: n_ctx - len(row)]
                row += fill
                if return_parts:
                    owner += [filler] * len(fill)
        rows.append(row)
        if return_parts:
            row_parts.append(owner)
    tokens = torch.tensor(rows, dtype=torch.long)
    if return_parts:
        return tokens, torch.tensor(row_parts, dtype=torch.long)
    return tokens


def _cumsum(values: list[float]) -> list[float]:
    total, out = 0.0, []
    for v in values:
        total += v
        out.append(total)
    return out
