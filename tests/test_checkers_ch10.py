"""Chapter 10 checks: the reference and a correct alternative pass, and wrong answers a learner
would plausibly write are rejected with the hint for that particular mistake.

The mutants below are written the way a learner might write them, independently of the
Mistake functions inside the checks, so that a check is tested on real code, not on itself.
"""

import pytest
import torch
from checker_helpers import accepts, rejects

from toykit.circuit_discovery import (
    CircuitGraph,
    eap_scores,
    edge_count,
    incompleteness,
    interpolation_points,
    largest_kept_tau,
    patch_receiver_input,
    prune_step,
    roc_auc,
)
from toykit.exercises import ch10, clear_results

IN_PLACE = "modified one of its inputs in place"


@pytest.fixture(autouse=True)
def fresh():
    torch.set_num_threads(1)
    clear_results()


ALL_CHECKS = [
    ch10.check_edge_count,
    ch10.check_patch_receiver_input,
    ch10.check_prune_step,
    ch10.check_eap_scores,
    ch10.check_interpolation_points,
    ch10.check_roc_auc,
    ch10.check_incompleteness,
    ch10.check_largest_kept_tau,
]


def test_the_table_holds_every_check_with_its_library_reference():
    assert set(ch10.EXERCISES) == {c.__name__.removeprefix("check_") for c in ALL_CHECKS}
    for exercise_id, entry in ch10.EXERCISES.items():
        assert entry.reference.__name__ == exercise_id  # each exercise is a library function of that name


# -- edge_count ------------------------------------------------------------------------------------


def ec_by_counting(n_layers, n_heads, attn_only):
    return len(CircuitGraph(n_layers, n_heads, attn_only).edges)


def ec_one_input_per_head(n_layers, n_heads, attn_only):
    m = 0 if attn_only else 1
    total = 1 + n_layers * (n_heads + m)
    for layer in range(n_layers):
        read = 1 + layer * (n_heads + m)
        total += n_heads * read + m * (read + n_heads)
    return total


def ec_mlp_misses_its_layer(n_layers, n_heads, attn_only):
    m = 0 if attn_only else 1
    total = 1 + n_layers * (n_heads + m)
    for layer in range(n_layers):
        read = 1 + layer * (n_heads + m)
        total += 3 * n_heads * read + m * read
    return total


def ec_no_direct_path(n_layers, n_heads, attn_only):
    m = 0 if attn_only else 1
    total = n_layers * (n_heads + m)  # the logits read the heads and MLPs
    for layer in range(n_layers):
        read = 1 + layer * (n_heads + m)
        total += 3 * n_heads * read + m * (read + n_heads)
    return total


def ec_acdc_graph(n_layers, n_heads, attn_only):
    return ec_by_counting(n_layers, n_heads, attn_only) + 3 * n_layers * n_heads


def test_edge_count_accepts(capsys):
    accepts(ch10.check_edge_count, edge_count, capsys, "edge_count")
    accepts(ch10.check_edge_count, ec_by_counting, capsys, "edge_count")


@pytest.mark.parametrize("fn, hint", [(ec_one_input_per_head, "three inputs"),
                                      (ec_mlp_misses_its_layer, "also reads layer l's heads"),
                                      (ec_no_direct_path, "direct path"), (ec_acdc_graph, "ACDC's own code")])
def test_edge_count_mutants(fn, hint):
    rejects(ch10.check_edge_count, fn, hint)


# -- patch_receiver_input --------------------------------------------------------------------------


def pri_loop(receiver_input, delta, cut):
    out = receiver_input.clone()
    for s in range(len(delta)):
        if cut.ndim == 2:
            for h in range(cut.shape[1]):
                if cut[s, h]:
                    out[:, :, h] = out[:, :, h] - delta[s]
        elif cut[s]:
            out = out - delta[s]
    return out


def pri_adds(receiver_input, delta, cut):
    w = cut.float()
    if cut.ndim == 2:
        return receiver_input + torch.einsum("sbpd,sh->bphd", delta, w)
    return receiver_input + torch.einsum("sbpd,s->bpd", delta, w)


def pri_whole_input(receiver_input, delta, cut):
    total = delta.sum(0)
    return receiver_input - (total[:, :, None] if cut.ndim == 2 else total)


def pri_in_place(receiver_input, delta, cut):
    w = cut.float()
    if cut.ndim == 2:
        receiver_input -= torch.einsum("sbpd,sh->bphd", delta, w)
    else:
        receiver_input -= torch.einsum("sbpd,s->bpd", delta, w)
    return receiver_input


def pri_every_head(receiver_input, delta, cut):
    if cut.ndim == 2:
        cut = cut.any(1)
        return receiver_input - torch.einsum("sbpd,s->bpd", delta, cut.float())[:, :, None]
    return receiver_input - torch.einsum("sbpd,s->bpd", delta, cut.float())


def pri_mean(receiver_input, delta, cut):
    w = cut.float() / len(delta)
    if cut.ndim == 2:
        return receiver_input - torch.einsum("sbpd,sh->bphd", delta, w)
    return receiver_input - torch.einsum("sbpd,s->bpd", delta, w)


def test_patch_receiver_input_accepts(capsys):
    accepts(ch10.check_patch_receiver_input, patch_receiver_input, capsys, "patch_receiver_input")
    accepts(ch10.check_patch_receiver_input, pri_loop, capsys, "patch_receiver_input")


@pytest.mark.parametrize("fn, hint", [(pri_adds, "sign is flipped"), (pri_whole_input, "only the cut senders change"),
                                      (pri_in_place, IN_PLACE), (pri_every_head, "for head h only"),
                                      (pri_mean, "don't average")])
def test_patch_receiver_input_mutants(fn, hint):
    rejects(ch10.check_patch_receiver_input, fn, hint)


# -- prune_step ------------------------------------------------------------------------------------


def ps_list(evaluate, kept, order, current, tau, abs_change):
    mask = kept.clone()
    changes = []
    for i in order:
        trial = mask.clone()
        trial[i] = False
        value = evaluate(trial)
        change = value - current
        changes.append(change)
        score = abs(change) if abs_change else change
        if score < tau:
            mask, current = trial, value
    return mask, current, torch.tensor(changes, dtype=torch.float64)


def ps_against_full(evaluate, kept, order, current, tau, abs_change):
    mask, full = kept.clone(), current
    changes = []
    for i in order:
        mask[i] = False
        value = evaluate(mask)
        change = value - full  # always the starting circuit
        changes.append(change)
        if (abs(change) if abs_change else change) < tau:
            current = value
        else:
            mask[i] = True
    return mask, current, torch.tensor(changes, dtype=torch.float64)


def ps_at_most(evaluate, kept, order, current, tau, abs_change):
    mask = kept.clone()
    changes = []
    for i in order:
        mask[i] = False
        value = evaluate(mask)
        changes.append(value - current)
        if (abs(changes[-1]) if abs_change else changes[-1]) <= tau:
            current = value
        else:
            mask[i] = True
    return mask, current, torch.tensor(changes, dtype=torch.float64)


def ps_always_abs(evaluate, kept, order, current, tau, abs_change):
    return ps_list(evaluate, kept, order, current, tau, True)


def ps_in_place(evaluate, kept, order, current, tau, abs_change):
    changes = []
    for i in order:
        kept[i] = False
        value = evaluate(kept)
        changes.append(value - current)
        if (abs(changes[-1]) if abs_change else changes[-1]) < tau:
            current = value
        else:
            kept[i] = True
    return kept, current, torch.tensor(changes, dtype=torch.float64)


def test_prune_step_accepts(capsys):
    accepts(ch10.check_prune_step, prune_step, capsys, "prune_step")
    accepts(ch10.check_prune_step, ps_list, capsys, "prune_step")


@pytest.mark.parametrize("fn, hint", [(ps_against_full, "against the current circuit"), (ps_at_most, "strictly below"),
                                      (ps_always_abs, "the change is signed"), (ps_in_place, IN_PLACE)])
def test_prune_step_mutants(fn, hint):
    rejects(ch10.check_prune_step, fn, hint)


# -- eap_scores ------------------------------------------------------------------------------------


def eap_loop(graph, clean_outputs, corrupted_outputs, grads):
    scores = []
    for sender, receiver in graph.edges:
        s, r = graph.senders.index(sender), graph.receivers.index(receiver)
        scores.append(((corrupted_outputs[s] - clean_outputs[s]) * grads[r]).sum())
    return torch.stack(scores)


def eap_flipped(graph, clean_outputs, corrupted_outputs, grads):
    return eap_loop(graph, corrupted_outputs, clean_outputs, grads)


def eap_mean_positions(graph, clean_outputs, corrupted_outputs, grads):
    scores = []
    for sender, receiver in graph.edges:
        s, r = graph.sender_index[sender], graph.receiver_index[receiver]
        per_position = ((corrupted_outputs[s] - clean_outputs[s]) * grads[r]).sum(-1)  # [b, p]
        scores.append(per_position.mean(1).sum(0))
    return torch.stack(scores)


def eap_no_difference(graph, clean_outputs, corrupted_outputs, grads):
    return eap_loop(graph, torch.zeros_like(clean_outputs), corrupted_outputs, grads)


def test_eap_scores_accepts(capsys):
    accepts(ch10.check_eap_scores, eap_scores, capsys, "eap_scores")
    accepts(ch10.check_eap_scores, eap_loop, capsys, "eap_scores")


@pytest.mark.parametrize("fn, hint", [(eap_flipped, "the sign matters"), (eap_mean_positions, "sum over the positions"),
                                      (eap_no_difference, "not by the output itself")])
def test_eap_scores_mutants(fn, hint):
    rejects(ch10.check_eap_scores, fn, hint)


# -- interpolation_points --------------------------------------------------------------------------


def ip_lerp(clean_embed, corrupted_embed, steps):
    return torch.stack([torch.lerp(corrupted_embed, clean_embed, k / steps) for k in range(1, steps + 1)])


def ip_linspace(clean_embed, corrupted_embed, steps):
    alphas = torch.linspace(0, 1, steps)
    return torch.stack([corrupted_embed + a * (clean_embed - corrupted_embed) for a in alphas])


def ip_authors_points(clean_embed, corrupted_embed, steps):
    return torch.stack([corrupted_embed + (k / steps) * (clean_embed - corrupted_embed) for k in range(steps)])


def ip_backwards(clean_embed, corrupted_embed, steps):
    return torch.stack([clean_embed + (k / steps) * (corrupted_embed - clean_embed) for k in range(1, steps + 1)])


def test_interpolation_points_accepts(capsys):
    accepts(ch10.check_interpolation_points, interpolation_points, capsys, "interpolation_points")
    accepts(ch10.check_interpolation_points, ip_lerp, capsys, "interpolation_points")


@pytest.mark.parametrize("fn, hint", [(ip_linspace, "both ends included"), (ip_authors_points, "start past"),
                                      (ip_backwards, "towards the clean one")])
def test_interpolation_points_mutants(fn, hint):
    rejects(ch10.check_interpolation_points, fn, hint)


# -- roc_auc ---------------------------------------------------------------------------------------


def auc_by_loops(scores, ground_truth, edges):
    true = [float(s) for e, s in zip(edges, scores) if e in ground_truth]
    other = [float(s) for e, s in zip(edges, scores) if e not in ground_truth]
    total = sum(1.0 if t > o else 0.5 if t == o else 0.0 for t in true for o in other)
    return total / (len(true) * len(other))


def auc_ties_win(scores, ground_truth, edges):
    true = [float(s) for e, s in zip(edges, scores) if e in ground_truth]
    other = [float(s) for e, s in zip(edges, scores) if e not in ground_truth]
    return sum(t >= o for t in true for o in other) / (len(true) * len(other))


def auc_sorted_ranks(scores, ground_truth, edges):
    order = sorted(range(len(edges)), key=lambda i: float(scores[i]))  # stable: ties keep the list order
    rank = {edges[i]: r + 1 for r, i in enumerate(order)}
    n_true = len(ground_truth)
    n_other = len(edges) - n_true
    return (sum(rank[e] for e in ground_truth) - n_true * (n_true + 1) / 2) / (n_true * n_other)


def auc_inverted(scores, ground_truth, edges):
    return auc_by_loops(-scores, ground_truth, edges)


def auc_in_place(scores, ground_truth, edges):
    value = auc_by_loops(scores, ground_truth, edges)
    scores.zero_()
    return value


def test_roc_auc_accepts(capsys):
    accepts(ch10.check_roc_auc, roc_auc, capsys, "roc_auc")
    accepts(ch10.check_roc_auc, auc_by_loops, capsys, "roc_auc")


@pytest.mark.parametrize("fn, hint", [(auc_ties_win, "not a win"), (auc_sorted_ranks, "share one rank"),
                                      (auc_inverted, "1 - AUC"), (auc_in_place, IN_PLACE)])
def test_roc_auc_mutants(fn, hint):
    rejects(ch10.check_roc_auc, fn, hint)


# -- incompleteness --------------------------------------------------------------------------------


def inc_named(evaluate, circuit, all_elements, knockout):
    circuit_without_k = frozenset(x for x in circuit if x not in knockout)
    model_without_k = frozenset(x for x in all_elements if x not in knockout)
    return float(torch.tensor(evaluate(circuit_without_k) - evaluate(model_without_k)).abs())


def inc_signed(evaluate, circuit, all_elements, knockout):
    return evaluate(circuit - knockout) - evaluate(all_elements - knockout)


def inc_intact_model(evaluate, circuit, all_elements, knockout):
    return abs(evaluate(circuit - knockout) - evaluate(all_elements))


def inc_knockout_kept(evaluate, circuit, all_elements, knockout):
    return abs(evaluate(knockout) - evaluate(all_elements - knockout))


def test_incompleteness_accepts(capsys):
    accepts(ch10.check_incompleteness, incompleteness, capsys, "incompleteness")
    accepts(ch10.check_incompleteness, inc_named, capsys, "incompleteness")


@pytest.mark.parametrize("fn, hint", [(inc_signed, "absolute value"), (inc_intact_model, "whole model too"),
                                      (inc_knockout_kept, "KEPT")])
def test_incompleteness_mutants(fn, hint):
    rejects(ch10.check_incompleteness, fn, hint)


# -- largest_kept_tau ------------------------------------------------------------------------------


def lkt_stack(taus, kept):
    masks = torch.stack(kept)  # [n_runs, n_edges]
    t = torch.tensor(taus, dtype=torch.float64)[:, None].expand(masks.shape)
    return torch.where(masks, t, torch.full_like(t, -1.0)).max(0).values


def lkt_smallest(taus, kept):
    masks = torch.stack(kept)
    t = torch.tensor(taus, dtype=torch.float64)[:, None].expand(masks.shape)
    smallest = torch.where(masks, t, torch.full_like(t, float("inf"))).min(0).values
    return torch.where(masks.any(0), smallest, torch.full_like(smallest, -1.0))


def lkt_count(taus, kept):
    n = torch.stack(kept).sum(0).double()
    n[n == 0] = -1.0
    return n


def lkt_zero(taus, kept):
    masks = torch.stack(kept)
    t = torch.tensor(taus, dtype=torch.float64)[:, None].expand(masks.shape)
    return torch.where(masks, t, torch.zeros_like(t)).max(0).values


def lkt_last_run(taus, kept):
    score = torch.full((len(kept[0]),), -1.0, dtype=torch.float64)
    for tau, mask in zip(taus, kept):
        score[mask] = tau
    return score


def lkt_in_place(taus, kept):
    out = lkt_stack(taus, kept)
    kept[0].zero_()
    return out


def test_largest_kept_tau_accepts(capsys):
    accepts(ch10.check_largest_kept_tau, largest_kept_tau, capsys, "largest_kept_tau")
    accepts(ch10.check_largest_kept_tau, lkt_stack, capsys, "largest_kept_tau")


@pytest.mark.parametrize("fn, hint", [(lkt_smallest, "not the smallest"), (lkt_count, "not a count"),
                                      (lkt_zero, "give it -1"), (lkt_last_run, "any order"),
                                      (lkt_in_place, IN_PLACE)])
def test_largest_kept_tau_mutants(fn, hint):
    rejects(ch10.check_largest_kept_tau, fn, hint)
