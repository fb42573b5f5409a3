"""Pictures of sparse autoencoders. Every function returns the matplotlib Figure.

Tensors may live on any device; they are copied to the CPU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from toykit.validation import check_tensor

__all__ = [
    "plot_activations_2d",
    "plot_dead_fraction",
    "plot_feature_density",
    "plot_frontier",
    "plot_sae_code",
    "plot_sweep",
]


def _np(x: torch.Tensor | Sequence[float]) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=float)


def plot_activations_2d(activations: torch.Tensor, true_directions: torch.Tensor, W_dec: torch.Tensor,
                        title: str = "Activations, true feature directions and SAE decoder rows",
                        max_points: int = 2000) -> Figure:
    """Scatter 2-D activations [n, 2] with the true feature directions [n_true, 2] (dashed grey
    lines through the origin) and the SAE's decoder rows W_dec [d_sae, 2] (arrows of unit length,
    drawn from the SAE's b_dec-free origin)."""
    check_tensor("activations", activations, [None, 2], dtype="float")
    check_tensor("true_directions", true_directions, [None, 2], dtype="float")
    check_tensor("W_dec", W_dec, [None, 2], dtype="float")
    points = _np(activations[:max_points])
    truth = _np(true_directions)
    rows = _np(torch.nn.functional.normalize(W_dec.detach().float(), dim=1))
    lim = 1.1 * max(np.abs(points).max(), 1.0)
    fig, ax = plt.subplots(figsize=(5.2, 5.2))
    ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.3, color="tab:blue", label="activations h")
    for i, t in enumerate(truth):
        t = t / np.linalg.norm(t) * lim
        ax.plot([0, t[0]], [0, t[1]], ls="--", color="0.4", lw=1, label="true feature directions" if i == 0 else None)
    for r in rows:
        ax.annotate("", xy=(r[0], r[1]), xytext=(0, 0),
                    arrowprops=dict(arrowstyle="->", color="tab:red", lw=1.8))
    ax.plot([], [], color="tab:red", lw=1.8, label="SAE decoder rows (unit length)")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.axhline(0, color="0.85", lw=0.8, zorder=0)
    ax.axvline(0, color="0.85", lw=0.8, zorder=0)
    ax.set_xlabel("hidden dimension 0 (activation units)")
    ax.set_ylabel("hidden dimension 1 (activation units)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def plot_sae_code(x: torch.Tensor, feature_acts: torch.Tensor, x_hat: torch.Tensor,
                  title: str = "One input through the SAE") -> Figure:
    """The encoder/decoder picture for one input: x [d_in], its sparse code f [d_sae], and the
    reconstruction x̂ [d_in] drawn over x."""
    check_tensor("x", x, ["d_in"], dtype="float")
    check_tensor("feature_acts", feature_acts, [None], dtype="float")
    check_tensor("x_hat", x_hat, [x.shape[0]], dtype="float")
    xs, f, xs_hat = _np(x), _np(feature_acts), _np(x_hat)  # numpy copies for matplotlib
    fig, axes = plt.subplots(1, 3, figsize=(11, 2.8), gridspec_kw={"width_ratios": [1, 2.5, 1]})
    axes[0].bar(range(len(xs)), xs, color="tab:blue")
    axes[0].set_title("input x", fontsize=10)
    axes[0].set_xlabel("dimension")
    axes[0].set_ylabel("value")
    axes[1].bar(range(len(f)), f, color="tab:red")
    axes[1].set_title(f"sparse code f = encode(x): {int((f != 0).sum())} of {len(f)} latents active", fontsize=10)
    axes[1].set_xlabel("latent")
    axes[1].set_ylabel("activation")
    axes[2].bar(range(len(xs)), xs, color="tab:blue", alpha=0.35, label="x")
    axes[2].plot(range(len(xs)), xs_hat, "k.", label="x̂")
    axes[2].set_title("reconstruction x̂ = decode(f)", fontsize=10)
    axes[2].set_xlabel("dimension")
    axes[2].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_sweep(coefficients: Sequence[float], results: Mapping[str, Mapping[str, Sequence[float]]],
               metrics: Sequence[tuple[str, str]] = (("mmcs", "MMCS"), ("l0", "L0 (active latents per input)"),
                                                     ("explained_variance", "explained variance")),
               xlabel: str = "L1 coefficient λ (normalised activations)", title: str = "SAE sweep",
               mmcs_target: float | None = 0.95, true_l0: float | None = None) -> Figure:
    """One panel per metric against the coefficient (log scale), one line per entry of results:
    results[label][metric] is a list aligned with coefficients."""
    coefs = _np(coefficients)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4))
    axes = np.atleast_1d(axes)
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.85, max(1, len(results))))
    for ax, (key, label) in zip(axes, metrics):
        for colour, (name, values) in zip(colours, results.items()):
            ax.plot(coefs, _np(values[key]), "o-", color=colour, label=name)
        if key == "mmcs" and mmcs_target is not None:
            ax.axhline(mmcs_target, color="0.5", ls="--", lw=0.8, label=f"MMCS = {mmcs_target}")
        if key == "l0" and true_l0 is not None:
            ax.axhline(true_l0, color="0.5", ls="--", lw=0.8, label="true features per input")
        if key == "l0":
            ax.set_yscale("log")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_frontier(points: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                  title: str = "Sparsity against reconstruction") -> Figure:
    """Explained variance against L0, one line per architecture: points[name] = (l0s, evs)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for (name, (l0s, evs)), marker in zip(points.items(), "osD^v"):
        order = np.argsort(_np(l0s))
        ax.plot(_np(l0s)[order], _np(evs)[order], marker + "-", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("L0 (active latents per input, log scale)")
    ax.set_ylabel("explained variance")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_dead_fraction(histories: Mapping[str, Mapping[str, Sequence[float]]],
                       title: str = "Dead latents during training") -> Figure:
    """The dead fraction of train_sae histories against the step, one line per run; resampling
    steps, where recorded, are marked with ticks at the bottom."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    tab10 = plt.get_cmap("tab10")
    for (name, history), colour in zip(histories.items(), [tab10(i) for i in range(tab10.N)]):
        ax.plot(history["step"], _np(history["dead_fraction"]), color=colour, label=name)
        for step in history.get("resample_step", []):
            ax.axvline(step, ymax=0.06, color=colour, lw=1.5)
    ax.set_xlabel("training step")
    ax.set_ylabel("fraction of latents dead")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_feature_density(log_densities: Mapping[str, torch.Tensor],
                         title: str = "Feature density histogram") -> Figure:
    """Histograms of log10 firing frequencies (toykit.sae.metrics.log_feature_density), one
    panel per entry; dead latents sit in the bar at −10."""
    n = len(log_densities)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.2), sharey=True)
    axes = np.atleast_1d(axes)
    bins = np.linspace(-10.25, 0.25, 43)
    for ax, (name, values) in zip(axes, log_densities.items()):
        v = _np(values)
        ax.hist(v, bins=bins, color="tab:purple")
        ax.set_title(f"{name}: {int((v <= -9.99).sum())} of {len(v)} dead", fontsize=10)
        ax.set_xlabel("log10 firing frequency (−10: never fires)")
    axes[0].set_ylabel("number of latents")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
