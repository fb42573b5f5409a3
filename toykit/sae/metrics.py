"""How good is an SAE? The metrics of the course guide, each defined exactly once.

- ``l0``: the mean number of active latents per input.
- ``mse``: the mean squared error per element, mean((x − x̂)²).
- ``explained_variance``: 1 − Σ‖x − x̂‖² / Σ‖x − mean(x)‖², variance about the mean.
- ``feature_density`` and ``dead_fraction``: how often each latent fires over a window of
  inputs, and the share of latents that never fire in it; ``log_feature_density`` gives the
  log10 firing frequencies whose histogram is the feature density histogram.
- ``mmcs``: mean max cosine similarity, the mean over ground-truth features of the best
  |cos| with any decoder row.
- ``loss_recovered``: (L_ablated − L_with_SAE) / (L_ablated − L_clean), against a zero- or a
  mean-ablation baseline.

Inputs with several leading axes ([batch, pos, d]) are flattened to one batch axis.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from toykit.metrics import as_number, normalize_metric
from toykit.validation import check_positive_int, check_tensor

__all__ = [
    "cosine_similarity_matrix",
    "dead_fraction",
    "evaluate_sae",
    "explained_variance",
    "feature_density",
    "l0",
    "log_feature_density",
    "loss_recovered",
    "max_cosine_similarity",
    "mmcs",
    "mse",
]


def _rows(name: str, x: torch.Tensor) -> torch.Tensor:
    check_tensor(name, x)
    if x.ndim == 0:
        raise ValueError(f"{name} must have at least one axis ([..., d]), got a scalar")
    return x.reshape(-1, x.shape[-1])


def _pair(x: torch.Tensor, x_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    check_tensor("x", x, dtype="float")
    check_tensor("x_hat", x_hat, dtype="float")
    if x.shape != x_hat.shape:
        raise ValueError(f"x and x_hat must have the same shape, got {list(x.shape)} and {list(x_hat.shape)}")
    return _rows("x", x), _rows("x_hat", x_hat)


def l0(feature_acts: torch.Tensor) -> torch.Tensor:
    """feature_acts: [..., d_sae] -> scalar: mean over inputs of the number of non-zero latents."""
    f = _rows("feature_acts", feature_acts)
    return (f != 0).sum(dim=-1).float().mean()


def mse(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """x, x_hat: [..., d] -> scalar: the mean over every element of (x − x̂)²."""
    x, x_hat = _pair(x, x_hat)
    return (x - x_hat).pow(2).mean()


def explained_variance(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """x, x_hat: [..., d] -> scalar: 1 − Σ‖x − x̂‖² / Σ‖x − mean(x)‖².

    The mean is taken over the inputs (one mean vector), so a reconstruction that outputs the
    data's mean for every input scores 0, a perfect one 1. nan if every x is the same.
    """
    x, x_hat = _pair(x, x_hat)
    residual = (x - x_hat).pow(2).sum()
    total = (x - x.mean(dim=0)).pow(2).sum()
    return 1 - residual / total


def feature_density(feature_acts: torch.Tensor) -> torch.Tensor:
    """feature_acts: [..., d_sae] -> [d_sae]: the fraction of inputs on which each latent is
    non-zero (its firing frequency)."""
    f = _rows("feature_acts", feature_acts)
    return (f != 0).float().mean(dim=0)


def log_feature_density(feature_acts: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """feature_acts: [..., d_sae] -> [d_sae]: log10(firing frequency + eps), the values whose
    histogram is the feature density histogram. Dead latents land at log10(eps) = −10."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"eps must be a positive number, got {eps!r}")
    return torch.log10(feature_density(feature_acts) + eps)


def dead_fraction(feature_acts: torch.Tensor) -> torch.Tensor:
    """feature_acts: [n_inputs, d_sae] (the window) -> scalar: the fraction of latents that
    are zero on every one of these inputs."""
    f = _rows("feature_acts", feature_acts)
    return (~(f != 0).any(dim=0)).float().mean()


def cosine_similarity_matrix(W_dec: torch.Tensor, true_features: torch.Tensor) -> torch.Tensor:
    """W_dec: [d_sae, d], true_features: [n_true, d] -> [n_true, d_sae]: cos(true_i, W_dec,j).
    A zero row has cosine 0 with everything."""
    dims = check_tensor("W_dec", W_dec, ["d_sae", "d"], dtype="float")
    check_tensor("true_features", true_features, ["n_true", "d"], dtype="float", dims=dims)
    return F.normalize(true_features, dim=1) @ F.normalize(W_dec, dim=1).T


def max_cosine_similarity(W_dec: torch.Tensor, true_features: torch.Tensor) -> torch.Tensor:
    """[n_true]: for each ground-truth feature, the best |cos| with any decoder row."""
    return cosine_similarity_matrix(W_dec, true_features).abs().max(dim=1).values


def mmcs(W_dec: torch.Tensor, true_features: torch.Tensor) -> torch.Tensor:
    """Mean max cosine similarity: the mean over ground-truth features (rows of true_features,
    [n_true, d]) of the best |cos| with any decoder row (W_dec: [d_sae, d]). 1 means every true
    feature has a latent pointing exactly along it."""
    return max_cosine_similarity(W_dec, true_features).mean()


def loss_recovered(sae_loss: float, *, clean_loss: float, ablation_loss: float) -> float:
    """(L_ablated − L_with_SAE) / (L_ablated − L_clean): 1 when splicing the SAE in costs
    nothing, 0 when it is as bad as ablating the activation.

    This is ``toykit.metrics.normalize_metric`` with the ablated loss as the baseline and the
    clean loss as the target; both are keyword-only, so they cannot be swapped by position.
    ablation_loss: the loss with the activation zero-ablated (SAELens's ``ce_loss_score`` uses
    this one) or mean-ablated (replaced by its mean over the data). A baseline that is much
    worse than the model without this activation makes every SAE look good, so report both.
    """
    spliced, clean, ablated = (as_number("sae_loss", sae_loss), as_number("clean_loss", clean_loss),
                               as_number("ablation_loss", ablation_loss))
    if ablated == clean:
        raise ValueError("loss_recovered: ablating the activation does not change the loss "
                         "(ablation_loss == clean_loss), so there is nothing to recover")
    return float(normalize_metric(spliced, baseline=ablated, target=clean))


@torch.no_grad()
def evaluate_sae(sae: Any, x: torch.Tensor, batch_size: int = 8192) -> dict[str, float]:
    """The metrics of ``sae`` on activations x: [n, d_in], in batches and without gradients:
    {"mse", "explained_variance", "l0", "dead_fraction"} as Python floats, with the whole of x
    as the window for dead latents."""
    x = _rows("x", x)
    check_positive_int("batch_size", batch_size)
    device = next(sae.parameters()).device
    parts: list[torch.Tensor] = []
    fired = torch.zeros(())
    for chunk in x.split(batch_size):
        f = sae.encode(chunk.to(device))
        parts.append(sae.decode(f).to(x.device))
        fired = fired + feature_density(f).cpu() * chunk.shape[0]
    density = fired / x.shape[0]
    x_hat = torch.cat(parts)
    # The mean number of active latents per input is the sum of the latents' firing frequencies.
    return {"mse": mse(x, x_hat).item(), "explained_variance": explained_variance(x, x_hat).item(),
            "l0": density.sum().item(), "dead_fraction": (density == 0).float().mean().item()}
