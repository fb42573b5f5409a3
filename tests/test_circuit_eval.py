"""Edge rankings against a ground truth (ROC, AUC, precision/recall at k) and circuits against
the model (faithfulness curve, Wang et al.'s completeness and minimality)."""

import itertools

import pytest
import torch
from test_planted_circuit import EdgePatcher, correct_logprob

from toykit.circuit_discovery.evaluation import (
    all_subsets,
    faithfulness_curve,
    incompleteness_scores,
    minimality_score,
    precision_recall_at_k,
    random_subsets,
    rank_edges,
    roc_auc,
    roc_curve,
)
from toykit.circuit_discovery.planted import planted_induction_circuit
from toykit.tasks.repeated_tokens import generate_repeated_tokens

EDGES = [(f"s{i}", f"r{i}") for i in range(12)]


def pairwise_auc(scores, truth):
    """P(score of a true edge > score of a false one), ties 1/2: counted pair by pair."""
    pos = [s for e, s in scores.items() if e in truth]
    neg = [s for e, s in scores.items() if e not in truth]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(20))
def test_auc_matches_the_pairwise_count_with_ties(seed):
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(4, 30, (1,), generator=g))
    edges = [(f"a{i}", "logits") for i in range(n)]
    values = torch.randint(0, 4, (n,), generator=g).tolist()  # few distinct values: many ties
    n_true = int(torch.randint(1, n, (1,), generator=g))
    truth = {edges[i] for i in torch.randperm(n, generator=g)[:n_true].tolist()}
    scores = dict(zip(edges, values))
    assert roc_auc(scores, truth) == pytest.approx(pairwise_auc(scores, truth), abs=1e-12)
    # The same scores as a list or a tensor aligned with the edges.
    assert roc_auc(values, truth, edges=edges) == pytest.approx(roc_auc(scores, truth), abs=1e-12)
    assert roc_auc(torch.tensor(values, dtype=torch.float32), truth, edges=edges) == pytest.approx(
        roc_auc(scores, truth), abs=1e-12)


def test_auc_reference_points():
    truth = set(EDGES[:4])
    perfect = {e: (1.0 if e in truth else 0.0) for e in EDGES}
    assert roc_auc(perfect, truth) == 1.0
    assert roc_auc({e: -s for e, s in perfect.items()}, truth) == 0.0
    assert roc_auc({e: 3.0 for e in EDGES}, truth) == 0.5  # no information: the diagonal
    # A tie between a true and a false edge counts a half, however the edges are ordered.
    scores = {EDGES[0]: 2.0, EDGES[1]: 1.0, EDGES[2]: 1.0, EDGES[3]: 0.0}
    assert roc_auc(scores, {EDGES[0], EDGES[1]}) == pytest.approx(0.875)  # (1 + 1 + 0.5 + 1) / 4
    assert roc_auc(scores, {EDGES[0], EDGES[2]}) == pytest.approx(0.875)


def test_roc_curve_points():
    scores = {EDGES[0]: 0.9, EDGES[1]: 0.5, EDGES[2]: 0.5, EDGES[3]: 0.1}
    fpr, tpr, thresholds = roc_curve(scores, {EDGES[0], EDGES[1]})
    assert fpr.tolist() == [0.0, 0.0, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 1.0, 1.0]  # the tie at 0.5 is one step, diagonal
    assert thresholds[0] == float("inf") and thresholds[1:].tolist() == [0.9, 0.5, 0.1]


def test_rank_and_precision_recall_at_k():
    scores = {EDGES[0]: 1.0, EDGES[1]: 3.0, EDGES[2]: 3.0, EDGES[3]: 2.0, EDGES[4]: 0.0}
    assert rank_edges(scores) == [EDGES[1], EDGES[2], EDGES[3], EDGES[0], EDGES[4]]  # ties keep their order
    truth = {EDGES[2], EDGES[0]}
    assert precision_recall_at_k(scores, truth, 1) == (0.0, 0.0)
    assert precision_recall_at_k(scores, truth, 2) == (0.5, 0.5)
    assert precision_recall_at_k(scores, truth, 4) == (0.5, 1.0)
    assert precision_recall_at_k(scores, truth, 5) == (0.4, 1.0)


def test_faithfulness_curve_on_an_additive_metric():
    # A toy edge-patching run whose metric is the sum of the weights of the kept edges:
    # clean (everything kept) = 10, corrupted (nothing kept) = 0.
    weights = dict(zip(EDGES[:4], [4.0, 3.0, 2.0, 1.0]))
    calls = []

    def evaluate(kept):
        calls.append(kept)
        return torch.tensor(sum(weights[e] for e in kept))

    scores = {EDGES[3]: 0.1, EDGES[0]: 0.9, EDGES[1]: 0.5, EDGES[2]: 0.3}  # ranks 0, 1, 2, 3
    curve = faithfulness_curve(evaluate, scores, [0, 1, 2, 4], clean=10.0, corrupted=0.0)
    assert curve == pytest.approx([0.0, 0.4, 0.7, 1.0])
    assert calls[2] == frozenset(EDGES[:2])
    # The corrupted baseline need not be 0, and the metric may fall from clean to corrupted.
    shifted = faithfulness_curve(lambda kept: 5.0 - evaluate(kept), scores, [1], clean=-5.0, corrupted=5.0)
    assert shifted == pytest.approx([0.4])


def test_completeness_and_minimality_on_a_toy_metric():
    # Edges 0 and 1 are redundant copies (the metric sees either), edge 2 adds on its own.
    e0, e1, e2, e3 = EDGES[:4]

    def F(kept):
        return 1.0 * ((e0 in kept) or (e1 in kept)) + 0.5 * (e2 in kept)

    model = {e0, e1, e2, e3}
    incompleteness = incompleteness_scores(F, {e0, e2}, model, all_subsets({e0, e2}))
    # Knocking e0 out of the circuit loses 1, but the model keeps e1: incomplete by 1.
    assert incompleteness == {frozenset(): 0.0, frozenset({e0}): 1.0, frozenset({e2}): 0.0,
                              frozenset({e0, e2}): 1.0}
    assert incompleteness_scores(F, {e0, e1, e2}, model, all_subsets({e0, e1, e2})) == {
        K: 0.0 for K in all_subsets({e0, e1, e2})}
    # In the circuit {e0, e1, e2}, e0 matters only once e1 is knocked out.
    circuit = {e0, e1, e2}
    assert minimality_score(F, circuit, e0, [frozenset()]) == 0.0
    assert minimality_score(F, circuit, e0, all_subsets(circuit - {e0})) == 1.0
    assert minimality_score(F, circuit, e2, all_subsets(circuit - {e2})) == 0.5
    assert minimality_score(F, circuit | {e3}, e3, all_subsets(circuit)) == 0.0  # e3 does nothing


def test_subsets():
    items = {"a", "b", "c"}
    subsets = all_subsets(items)
    assert len(subsets) == 8 == len(set(subsets)) and subsets[0] == frozenset()
    assert len(all_subsets(items, max_size=1)) == 4
    drawn = random_subsets(items, 50, seed=0)
    assert len(drawn) == 50 and all(s <= items for s in drawn)
    assert drawn == random_subsets(["c", "b", "a"], 50, seed=0)  # the order of items does not matter
    assert 0.3 < sum(len(s) for s in drawn) / 150 < 0.7  # each element kept about half the time
    assert all(s == frozenset(items) for s in random_subsets(items, 5, p=1.0, seed=1))


def test_criteria_on_the_planted_circuit():
    """With an exact ground truth, the criteria have exact answers: the true edges recover the
    whole metric, knocking any of them out does to the circuit what it does to the model, and
    each is needed while an added edge is not."""
    planted = planted_induction_circuit(device="cpu")
    S, V = planted.seq_len, planted.model.cfg.d_vocab
    tokens = generate_repeated_tokens(16, S, V, seed=0)
    corrupted = generate_repeated_tokens(16, S, V, seed=1)
    patcher = EdgePatcher(planted.model, tokens, corrupted)
    with patcher:
        def evaluate(kept):
            return correct_logprob(patcher.logits(kept), tokens)

        clean, corrupt = evaluate(patcher.edges), evaluate(set())
        assert clean - corrupt > 5.0
        truth = planted.edges
        scores = {e: (1.0 if e in truth else 0.0) for e in sorted(patcher.edges)}
        curve = faithfulness_curve(evaluate, scores, [0, 2, len(truth), 40], clean=clean, corrupted=corrupt)
        assert curve[0] == pytest.approx(0.0, abs=1e-6)
        assert curve[1] < 0.5  # two true edges alone do little
        assert curve[2] == pytest.approx(1.0, abs=1e-4) and curve[3] == pytest.approx(1.0, abs=1e-4)

        incompleteness = incompleteness_scores(evaluate, truth, patcher.edges, random_subsets(truth, 6, seed=0))
        assert max(incompleteness.values()) < 1e-4
        for edge in truth:
            assert minimality_score(evaluate, truth, edge, [frozenset()]) > 1.0
        added = ("a0.h0", "logits")
        assert minimality_score(evaluate, truth | {added}, added, [frozenset(), frozenset(list(truth)[:2])]) < 1e-4


def test_bad_input_is_named():
    scores = {EDGES[0]: 1.0, EDGES[1]: 0.0}
    with pytest.raises(ValueError, match="ground_truth"):
        roc_auc(scores, {EDGES[5]})  # not scored
    with pytest.raises(ValueError, match="ground_truth"):
        roc_auc(scores, set(EDGES[:2]))  # no negatives
    with pytest.raises(ValueError, match="ground_truth"):
        roc_auc(scores, set())
    with pytest.raises(ValueError, match="edges"):
        roc_auc([1.0, 0.0], {EDGES[0]})  # a list of scores needs the edges
    with pytest.raises(ValueError, match="same length"):
        roc_auc([1.0, 0.0, 2.0], {EDGES[0]}, edges=EDGES[:2])
    with pytest.raises(ValueError, match="NaN"):
        roc_auc({EDGES[0]: float("nan"), EDGES[1]: 0.0}, {EDGES[0]})
    with pytest.raises(TypeError, match="sender, receiver"):
        roc_auc({"a0.h0": 1.0, EDGES[1]: 0.0}, {EDGES[1]})
    with pytest.raises(ValueError, match="repeat"):
        rank_edges([1.0, 2.0], edges=[EDGES[0], EDGES[0]])
    with pytest.raises(ValueError, match="k must be at most"):
        precision_recall_at_k(scores, {EDGES[0]}, 3)
    with pytest.raises(ValueError, match="k must be a positive int"):
        precision_recall_at_k(scores, {EDGES[0]}, 0)
    with pytest.raises(TypeError, match="evaluate"):
        faithfulness_curve(None, scores, [1], clean=1.0, corrupted=0.0)
    with pytest.raises(ValueError, match="each k in ks"):
        faithfulness_curve(lambda kept: 0.0, scores, [3], clean=1.0, corrupted=0.0)
    with pytest.raises(ValueError, match="equal"):
        faithfulness_curve(lambda kept: 0.0, scores, [1], clean=1.0, corrupted=1.0)
    with pytest.raises(ValueError, match="knockouts"):
        incompleteness_scores(lambda kept: 0.0, {EDGES[0]}, set(EDGES), [{EDGES[1]}])
    with pytest.raises(ValueError, match="all_elements"):
        incompleteness_scores(lambda kept: 0.0, {EDGES[0]}, {EDGES[1]}, [set()])
    with pytest.raises(ValueError, match="element"):
        minimality_score(lambda kept: 0.0, {EDGES[0]}, EDGES[1], [set()])
    with pytest.raises(ValueError, match="knockouts"):
        minimality_score(lambda kept: 0.0, {EDGES[0], EDGES[1]}, EDGES[0], [{EDGES[0]}])  # K holds v
    with pytest.raises(ValueError, match="at least one set"):
        minimality_score(lambda kept: 0.0, {EDGES[0]}, EDGES[0], [])
    with pytest.raises(TypeError, match="evaluate"):
        minimality_score(lambda kept: "big", {EDGES[0]}, EDGES[0], [set()])
