"""Find attention heads by what they do, measure how heads compose, and read a head end to end.

**Head-detection scores** read an attention pattern on a repeated random sequence
(``toykit.tasks.repeated_tokens.generate_repeated_tokens``): a random block of S tokens
followed by the same block again, optionally after a BOS token. Write n for the sequence
length (2S or 2S + 1) and call the positions n - S .. n - 1 the *second copy*; the token at
second-copy position q first occurred at position q - S.

- prefix-matching (induction) score: the attention that second-copy queries pay to the
  token *after* the first occurrence of their own token, i.e. pattern[q, q - S + 1], averaged
  over the S second-copy queries (and the batch). An induction head scores near 1; a head
  attending uniformly over its causal window scores about mean_q 1 / (q + 1).
- duplicate-token score: the same with key q - S (the earlier copy of the token itself).
- previous-token score: pattern[q, q - 1] averaged over every query q >= 1 (any text works).

Olsson et al. (2022) call the first the prefix-matching score; TransformerLens and ARENA call
it the induction score (ARENA's version also averages two first-copy queries; ours does not).

**Composition scores** (Elhage et al., 2021) say how much a later head reads what an earlier
head writes. For matrices W_A (applied first) and W_B, in toykit's right-multiplied
convention (x @ W):

    composition(W_A, W_B) = ‖W_A W_B‖_F / (‖W_A‖_F ‖W_B‖_F)

with W_A = the earlier head's OV circuit W_V W_O and W_B = the later head's
W_QK = W_Q W_Kᵀ (Q-composition: the query reads the earlier output), W_QKᵀ (K-composition:
the key reads it) or W_OV (V-composition). The paper writes matrices for column vectors,
where W_QK is our W_QKᵀ and W_OV our W_OVᵀ, so its K-composition ‖W_QKᵀ W_OV‖_F is our
‖W_OV W_QKᵀ‖_F: the same number. Scores lie in [0, 1]; independent random matrices of the
heads' shapes already score about 1/sqrt(d_head) or so (see ``composition_score_baseline``),
so compare against that.

**Full circuits** read a head end to end, from tokens (or positions) in to tokens out.
A head's OV circuit W_OV = W_V W_O and QK circuit W_QK = W_Q W_Kᵀ act on the residual stream
(d_model x d_model). Multiplying in the embedding and unembedding turns them into tables a
human can read (Elhage et al., 2021):

- full OV circuit, W_E W_OV W_U: [d_vocab, d_vocab]. Row s: how attending to a token s
  changes every output logit. A copying head (such as an induction head) has a large
  diagonal: attending to s raises the logit of s.
- positional QK circuit, W_pos W_QK W_posᵀ: [n_ctx, n_ctx]. Row q: which key positions a
  query at position q prefers, from positions alone. A previous-token head peaks at q - 1.
- K-composition circuit, W_E W_QK^dst (W_E W_OV^src)ᵀ: [d_vocab, d_vocab]. Row t: which key
  tokens the destination head's query for token t matches *through what the source head
  wrote at the key*. When the source is a previous-token head, a key whose previous token is
  t is matched: exactly what an induction head needs, so the diagonal is large.

These products ignore LayerNorm's per-position scale and the other paths through the model;
they are good approximations for small attention-only models. Pass a model processed with
``toykit.weight_processing.process_weights`` so that LayerNorm's weights are folded in. All
functions return ``FactoredMatrix`` objects (nothing d_vocab x d_vocab is formed until you ask
for ``.AB``); ``top_1_accuracy`` scores how diagonal a circuit is.
"""

from __future__ import annotations

from functools import partial

import torch

from toykit.ablation import head_ablation_hook
from toykit.factored_matrix import FactoredMatrix
from toykit.hooks import check_model
from toykit.runtime import make_generator
from toykit.tasks.repeated_tokens import generate_repeated_tokens
from toykit.transformer import HookedTransformer
from toykit.validation import check_non_negative_int, check_positive_int, check_tensor

__all__ = [
    "ablated_loss_by_position",
    "attention_head_scores",
    "composition_score",
    "composition_score_baseline",
    "duplicate_token_score",
    "full_ov_circuit",
    "induction_score",
    "k_composition_circuit",
    "k_composition_score",
    "loss_by_position",
    "positional_qk_circuit",
    "prefix_matching_score",
    "previous_token_score",
    "q_composition_score",
    "top_1_accuracy",
    "v_composition_score",
]


# -- head-detection scores from attention patterns ----------------------------------------------


def _as_batched_pattern(pattern: torch.Tensor) -> torch.Tensor:
    """[batch, n_heads, q, k] or [n_heads, q, k] -> [batch, n_heads, q, k], checked."""
    if isinstance(pattern, torch.Tensor) and pattern.ndim == 3:
        pattern = pattern[None]
    check_tensor("pattern", pattern, ["batch", "n_heads", "pos", "pos"], dtype="float")
    return pattern


def _stripe_mean(pattern: torch.Tensor, queries: torch.Tensor, offset: int) -> torch.Tensor:
    """Mean over batch and the given queries of pattern[..., q, q + offset]: [n_heads]."""
    return pattern[:, :, queries, queries + offset].mean(dim=(0, 2))


def _second_copy(pattern: torch.Tensor, seq_len: int) -> torch.Tensor:
    check_positive_int("seq_len", seq_len)
    n = pattern.shape[-1]
    if n not in (2 * seq_len, 2 * seq_len + 1):
        raise ValueError(
            f"pattern has {n} positions, but a repeated sequence with seq_len={seq_len} has "
            f"{2 * seq_len} (no BOS) or {2 * seq_len + 1} (with BOS) positions"
        )
    return torch.arange(n - seq_len, n, device=pattern.device)


def prefix_matching_score(pattern: torch.Tensor, seq_len: int) -> torch.Tensor:
    """The induction (prefix-matching) score of each head.

    pattern: [batch, n_heads, pos, pos] or [n_heads, pos, pos], attention probabilities on
        repeated sequences of a block of ``seq_len`` tokens (pos = 2 * seq_len, or
        2 * seq_len + 1 with a BOS at position 0).
    Returns [n_heads]: mean over batch and second-copy queries q (the last seq_len positions)
    of pattern[..., q, q - seq_len + 1], the attention to the token after the first
    occurrence of the query's token. 1 for a perfect induction head.
    """
    pattern = _as_batched_pattern(pattern)
    return _stripe_mean(pattern, _second_copy(pattern, seq_len), 1 - seq_len)


def duplicate_token_score(pattern: torch.Tensor, seq_len: int) -> torch.Tensor:
    """The duplicate-token score of each head.

    pattern: as for ``prefix_matching_score``. Returns [n_heads]: mean over batch and
    second-copy queries q of pattern[..., q, q - seq_len], the attention to the earlier
    occurrence of the query's own token.
    """
    pattern = _as_batched_pattern(pattern)
    return _stripe_mean(pattern, _second_copy(pattern, seq_len), -seq_len)


def previous_token_score(pattern: torch.Tensor) -> torch.Tensor:
    """The previous-token score of each head.

    pattern: [batch, n_heads, pos, pos] or [n_heads, pos, pos] with pos >= 2, on any text.
    Returns [n_heads]: mean over batch and queries q = 1 .. pos - 1 of pattern[..., q, q - 1].
    """
    pattern = _as_batched_pattern(pattern)
    n = pattern.shape[-1]
    if n < 2:
        raise ValueError(f"previous_token_score needs at least 2 positions, got pattern of shape {list(pattern.shape)}")
    return _stripe_mean(pattern, torch.arange(1, n, device=pattern.device), -1)


# -- the same scores for every head of a model -------------------------------------------------------


def _repeated_tokens_for(model: HookedTransformer, seq_len: int | None, batch: int, bos: int | None,
                         seed: int) -> tuple[torch.Tensor, int]:
    check_model(model, HookedTransformer)
    extra = 1 if bos is not None else 0
    if seq_len is None:
        seq_len = (model.cfg.n_ctx - extra) // 2
    check_positive_int("seq_len", seq_len)
    if 2 * seq_len + extra > model.cfg.n_ctx:
        raise ValueError(f"seq_len={seq_len} makes {2 * seq_len + extra} tokens, more than n_ctx={model.cfg.n_ctx}")
    tokens = generate_repeated_tokens(batch, seq_len, model.cfg.d_vocab, bos=bos, seed=seed, device=model.device)
    return tokens, seq_len


@torch.no_grad()
def attention_head_scores(model: HookedTransformer, tokens: torch.Tensor, seq_len: int) -> dict[str, torch.Tensor]:
    """Every head's prefix-matching, duplicate-token and previous-token score.

    tokens: [batch, pos], repeated sequences as from ``generate_repeated_tokens`` (block
        length seq_len; pos = 2 * seq_len or 2 * seq_len + 1).
    Returns {"prefix_matching", "duplicate_token", "previous_token"}: each [n_layers, n_heads],
    on the CPU.
    """
    check_model(model, HookedTransformer)
    check_tensor("tokens", tokens, ["batch", "pos"], dtype="int")
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith("attn.hook_pattern"),
                                    return_type=None)
    scores: dict[str, list[torch.Tensor]] = {"prefix_matching": [], "duplicate_token": [], "previous_token": []}
    for layer in range(model.cfg.n_layers):
        pattern = cache["pattern", layer]
        scores["prefix_matching"].append(prefix_matching_score(pattern, seq_len))
        scores["duplicate_token"].append(duplicate_token_score(pattern, seq_len))
        scores["previous_token"].append(previous_token_score(pattern))
    return {name: torch.stack(values).cpu() for name, values in scores.items()}


def induction_score(
    model: HookedTransformer,
    seq_len: int | None = None,
    batch: int = 32,
    bos: int | None = 0,
    seed: int = 0,
) -> torch.Tensor:
    """Every head's prefix-matching score on fresh repeated random tokens: [n_layers, n_heads].

    seq_len: the repeated block's length; None takes the longest that fits in n_ctx.
    batch, seed: how many sequences, and the seed that draws them.
    bos: the BOS token id placed first (None: no BOS). toykit's shipped models use 0.
    """
    check_positive_int("batch", batch)
    tokens, seq_len = _repeated_tokens_for(model, seq_len, batch, bos, seed)
    return attention_head_scores(model, tokens, seq_len)["prefix_matching"]


# -- losses -----------------------------------------------------------------------------------


@torch.no_grad()
def loss_by_position(model: HookedTransformer, tokens: torch.Tensor) -> torch.Tensor:
    """Mean next-token loss at each position: tokens [batch, pos] -> [pos - 1] on the CPU.

    Entry i is the loss of predicting tokens[:, i + 1] from tokens[:, :i + 1], averaged over
    the batch. On repeated sequences, ``repeated_half_slices`` picks out the two blocks.
    """
    check_model(model, HookedTransformer)
    return model(tokens, return_type="loss", loss_per_token=True).mean(0).cpu()


@torch.no_grad()
def ablated_loss_by_position(
    model: HookedTransformer,
    tokens: torch.Tensor,
    heads: list[tuple[int, int]],
    method: str = "mean",
) -> torch.Tensor:
    """``loss_by_position`` with some heads knocked out: [pos - 1] on the CPU.

    heads: (layer, head) pairs whose output z (blocks.{layer}.attn.hook_z[:, :, head]) is
        replaced: by its mean over batch and positions ("mean", on these same tokens) or by
        zero ("zero").
    """
    check_model(model, HookedTransformer)
    if method not in ("mean", "zero"):
        raise ValueError(f"method must be 'mean' or 'zero', got {method!r}")
    by_layer: dict[int, list[int]] = {}
    for pair in heads:
        if (not isinstance(pair, (tuple, list)) or len(pair) != 2
                or not 0 <= pair[0] < model.cfg.n_layers or not 0 <= pair[1] < model.cfg.n_heads):
            raise ValueError(f"heads must be (layer, head) pairs with layer < {model.cfg.n_layers} and "
                             f"head < {model.cfg.n_heads}, got {pair!r}")
        by_layer.setdefault(int(pair[0]), []).append(int(pair[1]))

    fwd_hooks = [(f"blocks.{layer}.attn.hook_z", partial(head_ablation_hook, head_index=h, method=method))
                 for layer, h in by_layer.items()]
    loss = model.run_with_hooks(tokens, fwd_hooks=fwd_hooks, return_type="loss", loss_per_token=True)
    return loss.mean(0).cpu()


# -- composition -------------------------------------------------------------------------------


def _frobenius(M: torch.Tensor | FactoredMatrix) -> torch.Tensor:
    return M.norm() if isinstance(M, FactoredMatrix) else torch.linalg.matrix_norm(M)


def composition_score(W_A: torch.Tensor | FactoredMatrix, W_B: torch.Tensor | FactoredMatrix) -> torch.Tensor:
    """‖W_A W_B‖_F / (‖W_A‖_F ‖W_B‖_F), with W_A applied first (x @ W_A @ W_B).

    W_A: [..., d, d], W_B: [..., d, d] (tensors or FactoredMatrix; leading dims broadcast).
    Returns [...] in [0, 1] (by submultiplicativity of the Frobenius norm).
    """
    for name, M in (("W_A", W_A), ("W_B", W_B)):
        if not isinstance(M, (torch.Tensor, FactoredMatrix)):
            raise TypeError(f"{name} must be a torch.Tensor or a FactoredMatrix, got {type(M).__name__}")
        if M.ndim < 2:
            raise ValueError(f"{name} must have shape [..., d, d], got {list(M.shape)}")
    if W_A.shape[-1] != W_B.shape[-2]:
        raise ValueError(f"W_A [..., d, d] and W_B [..., d, d] must share d, got {list(W_A.shape)} and "
                         f"{list(W_B.shape)}")
    if isinstance(W_A, torch.Tensor) and isinstance(W_B, FactoredMatrix):
        W_A = FactoredMatrix(W_A, torch.eye(W_A.shape[-1], dtype=W_A.dtype, device=W_A.device))
    product = W_A @ W_B
    return _frobenius(product) / (_frobenius(W_A) * _frobenius(W_B))


def _layer_pair(model: HookedTransformer, src_layer: int, dst_layer: int) -> None:
    check_model(model, HookedTransformer)
    L = model.cfg.n_layers
    for name, layer in (("src_layer", src_layer), ("dst_layer", dst_layer)):
        if not isinstance(layer, int) or isinstance(layer, bool) or not 0 <= layer < L:
            raise ValueError(f"{name} must be an int in [0, n_layers={L}), got {layer!r}")
    if src_layer >= dst_layer:
        raise ValueError(f"a head can only compose with heads in later layers: need src_layer < dst_layer, "
                         f"got {src_layer} and {dst_layer}")


def _circuits(model: HookedTransformer, process: bool) -> HookedTransformer:
    if process and model.cfg.normalization_type == "LN":
        # LayerNorm weights scale what each head reads; fold them in so the circuits are the
        # maps the heads really apply (up to LayerNorm's per-position scale).
        from toykit.weight_processing import process_weights

        return process_weights(model)
    return model


@torch.no_grad()
def q_composition_score(model: HookedTransformer, src_layer: int = 0, dst_layer: int = 1,
                        process: bool = True) -> torch.Tensor:
    """Q-composition of every (earlier head, later head) pair: [n_heads (src), n_heads (dst)].

    Entry [i, j] = composition_score(OV[src_layer, i], QK[dst_layer, j]): how much head j's
    queries read head i's output. process: fold LayerNorm weights in first (a copy; the model
    is unchanged).
    """
    _layer_pair(model, src_layer, dst_layer)
    m = _circuits(model, process)
    return composition_score(m.OV[src_layer][:, None], m.QK[dst_layer][None]).cpu()


@torch.no_grad()
def k_composition_score(model: HookedTransformer, src_layer: int = 0, dst_layer: int = 1,
                        process: bool = True) -> torch.Tensor:
    """K-composition of every (earlier head, later head) pair: [n_heads (src), n_heads (dst)].

    Entry [i, j] = composition_score(OV[src_layer, i], QK[dst_layer, j]ᵀ): how much head j's
    keys read head i's output (the paper's ‖W_QKᵀ W_OV‖_F / (‖W_QK‖_F ‖W_OV‖_F)). A
    previous-token head feeding an induction head's keys scores high. process: as for
    ``q_composition_score``.
    """
    _layer_pair(model, src_layer, dst_layer)
    m = _circuits(model, process)
    return composition_score(m.OV[src_layer][:, None], m.QK[dst_layer][None].T).cpu()


@torch.no_grad()
def v_composition_score(model: HookedTransformer, src_layer: int = 0, dst_layer: int = 1,
                        process: bool = True) -> torch.Tensor:
    """V-composition of every (earlier head, later head) pair: [n_heads (src), n_heads (dst)].

    Entry [i, j] = composition_score(OV[src_layer, i], OV[dst_layer, j]): how much of head i's
    output head j moves on. process: as for ``q_composition_score``.
    """
    _layer_pair(model, src_layer, dst_layer)
    m = _circuits(model, process)
    return composition_score(m.OV[src_layer][:, None], m.OV[dst_layer][None]).cpu()


def composition_score_baseline(d_model: int, d_head: int, n_samples: int = 200, seed: int = 0) -> float:
    """The mean composition score of random heads: W_A = W_V W_O and W_B = W_Q W_Kᵀ with
    independent Gaussian factors of shapes [d_model, d_head] and [d_head, d_model].

    Scores of trained heads mean something only well above this.
    """
    check_positive_int("d_model", d_model)
    check_positive_int("d_head", d_head)
    check_positive_int("n_samples", n_samples)
    g = make_generator(check_non_negative_int("seed", seed))

    def random_circuit() -> FactoredMatrix:
        return FactoredMatrix(torch.randn(n_samples, d_model, d_head, generator=g),
                              torch.randn(n_samples, d_head, d_model, generator=g))

    return composition_score(random_circuit(), random_circuit()).mean().item()


# -- full circuits: a head read from tokens (or positions) in to tokens out --------------------


def _factored(product: torch.Tensor | FactoredMatrix) -> FactoredMatrix:
    """A matrix times a FactoredMatrix stays factored; this says so to the type checker."""
    assert isinstance(product, FactoredMatrix)
    return product


def _check_head(model: HookedTransformer, layer: int, head: int, what: str = "") -> None:
    check_model(model, HookedTransformer)
    L, H = model.cfg.n_layers, model.cfg.n_heads
    for name, value, n in ((f"{what}layer", layer, L), (f"{what}head", head, H)):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < n:
            raise ValueError(f"{name} must be an int in [0, {n}), got {value!r}")


def full_ov_circuit(model: HookedTransformer, layer: int, head: int) -> FactoredMatrix:
    """W_E W_OV[layer, head] W_U: [d_vocab (attended-to token), d_vocab (output logit)]."""
    _check_head(model, layer, head)
    return _factored(model.W_E @ model.OV[layer, head] @ model.W_U)


def positional_qk_circuit(model: HookedTransformer, layer: int, head: int) -> FactoredMatrix:
    """W_pos W_QK[layer, head] W_posᵀ: [n_ctx (query position), n_ctx (key position)].

    Unscaled attention scores from the positional embeddings alone (divide by sqrt(d_head)
    for the model's scale; keys after the query are masked in the model).
    """
    _check_head(model, layer, head)
    return _factored(model.W_pos @ model.QK[layer, head] @ model.W_pos.T)


def k_composition_circuit(model: HookedTransformer, src: tuple[int, int], dst: tuple[int, int]) -> FactoredMatrix:
    """W_E W_QK^dst (W_E W_OV^src)ᵀ: [d_vocab (query token), d_vocab (token the src head
    moved into the key position)].

    src, dst: (layer, head) with src's layer before dst's.
    """
    for name, pair in (("src", src), ("dst", dst)):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"{name} must be a (layer, head) pair, got {pair!r}")
        _check_head(model, *pair, what=f"{name} ")
    if src[0] >= dst[0]:
        raise ValueError(f"the src head's layer must come before the dst head's, got src={src!r}, dst={dst!r}")
    written = model.W_E @ model.OV[src[0], src[1]]  # [d_vocab, d_model]: what src writes per moved token
    return _factored(model.W_E @ model.QK[dst[0], dst[1]] @ written.T)


def top_1_accuracy(circuit: torch.Tensor | FactoredMatrix) -> float:
    """The fraction of rows whose largest entry is on the diagonal.

    circuit: [n, m] with n <= m (a tensor or FactoredMatrix), e.g. a full OV circuit, where
    row s is the output logits when the head attends to token s. Row i counts as correct when
    argmax_j circuit[i, j] == i.
    """
    if isinstance(circuit, FactoredMatrix):
        circuit = circuit.AB
    if not isinstance(circuit, torch.Tensor):
        raise TypeError(f"circuit must be a torch.Tensor or a FactoredMatrix, got {type(circuit).__name__}")
    if circuit.ndim != 2 or circuit.shape[0] > circuit.shape[1]:
        raise ValueError(f"circuit must have shape [n, m] with n <= m, got {list(circuit.shape)}")
    rows = torch.arange(circuit.shape[0], device=circuit.device)
    return (circuit.argmax(dim=1) == rows).float().mean().item()
