"""Checks for chapter 03, Transformers from scratch.

Each ``check_<name>(...)`` runs your code and toykit's reference on seeded cases, prints one
line when they agree, and otherwise raises CheckFailure with a hint chosen by recognising the
usual mistakes.

**Modules.** You write ``nn.Module`` classes whose constructor takes a ``TransformerConfig``
and whose parameters have exactly toykit's names and shapes (toykit/transformer.py):

==================  =======================================================================
class               parameters
==================  =======================================================================
LayerNorm           w [d_model], b [d_model]
Embed               W_E [d_vocab, d_model]
PosEmbed            W_pos [n_ctx, d_model]
Attention           W_Q, W_K, W_V [n_heads, d_model, d_head], b_Q, b_K, b_V [n_heads, d_head],
                    W_O [n_heads, d_head, d_model], b_O [d_model]
MLP                 W_in [d_model, d_mlp], b_in [d_mlp], W_out [d_mlp, d_model], b_out [d_model]
TransformerBlock    ln1, attn, ln2, mlp (ln1/ln2 are nn.Identity() when normalization_type is None)
Unembed             W_U [d_model, d_vocab], b_U [d_vocab]
Transformer         embed, pos_embed, blocks (an nn.ModuleList), ln_final, unembed
==================  =======================================================================

A check builds your module from a few configs, copies in the state dict of toykit's module of
the same kind holding random (not initial) weights, runs both on seeded inputs and compares
the outputs. Your modules need no hook points. Extra *persistent* buffers would break
``load_state_dict``, so register buffers such as a causal mask with ``persistent=False``.

**Functions.**

- ``lm_cross_entropy_loss(logits, tokens) -> scalar``: mean next-token cross-entropy.
- ``sample_next_token(logits, temperature=1.0, top_k=None, generator=None) -> [batch]``.
  Sampling is random, so its check is statistical: each case's logits are repeated 40,000
  times, your sampler draws one token per row (with a seeded generator), and the frequency of
  every token is compared with its exact probability (tolerance 0.015, about six standard
  errors). Any correct way of drawing passes; the draws must come from ``generator``, so that a
  seeded generator repeats them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from toykit import transformer as ref
from toykit.exercises.checking import (
    DTYPE_HINT,
    Case,
    CheckFailure,
    ExerciseTable,
    Mistake,
    check_unchanged,
    describe,
    error_hint,
    rng,
    run_check,
    seeded,
    snapshot,
)
from toykit.exercises.modules import distinct_mistakes, module_case, module_check, require_class
from toykit.sampling import sample_next_token
from toykit.transformer import TransformerConfig, lm_cross_entropy_loss

# exercise id -> its check and toykit's reference (filled by @EXERCISES.check below)
EXERCISES = ExerciseTable()

__all__ = [
    "check_attention",
    "check_embed",
    "check_layer_norm",
    "check_lm_cross_entropy_loss",
    "check_mlp",
    "check_pos_embed",
    "check_sample_next_token",
    "check_transformer",
    "check_transformer_block",
    "check_unembed",
    "lm_cross_entropy_loss",
    "sample_next_token",
]

def _cfg(**changes: Any) -> TransformerConfig:
    """A small config for checks; every case changes a few fields."""
    fields: dict[str, Any] = dict(n_layers=2, d_model=16, n_heads=4, d_mlp=32, d_vocab=20, n_ctx=12,
                  act_fn="gelu", normalization_type="LN", seed=0, device="cpu")
    return TransformerConfig(**(fields | changes))


def _resid(seed: int, batch: int, pos: int, d_model: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(batch, pos, d_model, generator=rng(seed)) * scale + shift


def _tokens(seed: int, batch: int, pos: int, d_vocab: int) -> torch.Tensor:
    return torch.randint(0, d_vocab, (batch, pos), generator=rng(seed))


# -- LayerNorm ---------------------------------------------------------------------------------


def _ln(x: torch.Tensor, w: torch.Tensor | float, b: torch.Tensor | float, eps: float, dim: int = -1,
        unbiased: bool = False, centre: bool = True, eps_inside: bool = True) -> torch.Tensor:
    if centre:
        x = x - x.mean(dim, keepdim=True)
        var = x.var(dim, keepdim=True, unbiased=unbiased)
    else:
        var = x.pow(2).mean(dim, keepdim=True)
    scale = (var + eps).sqrt() if eps_inside else var.sqrt() + eps
    return x / scale * w + b


@EXERCISES.check(ref.LayerNorm)
def check_layer_norm(LayerNorm: Callable) -> None:
    """Check your ``LayerNorm(cfg)``: parameters w, b [d_model]; forward x [batch, pos, d_model]
    -> (x - mean) / sqrt(var + cfg.eps) * w + b, mean and biased variance over d_model."""
    require_class("check_layer_norm", LayerNorm)
    cases = [
        module_case("x with mean 2 and std 3", _cfg(d_model=8), 0, _resid(100, 3, 5, 8, 3.0, 2.0)),
        module_case("d_model 32, eps 1e-3", _cfg(d_model=32, n_heads=4, d_head=8, eps=1e-3), 1,
              _resid(101, 2, 4, 32, 0.5, -1.0)),
        module_case("nearly constant rows (variance ~ eps)", _cfg(d_model=16), 2, _resid(102, 2, 3, 16, 3e-3, 0.2)),
        module_case("eps 1e-2, tiny variance", _cfg(d_model=16, eps=1e-2), 3, _resid(103, 2, 3, 16, 0.05, 0.5)),
        module_case("batch 1, pos 1", _cfg(d_model=8), 4, _resid(104, 1, 1, 8, 2.0, 1.0)),
    ]
    mistakes = [
        Mistake("LayerNorm: the variance must be the biased one, the plain mean of squared deviations "
                "(x.var(-1, unbiased=False)); torch's default var/std divide by d_model - 1",
                lambda m, cfg, x: _ln(x, m.w, m.b, cfg.eps, unbiased=True)),
        Mistake("eps goes inside the square root: (x - mean) / sqrt(var + eps), not / (std + eps)",
                lambda m, cfg, x: _ln(x, m.w, m.b, cfg.eps, eps_inside=False)),
        Mistake("subtract the mean over d_model first: LayerNorm centres x before scaling it "
                "(without centring it is RMSNorm)",
                lambda m, cfg, x: _ln(x, m.w, m.b, cfg.eps, centre=False)),
        Mistake("normalise over the last axis, d_model (dim=-1), not over positions",
                lambda m, cfg, x: _ln(x, m.w, m.b, cfg.eps, dim=1)),
        Mistake("after normalising, scale by w and shift by b: the result is normalized * w + b",
                lambda m, cfg, x: _ln(x, 1.0, 0.0, cfg.eps)),
        Mistake("use cfg.eps, not a hard-coded 1e-5",
                lambda m, cfg, x: _ln(x, m.w, m.b, 1e-5)),
        Mistake("the result is normalized * w + b: did you swap w and b?",
                lambda m, cfg, x: _ln(x, m.b, m.w, cfg.eps)),
    ]
    # atol 1e-4: on nearly constant rows, float32 rounding alone differs by ~3e-5 between
    # correct implementations; every mistake above is off by far more.
    module_check("layer_norm", LayerNorm, "ln", cases, mistakes, atol=1e-4, rtol=1e-4,
                  hint="normalise each position's vector over d_model (centre it, divide by its standard "
                       "deviation with cfg.eps added to the variance), then apply the learned scale and shift")


# -- Embed and PosEmbed ------------------------------------------------------------------------


@EXERCISES.check(ref.Embed)
def check_embed(Embed: Callable) -> None:
    """Check your ``Embed(cfg)``: W_E [d_vocab, d_model]; tokens [batch, pos] (int64 token ids, as
    everywhere in toykit) -> [batch, pos, d_model], the row of W_E of each token."""
    require_class("check_embed", Embed)
    cases = []
    for i, (name, cfg, batch, pos) in enumerate([
        ("batch 3, pos 7", _cfg(), 3, 7),
        ("d_vocab 50, d_model 24", _cfg(d_vocab=50, d_model=24, n_heads=3, d_head=8), 2, 12),
        ("batch 1, pos 1", _cfg(), 1, 1),
    ]):
        cases.append(module_case(name, cfg, i, _tokens(200 + i, batch, pos, cfg.d_vocab)))
    cases.append(module_case("every token id, including 0 and d_vocab - 1", _cfg(), 3,
                       torch.arange(20).view(2, 10)))
    mistakes = [
        Mistake("the embedding is just the row of W_E of each token; toykit, like GPT-2 and "
                "TransformerLens, does not multiply it by sqrt(d_model)",
                lambda m, cfg, t: m.W_E[t] * math.sqrt(cfg.d_model)),
    ]
    module_check("embed", Embed, "embed", cases, mistakes,
                  hint="a token's embedding is the row of the embedding matrix that belongs to its id; look up "
                       "every token of the batch at once")


@EXERCISES.check(ref.PosEmbed)
def check_pos_embed(PosEmbed: Callable) -> None:
    """Check your ``PosEmbed(cfg)``: W_pos [n_ctx, d_model]; tokens [batch, pos] -> [batch, pos, d_model],
    row p of W_pos at position p, the same in every sequence of the batch."""
    require_class("check_pos_embed", PosEmbed)
    # The first case has token ids < n_ctx so that indexing W_pos by token ids runs (and is caught).
    cases = [
        module_case("batch 3, pos 5, small token ids", _cfg(d_vocab=10, n_ctx=12), 0, _tokens(300, 3, 5, 10)),
        module_case("a full context (pos = n_ctx)", _cfg(), 1, _tokens(301, 2, 12, 20)),
        module_case("batch 1, pos 1", _cfg(), 2, _tokens(302, 1, 1, 20)),
        module_case("d_model 24, pos 9", _cfg(d_model=24, n_heads=3, d_head=8, n_ctx=16), 3, _tokens(303, 4, 9, 20)),
    ]
    mistakes = [
        Mistake("positional embedding must be sliced to the sequence length: W_pos[:pos], with pos = "
                "tokens.shape[1]",
                lambda m, cfg, t: m.W_pos.expand(t.shape[0], -1, -1)),
        Mistake("index W_pos with positions 0..pos-1, not with the token ids: the positional "
                "embedding depends only on where a token is",
                lambda m, cfg, t: m.W_pos[t]),
        Mistake("return one copy per sequence, shape [batch, pos, d_model]: repeat W_pos[:pos] over the "
                "batch (einops.repeat or .expand)",
                lambda m, cfg, t: m.W_pos[: t.shape[1]]),
        Mistake("you counted positions from the end: position p (from the start) uses W_pos[p]",
                lambda m, cfg, t: m.W_pos[: t.shape[1]].flip(0).expand(t.shape[0], -1, -1)),
    ]
    module_check("pos_embed", PosEmbed, "pos_embed", cases, mistakes,
                  hint="the positional embedding depends only on where a token sits: the first pos rows of "
                       "the positional matrix, the same for every sequence of the batch, [batch, pos, d_model]")


# -- Attention ---------------------------------------------------------------------------------
# The simulated mistakes below take the learner's module as `m: Any`: it is duck-typed, any
# module with the parameter names of the exercise.


def _attention(m: Any, cfg: TransformerConfig, x: torch.Tensor, *, scale: str = "sqrt",
               mask: str = "before", fill: float = float("-inf"), diagonal: int = 1, softmax_dim: int = -1,
               qkv_bias: bool = True, out_bias: bool = True, mix: str = "keys") -> torch.Tensor:
    """toykit's attention written out, with switches for the usual mistakes."""
    e = torch.einsum
    bq, bk, bv = (m.b_Q, m.b_K, m.b_V) if qkv_bias else (0.0, 0.0, 0.0)
    q = e("bpd,hde->bphe", x, m.W_Q) + bq
    k = e("bpd,hde->bphe", x, m.W_K) + bk
    v = e("bpd,hde->bphe", x, m.W_V) + bv
    scores = e("bqhe,bkhe->bhqk", q, k)
    scores = scores / {"sqrt": math.sqrt(cfg.d_head), "d_head": cfg.d_head, "none": 1.0,
                       "d_model": math.sqrt(cfg.d_model)}[scale]
    n = x.shape[1]
    future = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=diagonal)
    if mask == "past":
        future = torch.tril(torch.ones(n, n, dtype=torch.bool), diagonal=-1)
    if mask in ("before", "past"):
        scores = scores.masked_fill(future, fill)
    pattern = scores.softmax(dim=softmax_dim)
    if mask == "after":
        pattern = pattern.masked_fill(future, 0.0)
    if mix == "keys":
        z = e("bhqk,bkhe->bqhe", pattern, v)
    else:  # summed over queries instead
        z = e("bhqk,bqhe->bkhe", pattern, v)
    out = e("bqhe,hed->bqd", z, m.W_O)
    return out + m.b_O if out_bias else out


@EXERCISES.check(ref.Attention)
def check_attention(Attention: Callable) -> None:
    """Check your ``Attention(cfg)``: W_Q, W_K, W_V [n_heads, d_model, d_head], b_Q, b_K, b_V
    [n_heads, d_head], W_O [n_heads, d_head, d_model], b_O [d_model]; forward x [batch, pos, d_model]
    -> [batch, pos, d_model]: causal multi-head attention with scores q·k / sqrt(d_head). Any
    sequence length up to cfg.n_ctx must work."""
    require_class("check_attention", Attention)
    # The first case has sqrt(d_model) = 6, d_head = 9 and sqrt(d_head) = 3, so that each wrong scale
    # shows as itself; the long case has more than 10 positions (a mask built for 10 fails there).
    cases = [
        module_case("4 heads of d_head 9, d_model 36, pos 6", _cfg(d_model=36, n_heads=4, d_head=9), 0,
              _resid(400, 2, 6, 36)),
        module_case("a long sequence (pos 14 of n_ctx 16)", _cfg(n_ctx=16), 5, _resid(405, 2, 14, 16)),
        module_case("2 heads of d_head 8, a full context", _cfg(n_heads=2, d_head=8, n_ctx=10), 1,
                    _resid(401, 3, 10, 16)),
        module_case("1 head, d_model 12", _cfg(d_model=12, n_heads=1, d_head=12), 2, _resid(402, 2, 5, 12)),
        module_case("batch 1, pos 1", _cfg(), 3, _resid(403, 1, 1, 16)),
        module_case("8 heads of d_head 2, pos 9", _cfg(n_heads=8, d_head=2), 4, _resid(404, 2, 9, 16)),
    ]
    mistakes = [
        Mistake("no causal mask: a query must not attend to later positions; set scores[q, k] for "
                "k > q to -inf before the softmax", lambda m, c, x: _attention(m, c, x, mask="none")),
        Mistake("is the mask applied before the softmax? Zeroing probabilities after the softmax "
                "leaves rows that no longer sum to 1; fill the masked *scores* with -inf, then softmax",
                lambda m, c, x: _attention(m, c, x, mask="after")),
        Mistake("masked scores must be -inf (or a large negative number such as -1e5), not 0: "
                "exp(0) = 1, so a score of 0 still gets attention",
                lambda m, c, x: _attention(m, c, x, fill=0.0)),
        *[Mistake("a query may attend to its own position: mask only keys strictly after the query "
                  "(torch.triu(..., diagonal=1))",
                  lambda m, c, x, fill=fill: _attention(m, c, x, diagonal=0, fill=fill))
          for fill in (float("-inf"), -1e5)],  # the first query's row is nan, or uniform
        Mistake("the mask is the wrong way round: it must hide keys *after* the query (above the "
                "diagonal of [q_pos, k_pos]), not before it", lambda m, c, x: _attention(m, c, x, mask="past")),
        Mistake("is the scale 1/sqrt(d_head)? You divided the scores by d_head",
                lambda m, c, x: _attention(m, c, x, scale="d_head")),
        Mistake("is the scale 1/sqrt(d_head)? You did not scale the scores at all",
                lambda m, c, x: _attention(m, c, x, scale="none")),
        Mistake("is the scale 1/sqrt(d_head)? You divided by sqrt(d_model)",
                lambda m, c, x: _attention(m, c, x, scale="d_model")),
        Mistake("the softmax goes over the key axis (the last one of [batch, head, q_pos, k_pos]), so "
                "that each query's weights sum to 1", lambda m, c, x: _attention(m, c, x, softmax_dim=-2)),
        Mistake("z[q] = Σ_k pattern[q, k] · v[k]: sum over the *key* axis of the pattern",
                lambda m, c, x: _attention(m, c, x, mix="queries")),
        Mistake("add the biases b_Q, b_K and b_V to q, k and v", lambda m, c, x: _attention(m, c, x, qkv_bias=False)),
        Mistake("add the output bias b_O once, after summing the heads' outputs",
                lambda m, c, x: _attention(m, c, x, out_bias=False)),
        Mistake("b_O must be added once to the sum over heads, not once per head",
                lambda m, c, x: _attention(m, c, x) + (c.n_heads - 1) * m.b_O),
    ]
    def long_sequence(case: str, err: Exception) -> str | None:
        if case.startswith("a long sequence") and error_hint(err) != DTYPE_HINT:
            return ("this case has 14 positions: the causal mask must fit each input's number of positions, up "
                    "to cfg.n_ctx (build it from cfg.n_ctx and slice it, or from the input), not a fixed size")
        return None

    module_check("attention", Attention, "attn", cases, mistakes, explain_error=long_sequence,
                  hint="go through attention one step at a time and compare shapes with the docstring: "
                       "queries, keys and values per head, scaled scores, the causal mask, a softmax over "
                       "keys, the weighted sum of values, then the output projection summed over heads")


# -- MLP ---------------------------------------------------------------------------------------


def _mlp(m: Any, x: torch.Tensor, act: Callable, in_bias: bool = True, out_bias: bool = True,
         act_out: bool = False) -> torch.Tensor:
    h = act(x @ m.W_in + (m.b_in if in_bias else 0.0))
    out = h @ m.W_out + (m.b_out if out_bias else 0.0)
    return act(out) if act_out else out


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


@EXERCISES.check(ref.MLP)
def check_mlp(MLP: Callable) -> None:
    """Check your ``MLP(cfg)``: W_in [d_model, d_mlp], b_in [d_mlp], W_out [d_mlp, d_model],
    b_out [d_model]; forward x [batch, pos, d_model] -> act(x @ W_in + b_in) @ W_out + b_out, with
    act chosen by cfg.act_fn ("gelu": exact GELU, F.gelu; "relu")."""
    require_class("check_mlp", MLP)
    cases = [
        module_case("GELU, batch 2, pos 5", _cfg(), 0, _resid(500, 2, 5, 16, 1.5)),
        module_case("ReLU", _cfg(act_fn="relu"), 1, _resid(501, 3, 4, 16, 1.5)),
        module_case("GELU, d_mlp 64", _cfg(d_mlp=64, d_model=8, n_heads=2), 2, _resid(502, 2, 3, 8, 1.5)),
        module_case("batch 1, pos 1", _cfg(), 3, _resid(503, 1, 1, 16, 1.5)),
    ]
    gelu = F.gelu

    def act_of(cfg: TransformerConfig) -> Callable:
        return F.relu if cfg.act_fn == "relu" else gelu

    mistakes = [
        Mistake("the MLP uses GELU here (cfg.act_fn == 'gelu'); choose the activation from cfg.act_fn",
                lambda m, c, x: _mlp(m, x, F.relu)),
        Mistake("use the activation cfg.act_fn names: this case has act_fn='relu'",
                lambda m, c, x: _mlp(m, x, gelu)),
        Mistake("toykit's 'gelu' is the exact GELU, F.gelu(x) (the erf form, as TransformerLens's "
                "'gelu'), not the tanh approximation (approximate='tanh', GPT-2's 'gelu_new')",
                lambda m, c, x: _mlp(m, x, _gelu_tanh)),
        Mistake("add the biases: act(x @ W_in + b_in) @ W_out + b_out",
                lambda m, c, x: _mlp(m, x, act_of(c), in_bias=False, out_bias=False)),
        Mistake("add b_in before the activation: act(x @ W_in + b_in)",
                lambda m, c, x: _mlp(m, x, act_of(c), in_bias=False)),
        Mistake("add b_out after W_out: ... @ W_out + b_out",
                lambda m, c, x: _mlp(m, x, act_of(c), out_bias=False)),
        Mistake("the activation comes once, between W_in and W_out, not after W_out as well",
                lambda m, c, x: _mlp(m, x, act_of(c), act_out=True)),
    ]
    module_check("mlp", MLP, "mlp", cases, mistakes,
                  hint="an MLP is a linear map with bias into d_mlp, the activation cfg.act_fn names, and a "
                       "linear map with bias back to d_model")


# -- TransformerBlock --------------------------------------------------------------------------


def _block(m: Any, x: torch.Tensor, variant: str) -> torch.Tensor:
    ln1, attn, ln2, mlp = m.ln1, m.attn, m.ln2, m.mlp
    if variant == "no_residual":
        mid = attn(ln1(x))
        return mlp(ln2(mid))
    if variant == "no_second_residual":
        mid = x + attn(ln1(x))
        return mlp(ln2(mid))
    if variant == "post_norm":
        mid = ln1(x + attn(x))
        return ln2(mid + mlp(mid))
    if variant == "parallel":
        return x + attn(ln1(x)) + mlp(ln2(x))
    if variant == "no_norm":
        mid = x + attn(x)
        return mid + mlp(mid)
    if variant == "ln1_twice":
        mid = x + attn(ln1(x))
        return mid + mlp(ln1(mid))
    if variant == "norm_residual":
        mid = ln1(x) + attn(ln1(x))
        return ln2(mid) + mlp(ln2(mid))
    raise ValueError(variant)


@EXERCISES.check(ref.TransformerBlock)
def check_transformer_block(TransformerBlock: Callable) -> None:
    """Check your ``TransformerBlock(cfg)``: submodules ln1, attn, ln2, mlp (your own LayerNorm,
    Attention and MLP; ln1 and ln2 are nn.Identity() when cfg.normalization_type is None);
    forward resid_pre [batch, pos, d_model] -> resid_post, pre-norm:
    resid_mid = resid_pre + attn(ln1(resid_pre)); resid_post = resid_mid + mlp(ln2(resid_mid))."""
    require_class("check_transformer_block", TransformerBlock)
    cases = [
        module_case("LayerNorm, GELU", _cfg(), 0, _resid(600, 2, 6, 16, 2.0, 0.5)),
        module_case("LayerNorm, ReLU, 2 heads", _cfg(act_fn="relu", n_heads=2, d_head=8), 1,
                    _resid(601, 3, 5, 16, 2.0)),
        module_case("no LayerNorm (normalization_type=None)", _cfg(normalization_type=None), 2, _resid(602, 2, 6, 16)),
        module_case("batch 1, pos 1", _cfg(), 3, _resid(603, 1, 1, 16, 2.0)),
    ]
    mistakes = [
        Mistake("residual connections: each sublayer *adds* its output to the stream, "
                "resid_mid = resid_pre + attn(ln1(resid_pre)), resid_post = resid_mid + mlp(ln2(resid_mid))",
                lambda m, c, x: _block(m, x, "no_residual")),
        Mistake("residual connections: the MLP's output is added to resid_mid, "
                "resid_post = resid_mid + mlp(ln2(resid_mid))", lambda m, c, x: _block(m, x, "no_second_residual")),
        Mistake("toykit's block is pre-norm (as GPT-2): LayerNorm is applied to each sublayer's *input*, "
                "attn(ln1(resid)), and the residual stream itself is never normalised",
                lambda m, c, x: _block(m, x, "post_norm")),
        Mistake("the residual added to is the un-normalised stream: resid_pre + attn(ln1(resid_pre)), "
                "not ln1(resid_pre) + ...", lambda m, c, x: _block(m, x, "norm_residual")),
        Mistake("the MLP reads resid_mid (after attention has written), not resid_pre: the sublayers run "
                "one after the other", lambda m, c, x: _block(m, x, "parallel")),
        Mistake("apply ln1 before attention and ln2 before the MLP", lambda m, c, x: _block(m, x, "no_norm")),
        Mistake("the MLP's input goes through ln2, which has its own weights, not ln1",
                lambda m, c, x: _block(m, x, "ln1_twice")),
    ]
    module_check("transformer_block", TransformerBlock, "block", cases, mistakes, atol=1e-4, rtol=1e-3,
                  hint="check LayerNorm, Attention and MLP first; then follow the pre-norm block of the "
                       "docstring: each sublayer reads a normalised copy of the stream and adds to the stream")


# -- Unembed -----------------------------------------------------------------------------------


@EXERCISES.check(ref.Unembed)
def check_unembed(Unembed: Callable) -> None:
    """Check your ``Unembed(cfg)``: W_U [d_model, d_vocab], b_U [d_vocab]; forward
    x [batch, pos, d_model] -> logits [batch, pos, d_vocab] = x @ W_U + b_U."""
    require_class("check_unembed", Unembed)
    cases = [
        module_case("batch 2, pos 5", _cfg(), 0, _resid(700, 2, 5, 16)),
        module_case("d_vocab 50", _cfg(d_vocab=50), 1, _resid(701, 3, 4, 16)),
        module_case("batch 1, pos 1", _cfg(), 2, _resid(702, 1, 1, 16)),
    ]
    mistakes = [
        Mistake("add the bias: logits = x @ W_U + b_U", lambda m, c, x: x @ m.W_U),
        Mistake("return the logits themselves, not probabilities: no softmax in the model",
                lambda m, c, x: (x @ m.W_U + m.b_U).softmax(-1)),
        Mistake("return the logits themselves, not log-probabilities: no log_softmax in the model",
                lambda m, c, x: (x @ m.W_U + m.b_U).log_softmax(-1)),
    ]
    module_check("unembed", Unembed, "unembed", cases, mistakes,
                  hint="the unembedding is one linear map with bias from d_model to d_vocab; the logits are "
                       "returned as they are")


# -- the whole model ---------------------------------------------------------------------------


def _model(m: Any, tokens: torch.Tensor, pos: bool = True, ln_final: bool = True,
           n_blocks: int | None = None) -> torch.Tensor:
    resid = m.embed(tokens) + (m.pos_embed(tokens) if pos else 0.0)
    for block in m.blocks[: n_blocks]:
        resid = block(resid)
    return m.unembed(m.ln_final(resid) if ln_final else resid)


@EXERCISES.check(ref.HookedTransformer)
def check_transformer(Transformer: Callable) -> None:
    """Check your ``Transformer(cfg)``: submodules embed, pos_embed, blocks (nn.ModuleList of
    cfg.n_layers TransformerBlocks), ln_final (nn.Identity() without LayerNorm), unembed; forward
    tokens [batch, pos] -> logits [batch, pos, d_vocab]. Its state dict must load toykit's
    HookedTransformer's."""
    require_class("check_transformer", Transformer)
    specs = [
        ("2 layers, LayerNorm, GELU", _cfg(), 2, 8),
        ("1 layer, ReLU, d_vocab 40", _cfg(n_layers=1, act_fn="relu", d_vocab=40), 3, 5),
        ("3 layers, no LayerNorm", _cfg(n_layers=3, normalization_type=None), 2, 6),
        ("a full context (pos = n_ctx)", _cfg(), 2, 12),
        ("batch 1, pos 1", _cfg(), 1, 1),
    ]
    cases = [module_case(name, cfg, i, _tokens(800 + i, batch, pos, cfg.d_vocab))
             for i, (name, cfg, batch, pos) in enumerate(specs)]
    mistakes = [
        Mistake("apply the final LayerNorm, ln_final, to the residual stream before unembedding",
                lambda m, c, t: _model(m, t, ln_final=False)),
        Mistake("add the positional embedding to the token embedding: resid = embed(tokens) + "
                "pos_embed(tokens)", lambda m, c, t: _model(m, t, pos=False)),
        Mistake("run every block in order, each on the previous block's output",
                lambda m, c, t: _model(m, t, n_blocks=1)),
        Mistake("return the logits at every position, [batch, pos, d_vocab], not only the last one",
                lambda m, c, t: _model(m, t)[:, -1]),
    ]
    module_check("transformer", Transformer, "model", cases, mistakes, atol=1e-4, rtol=1e-3,
                  hint="check the pieces first; then follow the order of the docstring: embeddings, every "
                       "block in turn, the final LayerNorm, the unembedding")


# -- the language-model loss -------------------------------------------------------------------


@EXERCISES.check(lm_cross_entropy_loss, modules_ok=False)
def check_lm_cross_entropy_loss(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check ``lm_cross_entropy_loss(logits, tokens) -> scalar``: logits [batch, pos, d_vocab],
    tokens [batch, pos] (int64 token ids); the mean over batch and positions 0..pos-2 of
    -log softmax(logits[b, i])[tokens[b, i + 1]]. The loss must be a tensor that carries gradients
    back to the logits (training calls loss.backward())."""

    def case(name: str, seed: int, batch: int, pos: int, vocab: int) -> Case:
        g = rng(seed)
        logits = torch.randn(batch, pos, vocab, generator=g) * 2
        return Case(name, (logits, torch.randint(0, vocab, (batch, pos), generator=g)))

    cases = [case("batch 3, pos 6, d_vocab 10", 900, 3, 6, 10), case("batch 1, pos 2", 901, 1, 2, 7),
             case("batch 4, pos 12, d_vocab 30", 902, 4, 12, 30)]

    def nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return -logits.log_softmax(-1).gather(-1, targets[..., None])[..., 0]

    mistakes = [
        Mistake("position i predicts the *next* token: compare logits[:, :-1] with tokens[:, 1:]",
                lambda lg, t: nll(lg, t).mean()),
        Mistake("the shift goes the other way: logits[:, :-1] (every position but the last) predict "
                "tokens[:, 1:] (every token but the first)", lambda lg, t: nll(lg[:, 1:], t[:, :-1]).mean()),
        Mistake("the loss is the *negative* log-probability of the correct next token",
                lambda lg, t: -nll(lg[:, :-1], t[:, 1:]).mean()),
        Mistake("average over the batch and positions (mean), not sum",
                lambda lg, t: nll(lg[:, :-1], t[:, 1:]).sum()),
        Mistake("use log_softmax over the vocabulary (the last axis), so each position's "
                "probabilities sum to 1",
                lambda lg, t: -lg[:, :-1].log_softmax(1).gather(-1, t[:, 1:, None]).mean()),
        Mistake("take the log of the probabilities: the loss is -log p, not -p",
                lambda lg, t: -lg[:, :-1].softmax(-1).gather(-1, t[:, 1:, None]).mean()),
        Mistake("return a single number, the mean over batch and positions",
                lambda lg, t: nll(lg[:, :-1], t[:, 1:])),
    ]
    run_check("lm_cross_entropy_loss", fn, lm_cross_entropy_loss, cases,
              distinct_mistakes(mistakes, lm_cross_entropy_loss, 1e-5, 1e-4), grad_args=(0,),
              hint="each position's logits are scored on the token that comes next: the negative "
                   "log-probability of that token, averaged over every prediction")


# -- sampling ----------------------------------------------------------------------------------
#
# Statistical, as documented at the top: N_DRAWS copies of each case's rows, one draw each, and
# the observed frequencies compared with the exact probabilities within FREQ_TOL.

N_DRAWS = 40_000
FREQ_TOL = 0.015  # about 6 standard errors: sqrt(0.25 / 40,000) = 0.0025 at worst


def _probs(logits: torch.Tensor, temperature: float, top_k: int | None, *, greedy: bool = True,
           multiply: bool = False, temperature_ignored: bool = False, fill: float = float("-inf"),
           smallest: bool = False, keep_fewer: bool = False, top_k_ignored: bool = False) -> torch.Tensor:
    """The exact distribution [batch, d_vocab] of one draw, with switches for the usual mistakes."""
    logits = logits.double()
    if temperature == 0 and greedy:
        return F.one_hot(logits.argmax(-1), logits.shape[-1]).double()
    if temperature != 0 and not temperature_ignored:
        logits = logits * temperature if multiply else logits / temperature
    if top_k is not None and not top_k_ignored:
        if smallest:
            kth = (-logits).topk(top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(-logits < kth, fill)
        elif keep_fewer:
            kth = logits.topk(top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits <= kth, fill)
        else:
            kth = logits.topk(top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, fill)
    return logits.softmax(-1)


_GENERATOR_HINT = (
    "two calls with identically seeded generators drew different tokens: draw with the generator "
    "you are given, torch.multinomial(probs, 1, generator=generator), so that seeded sampling repeats"
)
_GREEDY_HINT = ("temperature 0 means greedy: take the most likely token of each row, without dividing by 0 "
                "(and without drawing)")


@EXERCISES.check(sample_next_token, modules_ok=False)
def check_sample_next_token(fn: Callable[..., torch.Tensor]) -> None:
    """Check ``sample_next_token(logits, temperature=1.0, top_k=None, generator=None) -> [batch]``
    (int64 token ids) statistically; temperature 0 must give exactly the argmax. The check calls
    it with keyword arguments, so keep these parameter names."""
    exercise = "sample_next_token"

    def learner(logits: torch.Tensor, temperature: float, top_k: int | None, seed: int, case: str) -> torch.Tensor:
        rows, vocab = logits.shape
        many = logits.repeat(N_DRAWS, 1)  # row r * rows + i is a copy of row i

        def draw(global_seed: int) -> torch.Tensor:
            before = snapshot(many)
            try:
                with seeded(global_seed):  # the verdict is the same every run; the learner's RNG is left alone
                    out = fn(many, temperature=temperature, top_k=top_k, generator=rng(seed))
            except (NotImplementedError, CheckFailure):
                raise
            except Exception as err:
                if temperature == 0 and error_hint(err) is None:
                    raise CheckFailure(exercise, case, f"your code raised {type(err).__name__}: {err}",
                                       _GREEDY_HINT) from err
                raise
            check_unchanged(exercise, case, {"logits": (before, many)})
            return out

        out = draw(seed)
        if not isinstance(out, torch.Tensor):
            raise CheckFailure(exercise, case, f"expected token ids [batch], got {describe(out)}",
                               "return a tensor of token ids, shape [batch]")
        if list(out.shape) != [many.shape[0]]:
            raise CheckFailure(exercise, case, f"for logits of shape {list(many.shape)} you returned shape "
                               f"{list(out.shape)}, expected [{many.shape[0]}]",
                               "return one token id per row, shape [batch] (e.g. multinomial(...)[:, 0] "
                               "or argmax(dim=-1))")
        if out.dtype != torch.int64:
            raise CheckFailure(exercise, case, f"you returned dtype {out.dtype}",
                               "return int64 token ids, as argmax and multinomial give: the model's loss and "
                               "embedding take int64 tokens")
        if out.numel() and (out.min() < 0 or out.max() >= vocab):
            raise CheckFailure(exercise, case, f"token ids range from {int(out.min())} to {int(out.max())}",
                               f"token ids are indices into the vocabulary, in [0, d_vocab={vocab})")
        if temperature != 0 and not torch.equal(draw(seed + 1), out):
            raise CheckFailure(exercise, case, "not repeatable with a seeded generator", _GENERATOR_HINT)
        counts = F.one_hot(out.cpu().view(N_DRAWS, rows), vocab).sum(0).double()
        return counts / N_DRAWS

    def reference(logits: torch.Tensor, temperature: float, top_k: int | None, seed: int, case: str) -> torch.Tensor:
        return _probs(logits, temperature, top_k)

    def mistake(**switches: Any) -> Callable[..., torch.Tensor]:
        return lambda logits, temperature, top_k, seed, case: _probs(logits, temperature, top_k, **switches)

    def case(name: str, seed: int, rows: int, vocab: int, temperature: float, top_k: int | None) -> Case:
        logits = torch.randn(rows, vocab, generator=rng(seed)) * 1.5
        return Case(name, (logits, temperature, top_k, seed), {"case": name})

    cases = [
        case("temperature 1", 1000, 3, 8, 1.0, None),
        case("temperature 0.5 (sharper)", 1001, 2, 8, 0.5, None),
        case("temperature 2 (flatter)", 1002, 2, 8, 2.0, None),
        case("top_k 3", 1003, 3, 10, 1.0, 3),
        case("top_k 4 at temperature 1.5", 1004, 2, 10, 1.5, 4),
        case("top_k 1 (only the most likely token)", 1005, 2, 6, 1.0, 1),
        case("temperature 0 (greedy)", 1006, 4, 12, 0.0, None),
        case("temperature 0 with top_k 5", 1007, 3, 12, 0.0, 5),
    ]
    mistakes = [
        Mistake("temperature divides the logits: softmax(logits / temperature); you multiplied",
                mistake(multiply=True)),
        Mistake("temperature divides the *logits* before the softmax: dividing probabilities by it "
                "changes nothing, since they are renormalised", mistake(temperature_ignored=True)),
        Mistake("top-k keeps the k largest logits; you kept the k smallest", mistake(smallest=True)),
        Mistake("top-k keeps the k largest logits, the k-th included: mask logits < the k-th largest "
                "(with <= you keep only k - 1)", mistake(keep_fewer=True)),
        Mistake("outside the top k, set logits to -inf (probability 0), not to 0", mistake(fill=0.0)),
        Mistake("top-k keeps the k largest logits: set the others to -inf before the softmax",
                mistake(top_k_ignored=True)),
        Mistake(_GREEDY_HINT, mistake(greedy=False)),
    ]
    run_check(exercise, learner, reference, cases, distinct_mistakes(mistakes, reference, FREQ_TOL / 3, 0.0),
              hint="temperature rescales the logits before the softmax, top_k keeps only the k most likely "
                   "tokens, and the draw must use the generator you are given; temperature 0 means greedy",
              atol=FREQ_TOL, rtol=0.0)
