"""The single steps of circuit discovery that the library's loops are built from (and that
chapter 10's exercises re-implement): one receiver's patched input, ACDC's inner loop, a sweep's
ranking, EAP's scores, EAP-IG's points and one incompleteness score. Checked against hand
computations and against the functions that use them."""

import pytest
import torch

from toykit.circuit_discovery import (
    CircuitGraph,
    eap_scores,
    edge_scores,
    incompleteness,
    incompleteness_scores,
    interpolation_points,
    largest_kept_tau,
    patch_receiver_input,
    prune_step,
)


def randn(seed, *shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_patching_a_receiver_swaps_exactly_the_cut_senders():
    actual, corrupted, bias = randn(0, 3, 2, 4, 5), randn(1, 3, 2, 4, 5), randn(2, 5)
    stream = actual.sum(0) + bias
    before = stream.clone()
    delta = actual - corrupted
    out = patch_receiver_input(stream, delta, torch.tensor([True, False, True]))
    torch.testing.assert_close(out, corrupted[0] + actual[1] + corrupted[2] + bias)
    assert torch.equal(stream, before)  # a new tensor: the input is untouched
    torch.testing.assert_close(patch_receiver_input(stream, delta, torch.ones(3, dtype=torch.bool)),
                               corrupted.sum(0) + bias)
    # Per-head inputs: each head has its own column of cut senders.
    heads = stream[:, :, None].repeat(1, 1, 2, 1)
    cut = torch.tensor([[True, False], [False, False], [False, True]])
    out = patch_receiver_input(heads, delta, cut)
    torch.testing.assert_close(out[:, :, 0], corrupted[0] + actual[1] + actual[2] + bias)
    torch.testing.assert_close(out[:, :, 1], actual[0] + actual[1] + corrupted[2] + bias)


class Additive:
    """A metric that grows by weights[i] for each cut edge i, and by ``extra`` when edges 0 and
    1 are both cut."""

    def __init__(self, weights, extra):
        self.weights, self.extra = torch.tensor(weights, dtype=torch.float64), extra

    def __call__(self, kept):
        cut = ~kept
        return float((self.weights * cut).sum()) + (self.extra if bool(cut[0] and cut[1]) else 0.0)


def test_prune_step_compares_with_the_current_circuit():
    metric = Additive([0.25, 0.25, 0.75, -1.0, 0.5], extra=0.5)
    kept = torch.ones(5, dtype=torch.bool)
    new, current, changes = prune_step(metric, kept, [4, 3, 2, 1, 0], metric(kept), tau=0.5)
    # 4: change 0.5, not < 0.5, kept. 3: -1.0, cut. 2: 0.75, kept. 1: 0.25, cut. 0: 0.25 + 0.5, kept.
    assert new.tolist() == [True, False, True, False, True]
    assert torch.equal(kept, torch.ones(5, dtype=torch.bool))  # the caller's mask is left alone
    assert changes.tolist() == [0.5, -1.0, 0.75, 0.25, 0.75] and changes.dtype == torch.float64
    assert current == metric(new) == -0.75
    # With |change|, the -1.0 cut goes back.
    new, _, _ = prune_step(metric, kept, [4, 3, 2, 1, 0], 0.0, tau=0.5, abs_change=True)
    assert new.tolist() == [True, False, True, True, True]


def test_largest_kept_tau_ranks_edges_by_their_last_threshold():
    kept = [torch.tensor(m) for m in ([True, True, False, False], [True, False, False, True],
                                      [False, True, False, False])]
    score = largest_kept_tau([0.5, 0.0, 2.0], kept)
    assert score.tolist() == [0.5, 2.0, -1.0, 0.0] and score.dtype == torch.float64
    with pytest.raises(ValueError, match="one mask per threshold"):
        largest_kept_tau([0.5, 1.0], kept)
    with pytest.raises(ValueError, match=r"taus\[1\] must be a number >= 0"):
        largest_kept_tau([0.5, -1.0, 2.0], kept)
    with pytest.raises(ValueError, match=r"kept\[1\]"):
        largest_kept_tau([0.5, 1.0], [kept[0], torch.ones(3, dtype=torch.bool)])


def test_eap_scores_are_the_output_change_times_the_gradient():
    graph = CircuitGraph(2, 2, False)
    clean, corrupted = randn(0, len(graph.senders), 2, 3, 4), randn(1, len(graph.senders), 2, 3, 4)
    grads = randn(2, len(graph.receivers), 2, 3, 4)
    scores = eap_scores(graph, clean, corrupted, grads)
    torch.testing.assert_close(scores, edge_scores(graph, corrupted - clean, grads))
    s, r = graph.sender_index["a0.h1"], graph.receiver_index["m1"]
    expected = ((corrupted[s] - clean[s]).double() * grads[r].double()).sum()
    torch.testing.assert_close(scores[graph.edge_index[("a0.h1", "m1")]], expected)


def test_interpolation_points_end_at_the_clean_embedding():
    clean, corrupted = randn(0, 2, 3, 4), randn(1, 2, 3, 4)
    points = interpolation_points(clean, corrupted, 4)
    assert points.shape == (4, 2, 3, 4)
    torch.testing.assert_close(points[-1], clean)
    torch.testing.assert_close(points[0], corrupted + 0.25 * (clean - corrupted))
    torch.testing.assert_close(interpolation_points(clean, corrupted, 1)[0], clean)
    with pytest.raises(ValueError, match="steps"):
        interpolation_points(clean, corrupted, 0)
    with pytest.raises(ValueError, match="same shape"):
        interpolation_points(clean, corrupted[0], 3)


def test_incompleteness_is_what_incompleteness_scores_reports():
    weights = {"a": 1.0, "b": -2.0, "c": 0.5, "d": 3.0}

    def F(kept):
        return sum(weights[x] for x in kept) + (1.5 if {"a", "b"} <= kept else 0.0)

    C, M = frozenset("abc"), frozenset("abcd")
    for K in (frozenset(), frozenset("a"), frozenset("bc")):
        assert incompleteness(F, C, M, K) == incompleteness_scores(F, C, M, [K])[K]
    assert incompleteness(F, C, M, frozenset("a")) == abs(F(frozenset("bc")) - F(frozenset("bcd"))) == 3.0


def test_bad_input_to_the_steps_is_named():
    x, delta = randn(0, 2, 3, 4), randn(1, 3, 2, 3, 4)
    with pytest.raises(ValueError, match="cut must have shape"):
        patch_receiver_input(x, delta, torch.ones(2, dtype=torch.bool))
    with pytest.raises(TypeError, match="cut"):
        patch_receiver_input(x, delta, torch.ones(3))
    with pytest.raises(ValueError, match="delta must have shape"):
        patch_receiver_input(x, delta[:, :1], torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="receiver_input must be"):
        patch_receiver_input(x[0], delta, torch.ones(3, dtype=torch.bool))
    kept = torch.ones(4, dtype=torch.bool)
    with pytest.raises(ValueError, match="order must be a list of edge indices"):
        prune_step(lambda k: 0.0, kept, [4], 0.0, 0.1)
    with pytest.raises(ValueError, match="tau must be a number >= 0"):
        prune_step(lambda k: 0.0, kept, [1], 0.0, -0.1)
    with pytest.raises(TypeError, match="evaluate must be a callable"):
        prune_step(0.0, kept, [1], 0.0, 0.1)
    graph = CircuitGraph(1, 2, True)
    outputs = randn(0, len(graph.senders), 2, 3, 4)
    with pytest.raises(ValueError, match="grads must have shape"):
        eap_scores(graph, outputs, outputs, randn(1, len(graph.receivers) - 1, 2, 3, 4))
    with pytest.raises(ValueError, match="knockout must be a subset of the circuit"):
        incompleteness(len, frozenset("ab"), frozenset("abc"), frozenset("c"))
    with pytest.raises(ValueError, match="all_elements must contain the circuit"):
        incompleteness(len, frozenset("abd"), frozenset("abc"), frozenset())
