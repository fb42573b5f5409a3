"""Chapter 06 checks: the reference passes, and wrong answers a learner would plausibly write
are rejected with the hint for that particular mistake.

The mutants below are written the way a learner might write them, independently of the
Mistake functions inside the checks, so that a check is tested on real code, not on itself.
"""

import pytest
import torch
from checker_helpers import accepts, rejects

from toykit.exercises import ch06

IN_PLACE = "modified one of its inputs in place"


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


# -- ioi_logit_diff ----------------------------------------------------------------------------------


def ld_good(logits, answer_ids, wrong_ids, *, pos=-1, per_prompt=False):
    b = torch.arange(logits.shape[0])
    final = logits[b, pos]
    diff = final[b, answer_ids] - final[b, wrong_ids]
    return diff if per_prompt else diff.mean()


def ld_gather(logits, answer_ids, wrong_ids, *, pos=-1, per_prompt=False):
    at = logits.gather(1, pos[:, None, None].expand(-1, 1, logits.shape[-1]))[:, 0]
    diff = (at.gather(1, answer_ids[:, None]) - at.gather(1, wrong_ids[:, None])).squeeze(1)
    return diff if per_prompt else diff.mean()


def ld_flipped(logits, answer_ids, wrong_ids, *, pos=-1, per_prompt=False):
    return -ld_good(logits, answer_ids, wrong_ids, pos=pos, per_prompt=per_prompt)


def ld_last(logits, answer_ids, wrong_ids, *, pos=-1, per_prompt=False):
    return ld_good(logits, answer_ids, wrong_ids, per_prompt=per_prompt)


def ld_always_mean(logits, answer_ids, wrong_ids, *, pos=-1, per_prompt=False):
    return ld_good(logits, answer_ids, wrong_ids, pos=pos)


def ld_never_mean(logits, answer_ids, wrong_ids, *, pos=-1, per_prompt=False):
    return ld_good(logits, answer_ids, wrong_ids, pos=pos, per_prompt=True)


def ld_old_signature(logits, answer_pos, io_ids, s_ids):
    # The signature before it followed toykit.patching.logit_diff.
    return ld_good(logits, io_ids, s_ids, pos=answer_pos, per_prompt=True)


def test_ioi_logit_diff_accepts(capsys):
    from toykit.patching import logit_diff
    accepts(ch06.check_ioi_logit_diff, logit_diff, capsys, "ioi_logit_diff")  # the library's own function
    accepts(ch06.check_ioi_logit_diff, ld_good, capsys, "ioi_logit_diff")
    accepts(ch06.check_ioi_logit_diff, ld_gather, capsys, "ioi_logit_diff")


@pytest.mark.parametrize("fn, hint", [(ld_flipped, "sign is flipped"), (ld_last, "pos[b]"),
                                      (ld_always_mean, "one value per prompt"),
                                      (ld_never_mean, "return the mean over the batch"),
                                      (ld_old_signature, "parameter names")])
def test_ioi_logit_diff_mutants(fn, hint):
    rejects(ch06.check_ioi_logit_diff, fn, hint)


# -- normalized_patching_metric ---------------------------------------------------------------------


def test_normalized_metric_accepts(capsys):
    from toykit.metrics import normalize_metric
    accepts(ch06.check_normalized_patching_metric, normalize_metric, capsys, "normalized_patching_metric")
    accepts(ch06.check_normalized_patching_metric, lambda v, *, baseline, target: (v - baseline) / (target - baseline),
            capsys, "normalized_patching_metric")


@pytest.mark.parametrize("fn, hint", [
    (lambda v, *, baseline, target: (v - target) / (baseline - target), "other way round"),
    (lambda v, *, baseline, target: (v - baseline) / target, "not by the target alone"),
    (lambda v, *, baseline, target: v / (target - baseline), "subtract the baseline first"),
    # the old positional order (value, clean, corrupted) cannot take the keyword arguments
    (lambda v, clean_value, corrupted_value: (v - corrupted_value) / (clean_value - corrupted_value),
     "parameter names"),
])
def test_normalized_metric_mutants(fn, hint):
    rejects(ch06.check_normalized_patching_metric, fn, hint)


# -- patch_residual_hook -----------------------------------------------------------------------------


def resid_good(resid, hook, pos, clean_cache):
    out = resid.clone()
    out[:, pos, :] = clean_cache[hook.name][:, pos, :]
    return out


def resid_in_place(resid, hook, pos, clean_cache):
    resid[:, pos, :] = clean_cache[hook.name][:, pos, :]
    return resid


def resid_everything(resid, hook, pos, clean_cache):
    return clean_cache[hook.name]


def resid_rows(resid, hook, pos, clean_cache):
    resid = resid.clone()
    resid[pos] = clean_cache[hook.name][pos]
    return resid


def resid_fixed_name(resid, hook, pos, clean_cache):
    resid = resid.clone()
    resid[:, pos] = clean_cache["blocks.0.hook_resid_pre"][:, pos]
    return resid


def test_patch_residual_hook_accepts(capsys):
    accepts(ch06.check_patch_residual_hook, resid_good, capsys, "patch_residual_hook")


@pytest.mark.parametrize("fn, hint", [(resid_everything, "patch only position pos"), (resid_rows, "axis 1"),
                                      (resid_fixed_name, "this hook's own clean activation"),
                                      (resid_in_place, IN_PLACE)])
def test_patch_residual_hook_mutants(fn, hint):
    rejects(ch06.check_patch_residual_hook, fn, hint)


# -- patch_head_hook ---------------------------------------------------------------------------------


def head_good(z, hook, head, clean_cache):
    z = z.clone()
    z[..., head, :] = clean_cache[hook.name][..., head, :]
    return z


def head_in_place(z, hook, head, clean_cache):
    z[..., head, :] = clean_cache[hook.name][..., head, :]
    return z


def head_wrong_axis(z, hook, head, clean_cache):
    z = z.clone()
    z[:, head] = clean_cache[hook.name][:, head]
    return z


def head_whole_layer(z, hook, head, clean_cache):
    z = z.clone()
    z[:] = clean_cache[hook.name]
    return z


def test_patch_head_hook_accepts(capsys):
    accepts(ch06.check_patch_head_hook, head_good, capsys, "patch_head_hook")


@pytest.mark.parametrize("fn, hint", [(head_wrong_axis, "the head axis is 2"), (head_whole_layer, "not the whole"),
                                      (head_in_place, IN_PLACE)])
def test_patch_head_hook_mutants(fn, hint):
    rejects(ch06.check_patch_head_hook, fn, hint)


# -- mean_ablate_head --------------------------------------------------------------------------------


def mean_good(z, head, reference_z):
    z = z.clone()
    z[:, :, head] = reference_z[:, :, head].mean(dim=0, keepdim=True)
    return z


def mean_over_everything(z, head, reference_z):
    z = z.clone()
    z[:, :, head] = reference_z[:, :, head].mean(dim=(0, 1))
    return z


def mean_of_batch(z, head, reference_z):
    z = z.clone()
    z[:, :, head] = z[:, :, head].mean(0)
    return z


def zero_instead(z, head, reference_z):
    z = z.clone()
    z[:, :, head] = 0
    return z


def mean_in_place(z, head, reference_z):
    z[:, :, head] = reference_z[:, :, head].mean(dim=0)
    return z


def test_mean_ablate_head_accepts(capsys):
    accepts(ch06.check_mean_ablate_head, mean_good, capsys, "mean_ablate_head")


@pytest.mark.parametrize("fn, hint", [(mean_over_everything, "averaged over positions"),
                                      (mean_of_batch, "mean of the *reference* prompts"),
                                      (zero_instead, "not by zero"), (mean_in_place, IN_PLACE)])
def test_mean_ablate_head_mutants(fn, hint):
    rejects(ch06.check_mean_ablate_head, fn, hint)


# -- resample_ablate_head ----------------------------------------------------------------------------


def resample_good(z, head, reference_z, draws):
    out = z.clone()
    for b, d in enumerate(draws.tolist()):
        out[b, :, head] = reference_z[d, :, head]
    return out


def resample_ignores_draws(z, head, reference_z, draws):
    out = z.clone()
    out[:, :, head] = reference_z[: len(z), :, head]
    return out


def resample_whole_prompt(z, head, reference_z, draws):
    return reference_z[draws]


def resample_averaged(z, head, reference_z, draws):
    out = z.clone()
    out[:, :, head] = reference_z[draws][:, :, head].mean(0)
    return out


def resample_in_place(z, head, reference_z, draws):
    z[:, :, head] = reference_z[draws, :, head]
    return z


def test_resample_ablate_head_accepts(capsys):
    accepts(ch06.check_resample_ablate_head, resample_good, capsys, "resample_ablate_head")


@pytest.mark.parametrize("fn, hint", [(resample_ignores_draws, "use the random draws"),
                                      (resample_whole_prompt, "replace only the chosen head"),
                                      (resample_averaged, "averaging the draws"), (resample_in_place, IN_PLACE)])
def test_resample_ablate_head_mutants(fn, hint):
    rejects(ch06.check_resample_ablate_head, fn, hint)


# -- freeze_heads_hook -------------------------------------------------------------------------------


def freeze_good(z, hook, clean_z, corrupted_z, senders):
    layer = int(hook.name.split(".")[1])
    heads = [h for l, h in senders if l == layer]
    out = clean_z[hook.name].clone()
    out[:, :, heads] = corrupted_z[hook.name][:, :, heads]
    return out


def freeze_swapped(z, hook, clean_z, corrupted_z, senders):
    layer = int(hook.name.split(".")[1])
    out = corrupted_z[hook.name].clone()
    for l, h in senders:
        if l == layer:
            out[:, :, h] = clean_z[hook.name][:, :, h]
    return out


def freeze_every_layer(z, hook, clean_z, corrupted_z, senders):
    out = clean_z[hook.name].clone()
    for _layer, h in senders:
        out[:, :, h] = corrupted_z[hook.name][:, :, h]
    return out


def freeze_forgot(z, hook, clean_z, corrupted_z, senders):
    layer = int(hook.name.split(".")[1])
    z = z.clone()
    for l, h in senders:
        if l == layer:
            z[:, :, h] = corrupted_z[hook.name][:, :, h]
    return z


def freeze_edits_clean_cache(z, hook, clean_z, corrupted_z, senders):
    # Right values, but it writes into the clean cache: a sweep over senders would poison it.
    layer = int(hook.name.split(".")[1])
    out = clean_z[hook.name]
    for l, h in senders:
        if l == layer:
            out[:, :, h] = corrupted_z[hook.name][:, :, h]
    return out


def freeze_in_place(z, hook, clean_z, corrupted_z, senders):
    layer = int(hook.name.split(".")[1])
    z[:] = clean_z[hook.name]
    for l, h in senders:
        if l == layer:
            z[:, :, h] = corrupted_z[hook.name][:, :, h]
    return z


def test_freeze_heads_hook_accepts(capsys):
    accepts(ch06.check_freeze_heads_hook, freeze_good, capsys, "freeze_heads_hook")


@pytest.mark.parametrize("fn, hint", [(freeze_swapped, "you swapped them"), (freeze_every_layer, "in its own layer"),
                                      (freeze_forgot, "freeze the non-sender heads"),
                                      (freeze_edits_clean_cache, IN_PLACE), (freeze_in_place, IN_PLACE)])
def test_freeze_heads_hook_mutants(fn, hint):
    rejects(ch06.check_freeze_heads_hook, fn, hint)


# -- attribution_per_head ----------------------------------------------------------------------------


def attr_good(clean_z, corrupted_z, grad_z):
    return torch.einsum("bphd,bphd->h", clean_z - corrupted_z, grad_z)


def attr_reversed(clean_z, corrupted_z, grad_z):
    return torch.einsum("bphd,bphd->h", corrupted_z - clean_z, grad_z)


def attr_clean_only(clean_z, corrupted_z, grad_z):
    return torch.einsum("bphd,bphd->h", clean_z, grad_z)


def attr_abs(clean_z, corrupted_z, grad_z):
    return ((clean_z - corrupted_z) * grad_z).abs().sum(dim=(0, 1, 3))


def test_attribution_per_head_accepts(capsys):
    accepts(ch06.check_attribution_per_head, attr_good, capsys, "attribution_per_head")


@pytest.mark.parametrize("fn, hint", [(attr_reversed, "not the reverse"), (attr_clean_only, "not by clean_z alone"),
                                      (attr_abs, "absolute values")])
def test_attribution_per_head_mutants(fn, hint):
    rejects(ch06.check_attribution_per_head, fn, hint)


# -- fraction_recovered ------------------------------------------------------------------------------


def frac_good(circuit_ld, *, baseline, target):
    base = baseline.mean()
    return ((circuit_ld.mean() - base) / (target.mean() - base)).item()


def frac_per_prompt(circuit_ld, *, baseline, target):
    return ((circuit_ld - baseline) / (target - baseline)).mean().item()


def frac_no_baseline(circuit_ld, *, baseline, target):
    return (circuit_ld.mean() / target.mean()).item()


def frac_swapped(circuit_ld, *, baseline, target):
    return frac_good(circuit_ld, baseline=target, target=baseline)


def test_fraction_recovered_accepts(capsys):
    accepts(ch06.check_fraction_recovered, frac_good, capsys, "fraction_recovered")


@pytest.mark.parametrize("fn, hint", [(frac_per_prompt, "average first"),
                                      (frac_no_baseline, "measure from the baseline"),
                                      (frac_swapped, "swapped baseline and target")])
def test_fraction_recovered_mutants(fn, hint):
    rejects(ch06.check_fraction_recovered, fn, hint)
