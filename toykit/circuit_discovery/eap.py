"""Edge attribution patching: a score for every edge of the graph from gradients, instead of
one forward pass per edge.

**EAP** (Syed et al. 2023: "two forward passes and a backward pass" for every edge).
Cutting the edge (s, r) moves receiver r's input by corrupted_s - clean_s, so to first order
the metric moves by

    score(s, r) = (corrupted_s - clean_s) · ∂metric/∂input_r      (gradient on the clean run)

summed over positions and d_model. With a metric that is a batch mean, summing over the
batch too gives the batch mean of each prompt's first-order effect. Cost: one forward pass on
the corrupted prompts, and one forward and one backward pass on the clean ones, for all edges.

**EAP-IG** (Hanna et al. 2024, Section 3) replaces the gradient at the clean run by its mean
over m points on the straight line from the corrupted to the clean input, interpolating the
embedding (the output of "embed"), as integrated gradients does (Sundararajan et al. 2017):

    score(s, r) = (corrupted_s - clean_s) · (1/m) Σ_{k=1..m} ∂metric/∂input_r at
                  embed = corrupted_embed + (k/m) (clean_embed - corrupted_embed)

The point k = m is the clean run, so m = 1 is plain EAP. (The authors' code takes k = 0 ..
m - 1; both are Riemann sums of the same integral.) Cost: m forward and backward passes.

Scores are float64 [n_edges] aligned with ``graph.edges`` (``graph.as_dict`` gives a dict); a
large |score| means the edge matters. The metric must be differentiable and is best a task
metric such as the logit difference: a KL divergence to the clean run has zero gradient at
the clean run, so EAP would score every edge 0 (the zero-gradient problem that EAP-IG eases,
Hanna et al. 2024, Section 3).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from toykit.circuit_discovery.edge_patching import (
    graph_for,
    graph_switches,
    receiver_hooks,
    sender_hooks,
    sender_outputs,
    stack_senders,
)
from toykit.circuit_discovery.graph import CircuitGraph
from toykit.hooks import check_model
from toykit.transformer import HookedTransformer
from toykit.transformer_inputs import check_tokens
from toykit.validation import check_positive_int, check_tensor

__all__ = ["eap", "eap_ig", "eap_scores", "edge_scores", "interpolation_points", "receiver_gradients"]

Metric = Callable[[torch.Tensor], Any]


def receiver_gradients(model: HookedTransformer, tokens: torch.Tensor, metric: Metric,
                       graph: CircuitGraph | None = None, embed: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """∂metric/∂(input of each receiver) on one run of ``tokens`` [b, p], and the senders'
    outputs on that run.

    embed: [b, p, d_model] to use instead of the embedding (the input of block 0), or None.
    Returns (grads [n_receivers, b, p, d_model] in the order of ``graph.receivers``,
    outputs [n_senders, b, p, d_model] detached, in the order of ``graph.senders``).
    """
    check_model(model, HookedTransformer)
    graph = graph_for(model, graph)
    tokens = check_tokens(model, tokens, "tokens", nonempty=True)
    if not callable(metric):
        raise TypeError(f"metric must be a callable logits [batch, pos, d_vocab] -> scalar tensor, "
                        f"got {type(metric).__name__}")
    outputs: dict[str, torch.Tensor] = {}
    probes: dict[str, torch.Tensor] = {}

    def replace_embed(act: torch.Tensor, hook) -> torch.Tensor:
        return embed.to(act.device, act.dtype)  # type: ignore[union-attr]  # only attached with embed

    def record(act: torch.Tensor, hook) -> None:
        outputs[hook.name] = act.detach()

    def add_probe(act: torch.Tensor, hook) -> torch.Tensor:
        # A zero leaf added to the input: its gradient is ∂metric/∂input, and the graph through
        # the input stays intact.
        probes[hook.name] = torch.zeros_like(act, requires_grad=True)
        return act + probes[hook.name]

    send, receive = sender_hooks(graph), receiver_hooks(graph)
    hooks: list[tuple[str, Callable]] = []
    if embed is not None:
        hooks.append(("blocks.0.hook_resid_pre", replace_embed))  # before record, so it sees the override
    hooks += [(n, record) for n in send] + [(n, add_probe) for n in receive]
    with graph_switches(model), torch.enable_grad(), model.hooks(fwd_hooks=hooks):
        value = metric(model(tokens))
        if not isinstance(value, torch.Tensor) or value.numel() != 1 or not value.requires_grad:
            raise ValueError("metric must return a 1-element tensor computed from the logits (differentiable), "
                             "e.g. toykit.patching.logit_diff_metric(...)")
        grads = torch.autograd.grad(value.reshape(()), [probes[n] for n in receive], allow_unused=True)
    by_hook = {n: torch.zeros_like(probes[n]) if g is None else g for n, g in zip(receive, grads)}
    rows = []
    for l in range(graph.n_layers):
        q, k, v = (by_hook[f"blocks.{l}.hook_{x}_input"] for x in "qkv")  # [b, p, h, d]
        rows += [t[:, :, h] for h in range(graph.n_heads) for t in (q, k, v)]  # a{l}.h{h}.q, .k, .v
        if not graph.attn_only:
            rows.append(by_hook[f"blocks.{l}.hook_mlp_in"])
    rows.append(by_hook[receive[-1]])  # logits
    return torch.stack(rows), stack_senders([outputs[n] for n in send])


def edge_scores(graph: CircuitGraph, delta: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """delta · grad for every edge: float64 [n_edges] aligned with ``graph.edges``.

    delta: [n_senders, b, p, d_model], each sender's change (corrupted - clean).
    grads: [n_receivers, b, p, d_model], ∂metric/∂input of each receiver.
    Sums over batch, positions and d_model.
    """
    products = torch.einsum("sbpd,rbpd->sr", delta.double(), grads.double()).cpu()  # [n_senders, n_receivers]
    s = torch.tensor([graph.sender_index[e[0]] for e in graph.edges])
    r = torch.tensor([graph.receiver_index[e[1]] for e in graph.edges])
    return products[s, r]


def eap_scores(graph: CircuitGraph, clean_outputs: torch.Tensor, corrupted_outputs: torch.Tensor,
               grads: torch.Tensor) -> torch.Tensor:
    """EAP's score of every edge from one clean run's activations and gradients: float64
    [n_edges] aligned with ``graph.edges``.

    clean_outputs, corrupted_outputs: [n_senders, b, p, d_model], each sender's output on the
        clean and on the corrupted run (``graph.senders`` order).
    grads: [n_receivers, b, p, d_model], ∂metric/∂input of each receiver on the clean run
        (``graph.receivers`` order).
    score(s, r) = (corrupted_s - clean_s) · grad_r, summed over batch, positions and d_model:
    the first-order change of the metric when the edge is cut.
    """
    if not isinstance(graph, CircuitGraph):
        raise TypeError(f"graph must be a CircuitGraph, got {type(graph).__name__}")
    dims: dict[str, int] = {}
    check_tensor("clean_outputs", clean_outputs, [len(graph.senders), "b", "p", "d_model"], dtype="float", dims=dims)
    check_tensor("corrupted_outputs", corrupted_outputs, [len(graph.senders), "b", "p", "d_model"], dtype="float",
                 dims=dims)
    check_tensor("grads", grads, [len(graph.receivers), "b", "p", "d_model"], dtype="float", dims=dims)
    return edge_scores(graph, corrupted_outputs - clean_outputs, grads)


def interpolation_points(clean_embed: torch.Tensor, corrupted_embed: torch.Tensor, steps: int) -> torch.Tensor:
    """EAP-IG's inputs: the m = ``steps`` points corrupted + (k/m) (clean - corrupted), k = 1..m,
    on the straight line from the corrupted to the clean embedding (the last point is the clean
    embedding itself).

    clean_embed, corrupted_embed: [b, p, d_model] (any equal shapes). Returns [steps, b, p, d_model].
    """
    m = check_positive_int("steps", steps)
    if not isinstance(clean_embed, torch.Tensor) or not isinstance(corrupted_embed, torch.Tensor) \
            or clean_embed.shape != corrupted_embed.shape:
        raise ValueError("clean_embed and corrupted_embed must be tensors of the same shape [b, p, d_model], got "
                         f"{getattr(clean_embed, 'shape', clean_embed)!r} and "
                         f"{getattr(corrupted_embed, 'shape', corrupted_embed)!r}")
    alphas = torch.arange(1, m + 1, dtype=clean_embed.dtype, device=clean_embed.device) / m  # k/m
    alphas = alphas.view(m, *[1] * clean_embed.ndim)
    return corrupted_embed + alphas * (clean_embed - corrupted_embed)


def _inputs(model: Any, clean_tokens: torch.Tensor, corrupted_tokens: torch.Tensor,
            graph: CircuitGraph | None) -> tuple[CircuitGraph, torch.Tensor, torch.Tensor]:
    check_model(model, HookedTransformer)
    graph = graph_for(model, graph)
    clean = check_tokens(model, clean_tokens, "clean_tokens", nonempty=True)
    corrupted = check_tokens(model, corrupted_tokens, "corrupted_tokens")
    if corrupted.shape != clean.shape:
        raise ValueError(f"corrupted_tokens has shape {list(corrupted.shape)} but clean_tokens has shape "
                         f"{list(clean.shape)}: the two prompt sets must be aligned position by position")
    return graph, clean, corrupted


def eap(model: HookedTransformer, clean_tokens: torch.Tensor, corrupted_tokens: torch.Tensor, metric: Metric,
        graph: CircuitGraph | None = None) -> torch.Tensor:
    """EAP scores (Syed et al. 2023): float64 [n_edges] aligned with ``graph.edges``; each is
    the first-order estimate of metric(clean run with that edge cut) - metric(clean run).

    clean_tokens, corrupted_tokens: [b, p]. metric: logits [b, p, d_vocab] -> 1-element tensor,
    differentiable (e.g. ``toykit.patching.logit_diff_metric(answers, wrong)``).
    """
    graph, clean, corrupted = _inputs(model, clean_tokens, corrupted_tokens, graph)
    corrupted_out = sender_outputs(model, corrupted, graph)
    grads, clean_out = receiver_gradients(model, clean, metric, graph)
    return eap_scores(graph, clean_out, corrupted_out, grads)


def eap_ig(model: HookedTransformer, clean_tokens: torch.Tensor, corrupted_tokens: torch.Tensor, metric: Metric,
           steps: int = 30, graph: CircuitGraph | None = None) -> torch.Tensor:
    """EAP-IG scores (Hanna et al. 2024, Section 3): float64 [n_edges] aligned with
    ``graph.edges``. The gradient is averaged over ``steps`` = m points between the corrupted
    and the clean embedding (k/m for k = 1..m; m = 1 is EAP). The authors' code uses 30 steps
    by default. Arguments as ``eap``."""
    graph, clean, corrupted = _inputs(model, clean_tokens, corrupted_tokens, graph)
    m = check_positive_int("steps", steps)
    corrupted_out = sender_outputs(model, corrupted, graph)
    with torch.no_grad():
        clean_embed = model(clean, stop_at_layer=0)  # [b, p, d_model]: the input of block 0
    points = interpolation_points(clean_embed, corrupted_out[0], m)
    total = None
    for k in range(1, m + 1):
        # k = m is the clean run itself (no override), which also gives the clean outputs exactly.
        embed = None if k == m else points[k - 1]
        grads, outputs = receiver_gradients(model, clean, metric, graph, embed=embed)
        total = grads if total is None else total + grads
    assert total is not None  # m >= 1
    return eap_scores(graph, outputs, corrupted_out, total / m)
