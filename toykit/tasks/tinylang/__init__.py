"""TinyLang: a seeded, English-like synthetic language whose ground truth is known.

TinyLang mixes six sentence families. Every example carries its latent labels, so probes,
patching and sparse autoencoders can be checked against the truth:

1. ``ioi``: "when mary and john went to the store, john gave a drink to" → mary (ABBA and BABA
   templates, with ABC corrupted prompts of the same length).
2. ``agreement``: "the keys near the old cabinet" → are.
3. ``entity_tracking``: "the key is in the red box. ... the key moves to the blue box. the key
   is in the" → blue.
4. ``successor``: "monday tuesday wednesday" → thursday (days and months, wrapping around).
5. ``repeated_span``: a random span of words that recurs later in the same text (induction).
6. ``fact``: "alice lives in" → paris, from a fixed table of 70 facts.

Modules, one idea each:

- ``vocab``: the fixed word-level vocabulary (≤ 512 tokens) and the ``Tokenizer``
  (``to_tokens``, ``to_string``, ``to_str_tokens``, as on a TransformerLens model).
- ``examples``: the ``Example`` dataclass and ``make_batch`` (examples → tensors with the answer
  position and id).
- ``families``: one seeded generator per family, ``generate_<family>(n, seed, split)``.
- ``draws``: the fast uniform draws (``below``, ``between``, ``pick``) that families and corpus
  make from a seeded ``random.Random``.
- ``corpus``: ``generate_corpus``, packed training sequences mixing the families and filler text.
- ``evaluation``: ``evaluate(model)``, per-family accuracy and logit differences on held-out data.

Quick start::

    from toykit.tasks import tinylang
    ex = tinylang.generate_ioi(1, seed=0)[0]
    ex.prompt, ex.answer, ex.labels["s"]
    tokens = tinylang.generate_corpus(1000, n_ctx=64, seed=0)   # [1000, 64]
    tinylang.evaluate(model)                                    # {"ioi": {"accuracy": ...}, ...}
"""

from toykit.tasks.tinylang.corpus import CORPUS_PARTS, DEFAULT_MIX, filler_text, generate_corpus
from toykit.tasks.tinylang.evaluation import TARGETS, evaluate, heldout_examples, meets_targets
from toykit.tasks.tinylang.examples import Batch, Example, iter_batches, make_batch
from toykit.tasks.tinylang.families import (
    AGREEMENT_TEST_PAIRS,
    FACTS,
    FAMILIES,
    IOI_HELDOUT_TEMPLATES,
    IOI_SPLITS,
    IOI_TEMPLATES,
    IOI_TEST_PAIRS,
    RELATIONS,
    SPLITS,
    Fact,
    generate_agreement,
    generate_entity_tracking,
    generate_examples,
    generate_fact,
    generate_ioi,
    generate_repeated_span,
    generate_successor,
)
from toykit.tasks.tinylang.vocab import (
    BOS,
    EOS,
    IOI_NAMES,
    PAD,
    SPAN_WORDS,
    TOKENIZER,
    VOCAB,
    Tokenizer,
    UnknownWordError,
    to_single_token,
    to_str_tokens,
    to_string,
    to_tokens,
)

#: Number of tokens in the vocabulary (the d_vocab a TinyLang model needs).
VOCAB_SIZE: int = TOKENIZER.vocab_size

__all__ = [
    "AGREEMENT_TEST_PAIRS",
    "BOS",
    "Batch",
    "CORPUS_PARTS",
    "DEFAULT_MIX",
    "EOS",
    "Example",
    "FACTS",
    "FAMILIES",
    "Fact",
    "IOI_HELDOUT_TEMPLATES",
    "IOI_NAMES",
    "IOI_SPLITS",
    "IOI_TEMPLATES",
    "IOI_TEST_PAIRS",
    "PAD",
    "RELATIONS",
    "SPAN_WORDS",
    "SPLITS",
    "TARGETS",
    "TOKENIZER",
    "Tokenizer",
    "UnknownWordError",
    "VOCAB",
    "VOCAB_SIZE",
    "evaluate",
    "filler_text",
    "generate_agreement",
    "generate_corpus",
    "generate_entity_tracking",
    "generate_examples",
    "generate_fact",
    "generate_ioi",
    "generate_repeated_span",
    "generate_successor",
    "heldout_examples",
    "iter_batches",
    "make_batch",
    "meets_targets",
    "to_single_token",
    "to_str_tokens",
    "to_string",
    "to_tokens",
]
