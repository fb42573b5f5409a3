"""Ground-truth circuits to measure circuit discovery against: one planted by hand, two found by hand.

An automatic method (ACDC, Conmy et al. 2023; edge attribution patching, Syed et al. 2023) is
judged by how well it recovers a circuit that is already known (Conmy et al. 2023, Section 4).
This module gives three such circuits as sets of edges of the computational graph:

- ``planted_induction_circuit``: a small attention-only model whose weights are written by hand
  so that it solves induction through exactly one previous-token head and one induction head.
  Every other edge provably does nothing, so its edge set is exact.
- ``attn_only_2l_induction_truth``: the induction circuit of the shipped ``attn-only-2l``, as
  chapter 04 found it.
- ``tinylang_ioi_truth``: the TinyLang IOI circuit of chapter 06, section 7.

With the tasks they are measured on: ``induction_logprob`` (with ``induction_predictions``) is
the induction metric on repeated random tokens; ``tinylang_ioi_prompts`` gives the IOI prompts
and their ABC corruptions.

Names of the graph (shared by the whole ``toykit.circuit_discovery`` package):

- senders: ``"embed"`` (token plus positional embedding, ``blocks.0.hook_resid_pre``),
  ``"a{l}.h{h}"`` (head h of layer l, its output z @ W_O, TransformerLens's
  ``attn.hook_result``; b_O belongs to no sender) and ``"m{l}"`` (MLP l's output);
- receivers: ``"a{l}.h{h}.q"`` / ``".k"`` / ``".v"`` (that head's query, key and value input,
  before ln1), ``"m{l}"`` (MLP l's input) and ``"logits"``;
- an edge ``(sender, receiver)`` exists when the receiver reads the residual stream after the
  sender wrote to it: a head of layer l reads embed and layers < l, an MLP of layer l also
  reads layer l's heads, the logits read everything.

**Which edges count as the circuit.** An edge is patched by giving the receiver the sender's
value from a *corrupted* run. An edge whose sender writes the same thing on clean and corrupted
inputs (say, positional information, when both runs have the same length) cannot change
anything when patched, so no patching-based method can find it, however much the mechanism
relies on it. Each ground truth therefore has two parts: ``edges``, the edges through which
the difference between clean and corrupted inputs reaches the logits (score discovery methods
against these), and ``constant_edges``, edges the mechanism also uses but whose sender carries
the same value (or nearly) in both runs. ``edges | constant_edges`` is the whole mechanism.
Each function's docstring says how its sets were derived, and where that was a choice.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from toykit.circuit_discovery.graph import Edge
from toykit.runtime import resolve_device
from toykit.tasks import tinylang
from toykit.tasks.repeated_tokens import repeated_half_slices
from toykit.transformer import HookedTransformer, TransformerConfig
from toykit.validation import check_non_negative_int, check_positive_int, check_positive_number

__all__ = [
    "PLANTED_INDUCTION_HEAD",
    "PLANTED_PREVIOUS_TOKEN_HEAD",
    "GroundTruth",
    "PlantedCircuit",
    "attn_only_2l_induction_truth",
    "induction_logprob",
    "induction_predictions",
    "planted_induction_circuit",
    "tinylang_ioi_prompts",
    "tinylang_ioi_truth",
]

# Where the planted circuit's two heads sit, as (layer, head). Not head 0 on purpose: nothing
# about the circuit may depend on a head's index.
PLANTED_PREVIOUS_TOKEN_HEAD = (0, 1)
PLANTED_INDUCTION_HEAD = (1, 2)


@dataclass(frozen=True)
class GroundTruth:
    """A known circuit as edges of the computational graph (names as in this module's docstring).

    edges: the edges that carry the clean-vs-corrupted difference to the logits; what a
        discovery method should find.
    constant_edges: edges the mechanism also uses, whose sender writes the same thing (in
        the planted model exactly, in trained ones nearly) for clean and corrupted inputs, so
        that patching them changes (almost) nothing. Disjoint from ``edges``.
    nodes (a property): every sender and receiver name of ``edges``.
    """

    edges: frozenset[Edge]
    constant_edges: frozenset[Edge] = frozenset()

    @property
    def nodes(self) -> frozenset[str]:
        return frozenset(name for edge in self.edges for name in edge)


@dataclass(frozen=True)
class PlantedCircuit(GroundTruth):
    """``planted_induction_circuit``'s model with its ground truth.

    model: the attention-only HookedTransformer (2 layers, no normalization).
    seq_len: the length of the repeated block it is built for; n_ctx = 2 * seq_len + 1 (BOS 0).
    subspaces: name -> slice of d_model: "token", "previous_token", "output", "position" and
        "unused" (where the heads outside the circuit write).
    """

    model: HookedTransformer = field(kw_only=True)
    seq_len: int = field(kw_only=True)
    subspaces: dict[str, slice] = field(kw_only=True)


def planted_induction_circuit(d_vocab: int = 80, seq_len: int = 4, n_heads: int = 4, *, scale: float = 20.0,
                              seed: int = 0, device: str | torch.device | None = None) -> PlantedCircuit:
    """A 2-layer attention-only model that does induction through a hand-written circuit.

    d_vocab: vocabulary size V (token 0 is the BOS). seq_len: the repeated block's length S;
    the model reads ``generate_repeated_tokens(batch, S, V)`` ([batch, 2S + 1], BOS first).
    n_heads: heads per layer (at least 4); d_head = V and d_model = n_heads * V.
    scale: the attention-score gap (in nats) between a wanted key and the others, and the logit
    of the copied token. seed: draws the weights of the heads outside the circuit.
    device: where the model lives (None: ``toykit.get_device()``); it is built on the CPU.
    Returns a ``PlantedCircuit``: the model (in eval mode) and its exact ground truth.

    **Construction.** There is no LayerNorm (``normalization_type=None``), so every map below
    is exact. d_model is cut into orthogonal blocks of coordinates:
    ``token`` (V dims, W_E is one-hot there), ``previous_token`` (V), ``output`` (V, the only
    block W_U reads), ``position`` (4 dims holding p, 1, p² and [p = 0]) and ``unused``
    (the rest, at least V - 4 dims).

    - Previous-token head ``a0.h1``: the query at position q is (q - 1, 1) and the key at k is
      (2k, -k²), so the score is scale * (2k(q - 1) - k²) = scale * ((q - 1)² - (k - q + 1)²):
      largest at k = q - 1 and at least ``scale`` lower at every other key (position 0 attends
      to itself). Its value is the token block (without the BOS) and W_O writes it into
      ``previous_token``.
    - Induction head ``a1.h2``: the query is the current token's one-hot, the key the
      ``previous_token`` block (K-composition with ``a0.h1``), so the score is ``scale`` where
      the key's previous token equals the current token and 0 elsewhere. The key at position 0
      (the BOS) also gets ``scale / 2`` (from the [p = 0] coordinate): when nothing matches,
      as in the first block, the head rests on the BOS, whose value is zero, so the logits are
      flat and the prediction is uniform. The value is the token block, W_O writes it into
      ``output`` and W_U maps ``output`` to the same token's logit times ``scale``.
    - Every other head keeps random weights (``init_weights(seed)``) for W_Q, W_K and W_V, so
      it reads the whole residual stream, circuit included, and attends however that makes
      it; but its W_O writes only into ``unused``, which no circuit head and not W_U reads.
      So these heads are busy but cannot matter: their outputs, and anything computed from
      them, never reach the logits. All biases are zero.

    **Ground truth.** ``edges`` are the 5 edges that carry token information:
    embed -> a0.h1.v (the token the previous-token head copies), a0.h1 -> a1.h2.k
    (K-composition), embed -> a1.h2.q (the current token), embed -> a1.h2.v (the token to
    copy) and a1.h2 -> logits. ``constant_edges`` are the 3 edges that carry only positions
    (the same in every run of the same length): embed -> a0.h1.q, embed -> a0.h1.k and
    embed -> a1.h2.k (the BOS bias; the query side of that bias rides on embed -> a1.h2.q).
    Every other edge of the graph reads or writes a block that the circuit ignores.
    """
    V, S = check_positive_int("d_vocab", d_vocab), check_positive_int("seq_len", seq_len)
    check_positive_int("n_heads", n_heads)
    check_positive_number("scale", scale)
    check_non_negative_int("seed", seed)
    if V < 8:
        raise ValueError(f"d_vocab must be at least 8 (the BOS and room for the unused block), got {d_vocab}")
    if n_heads < 4:
        raise ValueError(f"n_heads must be at least 4, since d_model = n_heads * d_vocab must hold three "
                         f"d_vocab-sized blocks plus the positions, got {n_heads}")
    n_ctx = 2 * S + 1
    cfg = TransformerConfig(n_layers=2, d_model=n_heads * V, n_heads=n_heads, d_head=V, d_vocab=V, n_ctx=n_ctx,
                            attn_only=True, normalization_type=None, seed=seed, device="cpu")
    model = HookedTransformer(cfg)
    tok, prev, out = slice(0, V), slice(V, 2 * V), slice(2 * V, 3 * V)
    P, ONE, P2, FIRST = 3 * V, 3 * V + 1, 3 * V + 2, 3 * V + 3  # the four position coordinates
    unused = slice(3 * V + 4, cfg.d_model)
    eye = torch.eye(V)
    # q . k / sqrt(d_head) is the score; splitting sqrt(scale * sqrt(d_head)) between q and k gives
    # a score of `scale` per unit of q . k.
    w = math.sqrt(scale * math.sqrt(V))
    positions = torch.arange(n_ctx, dtype=torch.float32)

    with torch.no_grad():
        # Biases are already zero (init_weights); the heads' W_Q, W_K, W_V stay random for now.
        for W in (model.embed.W_E, model.pos_embed.W_pos, model.unembed.W_U):
            W.zero_()
        model.embed.W_E[:, tok] = eye
        model.pos_embed.W_pos[:, P] = positions
        model.pos_embed.W_pos[:, ONE] = 1.0
        model.pos_embed.W_pos[:, P2] = positions**2
        model.pos_embed.W_pos[0, FIRST] = 1.0
        model.unembed.W_U[out, :] = scale * eye

        for layer, block in enumerate(model.blocks):
            attn = block.attn
            # Outside the circuit: keep the random reads, write only into the unused block.
            keep = torch.zeros(cfg.d_model)
            keep[unused] = 1.0
            attn.W_O.mul_(keep)
            circuit_head = (PLANTED_PREVIOUS_TOKEN_HEAD if layer == 0 else PLANTED_INDUCTION_HEAD)[1]
            for W in (attn.W_Q, attn.W_K, attn.W_V, attn.W_O):
                W[circuit_head] = 0.0
            if layer == 0:
                h = circuit_head  # previous-token head
                attn.W_Q[h, P, 0], attn.W_Q[h, ONE, 0], attn.W_Q[h, ONE, 1] = w, -w, w  # q = w (p - 1, 1)
                attn.W_K[h, P, 0], attn.W_K[h, P2, 1] = 2 * w, -w  # k = w (2p, -p²)
                attn.W_V[h, tok, :] = eye
                attn.W_V[h, 0, 0] = 0.0  # it copies every token but the BOS: no key's previous token is the BOS
                attn.W_O[h, :, prev] = eye
            else:
                h = circuit_head  # induction head
                attn.W_Q[h, tok, :] = w * eye  # the current token
                attn.W_K[h, prev, :] = w * eye  # the previous token, as a0.h1 wrote it
                # The BOS sink uses coordinate 0 of q and k, the BOS token's own coordinate, which
                # is free: a0.h1 never writes the BOS, so no key's previous-token block holds it.
                attn.W_Q[h, ONE, 0] = w / 2  # a constant in every query ...
                attn.W_K[h, FIRST, 0] = w  # ... meets the key at position 0: score scale / 2
                attn.W_V[h, tok, :] = eye
                attn.W_V[h, 0, 0] = 0.0  # the BOS carries no value: resting on it predicts nothing
                attn.W_O[h, :, out] = eye

    layer0, head0 = PLANTED_PREVIOUS_TOKEN_HEAD
    layer1, head1 = PLANTED_INDUCTION_HEAD
    prev_head, ind_head = f"a{layer0}.h{head0}", f"a{layer1}.h{head1}"
    edges = frozenset({("embed", f"{prev_head}.v"), (prev_head, f"{ind_head}.k"), ("embed", f"{ind_head}.q"),
                       ("embed", f"{ind_head}.v"), (ind_head, "logits")})
    constant = frozenset({("embed", f"{prev_head}.q"), ("embed", f"{prev_head}.k"), ("embed", f"{ind_head}.k")})
    subspaces = {"token": tok, "previous_token": prev, "output": out, "position": slice(P, FIRST + 1),
                 "unused": unused}
    model.to(resolve_device(device)).eval()
    return PlantedCircuit(edges, constant, model=model, seq_len=S, subspaces=subspaces)


def induction_predictions(n_tokens: int, seq_len: int) -> slice:
    """The entries of a per-token loss [batch, n_tokens - 1] that induction can predict on a
    ``generate_repeated_tokens`` row: those whose targets are tokens 2 .. S of the second copy.

    ``repeated_half_slices``'s repeated slice also holds the prediction of the second copy's
    *first* token, made at the last token of the first block. Nothing earlier tells what
    follows that token, so no model can predict it: it is left out here.
    """
    _, repeated = repeated_half_slices(n_tokens, seq_len)
    return slice(repeated.start + 1, repeated.stop)


def induction_logprob(tokens: torch.Tensor, seq_len: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The induction task's metric on ``generate_repeated_tokens`` rows (the clean ``tokens``
    [b, 2 * seq_len + 1]): logits [b, p, d_vocab] -> the mean log-probability of the right next
    token over the positions ``induction_predictions`` keeps, a 0-dim tensor (higher: more
    induction). Differentiable, for EAP."""
    check_positive_int("seq_len", seq_len)
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2 or tokens.dtype != torch.int64:
        raise ValueError(f"tokens must be an int64 tensor [batch, positions], got {tokens!r:.80}")
    where = induction_predictions(tokens.shape[1], seq_len)

    def metric(logits: torch.Tensor) -> torch.Tensor:
        logprobs = logits[:, :-1].log_softmax(-1).gather(-1, tokens[:, 1:, None].to(logits.device))[..., 0]
        return logprobs[:, where].mean()  # logprobs: [b, p - 1]

    return metric


# -- the shipped models' circuits ----------------------------------------------------------------


def attn_only_2l_induction_truth() -> GroundTruth:
    """The induction circuit of the shipped ``attn-only-2l`` (2 layers, 4 heads, LayerNorm).

    From chapter 04's asserted results, on repeated random tokens:

    - head 0.3 is the previous-token head (the top previous-token score of layer 0, asserted
      ``prev_head == 3``; mean-ablating it raises the repeated-block loss from 0.17 to 3.8
      nats), and its positional QK circuit prefers key q - 1 (for the first 37 query
      positions, where it attends 0.8 to the previous token);
    - all four layer-1 heads are induction heads (prefix-matching score >= 0.6 each, asserted);
      they are redundant alone but together essential (all four mean-ablated: 4.9 nats);
    - head 0.3's K-composition into every layer-1 head beats the random baseline and every
      other layer-0 head's (asserted), and no Q-composition stands out;
    - every layer-1 head has a large direct effect on the correct logit, layer-0 heads none
      (direct logit attribution, asserted < 0.1).

    That is the mechanism of Elhage et al. (2021, "Induction heads"): the query reads the
    current token, the key the previous token as head 0.3 wrote it, the value the token to copy.
    ``edges`` (17): embed -> a0.h3.v, a0.h3 -> a1.h{h}.k, embed -> a1.h{h}.q,
    embed -> a1.h{h}.v and a1.h{h} -> logits, for h = 0..3.
    ``constant_edges`` (2): embed -> a0.h3.q and embed -> a0.h3.k, which carry positions
    (identical in a corrupted run of the same length, up to LayerNorm's scale).

    Choices, stated: direct paths (embed -> logits, a0.h3 -> logits) are out, since a
    bigram path cannot help on random tokens and chapter 04 measures no direct effect of
    layer-0 heads; layer-0 heads other than 0.3 are out because chapter 04 asserts only 0.3,
    although some of them attend partly to the previous token and an automatic method may
    reasonably rank their edges above the true negatives; embed -> a1.h{h}.k (positional
    preferences of the induction keys) is out, as the mechanism does not need it.
    """
    induction_heads = [f"a1.h{h}" for h in range(4)]
    edges = {("embed", "a0.h3.v")}
    for head in induction_heads:
        edges |= {("a0.h3", f"{head}.k"), ("embed", f"{head}.q"), ("embed", f"{head}.v"), (head, "logits")}
    return GroundTruth(frozenset(edges), frozenset({("embed", "a0.h3.q"), ("embed", "a0.h3.k")}))


def tinylang_ioi_truth() -> GroundTruth:
    """The IOI circuit of the shipped ``tinylang`` model (3 layers, 4 heads, MLPs), as edges.

    Chapter 06 (section 7) found a circuit of *nodes*, with clean IOI prompts against ABC
    prompts (three different names in the same slots): heads 0.1 and 0.3 (their outputs at
    every position) and the three MLPs at the final position; faithfulness F(C)/F(M) = 1.08,
    every node needed (minimality >= 0.24 of F(M)). Its evidence for the routes:

    - the layer-0 heads act through their **values**: patching their values restores the
      logit difference, patching their attention patterns nothing (< 0.05), because the ABC
      names sit in the same slots (section 3);
    - their effect runs through later components, not directly: the direct path of 0.1 to the
      logits costs 0.18 nats of 9.8, of 0.3 -0.09 (section 4);
    - path patching into the queries, keys and values of all layer-1 and layer-2 heads finds
      no drop above 0.5 nats, while each MLP at the final position is needed (section 4).

    Rule for turning these nodes into edges: every edge between two circuit nodes, plus embed
    into the circuit's heads and the circuit's MLPs into the logits, keeping only the routes
    the evidence above supports. So:

    - embed -> a0.h1.v, embed -> a0.h3.v (2): the names the heads copy;
    - a0.h1, a0.h3 -> m0, m1, m2 (6): the heads feed the MLPs (an MLP of layer l reads
      layer l's heads);
    - m0 -> m1, m0 -> m2, m1 -> m2 (3) and m0, m1, m2 -> logits (3): the MLPs compare the
      names and write the answer.

    14 edges. ``constant_edges`` (2): embed -> a0.h1.q and embed -> a0.h3.q. The heads need
    their attention to the name slots, and what sets it at the final position, the query,
    reads the same token there in clean and ABC prompts.

    Where this is a choice rather than a measurement: chapter 06 tests MLPs as nodes, not the
    MLP-to-MLP or MLP-to-logits routes one by one, so which of those 6 edges really carry the
    answer is assumed (all of them); the heads' direct edges to the logits are left out as
    small, though not zero; so are their keys (embed -> a0.h1.k, a0.h3.k): a key reads the
    name in its slot, so it does change in ABC prompts, but chapter 06 finds the layer-0
    patterns worth less than 0.05 of the logit difference; embed -> m{l} is left out because
    the final token is the same in clean and ABC prompts and chapter 06 finds the MLPs at
    other positions unneeded; and heads 0.0 (a partial backup of 0.3) and 0.2 are outside
    the circuit, as in chapter 06, although noising 0.0 alone costs about 3 nats there.
    Chapter 06 measures faithfulness with mean ablation of nodes; with edge patching from the
    paired ABC prompts, the layer-1 and layer-2 heads, negligible one at a time, together
    carry part of the difference, so check how much these edges recover before relying on it.
    """
    heads, mlps = ["a0.h1", "a0.h3"], ["m0", "m1", "m2"]
    edges = {("embed", f"{head}.v") for head in heads}
    edges |= {(head, mlp) for head in heads for mlp in mlps}
    edges |= {("m0", "m1"), ("m0", "m2"), ("m1", "m2")}
    edges |= {(mlp, "logits") for mlp in mlps}
    return GroundTruth(frozenset(edges), frozenset({("embed", f"{head}.q") for head in heads}))


def tinylang_ioi_prompts(n_prompts: int = 40, *, seed: int = 0) -> tuple[tinylang.Batch, tinylang.Batch]:
    """The prompts ``tinylang_ioi_truth`` is measured on: n_prompts TinyLang IOI test prompts of
    template 0 (so all of one length) and their ABC corruptions (three different names in the
    same slots), as in chapter 06. Returns (clean, corrupted) batches, aligned row by row."""
    check_positive_int("n_prompts", n_prompts)
    pool = max(600, 15 * n_prompts)  # about one IOI prompt in fourteen uses template 0
    examples = [e for e in tinylang.generate_examples("ioi", pool, seed=seed, split="test")
                if e.labels["template_id"] == 0][:n_prompts]
    if len(examples) < n_prompts:
        raise ValueError(f"n_prompts: only {len(examples)} template-0 IOI prompts among {pool} drawn")
    return tinylang.make_batch(examples), tinylang.make_batch(examples, corrupted=True)
