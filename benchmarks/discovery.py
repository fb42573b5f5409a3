"""Automated circuit discovery: what ACDC and EAP cost, and (with ``--targets``) how well they
recover the three ground truths of ``toykit.circuit_discovery.planted``.

Benchmark (``run``): on 40 TinyLang IOI prompts (one template, with their ABC corruptions) and
the shipped TinyLang model (262 edges),

- one ACDC run (KL divergence at the answer position, τ = ``IOI_TAU``): seconds, and its
  forward passes (target: at most 60 s on 2 cores);
- EAP on the logit difference (one corrupted forward pass, one clean forward and backward
  pass): seconds (target: at most 2 s), and EAP-IG with 30 steps for reference;
- the cost of one edge-patched forward pass (a random half of the edges cut) as a ratio to a
  plain forward pass of the same prompts, timed side by side in alternating rounds.

Measurements (``measure`` / ``--targets``): ROC AUCs of ACDC, EAP and EAP-IG against each
ground truth (planted induction circuit, ``attn-only-2l`` induction, TinyLang IOI), a random
ranking's AUC as the baseline, the Spearman correlation of EAP with ACDC on the planted
circuit, and faithfulness (fraction of the logit difference recovered) against the number of
edges kept on TinyLang IOI.

ACDC's ranking rule follows Conmy et al. (2023, Section 4), who sweep τ and plot the true- and
false-positive rates of the kept edges: here each edge scores the largest τ of the sweep at
which ACDC keeps it (-1 if it is never kept), so the ROC curve of that score passes through
the sweep's points (exactly, when the kept sets are nested, which ``measure`` checks). The
pessimistic (staircase) area (``frontier_auc``) of the sweep's Pareto frontier, the rule of the ACDC code, is
reported too. EAP and EAP-IG rank by |score|.

    .venv/bin/python -m benchmarks.discovery [--quick]
    .venv/bin/python -m benchmarks.discovery --targets
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from benchmarks.common import figure, interleaved, median, paired_ratio, plural, time_calls
from toykit import pretrained
from toykit.circuit_discovery import (
    CircuitGraph,
    EdgePatcher,
    acdc,
    acdc_sweep,
    attn_only_2l_induction_truth,
    eap,
    eap_ig,
    faithfulness_curve,
    frontier_auc,
    induction_logprob,
    planted_induction_circuit,
    roc_auc,
    roc_curve,
    sweep_is_nested,
    sweep_scores,
    tinylang_ioi_prompts,
    tinylang_ioi_truth,
)
from toykit.patching import logit_diff_metric
from toykit.ranks import spearman
from toykit.tasks.repeated_tokens import generate_repeated_tokens
from toykit.transformer import HookedTransformer

#: τ sweeps (KL divergence in nats). The planted and induction models move the KL by whole
#: nats; the IOI answer distribution by less, so its sweep goes lower.
TAUS = [0.0, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
#: The threshold of the timed ACDC run on TinyLang IOI.
IOI_TAU = 0.01
ACDC_TARGET_S, EAP_TARGET_S = 60.0, 2.0


# -- the three tasks ----------------------------------------------------------------------------------


@dataclass
class Task:
    """A model, aligned clean and corrupted prompts [b, p], a differentiable task metric
    logits -> 0-dim tensor (higher = the clean behaviour), the KL position for ACDC and the
    ground truth."""

    name: str
    model: HookedTransformer
    clean: torch.Tensor
    corrupted: torch.Tensor
    metric: Callable[[torch.Tensor], torch.Tensor]
    kl_pos: int | torch.Tensor | None
    truth: frozenset
    constant: frozenset


def planted_task(batch: int = 32, seq_len: int = 4, d_vocab: int = 80) -> Task:
    planted = planted_induction_circuit(d_vocab, seq_len, device="cpu")
    clean = generate_repeated_tokens(batch, seq_len, d_vocab, seed=0)
    corrupted = generate_repeated_tokens(batch, seq_len, d_vocab, seed=1)
    return Task("planted induction", planted.model, clean, corrupted, induction_logprob(clean, seq_len), None,
                planted.edges, planted.constant_edges)


def induction_task(batch: int = 20, seq_len: int = 32) -> Task:
    model = pretrained.load("attn-only-2l", device="cpu")
    clean = generate_repeated_tokens(batch, seq_len, model.cfg.d_vocab, seed=0)
    corrupted = generate_repeated_tokens(batch, seq_len, model.cfg.d_vocab, seed=1)
    truth = attn_only_2l_induction_truth()
    return Task("attn-only-2l induction", model, clean, corrupted, induction_logprob(clean, seq_len), None,
                truth.edges, truth.constant_edges)


def ioi_task(n_prompts: int = 40) -> Task:
    """TinyLang IOI prompts of one template (so one length) with their ABC corruptions, as in
    chapter 06; the metric is the logit difference (IO minus S) at the answer position."""
    model = pretrained.load("tinylang", device="cpu")
    clean, corrupted = tinylang_ioi_prompts(n_prompts)
    metric = logit_diff_metric(clean.label_ids("io"), clean.label_ids("s"), pos=clean.answer_pos)
    truth = tinylang_ioi_truth()
    return Task("TinyLang IOI", model, clean.tokens, corrupted.tokens, metric, clean.answer_pos,
                truth.edges, truth.constant_edges)


# -- rankings and their quality --------------------------------------------------------------------------


def random_auc(graph: CircuitGraph, truth: frozenset, n: int = 200, seed: int = 0) -> float:
    """The mean AUC of ``n`` random rankings (the baseline: 0.5 in expectation)."""
    g = torch.Generator().manual_seed(seed)
    return sum(roc_auc(torch.rand(len(graph), generator=g, dtype=torch.float64), truth, graph.edges)
               for _ in range(n)) / n


# -- the measurements ---------------------------------------------------------------------------------------


def measure_task(task: Task, taus: Sequence[float] = TAUS, ig_steps: int = 30) -> dict:
    """AUCs of ACDC (τ sweep, KL), EAP and EAP-IG (|score| on the task metric), a random ranking's
    AUC, and the Spearman correlations of EAP with ACDC's per-edge scores."""
    graph = CircuitGraph.from_model(task.model)
    start = time.perf_counter()
    sweep = acdc_sweep(task.model, task.clean, task.corrupted, list(taus), pos=task.kl_pos, graph=graph)
    acdc_seconds = time.perf_counter() - start
    # ACDC with the task metric as a distance (minus the metric), at τ = 0: every edge's signed
    # change, comparable with EAP's first-order estimate of the same change.
    task_run = acdc(task.model, task.clean, task.corrupted, 0.0, metric=lambda lg: -task.metric(lg),
                    graph=graph, skip_dead_nodes=False)
    scores_eap = eap(task.model, task.clean, task.corrupted, task.metric, graph=graph)
    scores_ig = eap_ig(task.model, task.clean, task.corrupted, task.metric, steps=ig_steps, graph=graph)
    sweep_score = sweep_scores(sweep)
    fpr, tpr, _ = roc_curve(sweep_score, task.truth, graph.edges)
    out = {
        "task": task.name, "n_edges": len(graph), "n_true": len(task.truth), "prompts": list(task.clean.shape),
        "acdc_sweep_seconds": round(acdc_seconds, 2),
        "acdc_kept_by_tau": {f"{t:g}": r.n_kept for t, r in zip(taus, sweep)},
        "acdc_true_kept_by_tau": {f"{t:g}": sum(e in task.truth for e in r.kept_edges) for t, r in zip(taus, sweep)},
        "acdc_sweep_nested": sweep_is_nested(sweep),
        "auc_acdc_sweep": roc_auc(sweep_score, task.truth, graph.edges),
        "auc_acdc_sweep_pessimistic": frontier_auc([r.kept for r in sweep], task.truth, graph.edges),
        "roc_acdc_sweep": [(round(f, 3), round(t, 3)) for f, t in zip(fpr.tolist(), tpr.tolist())],
        "auc_acdc_single_run_abs_score": roc_auc(sweep[0].scores.abs(), task.truth, graph.edges),
        "auc_acdc_task_metric_abs_score": roc_auc(task_run.scores.abs(), task.truth, graph.edges),
        "auc_eap": roc_auc(scores_eap.abs(), task.truth, graph.edges),
        "auc_eap_ig": roc_auc(scores_ig.abs(), task.truth, graph.edges),
        "auc_random_mean": random_auc(graph, task.truth),
        "spearman_eap_vs_acdc_task_metric": spearman(scores_eap, -task_run.scores),
        "spearman_abs_eap_vs_abs_acdc_task_metric": spearman(scores_eap.abs(), task_run.scores.abs()),
        "spearman_abs_eap_vs_acdc_kl_tau0": spearman(scores_eap.abs(), sweep[0].scores.abs()),
        "spearman_abs_eap_vs_acdc_sweep_score": spearman(scores_eap.abs(), sweep_score),
    }
    return out | {"_scores": {"eap": scores_eap, "eap_ig": scores_ig, "acdc_sweep": sweep_score,
                              "acdc_task": task_run.scores, "acdc_kl_tau0": sweep[0].scores}, "_graph": graph}


def faithfulness(task: Task, rankings: dict[str, torch.Tensor], graph: CircuitGraph,
                 ks: Sequence[int]) -> dict:
    """Fraction of the task metric recovered by each ranking's top k edges (all others patched
    from the corrupted prompts), for each k; and by the ground truth itself."""
    patcher = EdgePatcher(task.model, task.clean, task.corrupted, graph)

    def evaluate(kept: frozenset) -> float:
        return task.metric(patcher.run(graph.mask(kept))).item()

    clean, corrupted = evaluate(frozenset(graph.edges)), evaluate(frozenset())
    curves = {name: faithfulness_curve(evaluate, scores, ks, clean=clean, corrupted=corrupted, edges=graph.edges)
              for name, scores in rankings.items()}

    def recovered(edges: frozenset) -> float:
        return (evaluate(edges) - corrupted) / (clean - corrupted)

    return {"metric_clean": clean, "metric_corrupted": corrupted, "ks": list(ks), "curves": curves,
            "truth_recovers": recovered(task.truth),
            "truth_and_constant_recover": recovered(task.truth | task.constant),
            "smallest_k_reaching_0.8": {name: next((k for k, f in zip(ks, c) if f >= 0.8), None)
                                        for name, c in curves.items()}}


def measure() -> dict:
    """Every number of the report (several minutes on 2 loaded cores)."""
    torch.manual_seed(0)
    results = {}
    for make in (planted_task, induction_task, ioi_task):
        task = make()
        m = measure_task(task)
        scores, graph = m.pop("_scores"), m.pop("_graph")
        if task.name == "TinyLang IOI":
            g = torch.Generator().manual_seed(0)
            rankings = {"acdc_sweep": scores["acdc_sweep"], "acdc_kl_tau0_abs": scores["acdc_kl_tau0"].abs(),
                        "acdc_task_abs": scores["acdc_task"].abs(), "eap_abs": scores["eap"].abs(),
                        "eap_ig_abs": scores["eap_ig"].abs(), "random": torch.rand(len(graph), generator=g)}
            m["faithfulness"] = faithfulness(task, rankings, graph, list(range(0, len(graph) + 1)))
        results[task.name] = m
    return results


# -- the benchmark ---------------------------------------------------------------------------------------------


def run(quick: bool = False) -> dict:
    """{"figures": [...], "details": {...}}; quick: one repeat and fewer timing rounds."""
    repeats, rounds = (1, 5) if quick else (3, 21)
    threads = torch.get_num_threads()
    task = ioi_task()
    model, graph = task.model, CircuitGraph.from_model(task.model)
    shape = f"{len(graph)} edges, {task.clean.shape[0]} prompts of {task.clean.shape[1]} tokens"
    note = f"the shipped TinyLang model; median of {repeats}; {plural(threads, 'thread')}"

    last: dict = {}

    def run_acdc() -> None:
        last["acdc"] = acdc(model, task.clean, task.corrupted, IOI_TAU, pos=task.kl_pos, graph=graph)

    acdc_s = median(time_calls(run_acdc, repeats=repeats, warmup=0))
    eap_s = median(time_calls(lambda: eap(model, task.clean, task.corrupted, task.metric, graph=graph),
                              repeats=repeats))
    ig_s = median(time_calls(lambda: eap_ig(model, task.clean, task.corrupted, task.metric, graph=graph),
                             repeats=repeats))

    patcher = EdgePatcher(model, task.clean, task.corrupted, graph)
    half = torch.rand(len(graph), generator=torch.Generator().manual_seed(0)) < 0.5
    with torch.no_grad():
        times = interleaved({"patched": lambda: patcher.run(half), "plain": lambda: model(task.clean)}, rounds)
    ratio = paired_ratio(times["patched"], times["plain"])
    result = last["acdc"]
    figures = [
        figure(f"discovery: ACDC on TinyLang IOI, {shape}", acdc_s, "s", at_most=ACDC_TARGET_S,
               note=f"{note}; KL at the answer, tau {IOI_TAU:g}: {result.n_forward} forward passes, "
                    f"{result.n_kept} edges kept"),
        figure(f"discovery: EAP on TinyLang IOI, {shape}", eap_s, "s", at_most=EAP_TARGET_S,
               note=f"{note}; logit difference; 2 forward passes and 1 backward pass"),
        figure(f"discovery: EAP-IG (30 steps) on TinyLang IOI, {shape}", ig_s, "s", note=note),
        figure("discovery: one edge-patched forward pass / a plain forward pass", ratio, "x",
               note=f"half the edges cut; median of {rounds} paired rounds; plain pass "
                    f"{median(times['plain']) * 1e3:.2g} ms; {plural(threads, 'thread')}"),
    ]
    details = {"tau": IOI_TAU, "acdc_forward_passes": result.n_forward, "acdc_kept": result.n_kept,
               "n_edges": len(graph), "prompts": list(task.clean.shape), "repeats": repeats, "rounds": rounds,
               "threads": threads, "plain_forward_ms": median(times["plain"]) * 1e3,
               "patched_forward_ms": median(times["patched"]) * 1e3}
    return {"figures": figures, "details": details}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat, few timing rounds")
    parser.add_argument("--targets", action="store_true", help="measure AUCs, Spearman and faithfulness instead")
    args = parser.parse_args()
    print(json.dumps(measure() if args.targets else run(args.quick), indent=1, default=float))
