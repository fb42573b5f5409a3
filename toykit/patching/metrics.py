"""Patching metrics: a function of the logits that patching moves.

A **metric** is ``metric(logits [batch, pos, d_vocab]) -> scalar`` (a float or a 1-element
tensor), usually averaged over the batch. ``normalize_metric`` (from ``toykit.metrics``)
rescales one so that 0 is the corrupted run and 1 the clean run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch

from toykit.activations import select_positions
from toykit.metrics import normalize_metric
from toykit.validation import check_tensor

Metric = Callable[[torch.Tensor], Any]


def _check_logits(logits: torch.Tensor) -> None:
    check_tensor("logits", logits, ["batch", "pos", "d_vocab"], dtype="float")


def _token_ids(name: str, ids: torch.Tensor | int, batch: int, d_vocab: int, device: torch.device) -> torch.Tensor:
    if isinstance(ids, int) and not isinstance(ids, bool):
        ids = torch.full((batch,), ids)
    check_tensor(name, ids, [batch], dtype="int")
    ids = cast(torch.Tensor, ids)  # check_tensor raised for anything else
    if ids.numel() and (ids.min() < 0 or ids.max() >= d_vocab):
        raise ValueError(f"{name} must lie in [0, d_vocab={d_vocab}), got values from {ids.min().item()} "
                         f"to {ids.max().item()}")
    return ids.to(device, torch.long)


def logit_diff(
    logits: torch.Tensor,
    answer_ids: torch.Tensor | int,
    wrong_ids: torch.Tensor | int,
    *,
    pos: int | torch.Tensor = -1,
    per_prompt: bool = False,
) -> torch.Tensor:
    """Logit of the right answer minus that of the wrong one, at the answer position.

    logits: [batch, pos, d_vocab]; answer_ids, wrong_ids: [batch] token ids (or one int).
    pos: the position predicting the answer: an int (-1 = the last), or an int tensor [batch]
        (prompt b is read at pos[b]: padded prompts of different lengths).
    Returns the mean over the batch (a 0-dim tensor), or [batch] with per_prompt.
    Chapter 04's ``logit_diff`` and chapter 06's ``ioi_logit_diff`` exercises have this signature.
    """
    _check_logits(logits)
    batch, _, d_vocab = logits.shape
    at = select_positions(logits, pos, dim=1)  # [batch, d_vocab]
    a = _token_ids("answer_ids", answer_ids, batch, d_vocab, logits.device)
    w = _token_ids("wrong_ids", wrong_ids, batch, d_vocab, logits.device)
    diff = at.gather(1, a[:, None])[:, 0] - at.gather(1, w[:, None])[:, 0]
    return diff if per_prompt else diff.mean()


def logit_diff_metric(
    answer_ids: torch.Tensor | int,
    wrong_ids: torch.Tensor | int,
    *,
    pos: int | torch.Tensor = -1,
    clean_logits: torch.Tensor | None = None,
    corrupted_logits: torch.Tensor | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A patching metric: the mean logit difference (see ``logit_diff``) as a function of logits.

    With clean_logits and corrupted_logits it is normalised (``normalize_metric`` with the
    corrupted run's value as baseline and the clean run's as target): 0 as corrupted, 1 as
    clean (Wang et al.'s "fraction of logit difference recovered").
    """
    if (clean_logits is None) != (corrupted_logits is None):
        raise ValueError("give both clean_logits and corrupted_logits (to normalise) or neither")

    def raw(logits: torch.Tensor) -> torch.Tensor:
        return logit_diff(logits, answer_ids, wrong_ids, pos=pos)

    if clean_logits is None or corrupted_logits is None:  # both or neither (checked above)
        return raw
    clean_value, corrupted_value = raw(clean_logits).item(), raw(corrupted_logits).item()
    normalize_metric(0.0, baseline=corrupted_value, target=clean_value)  # fail now, not inside a sweep

    def normalized(logits: torch.Tensor) -> torch.Tensor:
        return normalize_metric(raw(logits), baseline=corrupted_value, target=clean_value)

    return normalized


def kl_divergence(
    logits: torch.Tensor,
    reference_logits: torch.Tensor,
    pos: int | torch.Tensor | None = -1,
    per_prompt: bool = False,
) -> torch.Tensor:
    """KL(reference ‖ model): how far the next-token distribution moved from a reference run.

    logits, reference_logits: [batch, pos, d_vocab]. pos: an int or int tensor [batch] (one
    position), or None (mean over all positions). Returns the batch mean, or [batch].
    0 for identical distributions; a metric for "how much did this patch change anything".
    """
    _check_logits(logits)
    if not isinstance(reference_logits, torch.Tensor) or reference_logits.shape != logits.shape:
        raise ValueError(f"reference_logits must have the shape of logits {list(logits.shape)}, "
                         f"got {list(getattr(reference_logits, 'shape', []))}")
    logp = select_positions(logits.log_softmax(-1), pos, dim=1)
    logq = select_positions(reference_logits.to(logits.device).log_softmax(-1), pos, dim=1)
    kl = (logq.exp() * (logq - logp)).sum(-1)  # [batch] or [batch, pos]
    if pos is None:
        kl = kl.mean(-1)
    return kl if per_prompt else kl.mean()


def metric_value(metric: Metric, logits: torch.Tensor) -> float:
    """metric(logits) as a float, with a clear error for a metric that is not a scalar."""
    value = metric(logits)
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"the metric must return a scalar, got a tensor of shape {list(value.shape)}; "
                             "average over the batch (e.g. .mean())")
        return value.item()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"the metric must return a float or a 1-element tensor, got {type(value).__name__}")
