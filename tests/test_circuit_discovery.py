"""The circuit-discovery graph, edge patching, ACDC and EAP / EAP-IG, checked on tiny random
models against hand computations and brute-force patching."""

import math

import pytest
import torch

from toykit import pretrained
from toykit.circuit_discovery import (
    CircuitGraph,
    EdgePatcher,
    acdc,
    acdc_sweep,
    eap,
    eap_ig,
    edge_count,
    induction_logprob,
    patch_edges,
    planted_induction_circuit,
    sender_outputs,
    tinylang_ioi_prompts,
)
from toykit.patching import kl_divergence, logit_diff
from toykit.tasks.repeated_tokens import generate_repeated_tokens
from toykit.transformer import HookedTransformer, TransformerConfig

B, POS, VOCAB = 4, 8, 24
ANSWER, WRONG = 3, 7


def make_model(n_layers=2, n_heads=4, attn_only=False, normalization_type="LN", dtype=torch.float32, seed=0):
    cfg = TransformerConfig(n_layers=n_layers, d_model=32, n_heads=n_heads, d_mlp=64, d_vocab=VOCAB, n_ctx=12,
                            attn_only=attn_only, normalization_type=normalization_type, seed=seed, device="cpu",
                            dtype=dtype)
    return HookedTransformer(cfg)


@pytest.fixture(scope="module")
def prompts():
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(0, VOCAB, (B, POS), generator=g)
    corrupted = clean.clone()
    corrupted[:, [2, 5, POS - 1]] = torch.randint(0, VOCAB, (B, 3), generator=g)
    return clean, corrupted


def no_hooks_left(model):
    return not any(hp.has_hooks for hp in model.hook_points())


def switches(model):
    c = model.cfg
    return (c.use_split_qkv_input, c.use_attn_result, c.use_hook_mlp_in, c.use_attn_in)


def all_but(graph, *cut):
    return [e for e in graph.edges if e not in cut]


# -- the graph ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1, True), (1, 3, False), (2, 4, True), (3, 4, False), (4, 2, False),
                                   (12, 12, False)])
def test_edge_count_formula_matches_the_graph(shape):
    graph = CircuitGraph(*shape)
    assert len(graph.edges) == len(graph) == edge_count(*shape)
    assert len(set(graph.edges)) == len(graph.edges)
    # Every edge runs forward, and every forward pair is an edge (the count then pins the set).
    assert all(graph.write_stage(s) < graph.read_stage(r) for s, r in graph.edges)
    n_forward_pairs = sum(graph.write_stage(s) < graph.read_stage(r) for s in graph.senders for r in graph.receivers)
    assert n_forward_pairs == len(graph.edges)


@pytest.mark.parametrize("name, expected", [("attn-only-2l", 81), ("tinylang", 262)])
def test_edge_count_of_shipped_models(name, expected):
    cfg = pretrained.manifest()[name]["config"]
    graph = CircuitGraph(cfg["n_layers"], cfg["n_heads"], cfg["attn_only"])
    assert len(graph.edges) == edge_count(cfg["n_layers"], cfg["n_heads"], cfg["attn_only"]) == expected


def test_graph_names_and_order():
    graph = CircuitGraph(2, 3, False)
    assert graph.senders == ["embed", "a0.h0", "a0.h1", "a0.h2", "m0", "a1.h0", "a1.h1", "a1.h2", "m1"]
    assert graph.receivers[:4] == ["a0.h0.q", "a0.h0.k", "a0.h0.v", "a0.h1.q"] and graph.receivers[-1] == "logits"
    assert ("a0.h1", "a1.h0.k") in graph.edge_index
    assert ("a1.h0", "m1") in graph.edge_index  # an MLP reads the heads of its own layer
    assert ("a1.h0", "a1.h2.q") not in graph.edge_index  # a head does not read its own layer
    assert ("m1", "a1.h0.q") not in graph.edge_index and ("m0", "a1.h0.v") in graph.edge_index
    assert graph.senders_of("a1.h2.v") == ["embed", "a0.h0", "a0.h1", "a0.h2", "m0"]
    assert [graph.edges[i] for i in graph.edges_into("m0")] == [(s, "m0") for s in graph.senders[:4]]
    assert {graph.edges[i][1] for i in graph.edges_from("m1")} == {"logits"}
    # Edges are grouped by receiver in forward order: deterministic and the same every time.
    assert [r for _, r in graph.edges] == sorted((r for _, r in graph.edges), key=graph.receivers.index)
    assert CircuitGraph(2, 3, False).edges == graph.edges
    assert graph.node_of("a1.h2.k") == "a1.h2" and graph.node_of("m0") == "m0" and graph.node_of("logits") is None
    attn_only = CircuitGraph(2, 3, True)
    assert "m0" not in attn_only.senders and "m0" not in attn_only.receivers


def test_graph_rejects_bad_edges():
    graph = CircuitGraph(2, 2, True)
    with pytest.raises(ValueError, match="kept_edges.*not an edge"):
        graph.mask([("a1.h0", "a0.h0.q")], "kept_edges")
    with pytest.raises(ValueError, match="kept_edges.*not an edge"):
        graph.mask([("m0", "logits")], "kept_edges")  # no MLPs in this graph
    with pytest.raises(TypeError, match="kept_edges"):
        graph.mask("embed", "kept_edges")
    with pytest.raises(ValueError, match=r"kept_edges.*\[" + str(len(graph)) + r"\]"):
        graph.mask(torch.ones(3, dtype=torch.bool), "kept_edges")
    with pytest.raises(ValueError, match="unknown receiver"):
        graph.senders_of("a5.h0.q")
    with pytest.raises(ValueError, match="n_heads"):
        edge_count(2, 0, True)
    with pytest.raises(ValueError, match="graph.*from_model"):
        patch_edges(make_model(n_layers=2, n_heads=4), torch.zeros(1, 3, dtype=torch.long),
                    torch.zeros(1, 3, dtype=torch.long), [], graph=graph)


# -- edge patching ------------------------------------------------------------------------------

KINDS = [dict(), dict(attn_only=True), dict(normalization_type=None), dict(normalization_type="LNPre", n_layers=3)]


@pytest.mark.parametrize("kind", KINDS, ids=["LN+MLP", "attn_only", "no_LN", "LNPre"])
def test_keeping_all_edges_is_clean_and_none_is_corrupted(kind, prompts):
    model = make_model(**kind)
    clean, corrupted = prompts
    clean_before, corrupted_before, state = clean.clone(), corrupted.clone(), switches(model)
    graph = CircuitGraph.from_model(model)
    with torch.no_grad():
        clean_logits, corrupted_logits = model(clean), model(corrupted)
    assert (clean_logits - corrupted_logits).abs().max() > 0.1  # the two runs differ
    patcher = EdgePatcher(model, clean, corrupted)
    torch.testing.assert_close(patcher.run(graph.edges), clean_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(patcher.run([]), corrupted_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(patcher.run(torch.ones(len(graph), dtype=torch.bool)), clean_logits, atol=1e-5, rtol=0)
    assert patcher.n_forward == 5  # the corrupted and the clean run, then three patched runs
    assert no_hooks_left(model) and switches(model) == state
    assert torch.equal(clean, clean_before) and torch.equal(corrupted, corrupted_before)


def _layer_norm(x, ln, eps):
    x = x - x.mean(-1, keepdim=True)
    return x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt() * ln.w + ln.b


def test_one_edge_matches_a_hand_computation(prompts):
    """Cut a0.h1 -> a1.h0.k in a 2-layer attention-only model and redo layer 1 by hand."""
    model = make_model(attn_only=True, dtype=torch.float64)
    clean, corrupted = prompts
    graph = CircuitGraph.from_model(model)
    got = patch_edges(model, clean, corrupted, all_but(graph, ("a0.h1", "a1.h0.k")))

    _, c = model.run_with_cache(clean)
    _, r = model.run_with_cache(corrupted)
    W_O, eps = model.W_O, model.cfg.eps  # [layer, head, d_head, d_model]
    clean_a01 = c["blocks.0.attn.hook_z"][:, :, 1] @ W_O[0, 1]
    corrupted_a01 = r["blocks.0.attn.hook_z"][:, :, 1] @ W_O[0, 1]
    resid = c["blocks.1.hook_resid_pre"]
    key_input = resid - clean_a01 + corrupted_a01  # only head 1.0's key sees the corrupted a0.h1
    ln1, attn = model.blocks[1].ln1, model.blocks[1].attn
    q = _layer_norm(resid, ln1, eps) @ attn.W_Q[0] + attn.b_Q[0]
    k = _layer_norm(key_input, ln1, eps) @ attn.W_K[0] + attn.b_K[0]
    v = _layer_norm(resid, ln1, eps) @ attn.W_V[0] + attn.b_V[0]
    scores = q @ k.transpose(1, 2) / math.sqrt(model.cfg.d_head)
    future = torch.triu(torch.ones(POS, POS, dtype=torch.bool), 1)
    new_out = (scores.masked_fill(future, -math.inf).softmax(-1) @ v) @ attn.W_O[0]
    old_out = c["blocks.1.attn.hook_z"][:, :, 0] @ attn.W_O[0]
    final = c["blocks.1.hook_resid_post"] - old_out + new_out
    want = _layer_norm(final, model.ln_final, eps) @ model.W_U + model.b_U
    assert (want - model(clean)).abs().max() > 1e-3  # the edge matters
    torch.testing.assert_close(got, want, atol=1e-10, rtol=0)


def test_upstream_cuts_reach_downstream_receivers_through_actual_outputs(prompts):
    """Cut embed -> a0.h0.v and a0.h0 -> logits: layer 1 and the MLPs read a0.h0's *patched*
    output, the logits its corrupted one. Written out with plain hooks."""
    model = make_model(dtype=torch.float64)
    clean, corrupted = prompts
    graph = CircuitGraph.from_model(model)
    got = patch_edges(model, clean, corrupted, all_but(graph, ("embed", "a0.h0.v"), ("a0.h0", "logits")))

    with torch.no_grad():
        corrupted_embed = model(corrupted, stop_at_layer=0)
    model.set_use_split_qkv_input(True)
    model.set_use_attn_result(True)
    try:
        _, r = model.run_with_cache(corrupted, names_filter="blocks.0.attn.hook_result")
        seen = {}

        def corrupt_value(act, hook):
            act = act.clone()
            act[:, :, 0] = corrupted_embed
            return act

        def save(act, hook):
            seen["a0.h0"] = act[:, :, 0]

        def logits_input(act, hook):
            return act - seen["a0.h0"] + r["blocks.0.attn.hook_result"][:, :, 0]

        want = model.run_with_hooks(clean, fwd_hooks=[("blocks.0.hook_v_input", corrupt_value),
                                                      ("blocks.0.attn.hook_result", save),
                                                      ("blocks.1.hook_resid_post", logits_input)])
        only_value = model.run_with_hooks(clean, fwd_hooks=[("blocks.0.hook_v_input", corrupt_value)])
    finally:
        model.set_use_split_qkv_input(False)
        model.set_use_attn_result(False)
    torch.testing.assert_close(got, want, atol=1e-10, rtol=0)
    torch.testing.assert_close(patch_edges(model, clean, corrupted, all_but(graph, ("embed", "a0.h0.v"))),
                               only_value, atol=1e-10, rtol=0)
    assert (want - only_value).abs().max() > 1e-4  # the second cut is seen


def test_edge_patching_keeps_switches_that_were_on_and_accepts_cached_outputs(prompts):
    model = make_model()
    clean, corrupted = prompts
    graph = CircuitGraph.from_model(model)
    outputs = sender_outputs(model, corrupted)
    assert outputs.shape == (len(graph.senders), B, POS, model.cfg.d_model)
    kept = all_but(graph, ("embed", "a1.h2.q"), ("m0", "logits"))
    from_tokens = patch_edges(model, clean, corrupted, kept)
    torch.testing.assert_close(patch_edges(model, clean, outputs, kept), from_tokens, atol=0, rtol=0)
    model.set_use_attn_result(True)
    torch.testing.assert_close(patch_edges(model, clean, corrupted, kept), from_tokens, atol=1e-6, rtol=0)
    assert model.cfg.use_attn_result and "blocks.0.attn.hook_result" in model.hook_dict
    model.set_use_attn_result(False)


def test_edge_patching_rejects_bad_inputs(prompts):
    model = make_model()
    clean, corrupted = prompts
    with pytest.raises(ValueError, match="corrupted.*clean_tokens"):
        patch_edges(model, clean, corrupted[:, :-1], [])
    with pytest.raises(ValueError, match="corrupted"):
        patch_edges(model, clean, torch.zeros(3, B, POS, 32), [])
    with pytest.raises(TypeError, match="clean_tokens"):
        patch_edges(model, clean.float(), corrupted, [])
    with pytest.raises(TypeError, match="model"):
        patch_edges(torch.nn.Linear(2, 2), clean, corrupted, [])
    assert no_hooks_left(model) and not model.cfg.use_split_qkv_input


# -- ACDC ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model64():
    return make_model(dtype=torch.float64)


def test_acdc_follows_algorithm_1_against_the_current_circuit(model64, prompts):
    """Replay every decision: each change is measured against the circuit as it was then
    (already pruned), receivers are visited from the output backwards, and a cut stays iff
    the change is below tau."""
    clean, corrupted = prompts
    tau = 1e-3
    result = acdc(model64, clean, corrupted, tau)
    graph = result.graph
    assert 0 < result.n_kept < len(graph.edges)
    with torch.no_grad():
        clean_logits = model64(clean)
    patcher = EdgePatcher(model64, clean, corrupted)

    def kl(kept):
        return kl_divergence(patcher.run(kept), clean_logits).item()

    steps = iter(result.history)
    kept, current = torch.ones(len(graph), dtype=torch.bool), 0.0
    for receiver in reversed(graph.receivers):  # from the output backwards
        node = graph.node_of(receiver)
        if node is not None and not kept[graph.edges_from(node)].any():
            kept[list(graph.edges_into(receiver))] = False  # a dead node: cut without a pass
            continue
        for i in reversed(graph.edges_into(receiver)):
            edge, change, cut = next(steps)
            assert edge == graph.edges[i]
            kept[i] = False
            value = kl(kept)
            assert change == pytest.approx(value - current, abs=1e-9)  # against the pruned circuit
            assert cut == (change < tau)
            if cut:
                current = value
            else:
                kept[i] = True
    assert next(steps, None) is None
    assert torch.equal(kept, result.kept)
    assert result.metric_circuit == pytest.approx(kl(result.kept), abs=1e-9)
    assert result.n_forward == 2 + int(result.tried.sum())
    assert (result.scores[~result.tried] == 0).all() and not result.kept[~result.tried].any()
    # A comparison with the full model instead gives other changes for later edges.
    first_cut = next(k for k, (_, _, cut) in enumerate(result.history) if cut)
    later_edge, later_change, _ = result.history[first_cut + 1]
    vs_full = kl(all_but(graph, later_edge))
    assert abs(vs_full - later_change) > 1e-6


def test_acdc_skipping_dead_nodes_changes_nothing_but_the_cost(model64, prompts):
    clean, corrupted = prompts
    fast = acdc(model64, clean, corrupted, 3e-3)
    slow = acdc(model64, clean, corrupted, 3e-3, skip_dead_nodes=False)
    assert torch.equal(fast.kept, slow.kept)
    assert fast.n_forward < slow.n_forward == 2 + len(fast.graph.edges)
    assert fast.metric_circuit == pytest.approx(slow.metric_circuit, abs=1e-12)


def test_acdc_extreme_thresholds(model64, prompts):
    clean, corrupted = prompts
    everything = acdc(model64, clean, corrupted, math.inf)
    graph = everything.graph
    assert everything.n_kept == 0
    # Only the logits' inputs need a pass: after them every node is dead.
    assert everything.n_forward == 2 + len(graph.senders_of("logits"))
    with torch.no_grad():
        kl_corrupted = kl_divergence(model64(corrupted), model64(clean)).item()
    assert everything.metric_circuit == pytest.approx(kl_corrupted, rel=1e-9)
    assert everything.metric_full == pytest.approx(0.0, abs=1e-12)


def test_acdc_sweep_matches_single_runs_and_task_metrics_work(model64, prompts):
    clean, corrupted = prompts
    sweep = acdc_sweep(model64, clean, corrupted, [1e-3, 1e-2])
    for result in sweep:
        single = acdc(model64, clean, corrupted, result.tau)
        assert torch.equal(single.kept, result.kept) and single.n_forward == result.n_forward
    assert sweep[0].n_kept >= sweep[1].n_kept

    def neg_logit_diff(logits):
        return -logit_diff(logits, ANSWER, WRONG)

    task = acdc(model64, clean, corrupted, 0.05, metric=neg_logit_diff, abs_change=True)
    assert task.metric_full == pytest.approx(neg_logit_diff(model64(clean)).item(), abs=1e-9)
    assert all(abs(change) < 0.05 for _, change, cut in task.history if cut)
    assert all(abs(change) >= 0.05 for _, change, cut in task.history if not cut)


def test_acdc_rejects_bad_inputs_and_leaves_no_hooks(model64, prompts):
    clean, corrupted = prompts
    with pytest.raises(ValueError, match="tau"):
        acdc(model64, clean, corrupted, -0.1)
    with pytest.raises(ValueError, match="tau"):
        acdc(model64, clean, corrupted, float("nan"))
    with pytest.raises(ValueError, match=r"taus\[1\]"):
        acdc_sweep(model64, clean, corrupted, [0.1, -1])
    with pytest.raises(TypeError, match="metric"):
        acdc(model64, clean, corrupted, 0.1, metric="kl")
    with pytest.raises(TypeError, match="abs_change"):
        acdc(model64, clean, corrupted, 0.1, abs_change=1)

    def broken(logits):
        raise RuntimeError("metric failed")

    with pytest.raises(RuntimeError, match="metric failed"):
        acdc(model64, clean, corrupted, 0.1, metric=broken)
    assert no_hooks_left(model64) and switches(model64) == (False, False, False, False)


# -- EAP and EAP-IG -----------------------------------------------------------------------------


def test_eap_is_exact_where_the_model_is_linear(prompts):
    """One attention-only layer without LayerNorm, a linear metric: the logits are linear in
    every edge into the logits and into a value input, so EAP equals the brute-force effect
    there. Queries and keys go through a softmax: there it is only an estimate."""
    model = make_model(n_layers=1, attn_only=True, normalization_type=None, dtype=torch.float64)
    clean, corrupted = prompts
    graph = CircuitGraph.from_model(model)

    def metric(logits):
        return logit_diff(logits, ANSWER, WRONG)

    scores = eap(model, clean, corrupted, metric)
    assert scores.shape == (len(graph.edges),) and scores.dtype == torch.float64
    base = metric(model(clean)).item()
    true = torch.tensor([metric(patch_edges(model, clean, corrupted, all_but(graph, e))).item() - base
                         for e in graph.edges], dtype=torch.float64)
    linear = torch.tensor([r == "logits" or r.endswith(".v") for _, r in graph.edges])
    assert true[linear].abs().max() > 0.05  # the effects are not all zero
    torch.testing.assert_close(scores[linear], true[linear], atol=1e-10, rtol=1e-8)
    assert (scores[~linear] - true[~linear]).abs().max() > 1e-6  # the softmax is not linear
    assert no_hooks_left(model) and switches(model) == (False, False, False, False)


def test_eap_ig_with_one_step_is_eap(model64, prompts):
    clean, corrupted = prompts

    def metric(logits):
        return logit_diff(logits, ANSWER, WRONG)

    torch.testing.assert_close(eap_ig(model64, clean, corrupted, metric, steps=1),
                               eap(model64, clean, corrupted, metric), atol=0, rtol=0)


def test_eap_ig_converges_to_the_true_effect_on_a_nonlinear_toy():
    """The heads write nothing (W_O = 0), so the only path from input to output is the edge
    embed -> logits, through ln_final and a log-softmax. Interpolating the embedding then
    interpolates exactly this edge, and EAP-IG is a Riemann sum of the exact path integral:
    its error falls like 1/m, while EAP (m = 1) is far off."""
    cfg = TransformerConfig(n_layers=1, d_model=16, n_heads=2, d_vocab=12, n_ctx=8, attn_only=True, seed=1,
                            device="cpu", dtype=torch.float64)
    model = HookedTransformer(cfg)
    with torch.no_grad():
        model.blocks[0].attn.W_O.zero_()
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(0, 12, (4, 6), generator=g)
    corrupted = clean.clone()
    corrupted[:, -1] = (clean[:, -1] + 1 + torch.randint(0, 11, (4,), generator=g)) % 12

    def metric(logits):
        return logits.log_softmax(-1)[:, -1, 3].mean()

    graph = CircuitGraph.from_model(model)
    edge = graph.edge_index[("embed", "logits")]
    base = metric(model(clean)).item()
    true = metric(patch_edges(model, clean, corrupted, all_but(graph, ("embed", "logits")))).item() - base
    assert abs(true) > 0.1
    errors = []
    for m in (1, 4, 16, 64):
        scores = eap_ig(model, clean, corrupted, metric, steps=m)
        others = torch.ones(len(graph), dtype=torch.bool)
        others[edge] = False
        assert scores[others].abs().max() < 1e-12  # every other edge has no effect at all
        errors.append(abs(scores[edge].item() - true))
    assert errors == sorted(errors, reverse=True)
    assert errors[0] > 0.3 * abs(true)  # EAP alone is a poor estimate here
    assert errors[-1] < 0.02 * abs(true) and errors[-1] < errors[0] / 20


def test_eap_rejects_bad_inputs(model64, prompts):
    clean, corrupted = prompts

    def not_differentiable(logits):
        return logit_diff(logits, ANSWER, WRONG).item()

    with pytest.raises(ValueError, match="metric.*differentiable"):
        eap(model64, clean, corrupted, not_differentiable)
    with pytest.raises(TypeError, match="metric"):
        eap(model64, clean, corrupted, "logit_diff")
    with pytest.raises(ValueError, match="steps"):
        eap_ig(model64, clean, corrupted, lambda logits: logits[:, -1, 0].mean(), steps=0)
    with pytest.raises(ValueError, match="corrupted_tokens"):
        eap(model64, clean, corrupted[:2], lambda logits: logits[:, -1, 0].mean())
    assert no_hooks_left(model64) and switches(model64) == (False, False, False, False)


# -- the tasks the ground truths are measured on ------------------------------------------------------


def test_induction_logprob_reads_the_predictable_second_copy():
    tokens = generate_repeated_tokens(3, 4, 20, seed=0)  # [3, 9]: BOS, a block of 4, the block again
    metric = induction_logprob(tokens, 4)
    perfect = torch.full((3, 9, 20), -30.0)
    perfect[:, :-1].scatter_(-1, tokens[:, 1:, None], 30.0)  # every next token certain
    assert metric(perfect).item() == pytest.approx(0.0, abs=1e-6)
    uniform = torch.zeros(3, 9, 20)
    assert metric(uniform).item() == pytest.approx(-math.log(20), abs=1e-6)
    # positions induction cannot predict do not count: ruin them and nothing changes
    ruined = perfect.clone()
    ruined[:, :5] = 0.0
    assert metric(ruined).item() == pytest.approx(0.0, abs=1e-6)
    planted = planted_induction_circuit(20, 4, device="cpu")
    assert metric(planted.model(tokens)).item() > -0.1  # the planted circuit does induction
    with pytest.raises(ValueError, match="tokens"):
        induction_logprob(tokens.float(), 4)
    with pytest.raises(ValueError, match="seq_len"):
        induction_logprob(tokens, 0)


def test_tinylang_ioi_prompts_are_aligned_abc_pairs():
    clean, corrupted = tinylang_ioi_prompts(12)
    assert clean.tokens.shape == corrupted.tokens.shape and clean.tokens.shape[0] == 12
    differs = (clean.tokens != corrupted.tokens).any(0)
    assert 0 < int(differs.sum()) < clean.tokens.shape[1]  # only the name slots change
    assert torch.equal(clean.answer_pos, corrupted.answer_pos)
    with pytest.raises(ValueError, match="n_prompts"):
        tinylang_ioi_prompts(0)
