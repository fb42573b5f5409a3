"""Splicing an SAE into a model: replace the activation at a hook point with the SAE's output.

Everything here is an ordinary forward hook (toykit.hooks), so it works on any
HookedRootModule, e.g. a HookedTransformer at ``blocks.1.hook_resid_post``:

- ``sae_replacement_hook(sae)``: the activation x becomes x̂ = sae(x). Comparing the model's
  loss with the SAE spliced in, clean, and with the activation zeroed or replaced by its mean
  gives the *loss recovered* against either baseline (``spliced_losses``).
- ``clamp_latent_hook(sae, latent, value, positions=...)``: steering. The activation becomes
  x − x̂ + decode(f with latent set to value): the SAE's error term x − x̂ is kept, so the only
  change to the model is the one latent's contribution (Templeton et al. 2024, "Scaling
  Monosemanticity", feature steering). ``toykit.steering.intervention_sweep`` sweeps the value.
- ``run_with_sae`` and ``generate_with_clamped_latent`` wrap the two for one call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from toykit.hooks import HookedRootModule, HookPoint, check_model
from toykit.sae.architectures import SAE, check_sae
from toykit.sae.metrics import loss_recovered
from toykit.steering import Positions, position_mask
from toykit.validation import check_positive_int, check_tensor

if TYPE_CHECKING:  # for annotations only
    from toykit.transformer import HookedTransformer

__all__ = [
    "clamp_latent_hook",
    "generate_with_clamped_latent",
    "mean_ablation_hook",
    "run_with_sae",
    "sae_replacement_hook",
    "spliced_losses",
    "zero_ablation_hook",
]

HookFn = Callable[[torch.Tensor, HookPoint], torch.Tensor]


def sae_replacement_hook(sae: SAE) -> HookFn:
    """A forward hook replacing the activation [..., d_in] by the SAE's reconstruction."""
    check_sae(sae)

    def replace_with_sae(activation: torch.Tensor, hook: HookPoint) -> torch.Tensor:
        return sae(activation)

    return replace_with_sae


def zero_ablation_hook(activation: torch.Tensor, hook: HookPoint) -> torch.Tensor:
    """A forward hook replacing the activation by zeros."""
    return torch.zeros_like(activation)


def mean_ablation_hook(mean_activation: torch.Tensor) -> HookFn:
    """A forward hook replacing the activation [..., d_in] by ``mean_activation`` [d_in] at
    every position."""
    check_tensor("mean_activation", mean_activation, ["d_in"], dtype="float")

    def replace_with_mean(activation: torch.Tensor, hook: HookPoint) -> torch.Tensor:
        if activation.shape[-1] != mean_activation.shape[0]:
            raise ValueError(f"mean_activation has d_in={mean_activation.shape[0]}, but the activation "
                             f"has d_in={activation.shape[-1]} (shape {list(activation.shape)})")
        return mean_activation.to(activation).expand_as(activation).clone()

    return replace_with_mean


def clamp_latent_hook(sae: SAE, latent: int, value: float | torch.Tensor, keep_error: bool = True,
                      positions: Positions = None) -> HookFn:
    """A forward hook that sets one SAE latent to ``value`` at the chosen positions.

    The activation x [batch, pos, d_in] becomes decode(f') + (x − x̂), where f' is
    f = encode(x) with f[latent] = value and x̂ = decode(f). decode is affine, so this is
    x + (value − f[latent]) · W_dec[latent]: keeping the SAE's error term x − x̂ means that
    the one latent is the only thing that changes. With ``keep_error=False`` the error term is
    dropped and x becomes decode(f') (the SAE's reconstruction, edited).
    value: a number, or a one-element tensor. Templeton et al. (2024, "Scaling
        Monosemanticity", feature steering) clamp a feature to a multiple of its maximum
        activation (the Golden Gate Bridge feature at 10×), keeping the error term:
        ``value = 10 * sae.encode(acts)[..., latent].max()`` over a dataset's activations.
    positions: where to clamp, as in ``toykit.steering.add_steering_vector``: None (every
        position, as in the paper), an int, a slice or an int tensor [batch]. Elsewhere the
        activation passes through unchanged. Then x must be [batch, pos, d_in]; with None any
        [..., d_in] works.
    The hook never modifies its input in place. Use it in a sweep with
    ``toykit.steering.intervention_sweep(model, lambda v: clamp_latent_hook(sae, i, v), ...)``.
    """
    check_sae(sae)
    if not isinstance(latent, int) or isinstance(latent, bool) or not 0 <= latent < sae.d_sae:
        raise ValueError(f"latent must be an int in [0, d_sae={sae.d_sae}), got {latent!r}")
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"value must be a number (or a one-element float tensor), got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"value must be finite, got {value!r}")
    if not isinstance(keep_error, bool):
        raise TypeError(f"keep_error must be True or False, got {keep_error!r}")
    if isinstance(positions, bool) or not isinstance(positions, (int, slice, torch.Tensor, type(None))):
        raise TypeError(f"positions must be None, an int, a slice or an int tensor [batch], "
                        f"got {type(positions).__name__}")
    if isinstance(positions, torch.Tensor):  # its length is checked against the batch when the hook runs
        check_tensor("positions", positions, ["batch"], dtype="int")
    clamp_to = float(value)

    def clamp_latent(activation: torch.Tensor, hook: HookPoint) -> torch.Tensor:
        acts = sae.encode(activation)
        if keep_error:  # x + (value − f_i) W_dec,i, the same as decode(f') + (x − x̂)
            clamped = activation + (clamp_to - acts[..., latent:latent + 1]) * sae.W_dec[latent]
        else:
            acts = acts.clone()
            acts[..., latent] = clamp_to
            clamped = sae.decode(acts)
        if positions is None:
            return clamped
        check_tensor("activation", activation, ["batch", "pos", "d_in"], dtype="float")
        mask = position_mask(positions, activation.shape[0], activation.shape[1], like=activation)
        return torch.where(mask.bool(), clamped, activation)

    return clamp_latent


def run_with_sae(model: HookedRootModule, sae: SAE, *model_args: Any, hook_name: str, **model_kwargs: Any) -> Any:
    """Run ``model(*model_args, **model_kwargs)`` with the SAE spliced in at ``hook_name``."""
    check_sae(sae)
    check_model(model, HookedRootModule, [hook_name])
    return model.run_with_hooks(*model_args, fwd_hooks=[(hook_name, sae_replacement_hook(sae))], **model_kwargs)


@torch.no_grad()
def spliced_losses(model: HookedRootModule, sae: SAE, tokens: torch.Tensor, hook_name: str,
                   batch_size: int = 64, mean_activation: torch.Tensor | None = None) -> dict[str, float]:
    """The model's next-token loss on tokens [batch, pos]: clean, with the SAE spliced in at
    ``hook_name``, with that activation zeroed, and with it replaced by its mean, plus the loss
    recovered against each ablation, (L_ablated − L_sae) / (L_ablated − L_clean).

    mean_activation: [d_in], the mean to ablate with; by default the mean of the activation
        over every position of ``tokens`` (one extra forward pass).
    Runs in batches of ``batch_size`` sequences. Returns {"clean_loss", "sae_loss",
    "zero_ablation_loss", "mean_ablation_loss", "loss_recovered" (against zero ablation, as
    SAELens's ``ce_loss_score``), "loss_recovered_mean_ablation"}.
    """
    check_sae(sae)
    check_model(model, HookedRootModule, [hook_name])
    check_tensor("tokens", tokens, ["batch", "pos"], dtype="int")
    check_positive_int("batch_size", batch_size)
    if mean_activation is None:
        mean_activation = _mean_activation(model, tokens, hook_name, batch_size)
    hooks: dict[str, list[tuple[str, HookFn]]] = {
        "clean_loss": [], "sae_loss": [(hook_name, sae_replacement_hook(sae))],
        "zero_ablation_loss": [(hook_name, zero_ablation_hook)],
        "mean_ablation_loss": [(hook_name, mean_ablation_hook(mean_activation))]}
    totals = dict.fromkeys(hooks, 0.0)
    for chunk in tokens.split(batch_size):
        for key, fwd_hooks in hooks.items():
            loss = model.run_with_hooks(chunk, return_type="loss", fwd_hooks=fwd_hooks)
            totals[key] += loss.item() * chunk.shape[0]  # every sequence has the same length
    out = {key: total / tokens.shape[0] for key, total in totals.items()}
    out["loss_recovered"] = loss_recovered(out["sae_loss"], clean_loss=out["clean_loss"],
                                           ablation_loss=out["zero_ablation_loss"])
    out["loss_recovered_mean_ablation"] = loss_recovered(out["sae_loss"], clean_loss=out["clean_loss"],
                                                         ablation_loss=out["mean_ablation_loss"])
    return out


def _mean_activation(model: HookedRootModule, tokens: torch.Tensor, hook_name: str, batch_size: int) -> torch.Tensor:
    """[d_in]: the mean of the activation at hook_name over every batch and position of tokens."""
    total: torch.Tensor | float = 0.0
    count = 0
    for chunk in tokens.split(batch_size):
        _, cache = model.run_with_cache(chunk, names_filter=hook_name)
        acts = cache[hook_name]
        total = total + acts.reshape(-1, acts.shape[-1]).sum(dim=0)
        count += acts[..., 0].numel()
    assert isinstance(total, torch.Tensor)  # tokens has at least one row (checked above)
    return total / count


def generate_with_clamped_latent(model: HookedTransformer, sae: SAE, tokens: torch.Tensor, hook_name: str, latent: int,
                                 value: float, max_new_tokens: int, keep_error: bool = True,
                                 **generate_kwargs: Any) -> torch.Tensor:
    """``model.generate(tokens, max_new_tokens, ...)`` with one SAE latent clamped to ``value``
    at ``hook_name`` (see clamp_latent_hook). Returns [batch, pos + n_new]."""
    check_model(model, HookedRootModule, [hook_name])
    hook = clamp_latent_hook(sae, latent, value, keep_error=keep_error)
    with model.hooks(fwd_hooks=[(hook_name, hook)]):
        return model.generate(tokens, max_new_tokens, **generate_kwargs)
