"""Checks for chapter 04, Induction heads.

Each ``check_<name>(fn)`` runs your ``fn`` and toykit's reference on seeded cases, prints one
line when they agree, and otherwise raises CheckFailure with a hint chosen by recognising the
usual mistakes. References: ``toykit.tasks.repeated_tokens``, ``toykit.transformer``,
``toykit.circuits``, ``toykit.ablation``, ``toykit.patching`` and ``toykit.logit_attribution``.

Signatures the checks expect:

- ``generate_repeated_tokens(batch, seq_len, d_vocab, bos) -> [batch, 1 + 2 * seq_len]``
  (random, so the check tests its properties on large batches).
- ``per_token_log_probs(logits, tokens) -> [batch, pos - 1]``.
- ``previous_token_score(pattern) -> [n_heads]``, ``duplicate_token_score(pattern, seq_len)``
  and ``prefix_matching_score(pattern, seq_len)``, with pattern [batch, n_heads, pos, pos].
- ``head_ablation_hook(z, hook, head_index, method) -> z'``.
- ``logit_diff(logits, answer_ids, wrong_ids, *, pos=-1, per_prompt=False)``, the signature of
  ``toykit.patching.logit_diff`` (pos an int here).
- ``head_logit_attribution(components, W_U, tokens) -> [n_components, batch, pos - 1]``.
- ``top_1_accuracy(circuit) -> float``.
- ``composition_score(W_A, W_B) -> scalar`` and
  ``k_composition_scores(W_OV, W_QK) -> [n_src, n_dst]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from toykit import circuits
from toykit.ablation import head_ablation_hook
from toykit.circuits import top_1_accuracy
from toykit.exercises.checking import (
    Case,
    CheckFailure,
    ExerciseTable,
    Mistake,
    describe,
    rng,
    run_check,
    run_property_check,
    seeded,
)
from toykit.factored_matrix import FactoredMatrix
from toykit.hooks import HookPoint
from toykit.logit_attribution import next_token_attribution
from toykit.patching import logit_diff
from toykit.tasks.repeated_tokens import generate_repeated_tokens
from toykit.transformer import lm_cross_entropy_loss

# exercise id -> its check and toykit's reference (filled by @EXERCISES.check below)
EXERCISES = ExerciseTable()

__all__ = [
    "check_composition_score",
    "check_duplicate_token_score",
    "check_generate_repeated_tokens",
    "check_head_ablation_hook",
    "check_head_logit_attribution",
    "check_k_composition_scores",
    "check_logit_diff",
    "check_per_token_log_probs",
    "check_prefix_matching_score",
    "check_previous_token_score",
    "check_top_1_accuracy",
]


# -- generate_repeated_tokens ----------------------------------------------------------------------
#
# Random tokens cannot be compared value by value. The check instead tests, in order, the
# properties that define a batch of repeated random tokens, and stops at the first that fails
# with a message saying what is wrong. Batches are large, so the frequency test is sharp: with
# N draws of a token of probability p, the tolerance is at least 6 standard errors.


def _repeated_tokens_problem(tokens: Any, batch: int, seq_len: int, d_vocab: int, bos: int
                             ) -> tuple[str, str] | None:
    """None if ``tokens`` is a valid batch of repeated random tokens; else (detail, hint)."""
    want = [batch, 1 + 2 * seq_len]
    if not isinstance(tokens, torch.Tensor):
        return f"expected a tensor {want}, got {describe(tokens)}", "return a torch.Tensor of token ids"
    if tokens.is_floating_point() or tokens.dtype == torch.bool:
        return (f"expected integer token ids, got dtype {tokens.dtype}",
                "token ids are integers: draw them with torch.randint (int64), not torch.rand")
    if tokens.dtype != torch.int64:
        return (f"expected int64 token ids, got dtype {tokens.dtype}",
                "token ids are int64 everywhere in toykit (the loss and the model's embedding index with them): "
                "keep randint's default dtype")
    shape = list(tokens.shape)
    if shape == [batch, 2 * seq_len]:
        return (f"expected shape {want}, got {shape}",
                "the BOS token is missing: put `bos` at position 0 of every row, then the two copies")
    if shape != want:
        return (f"expected shape {want} = [batch, 1 + 2 * seq_len], got {shape}",
                "join the two copies along the position axis (torch.cat(..., dim=1)), after a BOS column, "
                "so the shape is [batch, 1 + 2 * seq_len]")
    tokens = tokens.detach().cpu().long()
    if not (tokens[:, 0] == bos).all():
        return (f"position 0 should be the BOS token {bos}, got {describe(tokens[:, 0])}",
                "every row starts with the BOS token: tokens[:, 0] == bos")
    first, second = tokens[:, 1:1 + seq_len], tokens[:, 1 + seq_len:]
    if not torch.equal(first, second):
        return ("the second block differs from the first",
                "the second half must repeat the first exactly: draw one block and concatenate it with "
                "itself (torch.cat([block, block], dim=1)), rather than drawing twice")
    if tokens.min() < 0 or tokens.max() >= d_vocab:
        return (f"token ids must lie in [0, d_vocab={d_vocab}), got values from {tokens.min().item()} to "
                f"{tokens.max().item()}", "draw ids in [0, d_vocab): torch.randint's upper bound is exclusive")
    if (first == bos).any():
        return (f"the BOS token {bos} appears among the random tokens ({int((first == bos).sum())} times)",
                "the random tokens must never be the BOS token: draw from the d_vocab - 1 other ids "
                "(e.g. draw in [0, d_vocab - 1) and add 1 to every draw >= bos)")
    if batch >= 2 and d_vocab > 2 and (first == first[:1]).all():
        return ("every row holds the same block", "each row needs its own random block: draw a [batch, seq_len] "
                "tensor, not one [seq_len] block shared by all rows")
    n, p = first.numel(), 1 / (d_vocab - 1)
    freq = torch.bincount(first.flatten(), minlength=d_vocab).double() / n
    freq = torch.cat([freq[:bos], freq[bos + 1:]])
    tol = max(0.02, 6 * math.sqrt(p * (1 - p) / n))
    if (freq - p).abs().max() > tol:
        return (f"token frequencies should all be 1/(d_vocab - 1) = {p:.3f}; they range from {freq.min():.3f} to "
                f"{freq.max():.3f} over {n} draws",
                "every token other than bos must be equally likely: don't map BOS draws onto one other token or "
                "leave a token out; draw in [0, d_vocab - 1) and add 1 to every draw >= bos")
    return None


@EXERCISES.check(generate_repeated_tokens)
def check_generate_repeated_tokens(generate_repeated_tokens_fn: Callable[..., torch.Tensor]) -> None:
    """Check ``generate_repeated_tokens(batch, seq_len, d_vocab, bos) -> [batch, 1 + 2 * seq_len]``:
    row b is [bos, r_b, r_b] with r_b a block of seq_len uniform random tokens, never bos; int64
    token ids. Tested by its properties (layout, range, uniformity) on large seeded batches."""
    def learner(batch: int, seq_len: int, d_vocab: int, bos: int, seed: int) -> torch.Tensor:
        with seeded(seed):  # the verdict is the same every run; the learner's own RNG is left alone
            return generate_repeated_tokens_fn(batch, seq_len, d_vocab, bos)

    def problem(tokens: Any, batch: int, seq_len: int, d_vocab: int, bos: int, seed: int) -> tuple[str, str] | None:
        return _repeated_tokens_problem(tokens, batch, seq_len, d_vocab, bos)

    specs = [  # (name, batch, seq_len, d_vocab, bos)
        ("BOS 0, small vocabulary", 4000, 8, 6, 0),
        ("BOS in the middle of the vocabulary", 4000, 6, 7, 3),
        ("BOS is the last id", 3000, 5, 5, 4),
        ("the model's sizes (128 tokens, blocks of 32)", 64, 32, 128, 0),
        ("one row, one token, two ids", 1, 1, 2, 0),
    ]
    cases = [Case(name, (b, s, v, bos), {"seed": i}) for i, (name, b, s, v, bos) in enumerate(specs)]
    run_property_check("generate_repeated_tokens", learner, problem, cases,
              hint="row b is [bos, r_b, r_b]: one random block per row, repeated once, after a BOS token")


# -- per_token_log_probs -----------------------------------------------------------------------------


def _lp_cases() -> list[Case]:
    def case(name: str, seed: int, batch: int, pos: int, d_vocab: int, scale: float = 2.0) -> Case:
        g = rng(seed)
        return Case(name, (torch.randn(batch, pos, d_vocab, generator=g) * scale,
                           torch.randint(0, d_vocab, (batch, pos), generator=g)))

    return [case("random logits", 0, 3, 7, 11), case("many positions", 1, 2, 20, 5),
            case("two positions", 2, 4, 2, 9), case("peaked logits", 3, 2, 6, 13, scale=8.0)]


def _per_token_log_probs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The reference: [batch, pos - 1], minus the per-token next-token loss."""
    return -lm_cross_entropy_loss(logits, tokens, per_token=True)


@EXERCISES.check(_per_token_log_probs)
def check_per_token_log_probs(per_token_log_probs: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check ``per_token_log_probs(logits, tokens) -> [batch, pos - 1]``: entry [b, i] is
    log softmax(logits[b, i])[tokens[b, i + 1]], the log-probability the model gave the token
    that came next. logits: [batch, pos, d_vocab], tokens: [batch, pos] (int64 token ids)."""

    def pick(values: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return values.gather(-1, tokens[..., None])[..., 0]

    lsm = torch.log_softmax
    mistakes = [
        Mistake("position i predicts the *next* token: pair logits[:, :-1] with tokens[:, 1:] "
                "(you scored every position against its own token)",
                lambda lg, t: pick(lsm(lg, -1), t)),
        Mistake("the shift goes the other way: logits at position i predict token i + 1, so use "
                "logits[:, :-1] with tokens[:, 1:], not logits[:, 1:] with tokens[:, :-1]",
                lambda lg, t: pick(lsm(lg[:, 1:], -1), t[:, :-1])),
        Mistake("you scored the token at the same position as the logits: the logits at position i are a "
                "guess about token i + 1, so gather tokens[:, 1:] from logits[:, :-1]",
                lambda lg, t: pick(lsm(lg[:, :-1], -1), t[:, :-1])),
        Mistake("these are raw logits: take log_softmax over the vocabulary (last) axis before gathering",
                lambda lg, t: pick(lg[:, :-1], t[:, 1:])),
        Mistake("these are probabilities: take the log, i.e. use log_softmax rather than softmax",
                lambda lg, t: pick(lg[:, :-1].softmax(-1), t[:, 1:])),
        Mistake("normalise over the vocabulary axis (dim=-1), not over positions",
                lambda lg, t: pick(lsm(lg, 1)[:, :-1], t[:, 1:])),
        Mistake("the sign is flipped: log-probabilities are <= 0 (the loss is minus the log-probability)",
                lambda lg, t: -pick(lsm(lg[:, :-1], -1), t[:, 1:])),
    ]
    run_check("per_token_log_probs", per_token_log_probs, _per_token_log_probs, _lp_cases(), mistakes,
              hint="turn the logits into log-probabilities over the vocabulary, then read, at each position "
                   "but the last, the one belonging to the token that comes next")


# -- head-detection scores ------------------------------------------------------------------------


def _random_pattern(seed: int, batch: int, n_heads: int, n: int, sharpness: float = 2.0) -> torch.Tensor:
    """A random causal attention pattern [batch, n_heads, n, n] (rows sum to 1, zero above the diagonal)."""
    scores = torch.randn(batch, n_heads, n, n, generator=rng(seed)) * sharpness
    future = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
    return scores.masked_fill(future, float("-inf")).softmax(-1)


def _stripe(pattern: torch.Tensor, offset: int, first_query: int) -> torch.Tensor:
    """Mean over batch and queries q >= first_query of pattern[..., q, q + offset]: [n_heads]."""
    n = pattern.shape[-1]
    q = torch.arange(first_query, n)
    return pattern[:, :, q, q + offset].mean(dim=(0, 2))


def _score_cases(with_seq_len: bool) -> list[Case]:
    specs = [  # (name, seed, batch, n_heads, seq_len, bos)
        ("with a BOS token", 0, 3, 4, 6, True),
        ("without a BOS token", 1, 2, 3, 5, False),
        ("one head, batch of one, with BOS", 2, 1, 1, 8, True),
        ("long blocks, with BOS", 3, 2, 2, 16, True),
    ]
    cases = []
    for name, seed, batch, heads, S, bos in specs:
        pattern = _random_pattern(seed, batch, heads, 2 * S + bos)
        cases.append(Case(name, (pattern, S) if with_seq_len else (pattern,)))
    return cases


@EXERCISES.check(circuits.previous_token_score)
def check_previous_token_score(previous_token_score: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Check ``previous_token_score(pattern) -> [n_heads]``: pattern [batch, n_heads, pos, pos];
    the mean over batch and queries q = 1 .. pos - 1 of pattern[:, :, q, q - 1]."""

    def diag(p: torch.Tensor, offset: int) -> torch.Tensor:
        return p.diagonal(offset, dim1=-2, dim2=-1)

    mistakes = [
        Mistake("that is attention to the query's own position (the main diagonal); the previous token is one "
                "below it: pattern.diagonal(offset=-1, dim1=-2, dim2=-1)",
                lambda p: diag(p, 0).mean(dim=(0, 2))),
        Mistake("offset=+1 is above the diagonal, where causal attention is always 0: the previous token is "
                "offset=-1", lambda p: diag(p, 1).mean(dim=(0, 2))),
        Mistake("average over the pos - 1 queries that have a previous token (q >= 1), not over all pos "
                "positions", lambda p: diag(p, -1).sum(-1).mean(0) / p.shape[-1]),
        Mistake("you averaged over the heads; keep the head axis and average over batch and query positions, "
                "giving [n_heads]", lambda p: diag(p, -1).mean(dim=(1, 2))),
        Mistake("the score is a mean over batch and queries, not a sum", lambda p: diag(p, -1).sum(dim=(0, 2))),
    ]
    run_check("previous_token_score", previous_token_score, circuits.previous_token_score,
              _score_cases(False), mistakes,
              hint="the score is how much each query attends to the position just before it, averaged over "
                   "the batch and the queries that have one, per head")


def _second_copy_start(pattern: torch.Tensor, seq_len: int) -> int:
    return pattern.shape[-1] - seq_len


@EXERCISES.check(circuits.duplicate_token_score)
def check_duplicate_token_score(duplicate_token_score: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """Check ``duplicate_token_score(pattern, seq_len) -> [n_heads]``: pattern [batch, n_heads, pos,
    pos] on repeated blocks of seq_len tokens (pos = 2 seq_len, or 2 seq_len + 1 with a BOS); the mean
    over batch and the second copy's queries q (the last seq_len positions) of pattern[:, :, q, q - seq_len]."""
    mistakes = [
        Mistake("average only over the second copy's queries, the last seq_len positions: with a BOS, the "
                "stripe diagonal(-seq_len) has seq_len + 1 entries and its first query (position seq_len) is "
                "still in the first copy",
                lambda p, S: p.diagonal(-S, dim1=-2, dim2=-1).mean(dim=(0, 2))),
        Mistake("that is the token *after* the earlier copy (the induction stripe, offset 1 - seq_len); the "
                "duplicate token is the earlier copy itself, key q - seq_len",
                lambda p, S: _stripe(p, 1 - S, _second_copy_start(p, S))),
        Mistake("one position too far back: the earlier copy of the token at q is at q - seq_len, not "
                "q - seq_len - 1", lambda p, S: _stripe(p, -S - 1, _second_copy_start(p, S))),
        Mistake("you averaged over the heads; keep the head axis and average over batch and queries: "
                "[n_heads]", lambda p, S: _stripe(p.transpose(0, 1), -S, _second_copy_start(p, S))),
    ]
    run_check("duplicate_token_score", duplicate_token_score, circuits.duplicate_token_score,
              _score_cases(True), mistakes,
              hint="for each query in the second copy, the attention it pays to the same token in the first "
                   "copy, averaged over batch and those queries, per head")


@EXERCISES.check(circuits.prefix_matching_score)
def check_prefix_matching_score(prefix_matching_score: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """Check ``prefix_matching_score(pattern, seq_len) -> [n_heads]``: as for duplicate_token_score but
    with key q - seq_len + 1, the token *after* the earlier copy of the query's token."""
    mistakes = [
        Mistake("that is the earlier copy of the query's token itself (the duplicate-token stripe); an "
                "induction head attends to the token *after* it, key q - seq_len + 1",
                lambda p, S: _stripe(p, -S, _second_copy_start(p, S))),
        Mistake("average only over the second copy's queries, the last seq_len positions: the stripe "
                "diagonal(1 - seq_len) also holds first-copy queries, where nothing has repeated yet",
                lambda p, S: p.diagonal(1 - S, dim1=-2, dim2=-1).mean(dim=(0, 2))),
        Mistake("keys come before queries: the offset is 1 - seq_len (below the diagonal), not seq_len - 1",
                lambda p, S: p.diagonal(S - 1, dim1=-2, dim2=-1).mean(dim=(0, 2))),
        Mistake("one position too far: the token after the earlier copy is at q - seq_len + 1, not "
                "q - seq_len + 2", lambda p, S: _stripe(p, 2 - S, _second_copy_start(p, S))),
    ]
    run_check("prefix_matching_score", prefix_matching_score, circuits.prefix_matching_score,
              _score_cases(True), mistakes,
              hint="for each query in the second copy, the attention it pays to the token that followed its "
                   "earlier copy, averaged over batch and those queries, per head")


# -- head_ablation_hook ------------------------------------------------------------------------------


@EXERCISES.check(head_ablation_hook)
def check_head_ablation_hook(head_ablation_hook_fn: Callable[..., torch.Tensor]) -> None:
    """Check ``head_ablation_hook(z, hook, head_index, method) -> z'``: z [batch, pos, n_heads,
    d_head]; z' equals z except that z'[:, :, head_index] is 0 ("zero") or the mean of
    z[:, :, head_index] over batch and positions, a [d_head] vector ("mean"). z' is a new tensor:
    the hook must not modify z in place."""
    exercise = "head_ablation_hook"

    def learner(z: torch.Tensor, head_index: int, method: str, case: str) -> torch.Tensor:
        # z is the learner's fresh copy: run_check rejects any edit of it (a cache may hold hook_z).
        out = head_ablation_hook_fn(z, HookPoint(name="blocks.0.attn.hook_z"), head_index, method)
        if out is None:
            raise CheckFailure(exercise, case, "your hook returned None",
                               "return the edited activation: a hook's return value replaces the activation")
        return out

    def reference(z: torch.Tensor, head_index: int, method: str, case: str) -> torch.Tensor:
        return head_ablation_hook(z, None, head_index, method)

    def with_head(fill: Callable[[torch.Tensor, int], torch.Tensor]) -> Callable[..., torch.Tensor]:
        def wrong(z: torch.Tensor, h: int, method: str, case: str) -> torch.Tensor:
            z = z.clone()
            z[:, :, h] = fill(z, h)
            return z
        return wrong

    def positions_axis(z: torch.Tensor, h: int, method: str, case: str) -> torch.Tensor:
        z = z.clone()
        z[:, h] = z[:, h].mean(dim=0) if method == "mean" else 0.0
        return z

    specs = [  # (name, seed, batch, pos, n_heads, d_head, head, method)
        ("zero, head 1", 0, 3, 5, 4, 6, 1, "zero"),
        ("mean, head 2", 1, 4, 6, 3, 5, 2, "mean"),
        ("mean, head 0 of 4", 2, 5, 4, 4, 3, 0, "mean"),
        ("zero, last head", 3, 2, 7, 5, 4, 4, "zero"),
        ("mean, batch of one", 4, 1, 8, 2, 3, 1, "mean"),
    ]
    cases = []
    for name, seed, b, p, h, e, head, method in specs:
        z = torch.randn(b, p, h, e, generator=rng(seed)) + torch.randn(h, e, generator=rng(seed + 50))
        cases.append(Case(name, (z, head, method), {"case": name}))
    mistakes = [
        Mistake("z is [batch, pos, n_heads, d_head]: the head axis is the third one, z[:, :, head_index], "
                "not z[:, head_index] (that is a position)", positions_axis),
        Mistake("mean ablation uses the head's mean over batch *and* positions (one [d_head] vector), not a "
                "separate mean for each position", with_head(lambda z, h: z[:, :, h].mean(dim=0))),
        Mistake("keep the d_head axis: the mean is a [d_head] vector, mean over dims (0, 1) of z[:, :, h], not "
                "one number", with_head(lambda z, h: z[:, :, h].mean())),
        Mistake("method='mean' should replace the head's output by its mean, not by zero",
                with_head(lambda z, h: torch.zeros(()))),
        Mistake("method='zero' should set the head's output to zero",
                with_head(lambda z, h: z[:, :, h].mean(dim=(0, 1)))),
        Mistake("only the head `head_index` is ablated; leave the other heads alone",
                lambda z, h, method, case: torch.zeros_like(z) if method == "zero"
                else z.mean(dim=(0, 1), keepdim=True).expand_as(z)),
    ]
    run_check(exercise, learner, reference, cases, mistakes,
              hint="return a new tensor equal to z except for head head_index, which becomes 0 ('zero') or that "
                   "head's average output over batch and positions ('mean'); z itself stays unchanged")


# -- logit_diff --------------------------------------------------------------------------------------


@EXERCISES.check(logit_diff)
def check_logit_diff(logit_diff_fn: Callable[..., torch.Tensor]) -> None:
    """Check ``logit_diff(logits, answer_ids, wrong_ids, *, pos=-1, per_prompt=False)``, the
    signature of ``toykit.patching.logit_diff``: logits [batch, pos, d_vocab], answer_ids and
    wrong_ids [batch] token ids; at position ``pos`` (an int, -1 = the last), the logit of
    answer_ids[b] minus the logit of wrong_ids[b]: [batch] with per_prompt, else their mean."""

    def case(name: str, seed: int, batch: int, n_pos: int, d_vocab: int, **kwargs) -> Case:
        g = rng(seed)
        answer = torch.randint(0, d_vocab, (batch,), generator=g)
        wrong = (answer + torch.randint(1, d_vocab, (batch,), generator=g)) % d_vocab
        return Case(name, (torch.randn(batch, n_pos, d_vocab, generator=g) * 3, answer, wrong), kwargs)

    # each mistake is the library's logit_diff called the wrong way
    mistakes = [
        Mistake("the sign is flipped: answer minus wrong",
                lambda lg, a, w, pos=-1, per_prompt=False: logit_diff(lg, w, a, pos=pos, per_prompt=per_prompt)),
        Mistake("read the logits at position pos (by default -1, the final position, where the model predicts "
                "the answer)",
                lambda lg, a, w, pos=-1, per_prompt=False: logit_diff(lg, a, w, pos=0, per_prompt=per_prompt)),
        Mistake("read the logits at position pos, not always at the last one",
                lambda lg, a, w, pos=-1, per_prompt=False: logit_diff(lg, a, w, pos=-1, per_prompt=per_prompt)),
        Mistake("use logits, not probabilities: a logit difference is log(p_answer / p_wrong)",
                lambda lg, a, w, pos=-1, per_prompt=False: logit_diff(lg.softmax(-1), a, w, pos=pos,
                                                                      per_prompt=per_prompt)),
        Mistake("with per_prompt=True return one value per prompt, [batch]",
                lambda lg, a, w, pos=-1, per_prompt=False: logit_diff(lg, a, w, pos=pos)),
        Mistake("with per_prompt=False (the default) return the mean over the batch, a single value",
                lambda lg, a, w, pos=-1, per_prompt=False: logit_diff(lg, a, w, pos=pos, per_prompt=True)),
    ]
    cases = [case("per prompt", 0, 5, 6, 10, per_prompt=True), case("the batch mean (default)", 1, 5, 6, 10),
             case("one position", 2, 3, 1, 7, per_prompt=True), case("batch of one", 3, 1, 4, 12),
             case("pos=2", 4, 8, 5, 50, pos=2, per_prompt=True), case("pos=-3, mean", 5, 4, 5, 20, pos=-3)]

    run_check("logit_diff", logit_diff_fn, logit_diff, cases, mistakes,
              hint="at position pos of each prompt, that prompt's answer token's logit minus its wrong token's "
                   "logit: one value per prompt with per_prompt=True, their mean otherwise")


# -- head_logit_attribution -------------------------------------------------------------------------


@EXERCISES.check(next_token_attribution)
def check_head_logit_attribution(head_logit_attribution: Callable[..., torch.Tensor]) -> None:
    """Check ``head_logit_attribution(components, W_U, tokens) -> [n_components, batch, pos - 1]``:
    components [n_components, batch, pos, d_model] (already scaled by the final LayerNorm),
    W_U [d_model, d_vocab], tokens [batch, pos]; entry [c, b, i] = components[c, b, i] ·
    W_U[:, tokens[b, i + 1]]."""

    def case(name: str, seed: int, n: int, batch: int, pos: int, d_model: int, d_vocab: int) -> Case:
        g = rng(seed)
        return Case(name, (torch.randn(n, batch, pos, d_model, generator=g), torch.randn(d_model, d_vocab, generator=g),
                           torch.randint(0, d_vocab, (batch, pos), generator=g)))

    def dla(comp: torch.Tensor, W_U: torch.Tensor, tok: torch.Tensor) -> torch.Tensor:
        return torch.einsum("cbpd,dbp->cbp", comp, W_U[:, tok])

    mistakes = [
        Mistake("attribute to the *next* token: component at position i against W_U[:, tokens[:, i + 1]] (you used "
                "the token at the same position)", lambda c, W, t: dla(c[:, :, :-1], W, t[:, :-1])),
        Mistake("the components at positions 0 .. pos - 2 predict tokens 1 .. pos - 1: slice components[:, :, :-1], "
                "not components[:, :, 1:]", lambda c, W, t: dla(c[:, :, 1:], W, t[:, 1:])),
        Mistake("the last position has no next token: return pos - 1 positions, comparing components[:, :, :-1] "
                "with tokens[:, 1:]", lambda c, W, t: dla(c, W, t)),
        Mistake("keep one attribution per component: don't sum over the components axis",
                lambda c, W, t: dla(c[:, :, :-1], W, t[:, 1:]).sum(0)),
    ]
    cases = [case("random", 0, 5, 3, 6, 8, 11), case("one component", 1, 1, 2, 4, 5, 7),
             case("two positions", 2, 3, 4, 2, 6, 9), case("wide vocabulary", 3, 9, 2, 5, 4, 30)]
    run_check("head_logit_attribution", head_logit_attribution, next_token_attribution, cases, mistakes,
              hint="each component's output at a position is dotted with the unembedding direction of the token "
                   "that comes next; the last position has no next token")


# -- top_1_accuracy ----------------------------------------------------------------------------------


@EXERCISES.check(top_1_accuracy)
def check_top_1_accuracy(top_1_accuracy_fn: Callable[[torch.Tensor | FactoredMatrix], float]) -> None:
    """Check ``top_1_accuracy(circuit) -> float``: circuit [n, n], a tensor or a FactoredMatrix;
    the fraction of rows i whose largest entry is in column i."""

    def dense(M: torch.Tensor | FactoredMatrix) -> torch.Tensor:
        return M.AB if isinstance(M, FactoredMatrix) else M

    def boosted(seed: int, n: int, boost: float) -> torch.Tensor:
        g = rng(seed)
        return torch.randn(n, n, generator=g) + boost * torch.diag(torch.rand(n, generator=g))

    g = rng(10)
    factored = FactoredMatrix(torch.randn(40, 6, generator=g), torch.randn(6, 40, generator=g))
    rows_biased = boosted(11, 30, 3.0) + torch.linspace(-4, 4, 30)[None, :]  # column 29 often wins
    cases = [
        Case("random with a partly dominant diagonal", (boosted(0, 50, 3.0) + 1.5,)),
        Case("a FactoredMatrix", (FactoredMatrix(factored.A, factored.B),)),
        Case("some columns are large everywhere", (rows_biased,)),
        Case("identity plus noise", (torch.eye(20) * 5 + torch.randn(20, 20, generator=rng(3)),)),
        Case("diagonal never wins", (torch.randn(15, 15, generator=rng(4)) - 10 * torch.eye(15),)),
    ]
    idx = torch.arange
    mistakes = [
        Mistake("take the argmax of each *row* (dim=1 / dim=-1): row i is what happens when the head attends "
                "to token i, and it should raise token i's logit most",
                lambda M: (dense(M).argmax(0) == idx(dense(M).shape[0])).float().mean()),
        Mistake("return the fraction of rows, not the count", lambda M: (dense(M).argmax(1) == idx(dense(M).shape[0]))
                .sum().float()),
        Mistake("a positive diagonal entry is not enough: it must be the largest entry of its row",
                lambda M: (dense(M).diagonal() > 0).float().mean()),
        Mistake("compare the diagonal with the rest of its row (argmax over dim 1), not with the average of the "
                "row", lambda M: (dense(M).diagonal() > dense(M).mean(1)).float().mean()),
    ]
    run_check("top_1_accuracy", top_1_accuracy_fn, top_1_accuracy, cases, mistakes,
              hint="for each row, is its largest entry on the diagonal? Return the fraction of rows where it is "
                   "(a FactoredMatrix can be turned into a dense matrix first)")


# -- composition ------------------------------------------------------------------------------------


def _fro(M: torch.Tensor) -> torch.Tensor:
    return torch.linalg.matrix_norm(M)


def _low_rank(seed: int, d: int, r: int, lead: tuple[int, ...] = ()) -> torch.Tensor:
    g = rng(seed)
    return torch.randn(*lead, d, r, generator=g) @ torch.randn(*lead, r, d, generator=g)


@EXERCISES.check(circuits.composition_score)
def check_composition_score(composition_score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check ``composition_score(W_A, W_B) -> scalar``: W_A, W_B [d, d] (W_A applied first,
    x @ W_A @ W_B); ‖W_A W_B‖_F / (‖W_A‖_F ‖W_B‖_F)."""
    e = torch.eye(6)
    cases = [
        Case("random 8 x 8", (torch.randn(8, 8, generator=rng(0)), torch.randn(8, 8, generator=rng(1)))),
        Case("low rank, like heads' circuits", (_low_rank(2, 12, 3), _low_rank(3, 12, 3))),
        Case("rank one, output read exactly", (torch.outer(e[0], e[1]) * 2, torch.outer(e[1], e[2]) * 3)),
        Case("one output direction read, another not",
             (torch.outer(e[0], e[1]) + torch.outer(e[3], e[4]), torch.outer(e[1], e[2]) + torch.outer(e[0], e[5]))),
    ]
    mistakes = [
        Mistake("the order matters: W_A is applied first (x @ W_A @ W_B), so the product is W_A @ W_B, not "
                "W_B @ W_A", lambda A, B: _fro(B @ A) / (_fro(A) * _fro(B))),
        Mistake("divide by ‖W_A‖_F ‖W_B‖_F, so that the score lies in [0, 1] whatever the weights' scale",
                lambda A, B: _fro(A @ B)),
        Mistake("use Frobenius norms, not their squares: torch.linalg.matrix_norm(M) (or M.norm())",
                lambda A, B: _fro(A @ B) ** 2 / (_fro(A) ** 2 * _fro(B) ** 2)),
        Mistake("use the Frobenius norm (the default of torch.linalg.matrix_norm), not the spectral norm ord=2",
                lambda A, B: torch.linalg.matrix_norm(A @ B, ord=2)
                / (torch.linalg.matrix_norm(A, ord=2) * torch.linalg.matrix_norm(B, ord=2))),
        Mistake("compose with a matrix product (@), not an elementwise product (*)",
                lambda A, B: _fro(A * B) / (_fro(A) * _fro(B))),
    ]
    run_check("composition_score", composition_score, circuits.composition_score, cases, mistakes,
              hint="the Frobenius norm of the composed map, divided by the product of the two maps' Frobenius "
                   "norms, so that the score does not depend on the weights' scale")


def _k_composition_scores(W_OV: torch.Tensor, W_QK: torch.Tensor) -> torch.Tensor:
    """The reference: [n_src, n_dst], every source OV circuit against every destination QK circuit's keys."""
    return circuits.composition_score(W_OV[:, None], W_QK[None].mT)


@EXERCISES.check(_k_composition_scores)
def check_k_composition_scores(k_composition_scores: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check ``k_composition_scores(W_OV, W_QK) -> [n_src, n_dst]``: W_OV [n_src, d, d] (the
    earlier heads' OV circuits), W_QK [n_dst, d, d] (the later heads' QK circuits); entry
    [i, j] = composition score of W_OV[i] with W_QK[j]ᵀ, ‖W_OV[i] W_QK[j]ᵀ‖_F / (‖W_OV[i]‖_F
    ‖W_QK[j]‖_F): how much head j's *keys* read what head i writes."""

    def score(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        return _fro(A[:, None] @ B[None]) / (_fro(A)[:, None] * _fro(B)[None])

    cases = [
        Case("4 heads each, rank 3", (_low_rank(0, 10, 3, (4,)), _low_rank(1, 10, 3, (4,)))),
        Case("3 source heads, 5 destination heads", (_low_rank(2, 8, 2, (3,)), _low_rank(3, 8, 2, (5,)))),
        Case("one pair", (_low_rank(4, 6, 2, (1,)), _low_rank(5, 6, 2, (1,)))),
        Case("full rank", (torch.randn(2, 7, 7, generator=rng(6)), torch.randn(3, 7, 7, generator=rng(7)))),
    ]
    mistakes = [
        Mistake("that is Q-composition: the query side reads W_QK's rows, the key side its columns, so for "
                "K-composition transpose the QK circuit: W_OV[i] @ W_QK[j].T",
                lambda OV, QK: score(OV, QK)),
        Mistake("rows are the earlier (source) heads and columns the later ones: the result is [n_src, n_dst]",
                lambda OV, QK: score(OV, QK.mT).T),
        Mistake("in toykit's x @ W convention W_OV acts first, so the product is W_OV[i] @ W_QK[j].T (transpose "
                "the QK circuit), not W_QK[j].T @ W_OV[i] or W_OV[i].T @ W_QK[j], which have the same norm as each "
                "other (the paper's W_QKᵀ W_OV is written for column vectors)",
                lambda OV, QK: _fro(QK.mT[None] @ OV[:, None]) / (_fro(OV)[:, None] * _fro(QK)[None])),
    ]
    run_check("k_composition_scores", k_composition_scores, _k_composition_scores, cases, mistakes,
              hint="entry [i, j] is the composition score of source head i's OV circuit with destination head "
                   "j's QK circuit read from the key side; broadcasting computes every pair at once")
