"""Pictures of toy models of superposition. Every function returns the matplotlib Figure.

All take weights ``W: [n_instances, n_hidden, n_features]`` (any device; they are copied to
the CPU) and draw one panel per instance. ``titles`` labels the panels, e.g. with each
instance's feature probability.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from toykit.superposition import (
    STICKY_FRACTIONS,
    dimensions_per_feature,
    feature_dimensionality,
    neuron_polysemanticity,
    superposition_interference,
)
from toykit.validation import check_tensor

__all__ = [
    "plot_dimensions_per_feature",
    "plot_feature_dimensionality",
    "plot_feature_superposition_bars",
    "plot_features_2d",
    "plot_loss_curves",
    "plot_neuron_weights",
    "plot_wtw",
]


def _W(W: torch.Tensor) -> torch.Tensor:
    check_tensor("W", W, ["n_instances", "n_hidden", "n_features"], dtype="float")
    return W.detach().cpu().float()


def _titles(titles: Sequence[str] | None, n: int) -> list[str]:
    if titles is None:
        return [f"instance {i}" for i in range(n)]
    titles = list(titles)
    if len(titles) != n:
        raise ValueError(f"titles must have one entry per instance ({n}), got {len(titles)}")
    return [str(t) for t in titles]


def _per_instance_probability(feature_probability: torch.Tensor | Sequence[float],
                              n_instances: int) -> np.ndarray:
    """[n_instances] or [n_instances, n_features] (first feature used) -> numpy [n_instances]."""
    p = torch.as_tensor(feature_probability, dtype=torch.float64).detach().cpu()
    if p.ndim == 2:
        p = p[:, 0]
    if p.ndim != 1 or p.shape[0] != n_instances:
        raise ValueError(
            f"feature_probability must have shape [n_instances={n_instances}] or "
            f"[n_instances, n_features], got {list(p.shape)}"
        )
    if (p <= 0).any() or (p > 1).any():
        raise ValueError("feature_probability must lie in (0, 1] to plot against 1/(1-S) = 1/p")
    return p.numpy()


def plot_wtw(W: torch.Tensor, titles: Sequence[str] | None = None,
             suptitle: str = "WᵀW: how features read each other") -> Figure:
    """Heatmaps of WᵀW per instance: [n_features, n_features].

    The diagonal is ‖W_i‖² (is feature i represented?); off-diagonal entries are the
    interference between features i and j (0 when they are orthogonal).
    """
    W = _W(W)
    n, f = W.shape[0], W.shape[2]
    titles = _titles(titles, n)
    wtw = torch.einsum("ihf,ihg->ifg", W, W).numpy()
    lim = max(float(np.abs(wtw).max()), 1e-6)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n + 0.8, 2.9), squeeze=False,
                             layout="constrained")
    for i, ax in enumerate(axes[0]):
        im = ax.imshow(wtw[i], cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(titles[i], fontsize=10)
        ax.set_xlabel("feature j")
        if i == 0:
            ax.set_ylabel("feature i")
        step = max(1, f // 5)
        ax.set_xticks(range(0, f, step))
        ax.set_yticks(range(0, f, step))
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.85, label="(WᵀW)ᵢⱼ = W_i · W_j")
    fig.suptitle(suptitle)
    return fig


def plot_features_2d(W: torch.Tensor, importance: torch.Tensor | None = None,
                     titles: Sequence[str] | None = None,
                     suptitle: str = "Feature directions in the 2-D hidden space",
                     groups: Sequence[int] | None = None, group_name: str = "pair") -> Figure:
    """For n_hidden = 2: each feature's column W_i drawn as a line from the origin.

    importance: [n_instances, n_features] or [n_features], colours the features (darker =
    less important); without it, features are coloured by index.
    groups: one int per feature (e.g. [0, 0, 1, 1] for two pairs): colour by group instead,
    with a legend entry "{group_name} g" for each.
    """
    W = _W(W)
    n, m, f = W.shape
    if m != 2:
        raise ValueError(f"plot_features_2d needs n_hidden = 2, got W with n_hidden = {m}")
    titles = _titles(titles, n)
    if groups is not None:
        groups = [int(g) for g in groups]
        if len(groups) != f:
            raise ValueError(f"groups must have one entry per feature ({f}), got {len(groups)}")
        return _plot_groups_2d(W, groups, group_name, titles, suptitle)
    if importance is None:
        colour_values = np.tile(np.linspace(1, 0, f), (n, 1))
        label = "feature index (yellow = first)"
    else:
        imp = torch.as_tensor(importance, dtype=torch.float32).detach().cpu()
        colour_values = np.broadcast_to(imp.numpy(), (n, f))
        label = "importance"
    vmin, vmax = float(colour_values.min()), float(colour_values.max())
    if vmax - vmin < 1e-9:
        vmin, vmax = vmin - 1, vmax + 0.01  # all equal: one colour, near the top of the map
    cmap = plt.get_cmap("viridis")
    lim = max(1.2, float(W.abs().max()) * 1.15)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n + 0.8, 2.9), squeeze=False,
                             layout="constrained")
    for i, ax in enumerate(axes[0]):
        for j in range(f):
            c = cmap((colour_values[i, j] - vmin) / (vmax - vmin))
            x, y = W[i, 0, j].item(), W[i, 1, j].item()
            ax.plot([0, x], [0, y], color=c, lw=1.8)
            ax.scatter([x], [y], color=c, s=22, zorder=3)
        _style_2d_axes(ax, lim, titles[i], first=i == 0)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(vmin, vmax))
    fig.colorbar(sm, ax=axes[0].tolist(), shrink=0.85, label=label)
    fig.suptitle(suptitle)
    return fig


def _style_2d_axes(ax: plt.Axes, lim: float, title: str, first: bool) -> None:
    """Square axes through the origin, the same scale in every panel."""
    ax.axhline(0, color="0.85", lw=0.6, zorder=0)
    ax.axvline(0, color="0.85", lw=0.6, zorder=0)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("hidden dim 0")
    if first:
        ax.set_ylabel("hidden dim 1")


def _plot_groups_2d(W: torch.Tensor, groups: list[int], group_name: str, titles: list[str],
                    suptitle: str) -> Figure:
    n, _, f = W.shape
    colours = plt.get_cmap("tab10")
    lim = max(1.2, float(W.abs().max()) * 1.15)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n + 1.4, 2.9), squeeze=False,
                             layout="constrained")
    for i, ax in enumerate(axes[0]):
        for j in range(f):
            x, y = W[i, 0, j].item(), W[i, 1, j].item()
            label = f"{group_name} {groups[j]}" if i == 0 and groups.index(groups[j]) == j else None
            ax.plot([0, x], [0, y], color=colours(groups[j] % 10), lw=1.8, label=label)
            ax.scatter([x], [y], color=colours(groups[j] % 10), s=22, zorder=3)
            ax.annotate(str(j), (x, y), xytext=(3, 3), textcoords="offset points", fontsize=7)
        _style_2d_axes(ax, lim, titles[i], first=i == 0)
    fig.legend(loc="outside right center", fontsize=8)
    fig.suptitle(suptitle)
    return fig


def plot_feature_superposition_bars(
    W: torch.Tensor, titles: Sequence[str] | None = None,
    suptitle: str = "Which features are represented, and how superposed",
) -> Figure:
    """Per instance, one bar per feature: length ‖W_i‖, colour Σ_{j≠i} (Ŵ_i · W_j)².

    Dark bars are features with a direction to themselves; bright bars share theirs.
    """
    W = _W(W)
    n, _, f = W.shape
    titles = _titles(titles, n)
    norms = W.norm(dim=1).numpy()
    interference = superposition_interference(W).numpy()
    vmax = max(1.0, float(interference.max()))
    cmap = plt.get_cmap("plasma")
    fig, axes = plt.subplots(1, n, figsize=(2.3 * n + 0.8, 0.18 * f + 1.6), squeeze=False,
                             sharey=True, layout="constrained")
    for i, ax in enumerate(axes[0]):
        ax.barh(range(f), norms[i], color=cmap(interference[i] / vmax))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0, max(1.25, float(norms.max()) * 1.05))
        ax.set_title(titles[i], fontsize=10)
        ax.set_xlabel("‖W_i‖")
        if i == 0:
            ax.set_ylabel("feature i")
    axes[0][0].invert_yaxis()  # feature 0 on top
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, vmax))
    fig.colorbar(sm, ax=axes[0].tolist(), shrink=0.85, label="Σ_{j≠i} (Ŵ_i·W_j)²")
    fig.suptitle(suptitle)
    return fig


def _sticky_lines(ax: plt.Axes) -> None:
    for v in STICKY_FRACTIONS:
        ax.axhline(v, color="0.6", lw=0.8, ls="--", zorder=0)
        ax.annotate(str(Fraction(v).limit_denominator(10)), xy=(1.0, v), xycoords=("axes fraction", "data"),
                    xytext=(3, 0), textcoords="offset points", va="center", fontsize=8, color="0.35")


def plot_feature_dimensionality(
    W: torch.Tensor, feature_probability: torch.Tensor | Sequence[float],
    norm_threshold: float = 0.5,
    title: str = "Feature dimensionality against sparsity",
) -> Figure:
    """Each feature's dimensionality D_i (dots) and the dimensions per feature (line) against
    1/(1-S) = 1/p, with the sticky fractions 1, 3/4, 2/3, 1/2, 2/5, 3/8 as dashed lines.

    feature_probability: [n_instances] (or [n_instances, n_features]; the first feature's).
    Only features with ‖W_i‖ > norm_threshold (those the model represents) are drawn.
    """
    W = _W(W)
    p = _per_instance_probability(feature_probability, W.shape[0])
    D = feature_dimensionality(W).numpy()
    alive = (W.norm(dim=1) > norm_threshold).numpy()
    dpf = dimensions_per_feature(W).numpy()
    x = 1 / p
    fig, ax = plt.subplots(figsize=(7, 4.2))
    # A little horizontal jitter so that features stuck at the same value stay visible.
    rng = np.random.default_rng(0)
    for i in range(W.shape[0]):
        d = D[i][alive[i]]
        jitter = np.exp(rng.normal(0, 0.015, size=d.shape))
        ax.scatter(x[i] * jitter, d, s=10, alpha=0.5, color="tab:blue",
                   label="D_i of one feature" if i == 0 else None)
    order = np.argsort(x)
    ax.plot(x[order], dpf[order], color="black", lw=2, label="dimensions per feature m/‖W‖²_F")
    _sticky_lines(ax)
    ax.set_xscale("log")
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("1/(1−S) = 1/(feature probability)  (log scale)")
    ax.set_ylabel("dimensions per feature (fraction of a dimension)")
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


def plot_dimensions_per_feature(
    W: torch.Tensor, feature_probability: torch.Tensor | Sequence[float],
    title: str = "Dimensions per feature against sparsity",
) -> Figure:
    """m/‖W‖²_F per instance against 1/(1-S) = 1/p (log scale)."""
    W = _W(W)
    p = _per_instance_probability(feature_probability, W.shape[0])
    dpf = dimensions_per_feature(W).numpy()
    order = np.argsort(1 / p)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot((1 / p)[order], dpf[order], marker="o", color="black")
    _sticky_lines(ax)
    ax.set_xscale("log")
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("1/(1−S) = 1/(feature probability)  (log scale)")
    ax.set_ylabel("m / ‖W‖²_F  (dimensions per feature)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_neuron_weights(W: torch.Tensor, titles: Sequence[str] | None = None,
                        suptitle: str = "Neuron input weights W[neuron, feature]") -> Figure:
    """Heatmaps of W per instance, neurons as rows, features as columns, each neuron labelled
    with its polysemanticity P (the effective number of features that switch it on)."""
    W = _W(W)
    n, m, f = W.shape
    titles = _titles(titles, n)
    P = neuron_polysemanticity(W).numpy()
    lim = max(float(W.abs().max()), 1e-6)
    fig, axes = plt.subplots(1, n, figsize=(3.0 * n + 0.8, 0.45 * m + 2.0), squeeze=False,
                             layout="constrained")
    for i, ax in enumerate(axes[0]):
        im = ax.imshow(W[i].numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_title(titles[i], fontsize=10)
        ax.set_xlabel("feature")
        ax.set_yticks(range(m))
        ax.set_yticklabels([f"n{h}\nP={P[i, h]:.1f}" for h in range(m)], fontsize=7)
        ax.set_xticks(range(0, f, max(1, f // 5)))
    axes[0][0].set_ylabel("neuron")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.85, label="weight")
    fig.suptitle(suptitle)
    return fig


def plot_loss_curves(history: dict, labels: Sequence[str] | None = None,
                     title: str = "Training loss per instance") -> Figure:
    """The per-instance losses of a train_toy_model history against the step (log y)."""
    if not isinstance(history, dict) or "step" not in history or "loss" not in history:
        raise ValueError("history must be the dict returned by train_toy_model (with 'step' and 'loss')")
    loss = np.asarray(history["loss"], dtype=float)  # [n_logged, n_instances]
    labels = _titles(labels, loss.shape[1])
    fig, ax = plt.subplots(figsize=(6, 3.6))
    colours = plt.get_cmap("viridis")(np.linspace(0, 1, loss.shape[1]))
    for i in range(loss.shape[1]):
        ax.plot(history["step"], loss[:, i], color=colours[i], label=labels[i], lw=1.2)
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("importance-weighted loss (per input)")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig
