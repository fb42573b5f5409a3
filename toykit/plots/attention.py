"""Pictures of attention heads: patterns, per-head scores, composition, losses by position
and the induction-head phase change. Every function returns the matplotlib Figure.

Tensors may live on any device; they are copied to the CPU. Per-head quantities are
[n_layers, n_heads] and heads are labelled "L.H" (layer.head), as in the text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter

from toykit.tasks.repeated_tokens import repeated_half_slices
from toykit.validation import check_tensor

__all__ = [
    "plot_attention_patterns",
    "plot_circuit",
    "plot_composition_scores",
    "plot_head_bars",
    "plot_head_scores",
    "plot_loss_by_position",
    "plot_phase_change",
]


def _np(x: torch.Tensor | np.ndarray | Sequence) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=float)


def _annotate(ax: plt.Axes, values: np.ndarray, fmt: str = "{:.2f}", threshold: float | None = None) -> None:
    """Write each value in its cell, dark or light so it stays readable on the colour."""
    threshold = (np.nanmax(values) + np.nanmin(values)) / 2 if threshold is None else threshold
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=8,
                color="white" if v < threshold else "black")


def plot_attention_patterns(
    pattern: torch.Tensor,
    str_tokens: Sequence[str] | None = None,
    titles: Sequence[str] | None = None,
    suptitle: str = "Attention patterns",
    ncols: int = 4,
) -> Figure:
    """One heatmap per head of an attention pattern.

    pattern: [n_heads, q_pos, k_pos] (one sequence), probabilities in [0, 1].
    str_tokens: labels of the positions (ticks are drawn when there are at most 24).
    titles: one per head (default "head 0", ...).
    """
    check_tensor("pattern", pattern, ["n_heads", "q_pos", "k_pos"], dtype="float")
    p = _np(pattern)
    n_heads, n_q, n_k = p.shape
    titles = [f"head {h}" for h in range(n_heads)] if titles is None else [str(t) for t in titles]
    if len(titles) != n_heads:
        raise ValueError(f"titles must have one entry per head ({n_heads}), got {len(titles)}")
    if str_tokens is not None and len(str_tokens) != n_k:
        raise ValueError(f"str_tokens must have one label per position ({n_k}), got {len(str_tokens)}")
    ncols = min(ncols, n_heads)
    nrows = -(-n_heads // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.1 * ncols, 3.0 * nrows + 0.4), squeeze=False,
                             layout="constrained")
    for h, ax in enumerate(axes.flat):
        if h >= n_heads:
            ax.axis("off")
            continue
        im = ax.imshow(p[h], cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(titles[h], fontsize=10)
        ax.set_xlabel("key position")
        if h % ncols == 0:
            ax.set_ylabel("query position")
        if str_tokens is not None and n_k <= 24:
            ax.set_xticks(range(n_k), str_tokens, rotation=90, fontsize=7)
            ax.set_yticks(range(n_q), list(str_tokens)[:n_q], fontsize=7)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="attention probability")
    fig.suptitle(suptitle)
    return fig


def plot_head_scores(
    scores: Mapping[str, torch.Tensor],
    suptitle: str = "Head scores",
    vmax: float = 1.0,
) -> Figure:
    """One annotated heatmap per score, each [n_layers, n_heads] (e.g. the dict returned by
    ``toykit.circuits.attention_head_scores``)."""
    if not scores:
        raise ValueError("scores must hold at least one [n_layers, n_heads] tensor")
    fig, axes = plt.subplots(1, len(scores), figsize=(3.6 * len(scores), 0.7 * _n_layers(scores) + 2.0),
                             squeeze=False, layout="constrained")
    for ax, (name, values) in zip(axes[0], scores.items()):
        check_tensor(f"scores[{name!r}]", values, ["n_layers", "n_heads"])
        v = _np(values)
        im = ax.imshow(v, cmap="viridis", vmin=0, vmax=vmax, aspect="auto")
        _annotate(ax, v, threshold=vmax / 2)
        ax.set_title(name.replace("_", " "), fontsize=10)
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_xticks(range(v.shape[1]))
        ax.set_yticks(range(v.shape[0]))
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.85, label="score (mean attention probability)")
    fig.suptitle(suptitle)
    return fig


def _n_layers(scores: Mapping[str, torch.Tensor]) -> int:
    return max(int(torch.as_tensor(v).shape[0]) for v in scores.values())


def plot_head_bars(
    values: Mapping[str, torch.Tensor],
    ylabel: str,
    title: str,
    reference: float | None = None,
    reference_label: str = "no ablation",
    log: bool = False,
) -> Figure:
    """Grouped bars, one group per head ("L.H"), one bar per entry of ``values``.

    values: {label: [n_layers, n_heads]} (e.g. the loss with each head ablated, by method).
    reference: a horizontal line (e.g. the clean loss).
    """
    if not values:
        raise ValueError("values must hold at least one [n_layers, n_heads] tensor")
    arrays = {}
    for label, v in values.items():
        check_tensor(f"values[{label!r}]", v, ["n_layers", "n_heads"])
        arrays[label] = _np(v).ravel()
    first = next(iter(values.values()))
    n_layers, n_heads = first.shape
    names = [f"{layer}.{h}" for layer in range(n_layers) for h in range(n_heads)]
    x = np.arange(len(names))
    width = 0.8 / len(arrays)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(names) + 1.5), 3.6))
    for i, (label, bars) in enumerate(arrays.items()):
        ax.bar(x + (i - (len(arrays) - 1) / 2) * width, bars, width, label=label)
    if reference is not None:
        ax.axhline(reference, color="black", lw=1, ls="--", label=reference_label)
    ax.set_xticks(x, names)
    ax.set_xlabel("head (layer.head)")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))  # 0.2, 1, 4 rather than 2x10^-1 ...
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_composition_scores(
    scores: Mapping[str, torch.Tensor],
    baseline: float | None = None,
    suptitle: str = "Composition scores (layer-0 head → layer-1 head)",
    src_layer: int = 0,
    dst_layer: int = 1,
) -> Figure:
    """Annotated heatmaps of composition scores, each [n_heads (src), n_heads (dst)] (e.g. Q-, K-
    and V-composition). baseline: the random-matrix score, shown in the colour bar label."""
    if not scores:
        raise ValueError("scores must hold at least one [n_src, n_dst] tensor")
    arrays = {name: _np(v) for name, v in scores.items()}
    for name, v in scores.items():
        check_tensor(f"scores[{name!r}]", v, ["n_src", "n_dst"])
    vmax = max(float(a.max()) for a in arrays.values())
    fig, axes = plt.subplots(1, len(arrays), figsize=(3.4 * len(arrays) + 0.6, 3.4), squeeze=False,
                             layout="constrained")
    for ax, (name, grid) in zip(axes[0], arrays.items()):
        im = ax.imshow(grid, cmap="magma", vmin=0, vmax=vmax)
        _annotate(ax, grid, threshold=vmax / 2)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(f"layer-{dst_layer} head (reads)")
        ax.set_ylabel(f"layer-{src_layer} head (writes)")
        ax.set_xticks(range(v.shape[1]))
        ax.set_yticks(range(v.shape[0]))
    label = "composition score" + (f" (random baseline ≈ {baseline:.2f})" if baseline is not None else "")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.85, label=label)
    fig.suptitle(suptitle)
    return fig


def plot_circuit(
    circuit: torch.Tensor,
    title: str,
    xlabel: str,
    ylabel: str,
    label: str = "value",
    mask_upper: bool = False,
) -> Figure:
    """A heatmap of one circuit matrix [n, m] (a full OV or QK circuit, or a slice of one),
    with a diverging colour map centred on 0. mask_upper: blank the entries above the diagonal
    (keys after the query, which causal attention never sees)."""
    check_tensor("circuit", circuit, ["n", "m"], dtype="float")
    v = _np(circuit)
    if mask_upper:
        v = np.where(np.triu(np.ones_like(v, dtype=bool), k=1), np.nan, v)
    lim = np.nanmax(np.abs(v))
    fig, ax = plt.subplots(figsize=(5.2, 4.4), layout="constrained")
    im = ax.imshow(v, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.colorbar(im, ax=ax, shrink=0.85, label=label)
    return fig


def plot_loss_by_position(
    losses: Mapping[str, torch.Tensor],
    seq_len: int,
    title: str = "Loss by position on repeated random tokens",
) -> Figure:
    """Per-position loss curves, e.g. of several models or ablations.

    losses: {label: [n_tokens - 1]}, entry i the mean loss of predicting token i + 1, on
        sequences from ``generate_repeated_tokens`` (block length seq_len, with or without BOS).
    The predictions of the repeated block are shaded.
    """
    if not losses:
        raise ValueError("losses must hold at least one [n_tokens - 1] tensor")
    fig, ax = plt.subplots(figsize=(7, 3.6))
    n: int | None = None
    for label, loss in losses.items():
        check_tensor(f"losses[{label!r}]", loss, [None], dtype="float")
        v = _np(loss)
        n = len(v) if n is None else n
        if len(v) != n:
            raise ValueError(f"all losses must have the same length, got {n} and {len(v)} ({label!r})")
        ax.plot(np.arange(1, len(v) + 1), v, marker=".", ms=3, lw=1.2, label=label)
    assert n is not None  # losses is not empty
    _, repeated = repeated_half_slices(n + 1, seq_len)
    ax.axvspan(repeated.start + 0.5, repeated.stop + 0.5, color="tab:green", alpha=0.1,
               label="repeated block")
    ax.set_xlabel("position of the predicted token")
    ax.set_ylabel("loss (nats)")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_phase_change(
    history: Mapping[str, list],
    phase_step: int | None = None,
    bump: tuple[int, int] | None = None,
    layer: int = -1,
    suptitle: str = "The induction-head phase change",
) -> Figure:
    """Two panels from a training history (``toykit.pretrained.load_history``): the losses on
    the first and on the repeated block, and each head's induction score in ``layer``, against
    the step. phase_step: a vertical line (e.g. ``phase_change_step(history)``); bump: a
    (start, end) step range to shade."""
    for key in ("step", "loss_first_half", "loss_repeated_half", "induction_score"):
        if key not in history:
            raise ValueError(f"history must have the key {key!r} (see toykit.train_recipes)")
    steps = np.asarray(history["step"])
    scores = np.asarray(history["induction_score"], dtype=float)  # [n_logged, n_layers, n_heads]
    scores = scores[:, layer]
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    ax_loss.plot(steps, history["loss_first_half"], label="first block (unpredictable)")
    ax_loss.plot(steps, history["loss_repeated_half"], label="repeated block")
    ax_loss.set_ylabel("loss (nats)")
    ax_loss.set_title("loss on repeated random tokens")
    layer_name = layer % np.asarray(history["induction_score"]).shape[1]
    for h in range(scores.shape[1]):
        ax_score.plot(steps, scores[:, h], label=f"head {layer_name}.{h}")
    ax_score.set_ylabel("prefix-matching score")
    ax_score.set_ylim(0, 1)
    ax_score.set_title(f"induction score of the layer-{layer_name} heads")
    for ax in (ax_loss, ax_score):
        ax.set_xlabel("training step")
        if bump is not None:
            ax.axvspan(*bump, color="tab:orange", alpha=0.15, label="phase change")
        if phase_step is not None:
            ax.axvline(phase_step, color="black", ls="--", lw=1, label=f"step {phase_step}")
        ax.legend(fontsize=8)
    fig.suptitle(suptitle)
    return fig
