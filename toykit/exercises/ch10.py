"""Checks for chapter 10, Automated circuit discovery, measured against circuits we know.

Each ``check_<name>(fn)`` runs your ``fn`` and toykit's reference on seeded cases, prints one
line when they agree, and otherwise raises CheckFailure with a hint chosen by recognising the
usual mistakes. References: ``toykit.circuit_discovery`` (graph.edge_count,
edge_patching.patch_receiver_input, acdc.prune_step, acdc.largest_kept_tau, eap.eap_scores,
eap.interpolation_points, evaluation.roc_auc, evaluation.incompleteness). Every exercise has
its library function's signature, so that the library's version can replace yours.

Signatures the checks expect (names of the graph as in ``toykit.circuit_discovery``):

- ``edge_count(n_layers, n_heads, attn_only) -> int``: the number of edges of the graph.
- ``patch_receiver_input(receiver_input, delta, cut) -> receiver_input'``: receiver_input
  [b, p, d_model] or [b, p, n_heads, d_model] (per-head q/k/v inputs); delta [n_senders, b, p,
  d_model] (each sender's output in this run minus on the corrupted run); cut bool
  [n_senders] or [n_senders, n_heads].
- ``prune_step(evaluate, kept, order, current, tau, abs_change) -> (kept', current', changes)``:
  ACDC's inner loop over the edges ``order``, kept bool [n_edges], changes float64 [len(order)].
- ``eap_scores(graph, clean_outputs, corrupted_outputs, grads) -> [n_edges]``: outputs
  [n_senders, b, p, d_model], grads [n_receivers, b, p, d_model].
- ``interpolation_points(clean_embed, corrupted_embed, steps) -> [steps, b, p, d_model]``.
- ``roc_auc(scores, ground_truth, edges) -> float``: scores [n_edges] aligned with edges.
- ``incompleteness(evaluate, circuit, all_elements, knockout) -> float`` (frozensets).
- ``largest_kept_tau(taus, kept) -> [n_edges]``: kept, one bool mask [n_edges] per τ.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from toykit.circuit_discovery.acdc import largest_kept_tau, prune_step
from toykit.circuit_discovery.eap import eap_scores, edge_scores, interpolation_points
from toykit.circuit_discovery.edge_patching import patch_receiver_input
from toykit.circuit_discovery.evaluation import incompleteness, roc_auc
from toykit.circuit_discovery.graph import CircuitGraph, edge_count
from toykit.exercises.checking import Case, ExerciseTable, Mistake, rng, run_check

# exercise id -> its check and toykit's reference (filled by @EXERCISES.check below)
EXERCISES = ExerciseTable()

__all__ = [
    "check_eap_scores",
    "check_edge_count",
    "check_incompleteness",
    "check_interpolation_points",
    "check_largest_kept_tau",
    "check_patch_receiver_input",
    "check_prune_step",
    "check_roc_auc",
]


def _randn(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=rng(seed))


# -- edge_count ------------------------------------------------------------------------------------


def _edge_count_parts(L: int, H: int, attn_only: bool, *, qkv: int = 3, mlp_reads_own_layer: bool = True,
                      embed_to_logits: bool = True) -> int:
    """The closed form with the usual slips switchable: what each mistake computes."""
    M = 0 if attn_only else 1
    heads = qkv * H * L + qkv * H * (H + M) * L * (L - 1) // 2
    own = L if mlp_reads_own_layer else 0
    mlps = M * (L + H * L * (L - 1) // 2 + H * own + L * (L - 1) // 2)
    return heads + mlps + L * (H + M) + (1 if embed_to_logits else 0)


@EXERCISES.check(edge_count)
def check_edge_count(fn: Callable[..., int]) -> None:
    """Check ``edge_count(n_layers, n_heads, attn_only) -> int``: the number of edges (sender,
    receiver) of the graph of a model of that shape. Senders: the embedding, every head, every
    MLP; receivers: each head's q, k and v input, each MLP's input, the logits; an edge wherever
    the receiver reads the residual stream after the sender wrote to it."""

    def case(name: str, n_layers: int, n_heads: int, attn_only: bool) -> Case:
        return Case(name, kwargs={"n_layers": n_layers, "n_heads": n_heads, "attn_only": attn_only})

    mistakes = [
        Mistake("each head has three inputs, its query, key and value, and each is a receiver of its own: every "
                "sender a head reads gives three edges into that head",
                lambda n_layers, n_heads, attn_only: _edge_count_parts(n_layers, n_heads, attn_only, qkv=1)),
        Mistake("the MLP of layer l runs after the attention of the same layer, so it also reads layer l's heads "
                "(not only the layers before it)",
                lambda n_layers, n_heads, attn_only: _edge_count_parts(n_layers, n_heads, attn_only,
                                                                       mlp_reads_own_layer=False)),
        Mistake("the logits read every sender, the embedding included: the direct path from the embedding to the "
                "logits is an edge too",
                lambda n_layers, n_heads, attn_only: _edge_count_parts(n_layers, n_heads, attn_only,
                                                                       embed_to_logits=False)),
        Mistake("ACDC's own code adds an edge from each of a head's q, k and v inputs to the head itself; in this "
                "graph those belong to the head and are not edges",
                lambda n_layers, n_heads, attn_only: edge_count(n_layers, n_heads, attn_only) + 3 * n_layers * n_heads),
        Mistake("heads of the same layer run in parallel: a head does not read the other heads of its own layer",
                lambda n_layers, n_heads, attn_only: edge_count(n_layers, n_heads, attn_only)
                + 3 * n_heads * n_heads * n_layers),
    ]
    cases = [case("2 layers, 4 heads, MLPs", 2, 4, False), case("3 layers, 4 heads, attention only", 3, 4, True),
             case("1 layer, 1 head, attention only", 1, 1, True), case("1 layer, 1 head, MLP", 1, 1, False),
             case("4 layers, 3 heads, MLPs", 4, 3, False), case("GPT-2 small's shape", 12, 12, False)]
    run_check("edge_count", fn, edge_count, cases, mistakes,
              hint="count receiver by receiver: how many senders has each one read by the time it runs? A head of "
                   "layer l reads the embedding and every head and MLP of the earlier layers")


# -- patch_receiver_input --------------------------------------------------------------------------


@EXERCISES.check(patch_receiver_input)
def check_patch_receiver_input(fn: Callable[..., torch.Tensor]) -> None:
    """Check ``patch_receiver_input(receiver_input, delta, cut) -> receiver_input'``:
    receiver_input [b, p, d_model] (an MLP's or the logits' input) or [b, p, n_heads, d_model] (a
    layer's per-head q, k or v inputs); delta [n_senders, b, p, d_model], for each sender read,
    its output in this run minus its output on the corrupted run; cut bool [n_senders] (3-D
    input) or [n_senders, n_heads] (per-head input). Return a new tensor in which each cut
    sender's output in this run is swapped for its corrupted output (per head)."""

    def case(name: str, seed: int, n_senders: int, b: int, p: int, d: int, n_heads: int | None,
             cut: str) -> Case:
        g = rng(seed)
        actual = torch.randn(n_senders, b, p, d, generator=g)
        corrupted = torch.randn(n_senders, b, p, d, generator=g)
        bias = torch.randn(d, generator=g)  # b_O and friends: part of the input, owned by no sender
        stream = actual.sum(0) + bias
        shape = (n_senders,) if n_heads is None else (n_senders, n_heads)
        mask = {"none": torch.zeros(shape, dtype=torch.bool), "all": torch.ones(shape, dtype=torch.bool),
                "some": torch.rand(shape, generator=g) < 0.5}[cut]
        if cut == "some":
            mask.view(-1)[0], mask.view(-1)[-1] = True, False  # some cut, some kept, whatever the draw
        receiver_input = stream if n_heads is None else stream[:, :, None].repeat(1, 1, n_heads, 1)
        return Case(name, (receiver_input, actual - corrupted, mask))

    def every_head(x, delta, cut):
        return patch_receiver_input(x, delta, cut.any(-1, keepdim=True).expand_as(cut) if cut.ndim == 2 else cut)

    mistakes = [
        Mistake("the sign is flipped: a cut sender's output in this run leaves the input and its corrupted "
                "output comes in, so the input loses delta = actual - corrupted",
                lambda x, delta, cut: 2 * x - patch_receiver_input(x, delta, cut)),
        Mistake("only the cut senders change: the receiver keeps what every other sender wrote in this run",
                lambda x, delta, cut: patch_receiver_input(x, delta, torch.ones_like(cut))),
        Mistake("each head reads its own copy of the residual stream: column h of cut says which senders are cut "
                "for head h only, so the other heads keep those senders", every_head),
        Mistake("each cut sender's difference counts in full: sum over the cut senders, don't average",
                lambda x, delta, cut: x - (x - patch_receiver_input(x, delta, cut)) / delta.shape[0]),
    ]
    cases = [case("per-head input, some cut", 0, 5, 2, 3, 8, 3, "some"),
             case("MLP input, some cut", 1, 6, 3, 4, 6, None, "some"),
             case("logits input, every edge cut", 2, 4, 2, 5, 4, None, "all"),
             case("per-head input, nothing cut", 3, 3, 2, 3, 4, 2, "none"),
             case("one sender (embed), cut", 4, 1, 3, 2, 5, 4, "all")]
    run_check("patch_receiver_input", fn, patch_receiver_input, cases, mistakes,
              hint="for each cut edge, the receiver's input loses the sender's output from this run and gains the "
                   "sender's output from the corrupted run, i.e. it loses that sender's delta; return a new tensor")


# -- prune_step ------------------------------------------------------------------------------------


class _ToyMetric:
    """A metric of a circuit (kept mask -> float) standing for a patched forward pass: each cut
    edge i adds weight[i], and cutting both edges of ``pair`` adds ``synergy`` more. Weights
    are multiples of 1/8, so sums are exact and a change equal to τ is exactly τ."""

    def __init__(self, weights: list[float], pair: tuple[int, int], synergy: float) -> None:
        self.weights, self.pair, self.synergy = torch.tensor(weights, dtype=torch.float64), pair, synergy

    def __call__(self, kept: torch.Tensor) -> float:
        cut = ~kept.bool()
        value = float((self.weights * cut).sum())
        return value + (self.synergy if bool(cut[self.pair[0]] and cut[self.pair[1]]) else 0.0)

    def __repr__(self) -> str:
        return f"toy metric (weights {self.weights.tolist()}, synergy {self.synergy} for edges {self.pair})"


def _prune_variant(evaluate, kept, order, current, tau, abs_change, *, against_full: bool = False,
                   strict: bool = True, use_abs: bool | None = None, restore: bool = True):
    """prune_step with the usual slips switchable: what each mistake computes."""
    kept, full = kept.clone(), current
    use_abs = abs_change if use_abs is None else use_abs
    changes = torch.zeros(len(order), dtype=torch.float64)
    for j, i in enumerate(order):
        kept[i] = False
        value = evaluate(kept)
        change = value - (full if against_full else current)
        changes[j] = change
        measured = abs(change) if use_abs else change
        if measured < tau or (not strict and measured == tau):
            current = value
        elif restore:
            kept[i] = True
    return kept, evaluate(kept) if against_full else current, changes


@EXERCISES.check(prune_step)
def check_prune_step(fn: Callable[..., Any]) -> None:
    """Check ``prune_step(evaluate, kept, order, current, tau, abs_change) -> (kept', current',
    changes)``: evaluate(mask) -> float is the metric of a circuit (lower = closer to the model);
    kept bool [n_edges] the current circuit, current its metric; try cutting each edge of
    ``order`` in turn: change = metric without it - metric of the current circuit; cut it when
    change < tau (|change| < tau with abs_change), else put it back. Return the new mask (a new
    tensor), the new circuit's metric and the changes, float64 [len(order)], in order."""

    def case(name: str, seed: int, n: int, tau: float, abs_change: bool, pre_cut: int) -> Case:
        g = rng(seed)
        weights = (torch.randint(-6, 9, (n,), generator=g).double() / 8).tolist()  # multiples of 1/8
        perm = torch.randperm(n, generator=g).tolist()
        weights[perm[0]] = tau  # a change exactly at the threshold: kept, since a cut needs change < τ
        weights[perm[1]] = -1.5  # a cut that moves the circuit far, towards the model
        evaluate = _ToyMetric(weights, (perm[2], perm[3]), synergy=0.75)
        kept = torch.ones(n, dtype=torch.bool)
        kept[perm[n - pre_cut:]] = False  # edges cut earlier (into later receivers)
        order = sorted(perm[: n - pre_cut], reverse=True)
        return Case(name, (evaluate, kept, order, evaluate(kept), tau, abs_change))

    mistakes = [
        Mistake("measure each change against the current circuit, the one pruned so far (it becomes the "
                "circuit without the edge when a cut stays), not against the circuit you started from",
                lambda *a: _prune_variant(*a, against_full=True)),
        Mistake("a cut stays only when the change is strictly below τ: a change equal to τ keeps the edge",
                lambda *a: _prune_variant(*a, strict=False)),
        Mistake("with abs_change=False the change is signed: a cut that brings the circuit closer to the model "
                "(a negative change) always stays; take the absolute value only when abs_change is true",
                lambda *a: _prune_variant(*a, use_abs=not a[5])),
        Mistake("an edge whose cut changes the metric by τ or more goes back into the circuit",
                lambda *a: _prune_variant(*a, restore=False)),
    ]
    cases = [case("signed change", 0, 8, 0.5, False, 2), case("absolute change", 1, 8, 0.5, True, 1),
             case("τ = 0", 2, 6, 0.0, False, 0), case("large τ", 3, 7, 1.0, False, 3),
             case("one edge to try", 4, 5, 0.25, True, 4)]
    run_check("prune_step", fn, prune_step, cases, mistakes,
              hint="visit the edges in the given order; cut each one, measure the metric, compare with the metric "
                   "of the current circuit, and keep the cut only when the change is below τ")


# -- eap_scores ------------------------------------------------------------------------------------


@EXERCISES.check(eap_scores)
def check_eap_scores(fn: Callable[..., torch.Tensor]) -> None:
    """Check ``eap_scores(graph, clean_outputs, corrupted_outputs, grads) -> [n_edges]``: for each
    edge (s, r) of ``graph.edges``, (corrupted_s - clean_s) · grad_r summed over batch,
    positions and d_model; outputs [n_senders, b, p, d_model] in ``graph.senders`` order, grads
    [n_receivers, b, p, d_model] in ``graph.receivers`` order (``graph.sender_index``,
    ``graph.receiver_index`` map names to rows)."""

    def case(name: str, seed: int, shape: tuple[int, int, bool], b: int, p: int, d: int) -> Case:
        graph = CircuitGraph(*shape)
        g = rng(seed)
        clean = torch.randn(len(graph.senders), b, p, d, generator=g)
        corrupted = clean + torch.randn(len(graph.senders), b, p, d, generator=g)
        grads = torch.randn(len(graph.receivers), b, p, d, generator=g)
        return Case(name, (graph, clean, corrupted, grads))

    def mean_over(axis: int) -> Callable[..., torch.Tensor]:
        def wrong(graph, clean, corrupted, grads):
            return eap_scores(graph, clean, corrupted, grads) / clean.shape[axis]
        return wrong

    mistakes = [
        Mistake("the sign matters: cutting the edge moves the receiver's input by corrupted - clean (the "
                "sender's corrupted output minus its clean one), so that the score estimates metric(cut) - "
                "metric(clean)", lambda graph, clean, corrupted, grads: eap_scores(graph, corrupted, clean, grads)),
        Mistake("sum over the positions, don't average: each position's change adds to the metric's change",
                mean_over(2)),
        Mistake("sum over the batch too (the metric already averages over prompts, and its gradient carries "
                "that 1/b)", mean_over(1)),
        Mistake("multiply the gradient by the change of the sender's output between the runs, not by the "
                "output itself", lambda graph, clean, corrupted, grads: edge_scores(graph, corrupted, grads)),
    ]
    cases = [case("2 layers, 2 heads, attention only", 0, (2, 2, True), 2, 3, 4),
             case("1 layer, 2 heads, MLP", 1, (1, 2, False), 3, 2, 5),
             case("2 layers, 1 head, MLPs", 2, (2, 1, False), 1, 4, 3),
             case("3 layers, 2 heads, one prompt", 3, (3, 2, True), 1, 1, 6)]
    run_check("eap_scores", fn, eap_scores, cases, mistakes,
              hint="for each edge (sender, receiver): the sender's output difference between the runs, times the "
                   "gradient at the receiver's input, summed over every axis; in the order of graph.edges")


# -- interpolation_points --------------------------------------------------------------------------


@EXERCISES.check(interpolation_points)
def check_interpolation_points(fn: Callable[..., torch.Tensor]) -> None:
    """Check ``interpolation_points(clean_embed, corrupted_embed, steps) -> [steps, b, p,
    d_model]``: the m = steps points corrupted + (k/m) (clean - corrupted) for k = 1..m, on the
    line from the corrupted to the clean embedding (the last point is the clean one)."""

    def case(name: str, seed: int, steps: int, *shape: int) -> Case:
        return Case(name, (_randn(seed, *shape), _randn(seed + 100, *shape), steps))

    def fractions(clean, corrupted, alphas):
        alphas = alphas.to(clean.dtype).view(-1, *[1] * clean.ndim)
        return corrupted + alphas * (clean - corrupted)

    mistakes = [
        Mistake("m points, both ends included, space the line by 1/(m - 1); EAP-IG's points are k/m for "
                "k = 1..m: the clean end is one of them, the corrupted end is not",
                lambda clean, corrupted, m: fractions(clean, corrupted, torch.linspace(0, 1, m))),
        Mistake("start past the corrupted end and finish at the clean one: the fractions are k/m for k = 1..m "
                "(the corrupted embedding itself, k = 0, is not a point here)",
                lambda clean, corrupted, m: fractions(clean, corrupted, torch.arange(m) / m)),
        Mistake("go from the corrupted embedding towards the clean one: the k-th point is the corrupted "
                "embedding plus k/m of the way to the clean one",
                lambda clean, corrupted, m: fractions(corrupted, clean, torch.arange(1, m + 1) / m)),
        Mistake("there are `steps` points, not steps + 1: leave out the corrupted end (k = 0)",
                lambda clean, corrupted, m: fractions(clean, corrupted, torch.arange(m + 1) / m)),
    ]
    cases = [case("5 steps", 0, 5, 2, 3, 4), case("one step: the clean run", 1, 1, 3, 2, 6),
             case("30 steps", 2, 30, 1, 4, 8), case("2 steps", 3, 2, 2, 2, 3)]
    run_check("interpolation_points", fn, interpolation_points, cases, mistakes,
              hint="walk the straight line from the corrupted embedding to the clean one in `steps` equal steps, "
                   "and stack the points you reach along a new first axis")


# -- roc_auc ---------------------------------------------------------------------------------------


def _pairwise_auc(scores: torch.Tensor, truth: frozenset, edges: Sequence, tie: float) -> float:
    is_true = torch.tensor([e in truth for e in edges])
    pos, neg = scores[is_true][:, None], scores[~is_true][None, :]
    wins = (pos > neg).double() + tie * (pos == neg).double()
    return float(wins.mean())


def _ordinal_auc(scores: torch.Tensor, truth: frozenset, edges: Sequence) -> float:
    """Mann-Whitney with ranks from a sort, ties broken by position instead of averaged."""
    is_true = torch.tensor([e in truth for e in edges])
    ranks = torch.empty(len(scores), dtype=torch.float64)
    ranks[torch.argsort(scores, stable=True)] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    n_pos, n_neg = int(is_true.sum()), int((~is_true).sum())
    return float((ranks[is_true].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@EXERCISES.check(roc_auc)
def check_roc_auc(fn: Callable[..., float]) -> None:
    """Check ``roc_auc(scores, ground_truth, edges) -> float``: scores float [n_edges] aligned
    with ``edges`` (a list of (sender, receiver) tuples), ground_truth a frozenset of some of
    them; the area under the ROC curve: the probability that a random true edge scores above a
    random other edge, a tie counting one half."""

    edges = CircuitGraph(2, 2, True).edges

    def case(name: str, seed: int, kind: str, n_true: int) -> Case:
        g = rng(seed)
        perm = torch.randperm(len(edges), generator=g)
        truth = frozenset(edges[i] for i in perm[:n_true].tolist())
        is_true = torch.tensor([e in truth for e in edges])
        if kind == "ties":  # few distinct values: many ties, true edges a bit higher
            scores = torch.randint(0, 4, (len(edges),), generator=g).double() + is_true.double()
        elif kind == "perfect":
            scores = torch.rand(len(edges), generator=g, dtype=torch.float64) + 2 * is_true.double()
        elif kind == "all tied":
            scores = torch.full((len(edges),), 0.3, dtype=torch.float64)
        else:  # "random"
            scores = torch.randn(len(edges), generator=g, dtype=torch.float64) + 0.5 * is_true.double()
        return Case(name, (scores, truth, list(edges)))

    mistakes = [
        Mistake("a tie between a true edge and another edge counts one half, not a win (the ROC curve crosses "
                "a group of tied edges diagonally)",
                lambda s, t, e: _pairwise_auc(s, t, e, tie=1.0)),
        Mistake("a tie between a true edge and another edge counts one half, not a loss (the ROC curve crosses "
                "a group of tied edges diagonally)",
                lambda s, t, e: _pairwise_auc(s, t, e, tie=0.0)),
        Mistake("tied scores must share one rank (their average): ranks from a sort break ties by position, "
                "which depends on the order the edges were listed in", _ordinal_auc),
        Mistake("higher scores mean 'more likely in the circuit': you measured how often the other edges "
                "outrank the true ones (1 - AUC)",
                lambda s, t, e: 1.0 - roc_auc(s, t, e)),
    ]
    cases = [case("many ties", 0, "ties", 9), case("random scores", 1, "random", 12),
             case("a perfect ranking", 2, "perfect", 5), case("every score tied", 3, "all tied", 7),
             case("one true edge, ties", 4, "ties", 1)]
    run_check("roc_auc", fn, roc_auc, cases, mistakes, atol=1e-9, rtol=1e-9,
              hint="compare every (true edge, other edge) pair: a win counts 1, a tie one half; the AUC is the "
                   "mean over all such pairs (equivalently, the area under the ROC curve by trapezoids)")


# -- incompleteness --------------------------------------------------------------------------------


class _SetMetric:
    """F(X) for a set X of head names: each head adds its weight, and the pair ``pair`` adds
    ``synergy`` when both are in X (so knocking out one of them changes the other's effect)."""

    def __init__(self, weights: dict[str, float], pair: tuple[str, str], synergy: float) -> None:
        self.weights, self.pair, self.synergy = weights, pair, synergy

    def __call__(self, kept: frozenset) -> float:
        value = sum(self.weights[x] for x in kept)
        return value + (self.synergy if self.pair[0] in kept and self.pair[1] in kept else 0.0)

    def __repr__(self) -> str:
        return f"toy metric (weights {self.weights}, synergy {self.synergy} for {self.pair})"


@EXERCISES.check(incompleteness)
def check_incompleteness(fn: Callable[..., float]) -> None:
    """Check ``incompleteness(evaluate, circuit, all_elements, knockout) -> float``: Wang et al.
    (2022, Section 4)'s |F(C \\ K) - F(M \\ K)| with F = evaluate (a frozenset of kept elements
    -> the metric), C = circuit, M = all_elements ⊇ C, K = knockout ⊆ C, all frozensets."""

    heads = [f"a{l}.h{h}" for l in range(2) for h in range(3)]

    def case(name: str, seed: int, circuit: list[int], knockout: list[int], synergy: float) -> Case:
        g = rng(seed)
        weights = {x: float(w) for x, w in zip(heads, (torch.randint(-4, 9, (len(heads),), generator=g) / 4).tolist())}
        evaluate = _SetMetric(weights, (heads[circuit[0]], heads[-1]), synergy)
        C = frozenset(heads[i] for i in circuit)
        return Case(name, (evaluate, C, frozenset(heads), frozenset(heads[i] for i in knockout)))

    mistakes = [
        Mistake("take the absolute value: incompleteness is how far the circuit's response to K is from the "
                "model's, in either direction",
                lambda F, C, M, K: F(C - K) - F(M - K)),
        Mistake("knock K out of the whole model too: compare the circuit without K with the model without K, "
                "not with the intact model",
                lambda F, C, M, K: abs(F(C - K) - F(M))),
        Mistake("K is what gets knocked out: remove it from the circuit and from the model before evaluating",
                lambda F, C, M, K: abs(F(C) - F(M))),
        Mistake("evaluate takes the elements that are KEPT: pass the circuit without K (and the model without "
                "K), not K itself", lambda F, C, M, K: abs(F(K) - F(M - K))),
    ]
    cases = [case("a knockout in the circuit", 0, [0, 2, 4], [0], 1.5),
             case("an empty knockout: the faithfulness gap", 1, [1, 3, 5], [], 0.5),
             case("the whole circuit knocked out", 2, [0, 1, 4], [0, 1, 4], -1.25),
             case("the circuit is the model", 3, list(range(6)), [2, 5], 2.0),
             case("a negative difference", 4, [2, 3], [3], -2.0)]
    run_check("incompleteness", fn, incompleteness, cases, mistakes,
              hint="F takes the set of elements kept. Knock K out of the circuit and, separately, out of the whole "
                   "model; the incompleteness is the size of the difference between the two metrics")


# -- largest_kept_tau ------------------------------------------------------------------------------


@EXERCISES.check(largest_kept_tau)
def check_largest_kept_tau(fn: Callable[..., torch.Tensor]) -> None:
    """Check ``largest_kept_tau(taus, kept) -> float64 [n_edges]``: taus a list of thresholds of
    an ACDC sweep (any order), kept a list of one bool mask [n_edges] per threshold (the circuit
    found at it); per edge, the largest τ at which it was kept, -1 where no run kept it."""

    def case(name: str, seed: int, taus: list[float], n_edges: int) -> Case:
        g = rng(seed)
        kept = [torch.rand(n_edges, generator=g) < 0.6 - 0.1 * i for i in range(len(taus))]
        kept[0][0], kept[-1][1] = True, True  # edge 0 kept at the first τ, edge 1 at the last
        for mask in kept:
            mask[-1] = False  # an edge no run keeps
        return Case(name, (taus, kept))

    def count(taus, kept):
        n = torch.stack(kept).double().sum(0)
        return torch.where(n > 0, n, torch.full_like(n, -1.0))

    def smallest(taus, kept):
        score = torch.full(kept[0].shape, -1.0, dtype=torch.float64)
        for tau, mask in sorted(zip(taus, kept), key=lambda run: -run[0]):  # the smallest τ written last
            score = torch.where(mask, torch.full_like(score, tau), score)
        return score

    def last_kept(taus, kept):  # assumes the taus are sorted
        score = torch.full(kept[0].shape, -1.0, dtype=torch.float64)
        for tau, mask in zip(taus, kept):
            score = torch.where(mask, torch.full_like(score, tau), score)
        return score

    mistakes = [
        Mistake("the score is the LARGEST τ at which the edge survives (an edge that survives strong pruning "
                "matters most), not the smallest",
                smallest),
        Mistake("the score is a threshold, not a count: how many runs kept an edge depends on how the sweep's "
                "thresholds were spaced", count),
        Mistake("an edge that no run kept must rank below one kept only at τ = 0: give it -1, not 0",
                lambda taus, kept: largest_kept_tau(taus, kept).clamp(min=0.0)),
        Mistake("the thresholds come in any order: take the largest τ at which the edge was kept, not the τ of "
                "the last run that kept it", last_kept),
    ]
    cases = [case("unsorted thresholds", 0, [0.1, 0.0, 0.4, 0.2], 12),
             case("sorted thresholds", 1, [0.0, 0.05, 0.5, 1.0, 2.0], 15),
             case("one run", 2, [0.3], 6), case("descending", 3, [3.0, 1.0, 0.5], 9)]
    run_check("largest_kept_tau", fn, largest_kept_tau, cases, mistakes,
              hint="for each edge, look at every run that kept it and take the largest of their thresholds; an "
                   "edge that no run kept gets -1")
