"""Pictures of the grokking model in the Fourier basis, and of its training. Every function
returns the matplotlib Figure.

Histories are those of ``toykit.grokking.train_grokking`` (keys "epoch", "train_loss",
"test_loss", ...); ``phases`` is ``toykit.grokking.grokking_phases(history)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from toykit.fourier import fourier_basis_names
from toykit.validation import check_tensor

__all__ = [
    "plot_component_norms",
    "plot_frequency_energy_over_training",
    "plot_grokking_curves",
    "plot_neuron_clusters",
    "plot_neuron_grid",
    "plot_progress_measures",
    "plot_two_d_fourier",
    "shade_phases",
]

PHASE_COLOURS = {"memorisation": "tab:blue", "circuit_formation": "tab:orange", "cleanup": "tab:green"}
PHASE_LABELS = {"memorisation": "memorisation", "circuit_formation": "circuit formation", "cleanup": "clean-up"}


def _np(x: torch.Tensor | Sequence) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=float)


def _history(history: dict, keys: Sequence[str]) -> None:
    missing = [k for k in ("epoch", *keys) if k not in history]
    if missing:
        raise ValueError(f"history lacks {missing}: pass the history of toykit.grokking.train_grokking")


def shade_phases(ax: Axes, phases: dict[str, tuple[int, int]] | None) -> None:
    """Shade the memorisation, circuit-formation and clean-up epochs of ``phases`` on ax."""
    for name, (start, end) in (phases or {}).items():
        ax.axvspan(start, end, color=PHASE_COLOURS.get(name, "grey"), alpha=0.12, lw=0,
                   label=PHASE_LABELS.get(name, name))


def plot_grokking_curves(history: dict, phases: dict[str, tuple[int, int]] | None = None,
                         title: str = "Grokking: train and test loss") -> Figure:
    """Train and test loss (log scale) and accuracy against the epoch, phases shaded."""
    _history(history, ("train_loss", "test_loss", "train_accuracy", "test_accuracy"))
    fig, (ax, acc) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    epochs = history["epoch"]
    ax.plot(epochs, history["train_loss"], label="train loss", color="tab:blue")
    ax.plot(epochs, history["test_loss"], label="test loss", color="tab:red")
    ax.set_yscale("log")
    ax.set_ylabel("cross-entropy (nats, log scale)")
    acc.plot(epochs, 100 * np.asarray(history["train_accuracy"]), label="train", color="tab:blue")
    acc.plot(epochs, 100 * np.asarray(history["test_accuracy"]), label="test", color="tab:red")
    acc.set_ylabel("accuracy (%)")
    acc.set_ylim(0, 101)
    for a in (ax, acc):
        shade_phases(a, phases)
        a.set_xlabel("epoch (full-batch steps)")
        a.legend(fontsize=8)
    ax.set_title("loss")
    acc.set_title("accuracy")
    fig.suptitle(title)
    return fig


def plot_progress_measures(history: dict, phases: dict[str, tuple[int, int]] | None = None,
                           snapshots: dict[str, Sequence[float]] | None = None,
                           title: str = "Progress measures") -> Figure:
    """Left: train, test, restricted and excluded loss (log scale); right: the weight norm.

    snapshots: optional {"epoch": [...], "restricted_loss": [...], "excluded_loss": [...]} measured
    on saved snapshots, drawn as markers over the logged curves.
    """
    _history(history, ("train_loss", "test_loss", "restricted_loss", "excluded_loss", "weight_norm"))
    fig, (ax, wn) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained", width_ratios=(3, 2))
    epochs = history["epoch"]
    styles = {"train_loss": ("train loss", "tab:blue"), "test_loss": ("test loss", "tab:red"),
              "restricted_loss": ("restricted loss", "tab:purple"), "excluded_loss": ("excluded loss", "tab:brown")}
    for key, (label, colour) in styles.items():
        ax.plot(epochs, history[key], label=label, color=colour)
    if snapshots:
        for key in ("restricted_loss", "excluded_loss"):
            if key in snapshots:
                ax.scatter(snapshots["epoch"], snapshots[key], color=styles[key][1], s=18, zorder=3, edgecolor="k",
                           lw=0.5)
    ax.set_yscale("log")
    ax.set_ylabel("cross-entropy (nats, log scale)")
    ax.set_title("losses")
    wn.plot(epochs, history["weight_norm"], color="k")
    wn.set_ylabel("L2 norm of all weights")
    wn.set_title("weight norm")
    for a in (ax, wn):
        shade_phases(a, phases)
        a.set_xlabel("epoch (full-batch steps)")
    ax.legend(fontsize=8, ncol=2)
    fig.suptitle(title)
    return fig


def plot_component_norms(coefficients: torch.Tensor, title: str = "Embedding in the Fourier basis",
                         ylabel: str = "norm of the component (over d_model)") -> Figure:
    """One bar per Fourier component (const, cos 1, sin 1, ...): the norm of its row.

    coefficients: [p, ...] Fourier coefficients (e.g. basis @ W_E[:p]); norms are over the
    trailing axes. Components carrying at least 5% of the total are labelled.
    """
    check_tensor("coefficients", coefficients, dtype="float")
    norms = _np(coefficients.reshape(coefficients.shape[0], -1).norm(dim=1))
    names = fourier_basis_names(len(norms))
    fig, ax = plt.subplots(figsize=(10, 3.2), layout="constrained")
    ax.bar(np.arange(len(norms)), norms, width=1.0, color="tab:blue")
    share = norms**2 / max((norms**2).sum(), 1e-30)
    for i in np.nonzero(share >= 0.05)[0]:
        ax.annotate(names[i], (i, norms[i]), ha="center", va="bottom", fontsize=7)
    ax.set_xlabel("Fourier component (const, cos 1, sin 1, cos 2, ...)")
    ax.set_ylabel(ylabel)
    ax.set_xlim(-1, len(norms))
    ax.set_title(title)
    return fig


def plot_frequency_energy_over_training(history: dict, frequencies: Sequence[int],
                                        phases: dict[str, tuple[int, int]] | None = None,
                                        title: str = "Embedding energy of the key frequencies") -> Figure:
    """The share of the embedding's non-constant Fourier energy in each key frequency, and in
    all of them together, against the epoch."""
    _history(history, ("embed_frequency_energy",))
    energy = np.asarray(history["embed_frequency_energy"], dtype=float)  # [n_logged, n_freq]
    share = energy[:, 1:] / energy[:, 1:].sum(1, keepdims=True)
    fig, ax = plt.subplots(figsize=(7, 3.6), layout="constrained")
    shade_phases(ax, phases)
    for w in frequencies:
        ax.plot(history["epoch"], 100 * share[:, w - 1], lw=1, label=f"frequency {w}")
    ax.plot(history["epoch"], 100 * share[:, [w - 1 for w in frequencies]].sum(1), color="k", lw=2,
            label="all key frequencies")
    ax.set_xlabel("epoch (full-batch steps)")
    ax.set_ylabel("share of embedding energy (%)")
    ax.set_ylim(0, 101)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    return fig


def plot_neuron_grid(acts: torch.Tensor, neurons: Sequence[int], labels: Sequence[str] | None = None,
                     title: str = "Neuron activations on every input (a, b)") -> Figure:
    """Heatmaps of a few neurons' activations over all (a, b). acts: [p, p, n_neurons]."""
    check_tensor("acts", acts, ["p", "p", None], dtype="float")
    neurons = list(neurons)
    fig, axes = plt.subplots(1, len(neurons), figsize=(2.6 * len(neurons) + 0.6, 2.9), layout="constrained",
                             squeeze=False)
    for i, (ax, n) in enumerate(zip(axes[0], neurons)):
        im = ax.imshow(_np(acts[:, :, n]), cmap="viridis", origin="lower")
        ax.set_title(labels[i] if labels else f"neuron {n}", fontsize=9)
        ax.set_xlabel("b")
        fig.colorbar(im, ax=ax, shrink=0.8, label="activation" if i == len(neurons) - 1 else None)
    axes[0, 0].set_ylabel("a")
    fig.suptitle(title)
    return fig


def plot_two_d_fourier(coefficients: torch.Tensor, title: str = "2-D Fourier coefficients",
                       max_component: int | None = None) -> Figure:
    """|coefficient| of a function of (a, b) in the 2-D Fourier basis: [p, p] heatmap with
    rows = component of a, columns = component of b. max_component: show only the first ones."""
    check_tensor("coefficients", coefficients, ["p", "p"], dtype="float")
    c = np.abs(_np(coefficients))
    p = c.shape[0]
    n = p if max_component is None else min(p, max_component)
    names = fourier_basis_names(p)[:n]
    fig, ax = plt.subplots(figsize=(5.2, 4.4), layout="constrained")
    im = ax.imshow(c[:n, :n], cmap="Blues", origin="upper")
    step = 1 if n <= 40 else n // 20
    ax.set_xticks(range(0, n, step), names[::step], rotation=90, fontsize=7)
    ax.set_yticks(range(0, n, step), names[::step], fontsize=7)
    ax.set_xlabel("component of b")
    ax.set_ylabel("component of a")
    fig.colorbar(im, ax=ax, label="|coefficient|")
    ax.set_title(title)
    return fig


def plot_neuron_clusters(fractions: torch.Tensor, firing: torch.Tensor | None = None,
                         threshold: float = 0.85, title: str = "Neurons cluster by frequency") -> Figure:
    """Left: histogram of the largest single-frequency fraction of each (firing) neuron; right:
    how many neurons each frequency explains best. fractions: [n_neurons, p//2 + 1]
    (``toykit.fourier.neuron_frequency_fractions``); firing: [n_neurons] bool (None: all)."""
    check_tensor("fractions", fractions, [None, None], dtype="float")
    frac = fractions if firing is None else fractions[firing]
    best, freq = frac.max(1)
    fig, (hist, bars) = plt.subplots(1, 2, figsize=(10, 3.4), layout="constrained")
    hist.hist(_np(best), bins=np.linspace(0, 1, 41), color="tab:blue")
    hist.axvline(threshold, color="k", ls="--", lw=1, label=f"{threshold:.0%}")
    hist.set_xlabel("fraction of variance explained by the best frequency")
    hist.set_ylabel("number of neurons")
    hist.set_title("how clean each neuron is")
    hist.legend(fontsize=8)
    counts = torch.bincount(freq, minlength=fractions.shape[1])
    bars.bar(np.arange(len(counts)), _np(counts), width=1.0, color="tab:orange")
    for w in torch.nonzero(counts >= max(2, 0.03 * len(freq))).flatten().tolist():
        bars.annotate(str(w), (w, counts[w].item()), ha="center", va="bottom", fontsize=8)
    bars.set_xlabel("frequency that explains the neuron best")
    bars.set_ylabel("number of neurons")
    bars.set_title("neurons per frequency")
    fig.suptitle(title)
    return fig
