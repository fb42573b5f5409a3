"""The six TinyLang sentence families, each a seeded generator of labelled examples.

=================  =====================================================================  ==========
family             example prompt → answer                                                 answer
=================  =====================================================================  ==========
ioi                when mary and john went to the store, john gave a drink to              mary
agreement          the keys near the old cabinet                                           are
entity_tracking    the key is in the red box. the coin is in the blue box.                 blue
                   the key moves to the blue box. the key is in the
successor          monday tuesday wednesday                                                thursday
repeated_span      tall cup green lamps pushes park pen tall                               cup
fact               alice lives in                                                          paris
=================  =====================================================================  ==========

Every generator is ``generate_<family>(n, seed=0, split="all") -> list[Example]``. The same
``(n, seed, split)`` always gives the same examples; the random stream depends on the family,
the split and the seed, so train and test data (``split="train"`` / ``"test"``) come from
different streams. For IOI the split also decides the names: 76 of the 780 unordered name pairs
(``IOI_TEST_PAIRS``) appear only in the test split, so IOI test accuracy measures generalisation
to name pairs never seen together in training; IOI's fourth split, ``"test_templates"``, also
holds out the sentence frames (``IOI_HELDOUT_TEMPLATES``, never in any corpus). Facts and
successors have small, fixed prompt sets (70 facts, 76 successor prompts), so their test split
necessarily asks the same questions as training: it measures recall, not generalisation. Like
IOI, agreement holds out noun pairs:
53 of the 552 (subject, distractor) pairs (``AGREEMENT_TEST_PAIRS``) appear only in the test split.
Entity tracking and repeated spans are drawn from spaces large enough that train/test overlaps
are rare (about 5% and 0% of test prompts occur among 100k training examples).

Positions in labels count ``<bos>`` as position 0 (see ``toykit.tasks.tinylang.examples``).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from typing import Any, NamedTuple

from toykit.tasks.tinylang.draws import below, between, pick
from toykit.tasks.tinylang.examples import Example
from toykit.tasks.tinylang.vocab import (
    ADJECTIVES,
    CITIES,
    COLOURS,
    COUNTRIES,
    DAYS,
    ENTITIES,
    FACT_PEOPLE,
    INSTRUMENTS,
    IOI_NAMES,
    IOI_OBJECTS,
    JOBS,
    MONTHS,
    NOUNS_PLURAL,
    NOUNS_SINGULAR,
    PLACES,
    PREPOSITIONS,
    SPAN_WORDS,
    TOKENIZER,
)

__all__ = [
    "AGREEMENT_TEST_PAIRS",
    "FACTS",
    "FAMILIES",
    "IOI_HELDOUT_TEMPLATES",
    "IOI_SPLITS",
    "IOI_TEMPLATES",
    "IOI_TEST_PAIRS",
    "RELATIONS",
    "SPLITS",
    "Fact",
    "generate_agreement",
    "generate_entity_tracking",
    "generate_examples",
    "generate_fact",
    "generate_ioi",
    "generate_repeated_span",
    "generate_successor",
]

FAMILIES: tuple[str, ...] = ("ioi", "agreement", "entity_tracking", "successor", "repeated_span", "fact")
SPLITS: tuple[str, ...] = ("train", "test", "all")

#: One example as words, as a sampler draws it: (prompt words, answer, words after the answer,
#: labels), positions in labels already counting <bos> as 0. Kept apart from Example so the
#: corpus can use the words without the cost of building Examples.
RawExample = tuple[list[str], str, list[str], dict[str, Any]]


def _rng(family: str, seed: int, split: str) -> random.Random:
    # String seeds are hashed with SHA-512 by random.Random, so streams are stable across runs.
    return random.Random(f"tinylang/{family}/{split}/{seed}")


def _check_args(n: object, seed: object, split: object, splits: tuple[str, ...] = SPLITS) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if split not in splits:
        raise ValueError(f"split must be one of {splits}, got {split!r}")


def _build(family: str, raw: RawExample) -> Example:
    prompt, answer, rest, labels = raw
    corrupted = labels.pop("corrupted_words", None)
    labels["answer"] = answer
    labels["answer_pos"] = len(prompt)  # the last prompt token, counting <bos> as 0
    return Example(
        family=family,
        prompt=TOKENIZER.detokenize(prompt),
        answer=answer,
        answer_id=TOKENIZER.token_to_id[answer],
        text=TOKENIZER.detokenize([*prompt, answer, *rest]),
        labels=labels,
        corrupted_prompt=None if corrupted is None else TOKENIZER.detokenize(corrupted),
    )


# ============================================================================================ IOI
#: IOI base templates. {A} and {B} are the two names of the first clause, {S} the subject's
#: second mention, {PLACE} and {OBJECT} fillers. Each base gives an ABBA template ({A}=IO,
#: {B}=S: "when mary and john ..., john gave ... to [mary]") and a BABA one ({A}=S, {B}=IO).
IOI_TEMPLATES: tuple[str, ...] = (
    "when {A} and {B} went to the {PLACE}, {S} gave a {OBJECT} to",
    "then, {A} and {B} went to the {PLACE}. {S} gave a {OBJECT} to",
    "after {A} and {B} went to the {PLACE}, {S} gave a {OBJECT} to",
    "while {A} and {B} were working at the {PLACE}, {S} gave a {OBJECT} to",
    "when {A} and {B} got a {OBJECT} at the {PLACE}, {S} decided to give it to",
    "then, {A} and {B} had a long argument. afterwards {S} said to",
    "after the lunch, {A} and {B} went to the {PLACE}. {S} gave a {OBJECT} to",
    "when {A} and {B} arrived at the {PLACE}, {S} handed a {OBJECT} to",
    "friends {A} and {B} found a {OBJECT} at the {PLACE}. {S} gave it to",
    "{A} and {B} were at the {PLACE}. {S} sent a {OBJECT} to",
    "the {PLACE} was quiet when {A} and {B} arrived. {S} showed a {OBJECT} to",
    "while {A} and {B} were in the {PLACE}, {S} threw a {OBJECT} to",
    "then {A} and {B} had a lot of fun at the {PLACE}. {S} gave a {OBJECT} to",
    "when {A} and {B} left the {PLACE}, {S} passed a {OBJECT} to",
    "yesterday {A} and {B} met at the {PLACE}, and {S} brought a {OBJECT} to",
)
#: IOI templates that no split of the training corpus ever uses: only ``generate_ioi(...,
#: split="test_templates")`` draws them (with the held-out name pairs), to test whether the
#: model's IOI behaviour generalises beyond the sentence frames it was trained on. Every word is
#: in the vocabulary; the frames are new combinations (new verbs after the names, "near",
#: "lunch", "old", a second clause after "afterwards"). Their template_ids are 15-20.
IOI_HELDOUT_TEMPLATES: tuple[str, ...] = (
    "yesterday {A} and {B} were near the {PLACE}. {S} passed a {OBJECT} to",
    "after {A} and {B} left the {PLACE}, {S} threw a {OBJECT} to",
    "while {A} and {B} were at the old {PLACE}, {S} handed a {OBJECT} to",
    "then {A} and {B} met near the {PLACE}, and {S} sent a {OBJECT} to",
    "when {A} and {B} were working in the {PLACE}, {S} showed a {OBJECT} to",
    "{A} and {B} had lunch at the {PLACE}. afterwards {S} brought a {OBJECT} to",
)
#: IOI's splits: the common three, plus "test_templates" (held-out templates and name pairs).
IOI_SPLITS: tuple[str, ...] = (*SPLITS, "test_templates")
_IOI_SLOTS = ("{A}", "{B}", "{S}", "{PLACE}", "{OBJECT}")
_IOI_WORDS: tuple[tuple[str, ...], ...] = tuple(
    tuple(TOKENIZER.split(t)) for t in (*IOI_TEMPLATES, *IOI_HELDOUT_TEMPLATES)
)
_IOI_SLOT_POS: tuple[dict[str, int], ...] = tuple(
    {w: i + 1 for i, w in enumerate(words) if w in _IOI_SLOTS} for words in _IOI_WORDS
)

#: The unordered name pairs held out for the IOI test split (indices into IOI_NAMES, i < j):
#: a fixed arithmetic rule, about 10% of pairs, every name in 3 to 5 of them.
IOI_TEST_PAIRS: frozenset[tuple[str, str]] = frozenset(
    (IOI_NAMES[i], IOI_NAMES[j])
    for i, j in itertools.combinations(range(len(IOI_NAMES)), 2)
    if (7 * i + 11 * j) % 10 == 0
)
_IOI_PAIRS: dict[str, tuple[tuple[str, str], ...]] = {
    "all": tuple(itertools.combinations(IOI_NAMES, 2)),
    "test": tuple(p for p in itertools.combinations(IOI_NAMES, 2) if p in IOI_TEST_PAIRS),
    "train": tuple(p for p in itertools.combinations(IOI_NAMES, 2) if p not in IOI_TEST_PAIRS),
}


def _sample_ioi(rng: random.Random, split: str, corrupted: bool = True) -> RawExample:
    # The train/test/all splits draw exactly as before the held-out templates existed (same
    # stream, same draws), so the corpus the shipped checkpoint was trained on is unchanged.
    if split == "test_templates":
        template_id = len(IOI_TEMPLATES) + below(rng, len(IOI_HELDOUT_TEMPLATES))
        split = "test"  # held-out templates come with held-out name pairs
    else:
        template_id = below(rng, len(IOI_TEMPLATES))
    order = "ABBA" if rng.random() < 0.5 else "BABA"
    pairs = _IOI_PAIRS[split]
    io, s = pick(rng, pairs)
    if rng.random() < 0.5:
        io, s = s, io
    place, obj = pick(rng, PLACES), pick(rng, IOI_OBJECTS)
    a, b = (io, s) if order == "ABBA" else (s, io)
    words = _IOI_WORDS[template_id]
    fill = {"{A}": a, "{B}": b, "{S}": s, "{PLACE}": place, "{OBJECT}": obj}
    prompt = [fill.get(w, w) for w in words]
    slots = _IOI_SLOT_POS[template_id]
    labels: dict[str, Any] = {
        "template_id": template_id,
        "order": order,
        "io": io,
        "s": s,
        "io_id": TOKENIZER.token_to_id[io],
        "s_id": TOKENIZER.token_to_id[s],
        "place": place,
        "object": obj,
        "io_pos": slots["{A}"] if order == "ABBA" else slots["{B}"],
        "s1_pos": slots["{B}"] if order == "ABBA" else slots["{A}"],
        "s2_pos": slots["{S}"],
        "end_pos": len(prompt),
    }
    if corrupted:
        # ABC: three fresh names in the three name slots; everything else, and so every
        # position, is unchanged.
        x, y, z = rng.sample([n for n in IOI_NAMES if n != io and n != s], 3)
        fill_abc = {"{A}": x, "{B}": y, "{S}": z, "{PLACE}": place, "{OBJECT}": obj}
        labels["abc_names"] = (x, y, z)
        labels["corrupted_words"] = [fill_abc.get(w, w) for w in words]
    return prompt, io, ["."], labels


def generate_ioi(n: int, seed: int = 0, split: str = "all") -> list[Example]:
    """Indirect object identification: "when mary and john went to the store, john gave a drink to" → mary.

    15 base templates, each in an ABBA and a BABA form (so 15 of each); 40 names; the name pair
    is drawn from the split's pairs (see ``IOI_TEST_PAIRS``). split="test_templates" draws from
    six other templates (``IOI_HELDOUT_TEMPLATES``, never in the training corpus) with the test
    split's name pairs: compare it with split="test" (same pairs, training templates) to measure
    how far IOI generalises to new sentence frames. ``corrupted_prompt`` is the ABC
    prompt: the same template, place and object with three other distinct names (none of them
    IO or S), so it has the same length and aligned positions.

    labels: template_id (0-14; 15-20 for the held-out templates), order ("ABBA"/"BABA"), io, s,
    io_id, s_id, place, object, io_pos, s1_pos, s2_pos, end_pos (= answer_pos), abc_names (the
    corrupted prompt's names in slot order A, B, S), answer, answer_pos.
    """
    _check_args(n, seed, split, IOI_SPLITS)
    rng = _rng("ioi", seed, split)
    return [_build("ioi", _sample_ioi(rng, split)) for _ in range(n)]


# ====================================================================================== agreement
_NUMBERS = ("singular", "plural")

#: The (subject, distractor) noun pairs held out for the agreement test split, as singular
#: lemmas (ordered; a fixed arithmetic rule on their indices in NOUNS_SINGULAR): 53 of the 552
#: pairs, every noun in some as subject and some as distractor. The training corpus never puts
#: the two nouns of a held-out pair in "the SUBJECT near the DISTRACTOR", filler included.
AGREEMENT_TEST_PAIRS: frozenset[tuple[str, str]] = frozenset(
    (NOUNS_SINGULAR[i], NOUNS_SINGULAR[j])
    for i in range(len(NOUNS_SINGULAR))
    for j in range(len(NOUNS_SINGULAR))
    if i != j and (i + 3 * j) % 10 == 0
)
_pairs = [(i, j) for i in range(len(NOUNS_SINGULAR)) for j in range(len(NOUNS_SINGULAR)) if i != j]
_held = {(NOUNS_SINGULAR.index(a), NOUNS_SINGULAR.index(b)) for a, b in AGREEMENT_TEST_PAIRS}
#: The (subject, distractor) noun pairs allowed in each split, as indices into NOUNS_SINGULAR.
AGREEMENT_PAIRS_BY_SPLIT: dict[str, tuple[tuple[int, int], ...]] = {
    "all": tuple(_pairs),
    "test": tuple(p for p in _pairs if p in _held),
    "train": tuple(p for p in _pairs if p not in _held),
}
del _pairs, _held


def _sample_agreement(rng: random.Random, split: str, corrupted: bool = True) -> RawExample:
    number = below(rng, 2)
    lemma, other = pick(rng, AGREEMENT_PAIRS_BY_SPLIT[split])
    nouns = (NOUNS_SINGULAR, NOUNS_PLURAL)
    prompt = ["the"]
    if rng.random() < 0.3:
        prompt.append(pick(rng, ADJECTIVES))
    prompt.append(nouns[number][lemma])
    subject_pos = len(prompt)
    # Exactly one prepositional phrase (with a second one possible, the verb would not always
    # come next). Its noun's number is independent of the subject's, so half the time the noun
    # next to the verb has the other number and a nearest-noun rule fails.
    prompt += [pick(rng, PREPOSITIONS), "the"]
    n_adjectives = pick(rng, (0, 0, 0, 1, 1, 2))
    prompt += rng.sample(ADJECTIVES, n_adjectives)
    nearest_number = below(rng, 2)
    nearest = nouns[nearest_number][other]
    prompt.append(nearest)
    # Present tense only: with was/were too, the prompt would not decide the answer.
    correct, incorrect = ("is", "are") if number == 0 else ("are", "is")
    labels: dict[str, Any] = {
        "subject": prompt[subject_pos - 1],
        "subject_number": _NUMBERS[number],
        "subject_pos": subject_pos,
        "distractor": nearest,
        "distractor_number": _NUMBERS[nearest_number],
        "distractor_pos": len(prompt),
        "mismatch": number != nearest_number,
        "correct_verb": correct,
        "incorrect_verb": incorrect,
        "correct_verb_id": TOKENIZER.token_to_id[correct],
        "incorrect_verb_id": TOKENIZER.token_to_id[incorrect],
    }
    if corrupted:
        flipped = list(prompt)
        flipped[subject_pos - 1] = nouns[1 - number][lemma]
        labels["corrupted_words"] = flipped
    return prompt, correct, [pick(rng, ADJECTIVES), "."], labels


def generate_agreement(n: int, seed: int = 0, split: str = "all") -> list[Example]:
    """Subject-verb number agreement across a distractor: "the keys near the old cabinet" → are.

    The subject (singular or plural, 24 nouns, optional adjective) is followed by a
    prepositional phrase whose noun (the distractor, another noun, after 0-2 adjectives) has
    random number, so the noun nearest the verb disagrees with the subject half the time. The
    split decides the pair of nouns (see ``AGREEMENT_TEST_PAIRS``), so test prompts are never
    seen in training. The verb is "is" or "are", and nothing else
    in the corpus follows a subject with a prepositional phrase, so the prompt decides the
    answer. ``corrupted_prompt`` is the same prompt with the subject's number flipped (same length).

    labels: subject, subject_number ("singular"/"plural"), subject_pos, distractor (the noun
    nearest the verb), distractor_number, distractor_pos, mismatch (numbers differ),
    correct_verb, incorrect_verb ("is"/"are"), correct_verb_id, incorrect_verb_id, answer,
    answer_pos.
    """
    _check_args(n, seed, split)
    rng = _rng("agreement", seed, split)
    return [_build("agreement", _sample_agreement(rng, split)) for _ in range(n)]


# ================================================================================ entity tracking
def _sample_entity_tracking(rng: random.Random, split: str, corrupted: bool = True) -> RawExample:
    n_entities = pick(rng, (2, 3, 4))
    n_moves = between(rng, 0, min(3, 6 - n_entities))  # at most 6 statements, so it fits in 64 tokens
    entities = rng.sample(ENTITIES, n_entities)
    initial = rng.sample(COLOURS, n_entities)
    where = dict(zip(entities, initial))
    prompt: list[str] = []
    colour_mentions: list[tuple[str, int]] = []  # (colour, position) in order of mention
    last_about: dict[str, int] = {}  # entity -> position of the colour in its latest statement
    first_about: dict[str, int] = {}  # entity -> position of the colour in its first statement
    for e, c in zip(entities, initial):
        prompt += ["the", e, "is", "in", "the", c, "box", "."]
        colour_mentions.append((c, len(prompt) - 2))
        last_about[e] = first_about[e] = len(prompt) - 2
    moves: list[tuple[str, str]] = []
    for _ in range(n_moves):
        e = pick(rng, entities)
        c = pick(rng, [col for col in COLOURS if col != where[e]])
        where[e] = c
        moves.append((e, c))
        prompt += ["the", e, "moves", "to", "the", c, "box", "."]
        colour_mentions.append((c, len(prompt) - 2))
        last_about[e] = len(prompt) - 2
    query = pick(rng, entities)
    answer = where[query]
    prompt += ["the", query, "is", "in", "the"]
    last_box, first_box = colour_mentions[-1][0], colour_mentions[0][0]
    distractor = next(c for c, _ in reversed(colour_mentions) if c != answer)
    labels: dict[str, Any] = {
        "entities": entities,
        "initial_boxes": initial,
        "moves": moves,
        "final_boxes": dict(where),
        "query": query,
        "query_pos": len(prompt) - 3,
        "binding_pos": last_about[query],
        "initial_box_pos": first_about[query],
        "n_entities": n_entities,
        "n_moves": n_moves,
        "distractor_box": distractor,
        "distractor_box_id": TOKENIZER.token_to_id[distractor],
        "last_box": last_box,
        "first_box": first_box,
        "query_moved": any(e == query for e, _ in moves),  # moved at all, even if it came back
        "last_box_correct": last_box == answer,
        "first_box_correct": first_box == answer,
        "initial_box_correct": initial[entities.index(query)] == answer,
    }
    return prompt, answer, ["box", "."], labels


def generate_entity_tracking(n: int, seed: int = 0, split: str = "all") -> list[Example]:
    """Entity tracking: "the key is in the red box. the coin is in the blue box. the key moves
    to the blue box. the key is in the" → blue.

    2 to 4 entities start in boxes of distinct colours; then 0 to 3 moves (at most 6 statements
    in all), each taking a random entity to a box of another colour (possibly a new one); the
    query asks about a random entity. The share of examples where a shortcut would be right
    is in the labels (``last_box_correct`` etc.) and measured in the tests.

    labels: entities, initial_boxes (aligned with entities), moves [(entity, colour), ...],
    final_boxes {entity: colour}, query, query_pos (the queried entity in the last sentence),
    binding_pos (the colour in the latest statement about the queried entity, which decides the
    answer), initial_box_pos (the colour in its first statement: its starting box), n_entities,
    n_moves, distractor_box (the most recently mentioned colour other than the answer) and its id,
    last_box / first_box (the last / first colour mentioned), query_moved
    (the queried entity moved at least once, even if it ended back in its starting box),
    last_box_correct, first_box_correct, initial_box_correct (would that shortcut be right;
    ``not initial_box_correct`` means the answer differs from the starting box, the prompts
    only state tracking can answer), answer, answer_pos.
    """
    _check_args(n, seed, split)
    rng = _rng("entity_tracking", seed, split)
    return [_build("entity_tracking", _sample_entity_tracking(rng, split)) for _ in range(n)]


# ===================================================================================== successors
_SEQUENCES = {"days": DAYS, "months": MONTHS}


def _sample_successor(rng: random.Random, split: str, corrupted: bool = True) -> RawExample:
    kind = "days" if rng.random() < 0.5 else "months"
    seq = _SEQUENCES[kind]
    length = between(rng, 2, 5)
    start = below(rng, len(seq))
    # The run always goes on past the longest prompt (6 to 8 items in all), so in the corpus
    # the item after any prompt of 2-5 items is never "." but always the successor.
    total = between(rng, 6, 8)
    run = [seq[(start + k) % len(seq)] for k in range(total)]
    answer_index = (start + length) % len(seq)
    labels: dict[str, Any] = {
        "sequence": kind,
        "start": seq[start],
        "start_index": start,
        "length": length,
        "run_length": total,
        "answer_index": answer_index,
        "wraps": start + length >= len(seq),
    }
    return run[:length], run[length], [*run[length + 1 :], "."], labels


def generate_successor(n: int, seed: int = 0, split: str = "all") -> list[Example]:
    """Cyclic successors: "monday tuesday wednesday" → thursday; "november december" → january.

    Days (7) or months (12) with equal probability, 2 to 5 consecutive items from a random start,
    wrapping around. The text continues the run to 6-8 items, so that in the corpus a run never
    stops right after a prompt. labels: sequence ("days"/"months"), start, start_index, length
    (items in the prompt, at positions 1..length), run_length (items in the text), answer_index,
    wraps (the prompt or answer passes the end of the cycle), answer, answer_pos.
    """
    _check_args(n, seed, split)
    rng = _rng("successor", seed, split)
    return [_build("successor", _sample_successor(rng, split)) for _ in range(n)]


# ================================================================================ repeated spans
def _sample_repeated_span(rng: random.Random, split: str, corrupted: bool = True) -> RawExample:
    length = between(rng, 4, 10)
    n_prefix, n_gap = between(rng, 0, 4), between(rng, 1, 12)
    # All distinct: the only repeated words are the span's, so a word seen before marks the
    # second occurrence and copying is the only way to predict what follows.
    words = rng.sample(SPAN_WORDS, length + n_prefix + n_gap)
    span, prefix, gap = words[:length], words[length : length + n_prefix], words[length + n_prefix :]
    first_start = len(prefix) + 1
    second_start = first_start + length + len(gap)
    labels: dict[str, Any] = {
        "span": span,
        "span_length": length,
        "first_start": first_start,
        "second_start": second_start,
        "prefix_length": len(prefix),
        "gap_length": len(gap),
    }
    return [*prefix, *span, *gap, span[0]], span[1], [*span[2:], "."], labels


def generate_repeated_span(n: int, seed: int = 0, split: str = "all") -> list[Example]:
    """Repeated spans (induction): a random span of 4 to 10 distinct content words recurs later.

    Text: 0-4 random words, the span, 1-12 random words, the span again, "."; apart from the
    span's second occurrence, no word occurs twice. The prompt stops at the first word of the second occurrence and
    the answer is the span's second word. The whole text (``make_batch(..., full_text=True)``)
    measures the loss on both occurrences.

    labels: span (list of words), span_length, first_start, second_start (positions of the span's
    first word in each occurrence), prefix_length, gap_length, answer, answer_pos (= second_start).
    """
    _check_args(n, seed, split)
    rng = _rng("repeated_span", seed, split)
    return [_build("repeated_span", _sample_repeated_span(rng, split)) for _ in range(n)]


# ========================================================================================= facts
class Fact(NamedTuple):
    subject: str
    relation: str
    object: str


#: Relation name -> the words between subject and object.
RELATIONS: dict[str, tuple[str, ...]] = {
    "lives_in": ("lives", "in"),
    "works_as": ("works", "as", "a"),
    "plays": ("plays", "the"),
    "city_in": ("is", "in"),
}

# person, city they live in, job, instrument.
_PEOPLE_TABLE: tuple[tuple[str, str, str, str], ...] = (
    ("alice", "paris", "doctor", "piano"),
    ("bob", "london", "teacher", "guitar"),
    ("carol", "rome", "baker", "violin"),
    ("dave", "berlin", "painter", "drums"),
    ("eve", "madrid", "lawyer", "flute"),
    ("frank", "tokyo", "nurse", "trumpet"),
    ("gina", "cairo", "farmer", "piano"),
    ("hugo", "lima", "pilot", "guitar"),
    ("iris", "oslo", "singer", "violin"),
    ("jane", "vienna", "writer", "drums"),
    ("kevin", "rome", "farmer", "flute"),
    ("linda", "oslo", "doctor", "trumpet"),
    ("mike", "paris", "writer", "guitar"),
    ("nora", "lima", "baker", "piano"),
    ("oscar", "vienna", "nurse", "violin"),
    ("paula", "berlin", "singer", "drums"),
    ("quinn", "cairo", "painter", "trumpet"),
    ("rosa", "tokyo", "lawyer", "flute"),
    ("steve", "madrid", "pilot", "piano"),
    ("tina", "london", "teacher", "violin"),
)

#: The fixed fact table (70 facts): where each of 20 people lives, works and what they play,
#: and which country each city is in. The corpus only ever states these facts.
FACTS: tuple[Fact, ...] = (
    *(Fact(p, "lives_in", city) for p, city, _, _ in _PEOPLE_TABLE),
    *(Fact(p, "works_as", job) for p, _, job, _ in _PEOPLE_TABLE),
    *(Fact(p, "plays", inst) for p, _, _, inst in _PEOPLE_TABLE),
    *(Fact(city, "city_in", country) for city, country in zip(CITIES, COUNTRIES)),
)


def _sample_fact(rng: random.Random, split: str, corrupted: bool = True) -> RawExample:
    fact = pick(rng, FACTS)
    labels: dict[str, Any] = {
        "subject": fact.subject,
        "relation": fact.relation,
        "object": fact.object,
        "subject_pos": 1,
    }
    return [fact.subject, *RELATIONS[fact.relation]], fact.object, ["."], labels


def generate_fact(n: int, seed: int = 0, split: str = "all") -> list[Example]:
    """Factual recall from the fixed table ``FACTS``: "alice lives in" → paris, "alice works as a"
    → doctor, "alice plays the" → piano, "paris is in" → france. Facts are drawn uniformly.

    labels: subject, relation (a key of ``RELATIONS``), object, subject_pos (always 1), answer,
    answer_pos.
    """
    _check_args(n, seed, split)
    rng = _rng("fact", seed, split)
    return [_build("fact", _sample_fact(rng, split)) for _ in range(n)]


_GENERATORS: dict[str, Callable[..., list[Example]]] = {
    "ioi": generate_ioi,
    "agreement": generate_agreement,
    "entity_tracking": generate_entity_tracking,
    "successor": generate_successor,
    "repeated_span": generate_repeated_span,
    "fact": generate_fact,
}
#: Word-level samplers, ``SAMPLERS[family](rng, split, corrupted=False) -> RawExample``: the
#: corpus uses them (the same draws as the generators make, without building Examples).
SAMPLERS: dict[str, Callable[..., RawExample]] = {
    "ioi": _sample_ioi,
    "agreement": _sample_agreement,
    "entity_tracking": _sample_entity_tracking,
    "successor": _sample_successor,
    "repeated_span": _sample_repeated_span,
    "fact": _sample_fact,
}


def generate_examples(family: str, n: int, seed: int = 0, split: str = "all") -> list[Example]:
    """``generate_<family>(n, seed, split)`` for a family named by string (one of ``FAMILIES``)."""
    if family not in _GENERATORS:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    return _GENERATORS[family](n, seed=seed, split=split)


assert set(FAMILIES) == set(_GENERATORS) == set(SAMPLERS)
assert set(INSTRUMENTS) >= {row[3] for row in _PEOPLE_TABLE} and set(JOBS) >= {row[2] for row in _PEOPLE_TABLE}
assert [row[0] for row in _PEOPLE_TABLE] == list(FACT_PEOPLE)
