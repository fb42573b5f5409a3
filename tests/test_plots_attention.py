"""The attention plots draw what they are given, and reject malformed input clearly."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from toykit.plots import attention as aplots  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def causal_pattern(n_heads: int, n: int) -> torch.Tensor:
    scores = torch.randn(n_heads, n, n).masked_fill(torch.triu(torch.ones(n, n, dtype=torch.bool), 1), -1e9)
    return scores.softmax(-1)


def test_every_plot_returns_a_titled_figure():
    figs = [
        aplots.plot_attention_patterns(causal_pattern(4, 6), str_tokens=list("abcdef"), suptitle="patterns"),
        aplots.plot_head_scores({"prefix_matching": torch.rand(2, 4), "previous_token": torch.rand(2, 4)}),
        aplots.plot_head_bars({"zero": torch.rand(2, 4), "mean": torch.rand(2, 4)}, "loss", "ablations",
                              reference=0.2),
        aplots.plot_composition_scores({"K": torch.rand(4, 4)}, baseline=0.12),
        aplots.plot_circuit(torch.randn(8, 8), "circuit", "key", "query", mask_upper=True),
        aplots.plot_loss_by_position({"model": torch.rand(12)}, seq_len=6),
    ]
    history = {"step": [0, 10, 20], "loss_first_half": [5, 5, 5], "loss_repeated_half": [5, 3, 1],
               "induction_score": [[[0.0] * 4, [0.0] * 4], [[0.0] * 4, [0.3] * 4], [[0.0] * 4, [0.8] * 4]]}
    figs.append(aplots.plot_phase_change(history, phase_step=10, bump=(5, 15)))
    for fig in figs:
        titles = [ax.get_title() for ax in fig.axes] + [fig._suptitle.get_text() if fig._suptitle else ""]
        assert any(titles)
        assert any(ax.get_xlabel() for ax in fig.axes)


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="pattern must have shape \\[n_heads, q_pos, k_pos\\]"):
        aplots.plot_attention_patterns(torch.rand(1, 2, 3, 3))
    with pytest.raises(ValueError, match="str_tokens must have one label per position"):
        aplots.plot_attention_patterns(causal_pattern(2, 4), str_tokens=["a"])
    with pytest.raises(ValueError, match="history must have the key 'induction_score'"):
        aplots.plot_phase_change({"step": [], "loss_first_half": [], "loss_repeated_half": []})
    with pytest.raises(ValueError, match="n_tokens must be"):
        aplots.plot_loss_by_position({"model": torch.rand(12)}, seq_len=4)
