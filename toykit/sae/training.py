"""Training sparse autoencoders: ``train_sae``, and reviving dead latents by resampling.

``train_sae`` trains any SAE of toykit.sae with Adam on a tensor of activations (shuffled,
one epoch after another) or on fresh batches from a function. What it does, step by step:

1. **Activation normalisation** (optional, on by default): activations are multiplied by one
   constant s so that their mean norm is √d_in, which makes coefficients and learning rates
   transfer between models. At the end s is folded into the weights
   (``SAE.fold_activation_norm_scaling_factor``), so the returned SAE works on raw activations.
2. **b_dec** starts at the mean of the (normalised) data; W_enc = W_decᵀ with short decoder rows
   comes from the SAE's own initialisation.
3. **Warm-ups**: the learning rate and the sparsity coefficient (L1 or L0) both rise linearly
   from near 0 over their own number of steps, so the dictionary can spread out before
   sparsity pressure kills latents.
4. **Decoder normalisation** (TopK and JumpReLU by default): decoder rows are rescaled to unit
   length after every step. The standard SAE needs no constraint: its L1 penalty is weighted by
   the row norms.
5. **Dead-latent tracking**: for every latent, the number of inputs since it last fired. A
   latent is dead once that reaches ``dead_window`` inputs. TopK's AuxK loss uses the dead set.
6. **Resampling** (optional, Bricken et al. 2023): every ``resample_every`` steps, each dead
   latent is pointed at an input the SAE reconstructs badly (chosen with probability ∝ its
   squared error), and its Adam state is reset.

Everything random comes from a CPU generator seeded by ``seed`` (the initial weights from the
SAE's cfg.seed), so a run repeats, and the batches are the same on every device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from toykit.progress import tqdm
from toykit.runtime import cpu_thread_count, make_generator, resolve_device
from toykit.sae.architectures import SAE, JumpReLUSAE, check_sae
from toykit.sae.metrics import explained_variance, l0, mse
from toykit.schedules import lr_factor
from toykit.validation import check_non_negative_int, check_positive_int, check_tensor

__all__ = ["activation_scale", "reinitialise_latents", "resample_dead_latents", "train_sae"]

BatchFn = Callable[[int, torch.Generator], torch.Tensor]

#: Rows of the data used to estimate the normalisation constant and the starting b_dec.
N_ESTIMATE = 10_000


def activation_scale(x: torch.Tensor) -> float:
    """x: [n, d_in] -> the constant s with mean ‖s x‖ = √d_in."""
    check_tensor("x", x, ["n", "d_in"], dtype="float")
    mean_norm = x.norm(dim=1).mean().item()
    if not mean_norm > 0:
        raise ValueError("cannot normalise activations that are all zero")
    return math.sqrt(x.shape[1]) / mean_norm


# -- resampling ----------------------------------------------------------------------------------


def reinitialise_latents(W_enc: torch.Tensor, b_enc: torch.Tensor, W_dec: torch.Tensor, b_dec: torch.Tensor,
                         dead: torch.Tensor, inputs: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Point each dead latent at an input (new tensors; the arguments are not changed).

    W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in], b_dec [d_in]; dead: [d_sae] bool;
    inputs: [n_dead, d_in], the input chosen for each dead latent, in latent order.
    With u = (input − b_dec) / ‖input − b_dec‖ (the direction the encoder sees): the latent's
    decoder row becomes u, its encoder column u · 0.2 · (mean norm of the live latents'
    encoder columns; 1 if none is alive), and its encoder bias 0.
    Returns (W_enc, b_enc, W_dec).
    """
    dims = check_tensor("W_enc", W_enc, ["d_in", "d_sae"], dtype="float")
    check_tensor("b_enc", b_enc, ["d_sae"], dtype="float", dims=dims)
    check_tensor("W_dec", W_dec, ["d_sae", "d_in"], dtype="float", dims=dims)
    check_tensor("b_dec", b_dec, ["d_in"], dtype="float", dims=dims)
    check_tensor("dead", dead, ["d_sae"], dtype="bool", dims=dims)
    n_dead = int(dead.sum())
    check_tensor("inputs", inputs, [n_dead, "d_in"], dtype="float", dims=dims)
    alive = ~dead
    enc_norm = W_enc[:, alive].norm(dim=0).mean() if alive.any() else W_enc.new_tensor(1.0)
    directions = F.normalize(inputs - b_dec, dim=1)  # [n_dead, d_in]
    W_enc, b_enc, W_dec = W_enc.clone(), b_enc.clone(), W_dec.clone()
    W_dec[dead] = directions
    W_enc[:, dead] = directions.T * (0.2 * enc_norm)
    b_enc[dead] = 0.0
    return W_enc, b_enc, W_dec


@torch.no_grad()
def resample_dead_latents(sae: SAE, dead: torch.Tensor, x: torch.Tensor, generator: torch.Generator | None = None,
                          optimizer: torch.optim.Optimizer | None = None) -> int:
    """Revive the latents in ``dead`` ([d_sae] bool) in place, using the batch x: [n, d_in].

    Each dead latent gets an input drawn with probability ∝ the SAE's squared error on it
    (inputs it reconstructs badly are the ones a new latent can help), then
    reinitialise_latents points it there. JumpReLU thresholds go back to their initial value.
    If ``optimizer`` (an Adam) is given, its moment estimates for those weights are zeroed.
    generator: a CPU generator, for reproducible draws. Returns the number of latents revived.
    """
    check_sae(sae)
    check_tensor("dead", dead, [sae.d_sae], dtype="bool")
    check_tensor("x", x, ["n", sae.d_in], dtype="float")
    dead = dead.to(sae.device)
    n_dead = int(dead.sum())
    if n_dead == 0:
        return 0
    x = x.to(sae.device)
    errors = (sae(x) - x).pow(2).sum(dim=1).double().cpu()
    probs = errors if errors.sum() > 0 else torch.ones_like(errors)
    chosen = torch.multinomial(probs, n_dead, replacement=n_dead > x.shape[0], generator=generator)
    W_enc, b_enc, W_dec = reinitialise_latents(sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec, dead,
                                               x[chosen.to(sae.device)])
    sae.W_enc.copy_(W_enc)
    sae.b_enc.copy_(b_enc)
    sae.W_dec.copy_(W_dec)
    if isinstance(sae, JumpReLUSAE):
        sae.log_threshold[dead] = math.log(sae.cfg.jumprelu_init_threshold)
    if optimizer is not None:
        _reset_adam_state(sae, optimizer, dead)
    return n_dead


def _reset_adam_state(sae: SAE, optimizer: torch.optim.Optimizer, dead: torch.Tensor) -> None:
    # Which slice of each parameter belongs to latent i.
    slices = {"W_enc": (slice(None), dead), "b_enc": (dead,), "W_dec": (dead,), "log_threshold": (dead,)}
    for name, index in slices.items():
        param = getattr(sae, name, None)
        state = optimizer.state.get(param, {}) if param is not None else {}
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][index] = 0.0


# -- training ------------------------------------------------------------------------------------


def _epochs(data: torch.Tensor, batch_size: int) -> BatchFn:
    """Batches that visit every row once per epoch, in a fresh random order each epoch."""
    order: list[torch.Tensor] = []
    position = [0]

    def batch_fn(step: int, generator: torch.Generator) -> torch.Tensor:
        if not order or position[0] + batch_size > data.shape[0]:
            order[:] = [torch.randperm(data.shape[0], generator=generator).to(data.device)]
            position[0] = 0
        idx = order[0][position[0]:position[0] + batch_size]
        position[0] += batch_size
        return data[idx]

    batch_fn.checked = True  # type: ignore[attr-defined]  # a mark on the function, read by train_sae
    return batch_fn


def _check_number(name: str, value: object, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 \
            or (positive and value == 0):
        raise ValueError(f"{name} must be a {'positive' if positive else 'non-negative'} number, got {value!r}")


def train_sae(
    sae: SAE,
    data: torch.Tensor | BatchFn,
    steps: int,
    *,
    batch_size: int = 1024,
    lr: float = 1e-3,
    sparsity_coefficient: float = 0.0,
    lr_warmup: int = 0,
    lr_schedule: str | Callable[[int, int], float] = "constant",
    coefficient_warmup: int = 0,
    normalize_activations: bool = True,
    normalize_decoder: bool | None = None,
    init_b_dec: str = "mean",
    dead_window: int = 10_000,
    resample_every: int | None = None,
    resample_until: int | None = None,
    aux_coefficient: float = 1 / 32,
    betas: tuple[float, float] = (0.9, 0.999),
    log_every: int | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    progress: bool = True,
    cpu_threads: int | None = 1,
) -> dict[str, list]:
    """Train ``sae`` in place with Adam; returns the history. Every argument after ``steps`` is
    keyword-only.

    data: activations [n, d_in] (float; shuffled, every row once per epoch; n ≥ batch_size), or
        ``batch_fn(step, generator) -> [batch, d_in]`` making a fresh batch from ``generator``, a
        seeded CPU torch.Generator (batch_size is then ignored).
    steps, batch_size, lr, betas: the optimisation; ``lr_warmup`` and ``lr_schedule`` as in
        toykit.schedules.lr_factor.
    sparsity_coefficient: the L1 coefficient (standard) or L0 coefficient (JumpReLU), applied to
        normalised activations; TopK ignores it. It rises linearly over ``coefficient_warmup``
        steps.
    normalize_activations: train on s·x with mean ‖s·x‖ = √d_in, then fold s into the weights.
    normalize_decoder: rescale decoder rows to unit length after each step (None: for TopK and
        JumpReLU, not for the standard SAE).
    init_b_dec: "mean" (the data's mean) or "zeros".
    dead_window: a latent counts as dead once it has not fired on this many consecutive inputs.
    resample_every: resample dead latents every this many steps (None: never), until step
        ``resample_until`` (None: until the end).
    aux_coefficient: the weight of TopK's AuxK loss.
    log_every: record every this many steps and at the last (default: about 100 records).
    device: None picks toykit.get_device(); the SAE is moved there. seed: seeds the batches.
    progress: show a tqdm progress bar.
    cpu_threads: torch threads while training on the CPU (restored afterwards); None leaves torch's
        setting alone. The course's SAEs are small, and on a busy 2-core machine one thread was many
        times faster than two; give large SAEs (d_sae in the thousands, big batches) more.
    Returns {"step", "loss", "mse", "l0", "explained_variance", "dead_fraction", "lr",
    "sparsity_coefficient"}: one entry per record, measured on that step's training batch
    (mse per element, on the raw scale; dead_fraction from the tracker, i.e. the share of
    latents silent for the last dead_window inputs); "resample_step" and "n_resampled": when
    latents were resampled and how many; "activation_scale": [s] (1.0 without normalisation).
    """
    check_sae(sae)
    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    _check_number("lr", lr, positive=True)
    _check_number("sparsity_coefficient", sparsity_coefficient)
    _check_number("aux_coefficient", aux_coefficient)
    for name, value in [("lr_warmup", lr_warmup), ("coefficient_warmup", coefficient_warmup)]:
        check_non_negative_int(name, value)
    check_positive_int("dead_window", dead_window)
    if resample_every is not None:
        check_positive_int("resample_every", resample_every)
    if resample_until is not None:
        check_non_negative_int("resample_until", resample_until)
    if init_b_dec not in ("mean", "zeros"):
        raise ValueError(f"init_b_dec must be 'mean' or 'zeros', got {init_b_dec!r}")
    if log_every is None:
        log_every = max(1, steps // 100)
    check_positive_int("log_every", log_every)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if cpu_threads is not None:
        check_positive_int("cpu_threads", cpu_threads)
    try:
        lr_factor(lr_schedule, 0, steps, lr_warmup)  # fail early on a bad schedule
    except ValueError as err:
        raise ValueError(f"lr_schedule: {err}") from None

    if isinstance(data, torch.Tensor):
        check_tensor("data", data, ["n", sae.d_in], dtype="float")
        if data.shape[0] < batch_size:
            raise ValueError(f"data has {data.shape[0]} rows, fewer than batch_size={batch_size}")
        batch_fn = _epochs(data, batch_size)
        sample = data[:N_ESTIMATE]
    elif callable(data):
        batch_fn = data
        sample = _checked_batch(batch_fn(0, make_generator(seed + 1)), sae.d_in)
    else:
        raise TypeError(f"data must be activations [n, d_in] or a callable batch_fn(step, generator), "
                        f"got {type(data).__name__}")
    if normalize_decoder is None:
        normalize_decoder = sae.architecture != "standard"

    device = resolve_device(device)
    sae.to(device)
    sample = sample.to(device=device, dtype=sae.W_dec.dtype)
    scale = activation_scale(sample) if normalize_activations else 1.0
    if init_b_dec == "mean":
        with torch.no_grad():
            sae.b_dec.copy_((sample * scale).mean(dim=0))
    if normalize_decoder:
        sae.normalize_decoder_()
    settings: dict[str, Any] = dict(steps=steps, lr=lr, coefficient=sparsity_coefficient, lr_warmup=lr_warmup,
                    lr_schedule=lr_schedule, coefficient_warmup=coefficient_warmup,
                    normalize_decoder=normalize_decoder, dead_window=dead_window, resample_every=resample_every,
                    resample_until=steps if resample_until is None else resample_until,
                    aux_coefficient=aux_coefficient, betas=betas, log_every=log_every, seed=seed,
                    progress=progress, scale=scale)
    with cpu_thread_count(cpu_threads, device):
        try:
            history = _train(sae, batch_fn, device, **settings)
        finally:
            if scale != 1.0:
                sae.fold_activation_norm_scaling_factor(scale)
    history["activation_scale"] = [scale]
    return history


def _checked_batch(x: object, d_in: int) -> torch.Tensor:
    check_tensor("batch_fn(step, generator)", x, ["batch", d_in], dtype="float")
    assert isinstance(x, torch.Tensor)  # check_tensor raised otherwise
    return x


def _train(sae: SAE, batch_fn: BatchFn, device: torch.device, *, steps: int, lr: float, coefficient: float,
           lr_warmup: int, lr_schedule: str | Callable, coefficient_warmup: int, normalize_decoder: bool,
           dead_window: int, resample_every: int | None, resample_until: int, aux_coefficient: float,
           betas: tuple[float, float], log_every: int, seed: int, progress: bool, scale: float
           ) -> dict[str, list]:
    # The fused kernel does Adam's update in one call per parameter: for small SAEs the Python
    # overhead of the per-tensor version dominates the step.
    fused = device.type in ("cpu", "cuda")
    optimizer = torch.optim.Adam(sae.parameters(), lr=lr, betas=betas, fused=fused)
    generator = make_generator(seed)
    keys = ("step", "loss", "mse", "l0", "explained_variance", "dead_fraction", "lr", "sparsity_coefficient",
            "resample_step", "n_resampled")
    history: dict[str, list] = {key: [] for key in keys}
    since_fired = torch.zeros(sae.d_sae, dtype=torch.long, device=device)
    uses_dead_mask = sae.architecture == "topk"
    check_batches = not getattr(batch_fn, "checked", False)  # batches sliced from a checked tensor need no check
    bar = tqdm(range(steps), disable=not progress, desc=f"training {sae.architecture} SAE", dynamic_ncols=True)
    for step in bar:
        step_lr = lr * lr_factor(lr_schedule, step, steps, lr_warmup)
        for group in optimizer.param_groups:
            group["lr"] = step_lr
        step_coefficient = coefficient * min(1.0, (step + 1) / coefficient_warmup) if coefficient_warmup \
            else coefficient
        x = batch_fn(step, generator)
        if check_batches:
            _checked_batch(x, sae.d_in)
        x = x.to(device=device, dtype=sae.W_dec.dtype) * scale
        dead = since_fired >= dead_window if uses_dead_mask else None
        out = sae.loss(x, step_coefficient, dead_mask=dead, aux_coefficient=aux_coefficient)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        if normalize_decoder:
            sae.normalize_decoder_()
        # Latents are non-negative in every architecture, so one max-reduction finds the ones that fired.
        fired = out.feature_acts.detach().amax(dim=0) > 0
        since_fired = torch.where(fired, 0, since_fired + x.shape[0])

        if resample_every is not None and (step + 1) % resample_every == 0 and step + 1 < resample_until:
            dead = since_fired >= dead_window
            n = resample_dead_latents(sae, dead, x, generator, optimizer)
            if n:
                since_fired[dead] = 0
                history["resample_step"].append(step)
                history["n_resampled"].append(n)

        if step % log_every == 0 or step == steps - 1:
            feature_acts, sae_out = out.feature_acts.detach(), out.sae_out.detach()
            record = {"step": step, "loss": out.loss.item(), "mse": mse(x, sae_out).item() / scale ** 2,
                      "l0": l0(feature_acts).item(), "explained_variance": explained_variance(x, sae_out).item(),
                      "dead_fraction": (since_fired >= dead_window).float().mean().item(), "lr": step_lr,
                      "sparsity_coefficient": step_coefficient}
            for key, value in record.items():
                history[key].append(value)
            bar.set_postfix(l0=f"{record['l0']:.1f}", ev=f"{record['explained_variance']:.3f}", refresh=False)
    return history
