"""The computational graph of a HookedTransformer at the granularity of ACDC (Conmy et al. 2023,
Section 3): which component writes into the residual stream that which later
component reads.

Every component reads the sum of what earlier components wrote (the residual stream), so the
model is a graph with an edge from every writer (a *sender*) to every later reader (a
*receiver*). Names:

- senders: ``"embed"`` (token plus positional embedding: what ``blocks.0.hook_resid_pre``
  holds), ``"a{l}.h{h}"`` (head h of layer l: its output z @ W_O, TransformerLens's
  ``blocks.{l}.attn.hook_result``), ``"m{l}"`` (the MLP output of layer l, ``hook_mlp_out``).
  The attention bias b_O belongs to no sender: it is always kept.
- receivers: ``"a{l}.h{h}.q"`` / ``".k"`` / ``".v"`` (that head's query, key and value input,
  before ln1: ``hook_q_input`` and so on), ``"m{l}"`` (the MLP input, before ln2:
  ``hook_mlp_in``) and ``"logits"`` (the input of ln_final and the unembedding).

A head of layer l reads embed and every head and MLP of the layers before l; the MLP of layer
l also reads the heads of layer l; the logits read everything. An edge is the tuple
``(sender, receiver)``, e.g. ``("a0.h1", "a1.h0.k")``.

ACDC's own graph has one more edge per head, from each of its q, k and v inputs to the head
itself (3 * n_layers * n_heads edges); here those are part of the head, so the counts differ
by exactly that. For GPT-2 small (12 layers, 12 heads, MLPs) ``edge_count`` gives 32,491.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from toykit.hooks import check_model
from toykit.transformer import HookedTransformer
from toykit.validation import check_bool, check_positive_int

__all__ = ["CircuitGraph", "Edge", "Graph", "edge_count"]

#: An edge: (sender, receiver), e.g. ("a0.h1", "a1.h0.k").
Edge = tuple[str, str]

_HEAD = re.compile(r"a(\d+)\.h(\d+)")
_HEAD_INPUT = re.compile(r"a(\d+)\.h(\d+)\.([qkv])")
_MLP = re.compile(r"m(\d+)")


def edge_count(n_layers: int, n_heads: int, attn_only: bool) -> int:
    """The number of edges of the graph of a model of this shape, in closed form.

    With L = n_layers, H = n_heads and M = 0 (attn_only) or 1 (one MLP per layer):

    - the 3 H inputs (q, k, v) of the heads of layer l read 1 + l (H + M) senders:
      3 H L + 3 H (H + M) L (L - 1) / 2 in all;
    - the MLP of layer l reads 1 + (l + 1) H + l senders: M (L + H L (L + 1) / 2 + L (L - 1) / 2);
    - the logits read all 1 + L (H + M) senders.

    >>> edge_count(2, 4, True), edge_count(3, 4, False)
    (81, 262)
    """
    L, H = check_positive_int("n_layers", n_layers), check_positive_int("n_heads", n_heads)
    M = 0 if check_bool("attn_only", attn_only) else 1
    heads = 3 * H * L + 3 * H * (H + M) * L * (L - 1) // 2
    mlps = M * (L + H * L * (L + 1) // 2 + L * (L - 1) // 2)
    return heads + mlps + 1 + L * (H + M)


class CircuitGraph:
    """The sender/receiver graph of a model with n_layers layers of n_heads heads (and an MLP
    per layer unless attn_only). Build one with ``CircuitGraph.from_model(model)``.

    ``senders`` and ``receivers`` are in forward (topological) order; ``edges`` are ordered by
    receiver, then sender, both in forward order, so the edges into one receiver are
    contiguous. Scores and masks over edges are tensors [n_edges] aligned with ``edges``.
    """

    def __init__(self, n_layers: int, n_heads: int, attn_only: bool) -> None:
        self.n_layers = check_positive_int("n_layers", n_layers)
        self.n_heads = check_positive_int("n_heads", n_heads)
        self.attn_only = check_bool("attn_only", attn_only)
        L, H = n_layers, n_heads
        senders, receivers = ["embed"], []
        for l in range(L):
            senders += [f"a{l}.h{h}" for h in range(H)]
            receivers += [f"a{l}.h{h}.{x}" for h in range(H) for x in "qkv"]
            if not attn_only:
                senders.append(f"m{l}")
                receivers.append(f"m{l}")
        receivers.append("logits")
        self.senders: list[str] = senders
        self.receivers: list[str] = receivers
        self.sender_index = {s: i for i, s in enumerate(senders)}
        self.receiver_index = {r: i for i, r in enumerate(receivers)}
        # The senders a receiver reads are a prefix of ``senders`` (forward order), so the
        # edges into receiver r are edges[start[r] : start[r] + n_read[r]].
        self.n_read = {r: sum(self.write_stage(s) < self.read_stage(r) for s in senders) for r in receivers}
        self.edges: list[Edge] = [(s, r) for r in receivers for s in senders[:self.n_read[r]]]
        self.edge_index = {e: i for i, e in enumerate(self.edges)}
        self.start: dict[str, int] = {}
        offset = 0
        for r in receivers:
            self.start[r] = offset
            offset += self.n_read[r]

    @classmethod
    def from_model(cls, model: Any) -> CircuitGraph:
        """The graph of a HookedTransformer (from its cfg)."""
        cfg = check_model(model, HookedTransformer).cfg
        return cls(cfg.n_layers, cfg.n_heads, cfg.attn_only)

    def __repr__(self) -> str:
        return (f"CircuitGraph(n_layers={self.n_layers}, n_heads={self.n_heads}, attn_only={self.attn_only}: "
                f"{len(self.senders)} senders, {len(self.receivers)} receivers, {len(self.edges)} edges)")

    def __len__(self) -> int:
        return len(self.edges)

    # -- where each node sits in the forward pass ----------------------------------------------

    def write_stage(self, sender: str) -> int:
        """When a sender writes: 0 for embed, 2l + 1 for a head of layer l, 2l + 2 for m{l}."""
        if sender == "embed":
            return 0
        if (m := _HEAD.fullmatch(sender)) and self._in_range(m):
            return 2 * int(m[1]) + 1
        if (m := _MLP.fullmatch(sender)) and not self.attn_only and int(m[1]) < self.n_layers:
            return 2 * int(m[1]) + 2
        raise ValueError(f"unknown sender {sender!r}: expected 'embed', 'a{{l}}.h{{h}}' or 'm{{l}}' "
                         f"for this graph ({self.n_layers} layers, {self.n_heads} heads, "
                         f"{'no MLPs' if self.attn_only else 'MLPs'})")

    def read_stage(self, receiver: str) -> int:
        """When a receiver reads: it sees every sender whose write_stage is smaller."""
        if receiver == "logits":
            return 2 * self.n_layers + 1
        if (m := _HEAD_INPUT.fullmatch(receiver)) and self._in_range(m):
            return 2 * int(m[1]) + 1
        if (m := _MLP.fullmatch(receiver)) and not self.attn_only and int(m[1]) < self.n_layers:
            return 2 * int(m[1]) + 2
        raise ValueError(f"unknown receiver {receiver!r}: expected 'a{{l}}.h{{h}}.q' (or .k, .v), 'm{{l}}' "
                         f"or 'logits' for this graph ({self.n_layers} layers, {self.n_heads} heads, "
                         f"{'no MLPs' if self.attn_only else 'MLPs'})")

    def _in_range(self, m: re.Match) -> bool:
        return int(m[1]) < self.n_layers and int(m[2]) < self.n_heads

    @staticmethod
    def node_of(receiver: str) -> str | None:
        """The sender whose input a receiver is: "a1.h0.q" -> "a1.h0", "m1" -> "m1", "logits" -> None."""
        if receiver == "logits":
            return None
        return receiver[:-2] if _HEAD_INPUT.fullmatch(receiver) else receiver

    def senders_of(self, receiver: str) -> list[str]:
        """The senders a receiver reads, in forward order."""
        self.read_stage(receiver)  # a clear error for an unknown name
        return self.senders[:self.n_read[receiver]]

    def edges_into(self, receiver: str) -> range:
        """The indices in ``edges`` of the edges into ``receiver``."""
        self.read_stage(receiver)
        return range(self.start[receiver], self.start[receiver] + self.n_read[receiver])

    def edges_from(self, sender: str) -> list[int]:
        """The indices in ``edges`` of the edges out of ``sender``."""
        self.write_stage(sender)  # a clear error for an unknown name
        i = self.sender_index[sender]
        return [self.start[r] + i for r in self.receivers if i < self.n_read[r]]

    # -- edge sets as masks and dicts ----------------------------------------------------------

    def mask(self, edges: Iterable[Edge] | torch.Tensor, name: str = "edges") -> torch.Tensor:
        """A bool mask [n_edges] aligned with ``edges`` from a collection of (sender, receiver)
        tuples, or a bool tensor [n_edges] checked and copied. ``name`` is the argument's name,
        for the error messages."""
        if isinstance(edges, torch.Tensor):
            if edges.dtype != torch.bool or edges.shape != (len(self.edges),):
                raise ValueError(f"{name} as a tensor must be a bool mask of shape [{len(self.edges)}] "
                                 f"(one entry per graph edge), got {edges.dtype} {list(edges.shape)}")
            return edges.detach().cpu().clone()
        if isinstance(edges, (str, bytes)) or not isinstance(edges, Iterable):
            raise TypeError(f"{name} must be a collection of (sender, receiver) tuples or a bool mask, "
                            f"got {type(edges).__name__}")
        out = torch.zeros(len(self.edges), dtype=torch.bool)
        for edge in edges:
            i = self.edge_index.get(tuple(edge) if isinstance(edge, list) else edge)
            if i is None:
                raise ValueError(f"{name} holds {edge!r}, which is not an edge of {self!r}; an edge is "
                                 "(sender, receiver) with the sender earlier than the receiver, e.g. "
                                 "('a0.h1', 'a1.h0.k')")
            out[i] = True
        return out

    def edges_in(self, mask: torch.Tensor) -> list[Edge]:
        """The edges where a bool mask [n_edges] is True, in graph order."""
        mask = self.mask(mask, "mask")
        return [e for e, keep in zip(self.edges, mask.tolist()) if keep]

    def as_dict(self, scores: torch.Tensor | Sequence[float]) -> dict[Edge, float]:
        """{edge: score} from scores [n_edges] aligned with ``edges``."""
        values = torch.as_tensor(scores).detach().cpu().flatten().tolist()
        if len(values) != len(self.edges):
            raise ValueError(f"scores must have one entry per edge ({len(self.edges)}), got {len(values)}")
        return dict(zip(self.edges, values))

    def check_matches(self, model: Any, name: str = "graph") -> None:
        """Raise unless this graph has the shape of ``model``."""
        cfg = model.cfg
        if (cfg.n_layers, cfg.n_heads, cfg.attn_only) != (self.n_layers, self.n_heads, self.attn_only):
            raise ValueError(f"{name} is {self!r}, but the model has n_layers={cfg.n_layers}, "
                             f"n_heads={cfg.n_heads}, attn_only={cfg.attn_only}; use CircuitGraph.from_model(model)")


#: The short name.
Graph = CircuitGraph
