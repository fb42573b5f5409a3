"""A small, deterministic training loop: ``fit`` (the AdamW loop every trainer shares) and
``train_lm``, which uses it for HookedTransformer language models.

``train_lm`` trains with AdamW on next-token cross-entropy. Data is either a fixed tensor of
token sequences (batches are sampled from it) or a function that makes a fresh batch each
step. Everything random (batch order, fresh batches) comes from one CPU generator seeded by
``seed``, so with the same model seed, device and thread count a run repeats bit for bit, and
the batches are the same on every device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from toykit.hooks import check_model
from toykit.progress import tqdm
from toykit.runtime import cpu_thread_count, make_generator, resolve_device
from toykit.schedules import lr_factor
from toykit.transformer import HookedTransformer
from toykit.validation import check_non_negative_int, check_positive_int, check_tensor

__all__ = ["fit", "lr_factor", "train_lm"]

BatchFn = Callable[[int, torch.Generator], torch.Tensor]
EvalFn = Callable[[HookedTransformer, int], dict[str, Any]]


def _batch_from_tensor(data: torch.Tensor, batch_size: int) -> BatchFn:
    def batch_fn(step: int, generator: torch.Generator) -> torch.Tensor:
        # Sampling with replacement keeps every step's batch independent of the epoch layout.
        idx = torch.randint(0, data.shape[0], (batch_size,), generator=generator)
        return data[idx]

    return batch_fn


def train_lm(
    model: HookedTransformer,
    data: torch.Tensor | BatchFn,
    steps: int,
    *,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    lr_warmup: int = 0,
    lr_schedule: str | Callable[[int, int], float] = "constant",
    log_every: int = 25,
    eval_fn: EvalFn | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    progress: bool = True,
    grad_clip: float | None = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    cpu_threads: int | None = None,
) -> dict[str, list]:
    """Train ``model`` in place on next-token prediction with AdamW.

    model: a HookedTransformer; it is moved to ``device``.
    data: either tokens [n_sequences, pos] (int; each step samples batch_size rows with
        replacement), or ``batch_fn(step, generator) -> tokens [batch, pos]`` making a fresh
        batch (draw from ``generator``, a seeded CPU torch.Generator, for reproducibility;
        batch_size is then ignored). Tokens may live on any device; they are moved to ``device``.
    steps: number of optimiser steps.
    lr, weight_decay, betas: AdamW's settings. Weight decay applies to weight matrices only
        (W_*), not to biases or LayerNorm weights.
    lr_warmup, lr_schedule: see ``lr_factor``; the learning rate of step s is
        lr * lr_factor(lr_schedule, s, steps, lr_warmup).
    log_every: log at steps 0, log_every, 2 * log_every, ... and at the last step.
    eval_fn: ``eval_fn(model, step) -> dict`` called (under torch.no_grad, in eval mode) at
        each logged step; each key becomes a list in the history.
    device: None picks toykit.get_device().
    seed: seeds the batches (the initial weights come from the model's cfg.seed).
    progress: show a tqdm progress bar.
    grad_clip: clip the global gradient norm to this value (None: no clipping).
    cpu_threads: torch threads while training on the CPU (restored afterwards); None leaves
        torch's setting alone. Results depend bitwise on the thread count.
    Returns the history: {"step": [int], "loss": [float] (the training batch's loss before
        that step's update), "lr": [float], plus one list per eval_fn key}.
    """
    check_model(model, HookedTransformer)
    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    check_positive_int("log_every", log_every)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}")
    if not isinstance(lr_warmup, int) or isinstance(lr_warmup, bool) or lr_warmup < 0:
        raise ValueError(f"lr_warmup must be an int >= 0, got {lr_warmup!r}")
    generator = make_generator(check_non_negative_int("seed", seed))
    if grad_clip is not None and (not isinstance(grad_clip, (int, float)) or grad_clip <= 0):
        raise ValueError(f"grad_clip must be None or a positive number, got {grad_clip!r}")
    if eval_fn is not None and not callable(eval_fn):
        raise TypeError(f"eval_fn must be None or a callable eval_fn(model, step) -> dict, got {eval_fn!r}")
    if cpu_threads is not None:
        check_positive_int("cpu_threads", cpu_threads)
    lr_factor(lr_schedule, 0, steps, lr_warmup)  # fail early on a bad schedule
    if isinstance(data, torch.Tensor):
        check_tensor("data", data, ["n_sequences", "pos"], dtype="int")
        if data.shape[0] == 0 or data.shape[1] < 2:
            raise ValueError(f"data must hold at least one sequence of at least 2 tokens, got {list(data.shape)}")
        batch_fn = _batch_from_tensor(data.cpu(), batch_size)
    elif callable(data):
        batch_fn = data
    else:
        raise TypeError(f"data must be a token tensor [n_sequences, pos] or a callable batch_fn(step, generator), "
                        f"got {type(data).__name__}")

    device = resolve_device(device)
    model.to(device)

    def step_loss(step: int, generator: torch.Generator) -> torch.Tensor:
        tokens = batch_fn(step, generator)
        check_tensor("batch_fn(step, generator)", tokens, ["batch", "pos"], dtype="int")
        return model(tokens.to(device), return_type="loss")

    with cpu_thread_count(cpu_threads, device):
        return fit(model, step_loss, steps, lr=lr, weight_decay=weight_decay, betas=betas, lr_warmup=lr_warmup,
                   lr_schedule=lr_schedule, log_every=log_every, eval_fn=eval_fn, generator=generator,
                   progress=progress, grad_clip=grad_clip)


def fit(model: torch.nn.Module, step_loss: Callable[[int, torch.Generator], torch.Tensor], steps: int, *,
        lr: float, weight_decay: float, betas: tuple[float, float], lr_warmup: int,
        lr_schedule: str | Callable[[int, int], float], log_every: int,
        eval_fn: Callable[[Any, int], dict[str, Any]] | None, generator: torch.Generator, progress: bool,
        grad_clip: float | None = None) -> dict[str, list]:
    """The AdamW loop every toykit trainer shares (its arguments already checked by the trainer).

    step_loss(step, generator) -> a scalar loss tensor: draw the step's batch (from generator)
    and run the model on it; it is called with the model in train mode. Weight decay applies to
    parameters whose own name starts with "W" (W_E, W_Q, ..., a conv's W), not to biases or
    LayerNorm weights. Logging, eval_fn and the returned history are as ``train_lm`` documents.
    """
    decay = [p for n, p in model.named_parameters() if n.rsplit(".", 1)[-1].startswith("W")]
    no_decay = [p for n, p in model.named_parameters() if not n.rsplit(".", 1)[-1].startswith("W")]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # foreach=False: the same per-parameter kernels on every device and torch build.
    optimiser = torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=betas, foreach=False)
    history: dict[str, list] = {"step": [], "loss": [], "lr": []}
    bar = tqdm(range(steps), disable=not progress, desc="training", dynamic_ncols=True)
    for step in bar:
        step_lr = lr * lr_factor(lr_schedule, step, steps, lr_warmup)
        for group in optimiser.param_groups:
            group["lr"] = step_lr
        model.train()
        loss = step_loss(step, generator)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimiser.step()
        if step % log_every == 0 or step == steps - 1:
            loss_value = loss.item()
            history["step"].append(step)
            history["loss"].append(loss_value)
            history["lr"].append(step_lr)
            if eval_fn is not None:
                model.eval()
                with torch.no_grad():
                    metrics = eval_fn(model, step)
                if not isinstance(metrics, dict):
                    raise TypeError(f"eval_fn must return a dict, got {type(metrics).__name__}")
                for key, value in metrics.items():
                    if key in ("step", "loss", "lr"):
                        raise ValueError(f"eval_fn returned the reserved key {key!r}; name it differently")
                    history.setdefault(key, []).append(_plain(value))
            bar.set_postfix(loss=f"{loss_value:.3f}", refresh=False)
    model.eval()
    return history


def _plain(value: Any) -> Any:
    """Tensors become Python numbers / nested lists, so a history is JSON-ready."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    return value
