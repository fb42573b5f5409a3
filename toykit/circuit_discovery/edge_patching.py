"""Edge patching: run the clean prompts with some edges of the graph cut (ACDC's intervention,
Conmy et al. 2023, Section 3 and Algorithm 1).

Every receiver's input is the sum of its senders' outputs (plus the biases b_O, which belong to
no sender). To cut the edge (s, r), receiver r gets s's output **from the corrupted run**
instead of its output in this run; every other receiver still reads s's actual output. A
sender's output in the patched run is what it actually computes there, from its own (maybe
patched) inputs, so patches upstream change what flows downstream. Keeping every edge is the
clean run; keeping none is the corrupted run.

It is done with hooks on the per-head inputs, so that each head's q, k and v can be patched on
their own (TransformerLens's switches ``use_split_qkv_input``, ``use_attn_result`` and
``use_hook_mlp_in``, turned on for the run and restored after):

    input of r = residual stream at r - sum over cut senders s of (actual_s - corrupted_s)

read at ``blocks.{l}.hook_q_input`` / ``hook_k_input`` / ``hook_v_input`` [b, p, h, d_model]
(one slice per head), ``blocks.{l}.hook_mlp_in`` [b, p, d_model] and, for the logits, the last
``hook_resid_post`` [b, p, d_model] (the input of ln_final).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from toykit.circuit_discovery.graph import CircuitGraph, Edge
from toykit.hooks import check_model
from toykit.transformer import HookedTransformer
from toykit.transformer_inputs import check_tokens
from toykit.validation import check_tensor

__all__ = ["EdgePatcher", "graph_for", "graph_switches", "patch_edges", "patch_receiver_input", "receiver_hooks",
           "sender_hooks", "sender_outputs", "stack_senders"]


@contextmanager
def graph_switches(model: HookedTransformer) -> Iterator[HookedTransformer]:
    """Turn on the hook points the graph needs (``use_split_qkv_input``, ``use_attn_result``
    and, with MLPs, ``use_hook_mlp_in``) inside the block; on exit, even after an error, turn
    off again the ones that were off. Nesting is fine."""
    switches = ["use_split_qkv_input", "use_attn_result"] + ([] if model.cfg.attn_only else ["use_hook_mlp_in"])
    turned_on = []
    try:
        for switch in switches:
            if not getattr(model.cfg, switch):
                getattr(model, f"set_{switch}")(True)
                turned_on.append(switch)
        yield model
    finally:
        for switch in reversed(turned_on):
            getattr(model, f"set_{switch}")(False)


def sender_hooks(graph: CircuitGraph) -> list[str]:
    """The hook points holding the senders' outputs, in forward order: blocks.0.hook_resid_pre
    (embed), then per layer attn.hook_result [b, p, h, d_model] and hook_mlp_out."""
    names = ["blocks.0.hook_resid_pre"]
    for l in range(graph.n_layers):
        names.append(f"blocks.{l}.attn.hook_result")
        if not graph.attn_only:
            names.append(f"blocks.{l}.hook_mlp_out")
    return names


def receiver_hooks(graph: CircuitGraph) -> list[str]:
    """The hook points holding the receivers' inputs, in forward order."""
    names = []
    for l in range(graph.n_layers):
        names += [f"blocks.{l}.hook_{x}_input" for x in "qkv"]
        if not graph.attn_only:
            names.append(f"blocks.{l}.hook_mlp_in")
    return names + [f"blocks.{graph.n_layers - 1}.hook_resid_post"]


def stack_senders(acts: list[torch.Tensor]) -> torch.Tensor:
    """Sender outputs [n_senders, b, p, d_model] from the activations at ``sender_hooks`` (in
    that order): [b, p, d_model] for embed and MLPs, [b, p, h, d_model] for hook_result."""
    parts = [a.permute(2, 0, 1, 3) if a.ndim == 4 else a[None] for a in acts]
    return torch.cat(parts)


def patch_receiver_input(receiver_input: torch.Tensor, delta: torch.Tensor, cut: torch.Tensor) -> torch.Tensor:
    """A receiver's input with the cut edges patched: every cut sender's output in this run
    swapped for its output on the corrupted run, at this receiver only. A new tensor; the
    arguments are left unchanged.

    receiver_input: [b, p, d_model] (an MLP's input, the logits' input) or [b, p, n_heads,
        d_model] (the q, k or v inputs of a layer's heads, one slice per head).
    delta: [n_senders, b, p, d_model], for each sender this receiver reads, its output in this
        run minus its output on the corrupted run.
    cut: bool [n_senders] for a 3-D input, [n_senders, n_heads] for a per-head input: which
        edges (sender, receiver) are cut.
    Returns receiver_input - sum over cut senders s of delta_s (per head): each cut sender's
    output in this run leaves the input, and its corrupted output takes its place.
    """
    if not isinstance(receiver_input, torch.Tensor) or receiver_input.ndim not in (3, 4):
        raise ValueError("receiver_input must be a tensor [b, p, d_model] or [b, p, n_heads, d_model], got "
                         f"{getattr(receiver_input, 'shape', type(receiver_input).__name__)}")
    b, p, d = receiver_input.shape[0], receiver_input.shape[1], receiver_input.shape[-1]
    check_tensor("delta", delta, [None, b, p, d], dtype="float")
    n_heads = [receiver_input.shape[2]] if receiver_input.ndim == 4 else []
    check_tensor("cut", cut, [delta.shape[0], *n_heads], dtype="bool")
    weights = cut.to(delta.dtype)
    if receiver_input.ndim == 4:  # per-head input [b, p, h, d]: head h swaps only the senders cut for it
        return receiver_input - torch.einsum("sbpd,sh->bphd", delta, weights)
    return receiver_input - torch.einsum("sbpd,s->bpd", delta, weights)


def graph_for(model: Any, graph: CircuitGraph | None) -> CircuitGraph:
    """``graph``, checked against the model, or the model's graph when None."""
    if graph is None:
        return CircuitGraph.from_model(model)
    if not isinstance(graph, CircuitGraph):
        raise TypeError(f"graph must be a CircuitGraph or None, got {type(graph).__name__}")
    graph.check_matches(model)
    return graph


@torch.no_grad()
def sender_outputs(model: HookedTransformer, tokens: torch.Tensor, graph: CircuitGraph | None = None) -> torch.Tensor:
    """Every sender's output on a plain run of ``tokens`` [b, p]: [n_senders, b, p, d_model],
    in the order of ``graph.senders``."""
    check_model(model, HookedTransformer)
    graph = graph_for(model, graph)
    tokens = check_tokens(model, tokens, "tokens")
    names = sender_hooks(graph)
    with graph_switches(model):
        _, cache = model.run_with_cache(tokens, names_filter=names)
    return stack_senders([cache[n] for n in names])


class EdgePatcher:
    """Runs the clean prompts with any set of kept edges, the others patched from the corrupted
    run (whose sender outputs are computed once, here).

    clean_tokens: [b, p]. corrupted: the corrupted tokens [b, p] (same shape), or their sender
        outputs [n_senders, b, p, d_model] from ``sender_outputs``.
    ``run(kept_edges)`` returns the logits [b, p, d_vocab]; ``n_forward`` counts the forward
    passes made so far: the corrupted run (when given tokens), one clean run, whose logits are
    kept as ``clean_logits``, and one per ``run``. Everything before the first layer with a cut
    input is the clean run, so ``run`` starts there from the cached clean residual stream.
    """

    def __init__(self, model: HookedTransformer, clean_tokens: torch.Tensor, corrupted: torch.Tensor,
                 graph: CircuitGraph | None = None) -> None:
        self.model = check_model(model, HookedTransformer)
        self.graph = graph_for(model, graph)
        self.tokens = check_tokens(model, clean_tokens, "clean_tokens", nonempty=True)
        b, p = self.tokens.shape
        self.n_forward = 0
        if isinstance(corrupted, torch.Tensor) and corrupted.is_floating_point():
            check_tensor("corrupted", corrupted, [len(self.graph.senders), b, p, model.cfg.d_model])
            self.corrupted = corrupted.detach().to(model.device, model.cfg.dtype)
        else:
            corrupted_tokens = check_tokens(model, corrupted, "corrupted")
            if corrupted_tokens.shape != self.tokens.shape:
                raise ValueError(f"corrupted has shape {list(corrupted_tokens.shape)} but clean_tokens has shape "
                                 f"{list(self.tokens.shape)}: edge patching swaps activations position by "
                                 "position, so the two prompt sets must be aligned")
            self.corrupted = sender_outputs(model, corrupted_tokens, self.graph)
            self.n_forward += 1
        # The clean run: its logits, its sender outputs and the residual stream entering each
        # block, for runs that start after block 0.
        names = sender_hooks(self.graph)
        resid_names = [f"blocks.{l}.hook_resid_pre" for l in range(self.graph.n_layers)]
        with torch.no_grad(), graph_switches(model):
            self.clean_logits, cache = model.run_with_cache(self.tokens, names_filter=names + resid_names)
        self.n_forward += 1
        self.clean_outputs = stack_senders([cache[n] for n in names])  # [n_senders, b, p, d_model]
        self.clean_resid = [cache[n] for n in resid_names]  # n_layers x [b, p, d_model]
        # For each receiver hook, the indices into ``edges`` of its receivers' incoming edges,
        # [n_senders read, n receivers at that hook]: a gather turns a mask into a matrix.
        self._edge_table: dict[str, torch.Tensor] = {}
        g = self.graph
        for name in receiver_hooks(g):
            receivers = self._receivers_at(name)
            self._edge_table[name] = torch.stack([torch.tensor(g.edges_into(r)) for r in receivers], dim=1)

    def _receivers_at(self, name: str) -> list[str]:
        g, parts = self.graph, name.split(".")
        layer, leaf = int(parts[1]), parts[-1]
        if leaf == "hook_resid_post":
            return ["logits"]
        if leaf == "hook_mlp_in":
            return [f"m{layer}"]
        x = leaf[len("hook_")]  # q, k or v
        return [f"a{layer}.h{h}.{x}" for h in range(g.n_heads)]

    @torch.no_grad()
    def run(self, kept_edges: Iterable[Edge] | torch.Tensor) -> torch.Tensor:
        """The logits [b, p, d_vocab] of the clean prompts with only ``kept_edges`` (a collection
        of (sender, receiver) tuples, or a bool mask [n_edges] aligned with ``graph.edges``)
        left intact and every other edge patched from the corrupted run."""
        model, g = self.model, self.graph
        removed = (~g.mask(kept_edges, "kept_edges")).to(model.device)
        cut_layers = [int(name.split(".")[1]) for name, table in self._edge_table.items() if removed[table].any()]
        start = min(cut_layers, default=g.n_layers - 1)
        # actual - corrupted output, per sender, as they are computed; before block ``start``
        # the actual outputs are the clean ones.
        n_before = g.n_read[f"a{start}.h0.q"]
        deltas = [self.clean_outputs[:n_before] - self.corrupted[:n_before]] if start > 0 else []

        def record(act: torch.Tensor, hook) -> None:
            first = sum(d.shape[0] for d in deltas)  # index of this hook's first sender
            out = act.permute(2, 0, 1, 3) if act.ndim == 4 else act[None]  # [n, b, p, d]
            deltas.append(out - self.corrupted[first:first + out.shape[0]])

        def patch(act: torch.Tensor, hook) -> torch.Tensor | None:
            cut = removed[self._edge_table[hook.name]]  # [n_read, n receivers here]
            if not cut.any():
                return None
            # torch.cat(deltas): [n_read, b, p, d], the senders written so far
            return patch_receiver_input(act, torch.cat(deltas), cut if act.ndim == 4 else cut[:, 0])

        # Each sender's hook point fires before any receiver that reads it, so ``deltas`` holds
        # exactly the senders a receiver reads when its hook fires.
        hooks = [(name, record) for name in sender_hooks(g)] + [(name, patch) for name in receiver_hooks(g)]
        with graph_switches(model), model.hooks(fwd_hooks=hooks):
            logits = model(self.clean_resid[start], start_at_layer=start) if start > 0 else model(self.tokens)
        self.n_forward += 1
        return logits


def patch_edges(model: HookedTransformer, clean_tokens: torch.Tensor, corrupted: torch.Tensor,
                kept_edges: Iterable[Edge] | torch.Tensor, graph: CircuitGraph | None = None) -> torch.Tensor:
    """The logits [b, p, d_vocab] of the clean prompts [b, p] with only ``kept_edges`` intact and
    every other edge's sender output replaced, at that receiver only, by the sender's output on
    ``corrupted`` (tokens [b, p], or sender outputs [n_senders, b, p, d_model]). See the module
    docstring; for many edge sets on the same prompts, build one ``EdgePatcher``."""
    return EdgePatcher(model, clean_tokens, corrupted, graph).run(kept_edges)
