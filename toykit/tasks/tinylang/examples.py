"""One labelled TinyLang example, and batching examples into tensors.

Position convention: every position in an example's labels indexes
``to_tokens(example.text)[0]``, i.e. the tokens *with* ``<bos>`` at position 0. The prompt's
tokens are a prefix of the text's, so the same positions index ``to_tokens(example.prompt)[0]``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch

from toykit.tasks.tinylang.vocab import TOKENIZER

__all__ = ["Batch", "Example", "iter_batches", "make_batch"]


@dataclass(frozen=True)
class Example:
    """A TinyLang example with its ground truth.

    family: which generator made it ("ioi", "agreement", ...).
    prompt: the text up to the answer (no ``<bos>``).
    answer / answer_id: the next token after the prompt, as a string and as an id.
    text: the complete example as it appears in the training corpus: prompt, answer and the
        rest of the sentence.
    labels: the latent variables (names, numbers, boxes, positions, ...); see each generator.
    corrupted_prompt: for IOI, the ABC prompt: same template, place and object, three other
        names, same token length and aligned positions. None for the other families.
    """

    family: str
    prompt: str
    answer: str
    answer_id: int
    text: str
    labels: dict[str, Any] = field(default_factory=dict)
    corrupted_prompt: str | None = None

    @property
    def answer_pos(self) -> int:
        """The position (with ``<bos>`` at 0) whose next-token prediction is the answer."""
        return self.labels["answer_pos"]


@dataclass
class Batch:
    """Examples as tensors.

    tokens: [batch, pos] ids, ``<bos>`` first, right-padded with ``<pad>``.
    answer_pos: [batch] the position whose next-token prediction is the answer.
    answer_ids: [batch] the answer's token id.
    lengths: [batch] the number of real (non-pad) tokens in each row.
    examples: the examples, in row order.
    """

    tokens: torch.Tensor
    answer_pos: torch.Tensor
    answer_ids: torch.Tensor
    lengths: torch.Tensor
    examples: list[Example]

    def __len__(self) -> int:
        return len(self.examples)

    def to(self, device: str | torch.device) -> Batch:
        return Batch(
            self.tokens.to(device),
            self.answer_pos.to(device),
            self.answer_ids.to(device),
            self.lengths.to(device),
            self.examples,
        )

    def label_ids(self, key: str) -> torch.Tensor:
        """[batch] the token ids of a word-valued label (e.g. "io", "s", "incorrect_verb")."""
        ids = [TOKENIZER.to_single_token(ex.labels[key]) for ex in self.examples]
        return torch.tensor(ids, dtype=torch.long, device=self.tokens.device)

    def logits_at_answer(self, logits: torch.Tensor) -> torch.Tensor:
        """logits: [batch, pos, d_vocab] -> [batch, d_vocab], the logits at each row's answer position."""
        rows = torch.arange(len(self), device=logits.device)
        return logits[rows, self.answer_pos.to(logits.device)]


def make_batch(
    examples: Sequence[Example],
    *,
    full_text: bool = False,
    corrupted: bool = False,
    device: str | torch.device | None = None,
) -> Batch:
    """Tokenize examples into a ``Batch``.

    full_text: tokenize the whole text (prompt, answer and the rest) instead of the prompt only.
        The answer position is the same either way.
    corrupted: tokenize the corrupted prompts (IOI's ABC prompts) instead; answer_pos and
        answer_ids stay those of the clean prompts, which have the same length.
    device: where the tensors go; None leaves them on the CPU.
    """
    examples = list(examples)
    if not examples:
        raise ValueError("make_batch: got no examples")
    if full_text and corrupted:
        raise ValueError("make_batch: choose full_text or corrupted, not both")
    for i, ex in enumerate(examples):
        if not isinstance(ex, Example):
            raise TypeError(f"make_batch: examples[{i}] must be an Example, got {type(ex).__name__}")
        if corrupted and ex.corrupted_prompt is None:
            raise ValueError(f"make_batch: examples[{i}] ({ex.family}) has no corrupted prompt")
    texts: list[str]
    if corrupted:
        texts = [cast(str, ex.corrupted_prompt) for ex in examples]  # checked above: none is None
    else:
        texts = [ex.text if full_text else ex.prompt for ex in examples]
    rows = [TOKENIZER.encode(t, prepend_bos=True) for t in texts]
    tokens = torch.full((len(rows), max(len(r) for r in rows)), TOKENIZER.pad_token_id, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    batch = Batch(
        tokens=tokens,
        answer_pos=torch.tensor([ex.answer_pos for ex in examples], dtype=torch.long),
        answer_ids=torch.tensor([ex.answer_id for ex in examples], dtype=torch.long),
        lengths=torch.tensor([len(r) for r in rows], dtype=torch.long),
        examples=examples,
    )
    return batch if device is None else batch.to(device)


def iter_batches(examples: Sequence[Example], batch_size: int, **kwargs: Any) -> Iterator[Batch]:
    """``make_batch`` over consecutive chunks of ``batch_size`` examples (kwargs go to make_batch)."""
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    for start in range(0, len(examples), batch_size):
        yield make_batch(examples[start : start + batch_size], **kwargs)
