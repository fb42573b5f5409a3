"""``train_cnn``: a small, deterministic training loop for HookedCNN image classifiers.

It trains with AdamW on cross-entropy, with the same keyword settings as ``train_lm``
(``lr``, ``lr_warmup``, ``lr_schedule``, ``weight_decay``, ``betas``, ``batch_size``,
``log_every``, ``device``, ``seed``, ``progress``, ``cpu_threads``). Data is either a fixed
pair of tensors (batches are sampled from it) or a function that makes a fresh batch each step
(``toykit.tasks.shapes.generate_shapes``, say). Everything random comes from one CPU generator
seeded by ``seed``, so with the same model seed, device and thread count a run repeats bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from toykit.cnn import HookedCNN
from toykit.hooks import check_model
from toykit.runtime import cpu_thread_count, make_generator, resolve_device
from toykit.schedules import lr_factor
from toykit.training import fit
from toykit.validation import check_non_negative_int, check_positive_int, check_positive_number, check_tensor

__all__ = ["train_cnn"]

BatchFn = Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]
EvalFn = Callable[[HookedCNN, int], dict[str, Any]]


def train_cnn(
    model: HookedCNN,
    data: tuple[torch.Tensor, torch.Tensor] | BatchFn,
    steps: int,
    *,
    batch_size: int = 128,
    lr: float = 3e-3,
    weight_decay: float = 0.0,
    lr_warmup: int = 0,
    lr_schedule: str | Callable[[int, int], float] = "constant",
    betas: tuple[float, float] = (0.9, 0.999),
    log_every: int = 25,
    eval_fn: EvalFn | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    progress: bool = True,
    cpu_threads: int | None = None,
) -> dict[str, list]:
    """Train ``model`` in place to classify images, with AdamW on cross-entropy.

    model: a HookedCNN; it is moved to ``device``.
    data: either ``(images [n, c, H, W] float, labels [n] int)`` (each step samples batch_size
        rows with replacement), or ``batch_fn(step, generator) -> (images, labels)`` making a
        fresh batch (draw from ``generator``, a seeded CPU generator, or from a seed of your
        own; batch_size is then ignored). Batches are moved to ``device``.
    steps: number of optimiser steps.
    lr, weight_decay, betas: AdamW's settings; weight decay applies to the weights (W, W_U),
        not to the biases.
    lr_warmup, lr_schedule: the learning rate of step s is
        lr * toykit.schedules.lr_factor(lr_schedule, s, steps, lr_warmup).
    log_every: log at steps 0, log_every, 2 * log_every, ... and at the last step.
    eval_fn: ``eval_fn(model, step) -> dict`` called (under torch.no_grad, in eval mode) at each
        logged step; each key becomes a list in the history.
    device: None picks toykit.get_device(). seed: seeds the batches (the initial weights come
        from the model's cfg.seed). progress: show a progress bar.
    cpu_threads: torch threads while training on the CPU (restored afterwards); None leaves
        torch's setting alone. Results depend bitwise on the thread count.
    Returns the history: {"step": [int], "loss": [float] (the batch's loss before that step's
        update), "lr": [float], plus one list per eval_fn key}.
    """
    check_model(model, HookedCNN)
    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    check_positive_int("log_every", log_every)
    check_positive_number("lr", lr)
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}")
    check_non_negative_int("lr_warmup", lr_warmup)
    lr_factor(lr_schedule, 0, steps, lr_warmup)  # fail early on a bad schedule
    if eval_fn is not None and not callable(eval_fn):
        raise TypeError(f"eval_fn must be None or a callable eval_fn(model, step) -> dict, got {eval_fn!r}")
    if cpu_threads is not None:
        check_positive_int("cpu_threads", cpu_threads)
    generator = make_generator(check_non_negative_int("seed", seed))
    batch_fn = _batch_fn(data, batch_size)
    device = resolve_device(device)
    model.to(device)

    def step_loss(step: int, generator: torch.Generator) -> torch.Tensor:
        batch = batch_fn(step, generator)
        if not isinstance(batch, tuple) or len(batch) != 2:
            raise TypeError(f"batch_fn(step, generator) must return (images, labels), got {type(batch).__name__}")
        dims = check_tensor("batch_fn's images", batch[0], ["batch", None, None, None], dtype="float")
        check_tensor("batch_fn's labels", batch[1], ["batch"], dtype="int", dims=dims)
        return F.cross_entropy(model(batch[0].to(device)), batch[1].to(device))

    with cpu_thread_count(cpu_threads, device):
        return fit(model, step_loss, steps, lr=lr, weight_decay=weight_decay, betas=betas, lr_warmup=lr_warmup,
                   lr_schedule=lr_schedule, log_every=log_every, eval_fn=eval_fn, generator=generator,
                   progress=progress)


def _batch_fn(data: object, batch_size: int) -> BatchFn:
    if callable(data):
        return data  # checked batch by batch in _train
    if not isinstance(data, tuple) or len(data) != 2:
        raise TypeError("data must be a pair (images [n, c, H, W], labels [n]) or a callable "
                        f"batch_fn(step, generator) -> (images, labels), got {type(data).__name__}")
    images, labels = data
    dims = check_tensor("data[0] (images)", images, ["n", None, None, None], dtype="float")
    check_tensor("data[1] (labels)", labels, ["n"], dtype="int", dims=dims)
    if dims["n"] == 0:
        raise ValueError("data must hold at least one image")
    images, labels = images.cpu(), labels.cpu()

    def batch_fn(step: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, images.shape[0], (batch_size,), generator=generator)
        return images[idx], labels[idx]

    return batch_fn
