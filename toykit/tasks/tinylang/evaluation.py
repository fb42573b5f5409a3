"""Per-family evaluation of a language model on held-out TinyLang examples.

The model is any callable mapping tokens [batch, pos] to logits [batch, pos, d_vocab]
(d_vocab at least TinyLang's vocabulary size), e.g. a HookedTransformer. Prompts are
``<bos>`` + prompt, right-padded with ``<pad>``; a causal model's logits at the answer
position do not depend on the padding after it. Every example is at most 64 tokens long.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

from toykit.runtime import eval_mode, resolve_device
from toykit.tasks.tinylang.examples import Batch, Example, iter_batches
from toykit.tasks.tinylang.families import FAMILIES, generate_examples
from toykit.tasks.tinylang.vocab import TOKENIZER
from toykit.validation import check_tensor

__all__ = ["TARGETS", "evaluate", "heldout_examples", "meets_targets"]

#: The targets a trained TinyLang model should meet: {family: {metric: (comparison, value)}}.
TARGETS: dict[str, dict[str, tuple[str, float]]] = {
    "ioi": {"accuracy": (">=", 0.95), "logit_diff": (">=", 2.0)},
    "agreement": {"accuracy": (">=", 0.90)},
    "entity_tracking": {"accuracy": (">=", 0.90)},
    "successor": {"accuracy": (">=", 0.95)},
    "repeated_span": {"loss_ratio": ("<", 0.20)},
    "fact": {"accuracy": (">=", 0.95)},
}

# The wrong token each logit difference subtracts: IO − S, correct − incorrect verb, answer box − distractor box.
_CONTRAST_LABEL = {"ioi": "s_id", "agreement": "incorrect_verb_id", "entity_tracking": "distractor_box_id"}


def heldout_examples(family: str, n: int, seed: int = 0) -> list[Example]:
    """The examples ``evaluate`` uses: ``generate_examples(family, n, seed, split="test")``."""
    return generate_examples(family, n, seed=seed, split="test")


def _model_device(model: Callable, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return resolve_device(device)
    if isinstance(model, nn.Module):
        for p in model.parameters():
            return p.device
    return resolve_device(None)


def _logits(model: Callable, tokens: torch.Tensor) -> torch.Tensor:
    logits = model(tokens)
    dims = {"batch": tokens.shape[0], "pos": tokens.shape[1]}
    check_tensor("model(tokens)", logits, ["batch", "pos", "d_vocab"], dtype="float", dims=dims)
    if logits.shape[-1] < TOKENIZER.vocab_size:
        raise ValueError(
            f"model(tokens) has d_vocab={logits.shape[-1]}, smaller than TinyLang's vocab_size={TOKENIZER.vocab_size}"
        )
    return logits.float()


def _span_positions(batch: Batch, start_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, positions) predicting the 2nd..last span word of one occurrence."""
    rows: list[int] = []
    pos: list[int] = []
    for i, ex in enumerate(batch.examples):
        start, length = ex.labels[start_key], ex.labels["span_length"]
        rows += [i] * (length - 1)
        pos += range(start, start + length - 1)
    device = batch.tokens.device
    return torch.tensor(rows, device=device), torch.tensor(pos, device=device)


@torch.no_grad()
def _evaluate_family(
    model: Callable, examples: Sequence[Example], family: str, device: torch.device, batch_size: int
) -> dict[str, float]:
    correct = 0
    hard_correct = n_hard = 0  # entity tracking: the examples the "starting box" shortcut gets wrong
    diffs: list[torch.Tensor] = []
    losses: dict[str, list[torch.Tensor]] = {"first_start": [], "second_start": []}
    hits_second = 0
    n_second = 0
    full = family == "repeated_span"
    for batch in iter_batches(examples, batch_size, full_text=full, device=device):
        logits = _logits(model, batch.tokens)
        at_answer = batch.logits_at_answer(logits)
        right = at_answer.argmax(-1) == batch.answer_ids
        correct += int(right.sum())
        if family == "entity_tracking":
            hard = torch.tensor([not ex.labels["initial_box_correct"] for ex in batch.examples], device=device)
            hard_correct += int(right[hard].sum())
            n_hard += int(hard.sum())
        if family in _CONTRAST_LABEL:
            wrong = torch.tensor([ex.labels[_CONTRAST_LABEL[family]] for ex in batch.examples], device=device)
            rows = torch.arange(len(batch), device=device)
            diffs.append(at_answer[rows, batch.answer_ids] - at_answer[rows, wrong])
        if full:
            log_probs = logits.log_softmax(-1)
            for key in losses:
                rows, pos = _span_positions(batch, key)
                targets = batch.tokens[rows, pos + 1]
                losses[key].append(-log_probs[rows, pos, targets])
                if key == "second_start":
                    hits_second += int((logits[rows, pos].argmax(-1) == targets).sum())
                    n_second += len(targets)
    out = {"n": len(examples), "accuracy": correct / len(examples)}
    if family == "entity_tracking":
        out["n_shortcut_wrong"] = n_hard
        out["accuracy_shortcut_wrong"] = hard_correct / n_hard if n_hard else math.nan
    if diffs:
        diff = torch.cat(diffs)
        out["logit_diff"] = diff.mean().item()
        out["pairwise_accuracy"] = (diff > 0).float().mean().item()
    if full:
        first = torch.cat(losses["first_start"]).mean().item()
        second = torch.cat(losses["second_start"]).mean().item()
        out["loss_first"] = first
        out["loss_second"] = second
        out["loss_ratio"] = second / first if first > 0 else math.nan
        out["accuracy_second"] = hits_second / n_second
    return out


def evaluate(
    model: Callable[[torch.Tensor], torch.Tensor],
    n_per_family: int = 200,
    seed: int = 0,
    device: str | torch.device | None = None,
    *,
    families: Sequence[str] | None = None,
    batch_size: int = 100,
) -> dict[str, dict[str, float]]:
    """Score a model on held-out examples of each family (``heldout_examples(family, n, seed)``).

    model: tokens [batch, pos] -> logits [batch, pos, d_vocab]. An ``nn.Module`` is put in eval
        mode for the call and restored afterwards.
    device: where the tokens go; None means the model's parameters' device, or ``get_device()``
        for a model without parameters.
    families: a subset of ``FAMILIES`` (default: all).

    Returns {family: metrics}. Every family has ``n`` and ``accuracy`` (argmax at the answer
    position equals the answer; ties go to the lowest id, ``<pad>``, which is never an answer).
    ``logit_diff`` (mean, answer minus a contrast token): IOI IO − S; agreement correct −
    incorrect verb; entity tracking answer box − distractor box; with it ``pairwise_accuracy``,
    the share of examples where the answer's logit is strictly above the contrast token's. Entity
    tracking also has ``accuracy_shortcut_wrong`` over its ``n_shortcut_wrong`` examples whose
    answer is not the queried object's starting box (only state tracking gets those right; the
    starting-box shortcut alone is right on about two thirds of all examples). Repeated spans: mean loss
    (nats) predicting the 2nd..last span word in the first occurrence (``loss_first``) and the
    second (``loss_second``), their ``loss_ratio``, and ``accuracy_second`` (argmax accuracy
    over the second occurrence).
    """
    if not callable(model):
        raise TypeError(f"model must be callable (tokens -> logits), got {type(model).__name__}")
    if not isinstance(n_per_family, int) or isinstance(n_per_family, bool) or n_per_family <= 0:
        raise ValueError(f"n_per_family must be a positive int, got {n_per_family!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    families = list(FAMILIES if families is None else [families] if isinstance(families, str) else families)
    for f in families:
        if f not in FAMILIES:
            raise ValueError(f"families must be drawn from {FAMILIES}, got {f!r}")
    dev = _model_device(model, device)
    with eval_mode(model):
        return {
            f: _evaluate_family(model, heldout_examples(f, n_per_family, seed), f, dev, batch_size) for f in families
        }


def meets_targets(results: dict[str, dict[str, float]]) -> dict[str, bool]:
    """{family: whether every target in ``TARGETS`` is met}, for the families in ``results``."""
    ops = {">=": lambda a, b: a >= b, "<": lambda a, b: a < b}
    return {
        family: all(ops[op](metrics[name], value) for name, (op, value) in TARGETS[family].items())
        for family, metrics in results.items()
        if family in TARGETS
    }


assert set(TARGETS) == set(FAMILIES)
