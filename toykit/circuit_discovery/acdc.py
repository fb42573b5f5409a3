"""ACDC, automatic circuit discovery (Conmy et al. 2023, Section 3 and Algorithm 1): prune the
edges of the graph one at a time, keeping a cut whenever the output barely moves.

Start from the full graph H = G. Visit the receivers from the output backwards (reverse
topological order); for each edge (s, r) into the current receiver, cut it and measure

    change = metric(H without (s, r)) - metric(H)

against the **current, already pruned** circuit H, not against the full model. If the change
is below the threshold τ the cut stays (H loses the edge); otherwise the edge goes back. The
default metric is the KL divergence KL(clean model ‖ circuit) of the next-token distribution
at the answer position (the metric of Algorithm 1), so a cut that makes the circuit closer
to the model (change < 0) is always kept. Every cut edge takes its sender's value from the
corrupted run (``toykit.circuit_discovery.edge_patching``).

Each tried edge costs one forward pass. A node none of whose outputs is still in the circuit
can change nothing, so its incoming edges are cut without a pass (their score is 0, exactly
the change a pass would measure in exact arithmetic).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from toykit.circuit_discovery.edge_patching import EdgePatcher, graph_switches
from toykit.circuit_discovery.graph import CircuitGraph, Edge
from toykit.metrics import as_number
from toykit.patching import kl_divergence
from toykit.validation import check_bool, check_tensor

__all__ = ["ACDCResult", "acdc", "acdc_sweep", "largest_kept_tau", "prune_step", "sweep_is_nested", "sweep_scores"]

#: Setup passes of every ACDC run: the clean run (reference logits) and the corrupted run
#: (sender outputs to patch in).
SETUP_PASSES = 2


@dataclass
class ACDCResult:
    """What one ACDC run found.

    kept: bool [n_edges], the circuit, aligned with ``graph.edges`` (``kept_edges`` lists it).
    scores: float64 [n_edges], the metric change measured when the edge was tried (0 for the
        edges of dead nodes, cut without a pass); ``tried`` marks the edges that got a pass.
    history: (edge, change, cut) in the order tried.
    metric_full / metric_circuit: the metric with every edge, and with only the kept ones.
    n_forward: forward passes, the 2 setup passes (clean and corrupted runs) included.
    seconds: wall time of the whole call.
    """

    graph: CircuitGraph
    tau: float
    kept: torch.Tensor
    scores: torch.Tensor
    tried: torch.Tensor
    metric_full: float
    metric_circuit: float
    n_forward: int
    seconds: float
    history: list[tuple[Edge, float, bool]] = field(default_factory=list, repr=False)

    @property
    def kept_edges(self) -> list[Edge]:
        return self.graph.edges_in(self.kept)

    @property
    def n_kept(self) -> int:
        return int(self.kept.sum())

    def __repr__(self) -> str:
        return (f"ACDCResult(tau={self.tau:g}: {self.n_kept}/{len(self.graph.edges)} edges kept, "
                f"metric {self.metric_full:.4g} -> {self.metric_circuit:.4g}, {self.n_forward} forward passes, "
                f"{self.seconds:.2f} s)")


def _check_tau(tau: object, name: str = "tau") -> float:
    if not isinstance(tau, (int, float)) or isinstance(tau, bool) or math.isnan(tau) or tau < 0:
        raise ValueError(f"{name} must be a number >= 0 (the threshold on the metric change), got {tau!r}")
    return float(tau)


def _setup(model: Any, clean_tokens: torch.Tensor, corrupted_tokens: torch.Tensor,
           metric: Callable[[torch.Tensor], Any] | None, pos: int | torch.Tensor | None,
           graph: CircuitGraph | None) -> tuple[EdgePatcher, Callable[[torch.Tensor], float], float]:
    """The patcher (corrupted run done), the metric as logits -> float, and its clean value."""
    patcher = EdgePatcher(model, clean_tokens, corrupted_tokens, graph)  # the 2 setup passes
    clean_logits = patcher.clean_logits
    if metric is None:
        def distance(logits: torch.Tensor) -> float:
            return kl_divergence(logits, clean_logits, pos=pos).item()
        fn = distance
    elif not callable(metric):
        raise TypeError(f"metric must be None (KL divergence to the clean run) or a callable "
                        f"logits [batch, pos, d_vocab] -> scalar, got {type(metric).__name__}")
    else:
        def fn(logits: torch.Tensor) -> float:
            return as_number("metric(logits)", metric(logits))
    return patcher, fn, fn(clean_logits)


def prune_step(evaluate: Callable[[torch.Tensor], float], kept: torch.Tensor, order: Sequence[int], current: float,
               tau: float, abs_change: bool = False) -> tuple[torch.Tensor, float, torch.Tensor]:
    """ACDC's inner loop (Conmy et al. 2023, Algorithm 1): try to cut each edge of ``order``
    in turn from the current circuit.

    evaluate: a bool mask [n_edges] of kept edges -> the metric of that circuit (a float; lower
        means closer to the model, e.g. the KL divergence to the clean run).
    kept: bool [n_edges], the current circuit; current: its metric, evaluate(kept).
    order: the indices of the edges to try, in that order (ACDC: the edges into one receiver,
        latest sender first); each must be kept.
    tau: the threshold τ. An edge is cut when change < τ (|change| < τ with ``abs_change``),
        change = metric without the edge - metric of the current circuit, the circuit as
        pruned so far (not the full model); then that circuit becomes the current one.
    Returns (the new kept mask, a new tensor: ``kept`` is left unchanged; the metric of the new
    circuit; the changes, float64 [len(order)], in the order tried).
    """
    if not callable(evaluate):
        raise TypeError(f"evaluate must be a callable kept mask -> metric, got {type(evaluate).__name__}")
    check_tensor("kept", kept, [None], dtype="bool")
    if isinstance(order, (str, bytes)) or not isinstance(order, Sequence) \
            or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(kept) for i in order):
        raise ValueError(f"order must be a list of edge indices in [0, {len(kept)}), got {order!r:.80}")
    tau, abs_change = _check_tau(tau), check_bool("abs_change", abs_change)
    current = as_number("current", current)
    kept = kept.clone()
    changes = torch.zeros(len(order), dtype=torch.float64)
    for j, i in enumerate(order):
        kept[i] = False
        value = evaluate(kept)
        change = value - current  # against the current circuit, not the full model
        changes[j] = change
        if (abs(change) if abs_change else change) < tau:
            current = value  # the cut stays
        else:
            kept[i] = True
    return kept, current, changes


def _prune(patcher: EdgePatcher, metric: Callable[[torch.Tensor], float], full_value: float, tau: float,
           abs_change: bool, skip_dead_nodes: bool) -> ACDCResult:
    """Algorithm 1 of Conmy et al. (2023) on a prepared patcher."""
    start, passes_before = time.perf_counter(), patcher.n_forward
    g = patcher.graph
    n = len(g.edges)
    kept = torch.ones(n, dtype=torch.bool)
    scores = torch.zeros(n, dtype=torch.float64)
    tried = torch.zeros(n, dtype=torch.bool)
    history: list[tuple[Edge, float, bool]] = []
    current = full_value  # the metric of the current circuit
    with graph_switches(patcher.model):  # once, rather than once per pass
        for receiver in reversed(g.receivers):  # from the output backwards
            node = g.node_of(receiver)
            incoming = list(reversed(g.edges_into(receiver)))  # latest sender first
            if skip_dead_nodes and node is not None and not kept[g.edges_from(node)].any():
                kept[incoming] = False  # nothing reads this node any more: its inputs cannot matter
                continue
            kept, current, changes = prune_step(lambda mask: metric(patcher.run(mask)), kept, incoming, current,
                                                tau, abs_change)
            for i, change in zip(incoming, changes.tolist()):
                scores[i], tried[i] = change, True
                history.append((g.edges[i], change, not bool(kept[i])))
    n_forward = SETUP_PASSES + patcher.n_forward - passes_before
    return ACDCResult(g, tau, kept, scores, tried, full_value, current, n_forward,
                      time.perf_counter() - start, history)


def acdc(
    model: Any,
    clean_tokens: torch.Tensor,
    corrupted_tokens: torch.Tensor,
    tau: float,
    *,
    metric: Callable[[torch.Tensor], Any] | None = None,
    pos: int | torch.Tensor | None = -1,
    abs_change: bool = False,
    graph: CircuitGraph | None = None,
    skip_dead_nodes: bool = True,
) -> ACDCResult:
    """Find a circuit with ACDC (Conmy et al. 2023, Algorithm 1).

    clean_tokens, corrupted_tokens: [b, p], aligned position by position.
    tau: the threshold τ >= 0; a cut stays when it changes the metric by less than τ.
    metric: None for KL(clean model ‖ circuit) at ``pos`` (an int, an int tensor [b] or None
        for the mean over positions; see ``toykit.patching.kl_divergence``). Otherwise a
        callable logits [b, p, d_vocab] -> scalar read as a distance (lower = closer to the
        model), e.g. minus a logit difference.
    abs_change: cut when |change| < τ instead of change < τ, for a task metric whose moves in
        both directions matter (the ACDC code's ``abs_value_threshold`` option).
    skip_dead_nodes: cut the inputs of a node whose outputs are all cut without a forward pass.
    Returns an ``ACDCResult`` (kept edges, per-edge scores, forward passes, seconds).
    """
    start = time.perf_counter()
    tau = _check_tau(tau)
    abs_change, skip_dead_nodes = check_bool("abs_change", abs_change), check_bool("skip_dead_nodes", skip_dead_nodes)
    patcher, fn, full_value = _setup(model, clean_tokens, corrupted_tokens, metric, pos, graph)
    result = _prune(patcher, fn, full_value, tau, abs_change, skip_dead_nodes)
    result.seconds = time.perf_counter() - start
    return result


def acdc_sweep(
    model: Any,
    clean_tokens: torch.Tensor,
    corrupted_tokens: torch.Tensor,
    taus: Sequence[float],
    *,
    metric: Callable[[torch.Tensor], Any] | None = None,
    pos: int | torch.Tensor | None = -1,
    abs_change: bool = False,
    graph: CircuitGraph | None = None,
    skip_dead_nodes: bool = True,
) -> list[ACDCResult]:
    """``acdc`` for each threshold in ``taus``, sharing the clean and corrupted runs (Conmy et
    al. 2023 draw their ROC curves from such a sweep, Section 4). Each result counts the 2
    shared setup passes in its ``n_forward``; its ``seconds`` excludes them."""
    if isinstance(taus, (int, float)) or not isinstance(taus, Sequence) or not taus:
        raise TypeError(f"taus must be a non-empty list of thresholds, got {taus!r}")
    values = [_check_tau(t, f"taus[{i}]") for i, t in enumerate(taus)]
    abs_change, skip_dead_nodes = check_bool("abs_change", abs_change), check_bool("skip_dead_nodes", skip_dead_nodes)
    patcher, fn, full_value = _setup(model, clean_tokens, corrupted_tokens, metric, pos, graph)
    return [_prune(patcher, fn, full_value, tau, abs_change, skip_dead_nodes) for tau in values]


def sweep_scores(results: Sequence[ACDCResult]) -> torch.Tensor:
    """One ranking from a τ sweep: per edge, the largest τ at which ACDC kept it, −1 where no
    run kept it. float64 [n_edges], aligned with ``graph.edges``.

    Conmy et al. (2023, Section 4) draw ACDC's ROC curve from the kept sets of a sweep; when
    those sets are nested (``sweep_is_nested``), this score's ROC curve passes exactly through
    each run's (FPR, TPR) point, so ``evaluation.roc_auc`` of it is the sweep's AUC.
    """
    if not isinstance(results, Sequence) or not results or not all(isinstance(r, ACDCResult) for r in results):
        raise TypeError(f"results must be a non-empty list of ACDCResult (from acdc_sweep), got {results!r:.80}")
    return largest_kept_tau([r.tau for r in results], [r.kept for r in results])


def largest_kept_tau(taus: Sequence[float], kept: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per edge, the largest τ of a sweep at which the edge was kept, −1 where no run kept it.

    taus: the sweep's thresholds, in any order, each >= 0. kept: one bool mask [n_edges] per
    threshold, the circuit found at that τ. Returns float64 [n_edges] (−1 ranks an edge that
    was never kept below one kept at τ = 0).
    """
    if isinstance(taus, (int, float)) or not isinstance(taus, Sequence) or not taus:
        raise TypeError(f"taus must be a non-empty list of thresholds, got {taus!r:.80}")
    if not isinstance(kept, Sequence) or len(kept) != len(taus):
        raise ValueError(f"kept must hold one mask per threshold ({len(taus)}), got {kept!r:.80}")
    values = [_check_tau(t, f"taus[{i}]") for i, t in enumerate(taus)]
    dims: dict[str, int] = {}
    for i, mask in enumerate(kept):
        check_tensor(f"kept[{i}]", mask, ["n_edges"], dtype="bool", dims=dims)
    score = torch.full((dims["n_edges"],), -1.0, dtype=torch.float64)
    for tau, mask in zip(values, kept):
        score = torch.where(mask.cpu(), torch.clamp(score, min=tau), score)
    return score


def sweep_is_nested(results: Sequence[ACDCResult]) -> bool:
    """Whether each larger τ of a sweep keeps a subset of what every smaller τ kept."""
    ordered = sorted(results, key=lambda r: r.tau)
    return all(bool((b.kept <= a.kept).all()) for a, b in zip(ordered, ordered[1:]))
