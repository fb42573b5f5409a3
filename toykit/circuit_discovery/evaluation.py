"""How good is a discovered circuit? Rankings against a ground truth, and circuits against the model.

A circuit-discovery method (ACDC, Conmy et al. 2023; edge attribution patching, Syed et al.
2023) gives every edge of the computational graph a score, higher meaning "more likely in the
circuit". Two kinds of measurement judge it:

**Against a known circuit** (Conmy et al. 2023, Section 4): treat the score as a classifier
of edges into "in the ground truth" and "not", and sweep its threshold.

- ``roc_curve`` / ``roc_auc``: false- against true-positive rate over every threshold, and the
  area under that curve: the probability that a random true edge outscores a random other
  edge, ties counting one half (0.5 for a random ranking, 1 for a perfect one).
- ``precision_recall_at_k``: of the top k edges, the fraction that are true (precision), and
  the fraction of true edges among them (recall).

**Against the model**, with ``evaluate(kept_edges) -> metric``: the model run with only the
kept edges clean and every other edge patched to its corrupted value (the edge-patching run).

- ``faithfulness_curve``: the fraction of the clean-vs-corrupted metric that the top-k edges
  recover alone, (m(C) - m(corrupted)) / (m(clean) - m(corrupted)) (``normalize_metric``), for
  several k (Conmy et al. 2023, Section 4, also plot a metric against the number of edges kept).
- ``incompleteness_scores`` and ``minimality_score``: Wang et al. (2022, Section 4)'s
  completeness and minimality criteria, with F(X) = evaluate(X). Completeness: knocking a set
  K out of the circuit C should do what it does to the whole model M, so |F(C \\ K) - F(M \\ K)|
  is small for every K of C. Minimality: every element v of C matters for some K of C \\ {v},
  so max_K |F(C \\ (K ∪ {v})) - F(C \\ K)| is large. Wang et al. work with nodes (heads); the
  functions here take any hashable elements, so the same code scores nodes or edges, as long
  as ``evaluate`` understands them. ``all_subsets`` and ``random_subsets`` make the K's
  (Wang et al. sample them at random, by head class or by a greedy search).

Conventions: an edge is ``(sender, receiver)``, two node names of the graph (see
``toykit.circuit_discovery``). Scores are a dict ``{edge: score}``, or a sequence of numbers
(or a 1-D tensor) aligned with a list of ``edges``. Ties in a ranking keep the order in which
the edges were given, so top-k lists are reproducible.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from typing import TypeVar

import torch

from toykit.circuit_discovery.graph import Edge
from toykit.metrics import as_number, normalize_metric
from toykit.runtime import make_generator
from toykit.validation import check_non_negative_int, check_positive_int, check_probability, check_tensor

__all__ = [
    "all_subsets",
    "faithfulness_curve",
    "frontier_auc",
    "incompleteness",
    "incompleteness_scores",
    "minimality_score",
    "precision_recall_at_k",
    "random_subsets",
    "rank_edges",
    "roc_auc",
    "roc_curve",
]

Scores = Mapping[Edge, float | torch.Tensor] | Sequence[float] | torch.Tensor
T = TypeVar("T", bound=Hashable)


# -- scores and rankings ---------------------------------------------------------------------------


def _score_dict(scores: Scores, edges: Sequence[Edge] | None) -> dict[Edge, float]:
    """scores (a dict, or numbers aligned with ``edges``) -> {edge: float}, in the given order."""
    if isinstance(scores, Mapping):
        if edges is not None:
            raise ValueError("edges must be None when scores is a dict {edge: score} (the dict names the edges)")
        items = list(scores.items())
    else:
        if edges is None:
            raise ValueError("scores given as a sequence need edges, the list of edges they are aligned with")
        if isinstance(scores, torch.Tensor):
            if scores.ndim != 1:
                raise ValueError(f"scores as a tensor must be 1-D [n_edges], got shape {list(scores.shape)}")
            scores = scores.tolist()
        if isinstance(scores, (str, bytes)) or not isinstance(scores, Sequence):
            raise TypeError(f"scores must be a dict {{edge: score}}, a sequence of numbers or a 1-D tensor, "
                            f"got {type(scores).__name__}")
        if isinstance(edges, (str, bytes)) or not isinstance(edges, Sequence):
            raise TypeError(f"edges must be a sequence of (sender, receiver) pairs, got {type(edges).__name__}")
        if len(scores) != len(edges):
            raise ValueError(f"scores and edges must have the same length, got {len(scores)} scores and "
                             f"{len(edges)} edges")
        items = list(zip(edges, scores))
    if not items:
        raise ValueError("scores must score at least one edge, got none")
    out: dict[Edge, float] = {}
    for edge, score in items:
        _check_edge("scores", edge)
        if edge in out:
            raise ValueError(f"edges must not repeat, got {edge!r} twice")
        value = as_number(f"the score of edge {edge!r}", score)
        if math.isnan(value):
            raise ValueError(f"scores must not be NaN, got NaN for edge {edge!r}")
        out[edge] = value
    return out


def _check_edge(name: str, edge: object) -> None:
    if not (isinstance(edge, tuple) and len(edge) == 2 and all(isinstance(x, str) for x in edge)):
        raise TypeError(f"{name} must hold edges as (sender, receiver) tuples of two str, got {edge!r}")


def _truth_set(ground_truth: Iterable[Edge], scored: Mapping[Edge, float]) -> frozenset[Edge]:
    """The ground truth as a set, checked against the scored edges: some true, some not."""
    if isinstance(ground_truth, (str, bytes)) or not isinstance(ground_truth, Iterable):
        raise TypeError(f"ground_truth must be a collection of (sender, receiver) edges, "
                        f"got {type(ground_truth).__name__}")
    truth = frozenset(ground_truth)
    for edge in truth:
        _check_edge("ground_truth", edge)
    missing = sorted(truth - scored.keys())
    if missing:
        raise ValueError(f"ground_truth has {len(missing)} edges that scores do not score, e.g. {missing[:3]}")
    if not truth:
        raise ValueError("ground_truth must hold at least one edge, got none")
    if len(truth) == len(scored):
        raise ValueError("ground_truth holds every scored edge: with no negatives, a ranking cannot be judged")
    return truth


def rank_edges(scores: Scores, edges: Sequence[Edge] | None = None) -> list[Edge]:
    """The edges from the highest score to the lowest; ties keep the order they were given in.

    scores: {edge: score}, or n numbers (a sequence or a 1-D tensor) aligned with ``edges``
    (n edges). Returns a list of n edges.
    """
    scored = _score_dict(scores, edges)
    return sorted(scored, key=lambda edge: -scored[edge])  # sorted is stable: ties keep their order


# -- against a ground truth -------------------------------------------------------------------------


def roc_curve(scores: Scores, ground_truth: Iterable[Edge],
              edges: Sequence[Edge] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ROC curve of an edge ranking against a ground-truth edge set.

    scores: as for ``rank_edges`` (n edges). ground_truth: the true edges, all of them scored,
    at least one, and not all (there must be negatives).
    Returns (fpr, tpr, thresholds), each float64 [m + 1] for m distinct scores: the point for
    "predict every edge with score >= threshold", thresholds from +inf (nothing predicted,
    the point (0, 0)) down to the lowest score (everything predicted, (1, 1)). Tied edges are
    predicted together, so a tie is one diagonal step, never an optimistic staircase.
    The convention of scikit-learn's ``roc_curve`` (1.3 and later) with ``drop_intermediate=False``.
    """
    scored = _score_dict(scores, edges)
    truth = _truth_set(ground_truth, scored)
    thresholds = sorted(set(scored.values()), reverse=True)
    n_pos, n_neg = len(truth), len(scored) - len(truth)
    tp = fp = 0
    by_score: dict[float, list[bool]] = {}
    for edge, score in scored.items():
        by_score.setdefault(score, []).append(edge in truth)
    tpr, fpr = [0.0], [0.0]
    for threshold in thresholds:
        group = by_score[threshold]
        tp += sum(group)
        fp += len(group) - sum(group)
        tpr.append(tp / n_pos)
        fpr.append(fp / n_neg)
    def float64(xs: list[float]) -> torch.Tensor:
        return torch.tensor(xs, dtype=torch.float64)

    return float64(fpr), float64(tpr), float64([math.inf, *thresholds])


def roc_auc(scores: Scores, ground_truth: Iterable[Edge], edges: Sequence[Edge] | None = None) -> float:
    """The area under ``roc_curve`` (trapezoids): a number in [0, 1].

    Equal to the probability that a random true edge scores above a random other edge, a tie
    counting one half (the Mann-Whitney statistic): 1 for a perfect ranking, 0.5 for one that
    carries no information (or all scores equal). Conmy et al. (2023, Section 4) report
    0.85 to 0.98 for ACDC on their tasks.
    """
    fpr, tpr, _ = roc_curve(scores, ground_truth, edges)
    return torch.trapezoid(tpr, fpr).item()


def frontier_auc(kept: Sequence[torch.Tensor], ground_truth: Iterable[Edge], edges: Sequence[Edge]) -> float:
    """The AUC of a sweep of circuits as the ACDC authors' code computes it: each circuit's
    (FPR, TPR) point plus (0, 0) and (1, 1), their Pareto frontier, and the area under its
    staircase (right, then up). A lower bound on ``roc_auc`` of ``acdc.sweep_scores``, equal
    when the circuits are nested.

    kept: the circuits, each a bool mask [n_edges] aligned with ``edges``.
    """
    truth = set(ground_truth)
    is_true = torch.tensor([e in truth for e in edges])
    n_true, n_false = int(is_true.sum()), int((~is_true).sum())
    if n_true == 0 or n_false == 0:
        raise ValueError(f"ground_truth must hold some but not all of the {len(edges)} edges, got {n_true}")
    points = {(0.0, 0.0), (1.0, 1.0)}
    for i, mask in enumerate(kept):
        check_tensor(f"kept[{i}]", mask, [len(edges)], dtype="bool")
        points.add((int((mask.cpu() & ~is_true).sum()) / n_false, int((mask.cpu() & is_true).sum()) / n_true))
    frontier, best = [], -1.0
    for fpr, tpr in sorted(points):  # by FPR; keep the points that raise the TPR
        if tpr > best:
            frontier.append((fpr, tpr))
            best = tpr
    return sum((1 - fpr) * (tpr - prev) for (_, prev), (fpr, tpr) in zip([(0.0, 0.0)] + frontier, frontier))


def precision_recall_at_k(scores: Scores, ground_truth: Iterable[Edge], k: int,
                          edges: Sequence[Edge] | None = None) -> tuple[float, float]:
    """(precision, recall) of the top k edges of a ranking.

    scores, ground_truth: as for ``roc_curve``. k: 1 <= k <= number of scored edges; ties at the
    cut keep the order the edges were given in (see ``rank_edges``).
    precision = true edges in the top k / k; recall = true edges in the top k / true edges.
    """
    scored = _score_dict(scores, edges)
    truth = _truth_set(ground_truth, scored)
    check_positive_int("k", k)
    if k > len(scored):
        raise ValueError(f"k must be at most the number of scored edges ({len(scored)}), got {k}")
    hits = sum(edge in truth for edge in rank_edges(scored)[:k])
    return hits / k, hits / len(truth)


# -- against the model --------------------------------------------------------------------------------


def _metric(evaluate: Callable[[frozenset[T]], float | torch.Tensor], kept: frozenset[T]) -> float:
    return as_number("the value evaluate(kept_edges) returned", evaluate(kept))


def _check_callable(name: str, fn: object) -> None:
    if not callable(fn):
        raise TypeError(f"{name} must be a callable evaluate(kept_edges) -> metric, got {type(fn).__name__}")


def faithfulness_curve(evaluate: Callable[[frozenset[Edge]], float | torch.Tensor], scores: Scores,
                       ks: Iterable[int], *, clean: float | torch.Tensor, corrupted: float | torch.Tensor,
                       edges: Sequence[Edge] | None = None) -> list[float]:
    """The fraction of the metric recovered by the top-k edges alone, for each k in ``ks``.

    evaluate: kept_edges (a frozenset of edges) -> the metric (a number or a 1-element tensor)
        of the model with only those edges clean and every other edge patched to its corrupted
        value. It is called once per k, with the top k edges of the ranking.
    scores: as for ``rank_edges``. ks: numbers of edges, each 0 <= k <= number of scored edges.
    clean, corrupted: the metric of the clean and of the corrupted model (keyword-only, so
        they cannot be swapped). They must differ.
    Returns [len(ks)] floats, (m(top k) - corrupted) / (clean - corrupted) via
    ``toykit.metrics.normalize_metric``: 0 at the corrupted model, 1 at the clean one.
    """
    _check_callable("evaluate", evaluate)
    ranking = rank_edges(scores, edges)
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Iterable):
        raise TypeError(f"ks must be an iterable of ints, got {type(ks).__name__}")
    ks = list(ks)
    for k in ks:
        check_non_negative_int("each k in ks", k)
        if k > len(ranking):
            raise ValueError(f"each k in ks must be at most the number of scored edges ({len(ranking)}), got {k}")
    return [normalize_metric(_metric(evaluate, frozenset(ranking[:k])), baseline=corrupted, target=clean)
            for k in ks]


def _check_subset(name: str, subset: Iterable[T], of: frozenset[T], of_name: str) -> frozenset[T]:
    if isinstance(subset, (str, bytes)) or not isinstance(subset, Iterable):
        raise TypeError(f"{name} must hold collections of circuit elements, got {subset!r}")
    subset = frozenset(subset)
    if not subset <= of:
        raise ValueError(f"{name} must hold subsets of {of_name}; {sorted(subset - of, key=repr)[:3]} are not in it")
    return subset


def _as_set(name: str, items: Collection[T]) -> frozenset[T]:
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise TypeError(f"{name} must be a collection of elements (edges or nodes), got {type(items).__name__}")
    return frozenset(items)


def incompleteness_scores(evaluate: Callable[[frozenset[T]], float | torch.Tensor], circuit: Collection[T],
                          all_elements: Collection[T], knockouts: Iterable[Collection[T]]) -> dict[frozenset[T], float]:
    """Wang et al. (2022, Section 4)'s incompleteness |F(C \\ K) - F(M \\ K)| for each K.

    evaluate: kept elements (a frozenset) -> the metric with only those elements kept (the
        rest patched or ablated); F(X) = evaluate(X).
    circuit: C, the circuit's elements (edges, or nodes). all_elements: M, every element of
        the model (the graph's every edge), a superset of C.
    knockouts: the sets K to try, each a subset of C (``all_subsets`` or ``random_subsets``).
    Returns {frozenset(K): |F(C \\ K) - F(M \\ K)|}, in the metric's units (chapter 06 divides
    by F(M)). A complete circuit scores near 0 for every K: what the circuit loses when K goes
    is what the model loses. K = {} gives |F(C) - F(M)|, the faithfulness gap.
    """
    _check_callable("evaluate", evaluate)
    C, M = _as_set("circuit", circuit), _as_set("all_elements", all_elements)
    if not C <= M:
        raise ValueError(f"all_elements must contain the circuit; {sorted(C - M, key=repr)[:3]} are missing")
    cache: dict[frozenset[T], float] = {}

    def F(kept: frozenset[T]) -> float:
        if kept not in cache:
            cache[kept] = _metric(evaluate, kept)
        return cache[kept]

    scores = {}
    for K in knockouts:
        K = _check_subset("knockouts", K, C, "circuit")
        scores[K] = incompleteness(F, C, M, K)
    return scores


def incompleteness(evaluate: Callable[[frozenset[T]], float | torch.Tensor], circuit: frozenset[T],
                   all_elements: frozenset[T], knockout: frozenset[T]) -> float:
    """Wang et al. (2022, Section 4)'s incompleteness of a circuit for one knockout K:
    |F(C \\ K) - F(M \\ K)|, with F(X) = evaluate(X).

    evaluate: kept elements (a frozenset) -> the metric. circuit: C; all_elements: M ⊇ C;
    knockout: K ⊆ C (collections of elements; evaluate is given frozensets). Returns a float
    in the metric's units: what knocking K out of the circuit does, compared with knocking it
    out of the whole model. ``incompleteness_scores`` scores many K at once.
    """
    _check_callable("evaluate", evaluate)
    C, M = _as_set("circuit", circuit), _as_set("all_elements", all_elements)
    if not C <= M:
        raise ValueError(f"all_elements must contain the circuit; {sorted(C - M, key=repr)[:3]} are missing")
    K = _as_set("knockout", knockout)
    if not K <= C:
        raise ValueError(f"knockout must be a subset of the circuit; {sorted(K - C, key=repr)[:3]} are not in it")
    return abs(_metric(evaluate, C - K) - _metric(evaluate, M - K))


def minimality_score(evaluate: Callable[[frozenset[T]], float | torch.Tensor], circuit: Collection[T], element: T,
                     knockouts: Iterable[Collection[T]]) -> float:
    """Wang et al. (2022, Section 4)'s minimality test of one element v of the circuit C.

    evaluate: as for ``incompleteness_scores``. circuit: C. element: v, a member of C.
    knockouts: the sets K to try, each a subset of C \\ {v} (e.g.
    ``all_subsets(C - {v})``); Wang et al. pick one K per head by hand.
    Returns max over K of |F(C \\ (K ∪ {v})) - F(C \\ K)|, in the metric's units: how much v
    matters in the best case. A minimal circuit scores high for every v; an element that no K
    makes matter is redundant.
    """
    _check_callable("evaluate", evaluate)
    C = _as_set("circuit", circuit)
    if element not in C:
        raise ValueError(f"element must be in the circuit, got {element!r}")
    cache: dict[frozenset[T], float] = {}

    def F(kept: frozenset[T]) -> float:
        if kept not in cache:
            cache[kept] = _metric(evaluate, kept)
        return cache[kept]

    best = None
    for K in knockouts:
        K = _check_subset("knockouts", K, C - {element}, "the circuit without element")
        change = abs(F(C - K - {element}) - F(C - K))
        best = change if best is None else max(best, change)
    if best is None:
        raise ValueError("knockouts must hold at least one set K (the empty set counts)")
    return best


def all_subsets(items: Collection[T], max_size: int | None = None) -> list[frozenset[T]]:
    """Every subset of ``items`` with at most ``max_size`` elements (None: all 2^n), smallest first.

    items: n distinct elements. Returns a list of frozensets, the empty set first.
    """
    elements = list(dict.fromkeys(_as_set("items", items)))
    limit = len(elements) if max_size is None else check_non_negative_int("max_size", max_size)
    return [frozenset(combo) for r in range(min(limit, len(elements)) + 1)
            for combo in itertools.combinations(elements, r)]


def random_subsets(items: Collection[T], n_samples: int, *, p: float = 0.5, seed: int | None = None,
                   generator: torch.Generator | None = None) -> list[frozenset[T]]:
    """``n_samples`` random subsets of ``items``, each element kept with probability ``p``.

    For circuits too large for ``all_subsets`` (Wang et al. 2022, Section 4, sample K at
    random among their choices). items: n elements, drawn in a fixed (sorted by repr) order so
    that a seed gives the same subsets whatever the order of ``items``. seed / generator: the
    randomness (one or the other). Returns a list of n_samples frozensets (repeats possible).
    """
    check_positive_int("n_samples", n_samples)
    check_probability("p", p)
    elements = sorted(_as_set("items", items), key=repr)
    g = make_generator(seed, generator)
    keep = torch.rand(n_samples, len(elements), generator=g) < p  # [n_samples, n]
    return [frozenset(e for e, kept in zip(elements, row) if kept) for row in keep.tolist()]
