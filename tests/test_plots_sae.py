"""toykit.plots.sae: every plot runs on small inputs and returns a titled Figure."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from toykit.plots import sae as splots  # noqa: E402


def titled(fig: Figure) -> bool:
    return bool(fig._suptitle and fig._suptitle.get_text()) or any(ax.get_title() for ax in fig.axes)


def test_every_plot_returns_a_titled_figure():
    history = {"step": [0, 10, 20], "dead_fraction": [0.0, 0.1, 0.2], "resample_step": [15]}
    figures = [
        splots.plot_activations_2d(torch.randn(40, 2), torch.randn(3, 2), torch.randn(5, 2)),
        splots.plot_sae_code(torch.randn(6), torch.relu(torch.randn(12)), torch.randn(6)),
        splots.plot_sweep([0.1, 1.0], {"a": {"mmcs": [0.5, 0.9], "l0": [3.0, 1.0], "explained_variance": [0.9, 0.5]}},
                          true_l0=2.0),
        splots.plot_frontier({"x": ([1.0, 2.0], [0.5, 0.7]), "y": (torch.tensor([1.5]), torch.tensor([0.6]))}),
        splots.plot_dead_fraction({"run": history}),
        splots.plot_feature_density({"a": torch.tensor([-10.0, -1.0, -2.0]), "b": torch.tensor([-1.5, -0.5])}),
    ]
    for fig in figures:
        assert isinstance(fig, Figure) and titled(fig)
        plt.close(fig)


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="W_dec"):
        splots.plot_activations_2d(torch.randn(4, 2), torch.randn(3, 2), torch.randn(5, 3))
