"""Pictures for probing: probe scores across layers, and points in a 2-D projection. Every
function returns the matplotlib Figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from toykit.validation import check_tensor

__all__ = ["plot_probe_scores", "plot_points_2d"]


def plot_probe_scores(scores: Mapping[str, Sequence[float] | torch.Tensor], sites: Sequence[str],
                      chance: Mapping[str, float] | None = None, title: str = "Linear probe accuracy by layer",
                      ylabel: str = "held-out accuracy") -> Figure:
    """One line per probed property: scores {name: [n_sites]} over sites (e.g. "0_pre", ...);
    chance {name: accuracy of always guessing the commonest class} drawn dashed."""
    if not scores:
        raise ValueError("scores must name at least one property")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, values in scores.items():
        values = [float(v) for v in values]
        if len(values) != len(sites):
            raise ValueError(f"scores[{name!r}] has {len(values)} values for {len(sites)} sites")
        line, = ax.plot(range(len(sites)), values, marker="o", label=name)
        if chance and name in chance:
            ax.axhline(chance[name], color=line.get_color(), ls="--", lw=1)
    ax.set_xticks(range(len(sites)), list(sites))
    ax.set_xlabel("residual stream site (input of block, or final)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_points_2d(z: torch.Tensor, labels: Sequence[str], title: str, connect: bool = True,
                   xlabel: str = "PC 1", ylabel: str = "PC 2") -> Figure:
    """Labelled points z [n, 2] (e.g. PCA coordinates of class means), joined in the given
    order (and back to the first) when connect is True."""
    check_tensor("z", z, ["n", 2], dtype="float")
    if len(labels) != z.shape[0]:
        raise ValueError(f"labels has {len(labels)} names for {z.shape[0]} points")
    z = z.detach().cpu()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    if connect:
        loop = torch.cat([z, z[:1]])
        ax.plot(loop[:, 0], loop[:, 1], color="lightgray", zorder=1)
    ax.scatter(z[:, 0], z[:, 1], zorder=2)
    for (x, y), name in zip(z.tolist(), labels):
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_aspect("equal", adjustable="datalim")
    fig.tight_layout()
    return fig
