"""Chapter 04 checks: the reference passes, and wrong answers a learner would plausibly write
are rejected with the hint for that particular mistake.

The mutants below are written out the way a learner might write them, independently of the
Mistake functions inside the checks, so that a check is tested on real code, not on itself.
"""

import einops
import pytest
import torch
import torch.nn.functional as F
from checker_helpers import accepts, rejects

from toykit import circuits
from toykit.ablation import head_ablation_hook
from toykit.circuits import top_1_accuracy
from toykit.exercises import ch04
from toykit.factored_matrix import FactoredMatrix
from toykit.logit_attribution import next_token_attribution
from toykit.patching import logit_diff
from toykit.tasks.repeated_tokens import generate_repeated_tokens


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


# -- generate_repeated_tokens ---------------------------------------------------------------------------


def rt_good(batch, seq_len, d_vocab, bos):
    block = torch.randint(0, d_vocab - 1, (batch, seq_len))
    block = block + (block >= bos).long()
    return torch.cat([torch.full((batch, 1), bos), block, block], dim=1)


def rt_rejection(batch, seq_len, d_vocab, bos):
    # Another right answer: redraw any BOS tokens until none is left.
    block = torch.randint(0, d_vocab, (batch, seq_len))
    while (block == bos).any():
        redo = block == bos
        block[redo] = torch.randint(0, d_vocab, (int(redo.sum()),))
    return torch.cat([torch.full((batch, 1), bos), block, block], dim=1)


def rt_no_bos(batch, seq_len, d_vocab, bos):
    block = rt_good(batch, seq_len, d_vocab, bos)[:, 1:1 + seq_len]
    return block.repeat(1, 2)


def rt_drawn_twice(batch, seq_len, d_vocab, bos):
    first = rt_good(batch, seq_len, d_vocab, bos)[:, 1:1 + seq_len]
    second = rt_good(batch, seq_len, d_vocab, bos)[:, 1:1 + seq_len]
    return torch.cat([torch.full((batch, 1), bos), first, second], dim=1)


def rt_assumes_bos_zero(batch, seq_len, d_vocab, bos):
    block = torch.randint(1, d_vocab, (batch, seq_len))  # right only when bos == 0
    return torch.cat([torch.full((batch, 1), bos), block, block], dim=1)


def rt_bos_replaced(batch, seq_len, d_vocab, bos):
    block = torch.randint(0, d_vocab, (batch, seq_len))
    block[block == bos] = (bos + 1) % d_vocab  # makes bos + 1 twice as likely
    return torch.cat([torch.full((batch, 1), bos), block, block], dim=1)


def rt_cat_dim0(batch, seq_len, d_vocab, bos):
    block = torch.randint(0, d_vocab - 1, (batch, seq_len))
    block = block + (block >= bos).long()
    both = torch.cat([block, block])  # torch.cat's default dim=0 stacks the copies as extra rows
    return torch.cat([torch.full((2 * batch, 1), bos), both], dim=1)


def rt_float(batch, seq_len, d_vocab, bos):
    return rt_good(batch, seq_len, d_vocab, bos).float()


def rt_int32(batch, seq_len, d_vocab, bos):
    return rt_good(batch, seq_len, d_vocab, bos).int()  # the model's loss would refuse these ids


def rt_one_block(batch, seq_len, d_vocab, bos):
    block = rt_good(1, seq_len, d_vocab, bos)
    return block.expand(batch, -1)


def test_generate_repeated_tokens_accepts_correct_versions(capsys):
    accepts(ch04.check_generate_repeated_tokens, lambda b, s, v, bos: generate_repeated_tokens(b, s, v, bos=bos),
            capsys, "generate_repeated_tokens")
    accepts(ch04.check_generate_repeated_tokens, rt_good, capsys, "generate_repeated_tokens")
    accepts(ch04.check_generate_repeated_tokens, rt_rejection, capsys, "generate_repeated_tokens")


@pytest.mark.parametrize("fn, hint", [
    (rt_no_bos, "BOS token is missing"),
    (rt_drawn_twice, "must repeat the first exactly"),
    (rt_assumes_bos_zero, "never be the BOS token"),
    (rt_bos_replaced, "equally likely"),
    (rt_cat_dim0, "position axis"),
    (rt_float, "torch.randint"),
    (rt_one_block, "its own random block"),
    (rt_int32, "int64"),
])
def test_generate_repeated_tokens_mutants(fn, hint):
    rejects(ch04.check_generate_repeated_tokens, fn, hint)


# -- per_token_log_probs ------------------------------------------------------------------------------


def lp_good(logits, tokens):
    log_probs = logits.log_softmax(dim=-1)
    return log_probs[:, :-1].gather(-1, tokens[:, 1:, None]).squeeze(-1)


def lp_loop(logits, tokens):
    out = torch.zeros(tokens.shape[0], tokens.shape[1] - 1)
    for b in range(tokens.shape[0]):
        for i in range(tokens.shape[1] - 1):
            out[b, i] = F.log_softmax(logits[b, i], dim=0)[tokens[b, i + 1]]
    return out


def lp_no_shift(logits, tokens):
    return logits.log_softmax(-1).gather(-1, tokens[..., None])[..., 0]


def lp_backwards(logits, tokens):
    return logits[:, 1:].log_softmax(-1).gather(-1, tokens[:, :-1, None])[..., 0]


def lp_same_position(logits, tokens):
    return logits[:, :-1].log_softmax(-1).gather(-1, tokens[:, :-1, None])[..., 0]


def lp_raw_logits(logits, tokens):
    return logits[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]


def lp_probs(logits, tokens):
    return F.softmax(logits, dim=-1)[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]


def lp_wrong_dim(logits, tokens):
    return F.log_softmax(logits, dim=1)[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]


def lp_loss(logits, tokens):
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")


def test_per_token_log_probs_accepts(capsys):
    accepts(ch04.check_per_token_log_probs, lp_good, capsys, "per_token_log_probs")
    accepts(ch04.check_per_token_log_probs, lp_loop, capsys, "per_token_log_probs")


@pytest.mark.parametrize("fn, hint", [
    (lp_no_shift, "its own token"),
    (lp_backwards, "the shift goes the other way"),
    (lp_same_position, "same position as the logits"),
    (lp_raw_logits, "raw logits"),
    (lp_probs, "these are probabilities"),
    (lp_wrong_dim, "not over positions"),
    (lp_loss, "sign is flipped"),
])
def test_per_token_log_probs_mutants(fn, hint):
    rejects(ch04.check_per_token_log_probs, fn, hint)


# -- head-detection scores ---------------------------------------------------------------------------------


def prev_good(pattern):
    n = pattern.shape[-1]
    q = torch.arange(1, n)
    return pattern[:, :, q, q - 1].mean(dim=(0, 2))


def prev_main_diagonal(pattern):
    return pattern.diagonal(dim1=-2, dim2=-1).mean(dim=(0, -1))


def prev_above(pattern):
    return pattern.diagonal(1, dim1=-2, dim2=-1).mean(dim=(0, -1))


def prev_all_positions(pattern):
    stripe = pattern.diagonal(-1, dim1=-2, dim2=-1)
    return stripe.sum(-1).mean(0) / pattern.shape[-1]


def prev_mean_heads(pattern):
    return einops.reduce(pattern.diagonal(-1, dim1=-2, dim2=-1), "b h q -> b", "mean")


def prev_sum(pattern):
    return pattern.diagonal(-1, dim1=-2, dim2=-1).sum(dim=(0, 2))


def test_previous_token_score_accepts(capsys):
    accepts(ch04.check_previous_token_score, prev_good, capsys, "previous_token_score")
    accepts(ch04.check_previous_token_score, lambda p: einops.reduce(p.diagonal(-1, dim1=2, dim2=3),
                                                                     "b h q -> h", "mean"),
            capsys, "previous_token_score")


@pytest.mark.parametrize("fn, hint", [
    (prev_main_diagonal, "the main diagonal"),
    (prev_above, "offset=+1 is above the diagonal"),
    (prev_all_positions, "pos - 1 queries"),
    (prev_mean_heads, "averaged over the heads"),
    (prev_sum, "not a sum"),
])
def test_previous_token_score_mutants(fn, hint):
    rejects(ch04.check_previous_token_score, fn, hint)


def dup_good(pattern, seq_len):
    n = pattern.shape[-1]
    q = torch.arange(n - seq_len, n)
    return pattern[:, :, q, q - seq_len].mean(dim=(0, 2))


def dup_whole_stripe(pattern, seq_len):
    return pattern.diagonal(-seq_len, dim1=-2, dim2=-1).mean(dim=(0, 2))


def dup_induction_offset(pattern, seq_len):
    n = pattern.shape[-1]
    q = torch.arange(n - seq_len, n)
    return pattern[:, :, q, q - seq_len + 1].mean(dim=(0, 2))


def dup_too_far(pattern, seq_len):
    n = pattern.shape[-1]
    q = torch.arange(n - seq_len, n)
    return pattern[:, :, q, q - seq_len - 1].mean(dim=(0, 2))


def test_duplicate_token_score_accepts(capsys):
    accepts(ch04.check_duplicate_token_score, dup_good, capsys, "duplicate_token_score")
    # Taking the last seq_len entries of the stripe is also right.
    accepts(ch04.check_duplicate_token_score,
            lambda p, S: p.diagonal(-S, dim1=-2, dim2=-1)[..., -S:].mean(dim=(0, 2)), capsys, "duplicate_token_score")


@pytest.mark.parametrize("fn, hint", [
    (dup_whole_stripe, "seq_len + 1 entries"),
    (dup_induction_offset, "the induction stripe"),
    (dup_too_far, "one position too far back"),
    (lambda p, S: dup_good(p.transpose(0, 1), S), "averaged over the heads"),
])
def test_duplicate_token_score_mutants(fn, hint):
    rejects(ch04.check_duplicate_token_score, fn, hint)


def pm_good(pattern, seq_len):
    n = pattern.shape[-1]
    q = torch.arange(n - seq_len, n)
    return pattern[:, :, q, q - seq_len + 1].mean(dim=(0, 2))


def pm_duplicate(pattern, seq_len):
    return dup_good(pattern, seq_len)


def pm_whole_stripe(pattern, seq_len):
    return pattern.diagonal(1 - seq_len, dim1=-2, dim2=-1).mean(dim=(0, 2))


def pm_above(pattern, seq_len):
    return pattern.diagonal(seq_len - 1, dim1=-2, dim2=-1).mean(dim=(0, 2))


def pm_plus_two(pattern, seq_len):
    n = pattern.shape[-1]
    q = torch.arange(n - seq_len, n)
    return pattern[:, :, q, q - seq_len + 2].mean(dim=(0, 2))


def test_prefix_matching_score_accepts(capsys):
    accepts(ch04.check_prefix_matching_score, pm_good, capsys, "prefix_matching_score")


@pytest.mark.parametrize("fn, hint", [
    (pm_duplicate, "duplicate-token stripe"),
    (pm_whole_stripe, "first-copy queries"),
    (pm_above, "keys come before queries"),
    (pm_plus_two, "one position too far"),
])
def test_prefix_matching_score_mutants(fn, hint):
    rejects(ch04.check_prefix_matching_score, fn, hint)


# -- head_ablation_hook -------------------------------------------------------------------------------------


def abl_good(z, hook, head_index, method="zero"):
    z = z.clone()
    if method == "zero":
        z[:, :, head_index] = 0
    else:
        z[:, :, head_index] = einops.reduce(z[:, :, head_index], "b p e -> e", "mean")
    return z


def abl_in_place(z, hook, head_index, method="zero"):
    # Editing the activation in place would rewrite a cached hook_z: rejected.
    if method == "zero":
        z[:, :, head_index] = 0.0
    else:
        z[:, :, head_index] = z[:, :, head_index].mean(dim=(0, 1))
    return z


def abl_position_axis(z, hook, head_index, method="zero"):
    z = z.clone()
    z[:, head_index] = 0.0 if method == "zero" else z[:, head_index].mean(0)
    return z


def abl_per_position_mean(z, hook, head_index, method="zero"):
    z = z.clone()
    z[:, :, head_index] = 0.0 if method == "zero" else z[:, :, head_index].mean(0, keepdim=True)
    return z


def abl_scalar_mean(z, hook, head_index, method="zero"):
    z = z.clone()
    z[:, :, head_index] = 0.0 if method == "zero" else z[:, :, head_index].mean()
    return z


def abl_always_zero(z, hook, head_index, method="zero"):
    z = z.clone()
    z[:, :, head_index] = 0.0
    return z


def abl_no_return(z, hook, head_index, method="zero"):
    z[:, :, head_index] = 0.0


def abl_every_head(z, hook, head_index, method="zero"):
    return torch.zeros_like(z) if method == "zero" else z.mean(dim=(0, 1), keepdim=True).expand_as(z).clone()


def test_head_ablation_hook_accepts(capsys):
    accepts(ch04.check_head_ablation_hook, head_ablation_hook, capsys, "head_ablation_hook")
    accepts(ch04.check_head_ablation_hook, abl_good, capsys, "head_ablation_hook")


@pytest.mark.parametrize("fn, hint", [
    (abl_position_axis, "the head axis is the third one"),
    (abl_per_position_mean, "batch *and* positions"),
    (abl_scalar_mean, "keep the d_head axis"),
    (abl_always_zero, "method='mean' should replace"),
    (abl_no_return, "return the edited activation"),
    (abl_every_head, "leave the other heads alone"),
    (abl_in_place, "modified one of its inputs in place"),
])
def test_head_ablation_hook_mutants(fn, hint):
    rejects(ch04.check_head_ablation_hook, fn, hint)


# -- logit_diff ------------------------------------------------------------------------------------------


def ld_good(logits, answer_ids, wrong_ids, *, pos=-1, per_prompt=False):
    at = logits[:, pos]
    diff = at.gather(1, answer_ids[:, None])[:, 0] - at.gather(1, wrong_ids[:, None])[:, 0]
    return diff if per_prompt else diff.mean()


def ld_log_probs(logits, answer_ids, wrong_ids, *, pos=-1, per_prompt=False):
    # Log-prob differences equal logit differences: also right.
    lp = logits[:, pos].log_softmax(-1)
    rows = torch.arange(len(answer_ids))
    diff = lp[rows, answer_ids] - lp[rows, wrong_ids]
    return diff.mean() if not per_prompt else diff


def ld_flipped(logits, answer_ids, wrong_ids, *, pos=-1, per_prompt=False):
    return -ld_good(logits, answer_ids, wrong_ids, pos=pos, per_prompt=per_prompt)


def ld_first_position(logits, answer_ids, wrong_ids, *, pos=-1, per_prompt=False):
    return ld_good(logits, answer_ids, wrong_ids, pos=0, per_prompt=per_prompt)


def ld_always_last(logits, answer_ids, wrong_ids, *, pos=-1, per_prompt=False):
    return ld_good(logits, answer_ids, wrong_ids, per_prompt=per_prompt)


def ld_probs(logits, answer_ids, wrong_ids, *, pos=-1, per_prompt=False):
    return ld_good(logits.softmax(-1), answer_ids, wrong_ids, pos=pos, per_prompt=per_prompt)


def ld_always_mean(logits, answer_ids, wrong_ids, *, pos=-1, per_prompt=False):
    return ld_good(logits, answer_ids, wrong_ids, pos=pos)


def ld_never_mean(logits, answer_ids, wrong_ids, *, pos=-1, per_prompt=False):
    return ld_good(logits, answer_ids, wrong_ids, pos=pos, per_prompt=True)


def ld_old_signature(logits, correct, incorrect):
    # The signature before it followed toykit.patching.logit_diff: no pos, no per_prompt.
    return ld_good(logits, correct, incorrect, per_prompt=True)


def test_logit_diff_accepts(capsys):
    accepts(ch04.check_logit_diff, logit_diff, capsys, "logit_diff")  # the library's own function
    accepts(ch04.check_logit_diff, ld_good, capsys, "logit_diff")
    accepts(ch04.check_logit_diff, ld_log_probs, capsys, "logit_diff")


@pytest.mark.parametrize("fn, hint", [
    (ld_flipped, "sign is flipped"),
    (ld_first_position, "(by default -1, the final position"),
    (ld_always_last, "not always at the last one"),
    (ld_probs, "not probabilities"),
    (ld_always_mean, "one value per prompt"),
    (ld_never_mean, "return the mean over the batch"),
    (ld_old_signature, "parameter names"),
])
def test_logit_diff_mutants(fn, hint):
    rejects(ch04.check_logit_diff, fn, hint)


# -- head_logit_attribution --------------------------------------------------------------------------------


def dla_good(components, W_U, tokens):
    directions = W_U[:, tokens[:, 1:]]  # [d_model, batch, pos - 1]
    return einops.einsum(components[:, :, :-1], directions, "c b p d, d b p -> c b p")


def dla_same_token(components, W_U, tokens):
    return einops.einsum(components[:, :, :-1], W_U[:, tokens[:, :-1]], "c b p d, d b p -> c b p")


def dla_late_components(components, W_U, tokens):
    return einops.einsum(components[:, :, 1:], W_U[:, tokens[:, 1:]], "c b p d, d b p -> c b p")


def dla_all_positions(components, W_U, tokens):
    return einops.einsum(components, W_U[:, tokens], "c b p d, d b p -> c b p")


def dla_summed(components, W_U, tokens):
    return einops.einsum(components[:, :, :-1], W_U[:, tokens[:, 1:]], "c b p d, d b p -> b p")


def test_head_logit_attribution_accepts(capsys):
    accepts(ch04.check_head_logit_attribution, next_token_attribution, capsys, "head_logit_attribution")
    accepts(ch04.check_head_logit_attribution, dla_good, capsys, "head_logit_attribution")
    # Unembedding everything and then picking the next token is slower but right.
    accepts(ch04.check_head_logit_attribution,
            lambda c, W, t: (c[:, :, :-1] @ W).gather(-1, t[None, :, 1:, None].expand(c.shape[0], -1, -1, 1))[..., 0],
            capsys, "head_logit_attribution")


@pytest.mark.parametrize("fn, hint", [
    (dla_same_token, "the token at the same position"),
    (dla_late_components, "not components[:, :, 1:]"),
    (dla_all_positions, "the last position has no next token"),
    (dla_summed, "don't sum over the components"),
])
def test_head_logit_attribution_mutants(fn, hint):
    rejects(ch04.check_head_logit_attribution, fn, hint)


# -- top_1_accuracy --------------------------------------------------------------------------------------------


def dense(circuit):
    return circuit.AB if isinstance(circuit, FactoredMatrix) else circuit


def top1_good(circuit):
    M = dense(circuit)
    return (M.argmax(dim=-1) == torch.arange(M.shape[0])).float().mean().item()


def top1_columns(circuit):
    M = dense(circuit)
    return (M.argmax(dim=0) == torch.arange(M.shape[0])).float().mean().item()


def top1_count(circuit):
    M = dense(circuit)
    return int((M.argmax(dim=1) == torch.arange(M.shape[0])).sum())


def top1_positive_diagonal(circuit):
    return (dense(circuit).diag() > 0).float().mean()


def top1_beats_row_mean(circuit):
    M = dense(circuit)
    return (M.diag() > M.mean(dim=1)).float().mean()


def test_top_1_accuracy_accepts(capsys):
    accepts(ch04.check_top_1_accuracy, top_1_accuracy, capsys, "top_1_accuracy")
    accepts(ch04.check_top_1_accuracy, top1_good, capsys, "top_1_accuracy")
    # Comparing the diagonal with each row's max gives the same answer (no ties in the cases).
    accepts(ch04.check_top_1_accuracy,
            lambda c: (dense(c).diag() == dense(c).max(dim=1).values).float().mean(), capsys, "top_1_accuracy")


@pytest.mark.parametrize("fn, hint", [
    (top1_columns, "argmax of each *row*"),
    (top1_count, "the fraction of rows"),
    (top1_positive_diagonal, "a positive diagonal entry is not enough"),
    (top1_beats_row_mean, "not with the average of the row"),
])
def test_top_1_accuracy_mutants(fn, hint):
    rejects(ch04.check_top_1_accuracy, fn, hint)


# -- composition ------------------------------------------------------------------------------------------------


def comp_good(W_A, W_B):
    return (W_A @ W_B).norm() / (W_A.norm() * W_B.norm())


def comp_reversed(W_A, W_B):
    return (W_B @ W_A).norm() / (W_A.norm() * W_B.norm())


def comp_unnormalised(W_A, W_B):
    return torch.linalg.norm(W_A @ W_B)


def comp_squared(W_A, W_B):
    return ((W_A @ W_B) ** 2).sum() / ((W_A ** 2).sum() * (W_B ** 2).sum())


def comp_spectral(W_A, W_B):
    n = torch.linalg.matrix_norm
    return n(W_A @ W_B, ord=2) / (n(W_A, ord=2) * n(W_B, ord=2))


def comp_elementwise(W_A, W_B):
    return (W_A * W_B).norm() / (W_A.norm() * W_B.norm())


def test_composition_score_accepts(capsys):
    accepts(ch04.check_composition_score, circuits.composition_score, capsys, "composition_score")
    accepts(ch04.check_composition_score, comp_good, capsys, "composition_score")


@pytest.mark.parametrize("fn, hint", [
    (comp_reversed, "the order matters"),
    (comp_unnormalised, "divide by"),
    (comp_squared, "not their squares"),
    (comp_spectral, "not the spectral norm"),
    (comp_elementwise, "not an elementwise product"),
])
def test_composition_score_mutants(fn, hint):
    rejects(ch04.check_composition_score, fn, hint)


def kc_good(W_OV, W_QK):
    out = torch.zeros(W_OV.shape[0], W_QK.shape[0])
    for i in range(W_OV.shape[0]):
        for j in range(W_QK.shape[0]):
            out[i, j] = comp_good(W_OV[i], W_QK[j].T)
    return out


def kc_q_composition(W_OV, W_QK):
    out = torch.zeros(W_OV.shape[0], W_QK.shape[0])
    for i in range(W_OV.shape[0]):
        for j in range(W_QK.shape[0]):
            out[i, j] = comp_good(W_OV[i], W_QK[j])
    return out


def kc_transposed_result(W_OV, W_QK):
    return kc_good(W_OV, W_QK).T


def kc_paper_order(W_OV, W_QK):
    out = torch.zeros(W_OV.shape[0], W_QK.shape[0])
    for i in range(W_OV.shape[0]):
        for j in range(W_QK.shape[0]):
            out[i, j] = comp_good(W_QK[j].T, W_OV[i])
    return out


def kc_transposed_ov(W_OV, W_QK):
    return kc_q_composition(W_OV.transpose(-1, -2), W_QK)


def test_k_composition_scores_accepts(capsys):
    accepts(ch04.check_k_composition_scores, kc_good, capsys, "k_composition_scores")
    accepts(ch04.check_k_composition_scores,
            lambda OV, QK: circuits.composition_score(OV[:, None], QK[None].transpose(-1, -2)),
            capsys, "k_composition_scores")


@pytest.mark.parametrize("fn, hint", [
    (kc_q_composition, "that is Q-composition"),
    (kc_transposed_result, "[n_src, n_dst]"),
    (kc_paper_order, "W_OV acts first"),
    (kc_transposed_ov, "transpose the QK circuit"),
])
def test_k_composition_scores_mutants(fn, hint):
    rejects(ch04.check_k_composition_scores, fn, hint)
