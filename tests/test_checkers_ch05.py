"""Chapter 05 checks: the reference passes, and wrong answers a learner would plausibly write
are rejected with the hint for that particular mistake.

The mutants are written out the way a learner might write them, independently of the Mistake
functions inside the checks.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from checker_helpers import rejects

from toykit import circular_features, probes, steering
from toykit.exercises import ch05

# -- probe_accuracy ----------------------------------------------------------------------------


def pa_good(x, y, W, b):
    return (torch.argmax(x @ W + b, dim=1) == y).float().mean().item()


def pa_no_bias(x, y, W, b):
    preds = (x @ W).argmax(dim=-1)
    return (preds == y).float().mean().item()


def pa_percent(x, y, W, b):
    return (torch.argmax(x @ W + b, dim=1) == y).float().mean().item() * 100


def pa_count(x, y, W, b):
    return (torch.argmax(x @ W + b, dim=1) == y).sum().item()


def test_probe_accuracy():
    ch05.check_probe_accuracy(pa_good)
    rejects(ch05.check_probe_accuracy, pa_no_bias, "bias b is part of the probe")
    rejects(ch05.check_probe_accuracy, pa_percent, "not a percentage")
    rejects(ch05.check_probe_accuracy, pa_count, "divide the number correct by n")


# -- mean_difference ---------------------------------------------------------------------------


def md_good(x, mask):
    return x[mask].mean(dim=0) - x[~mask].mean(dim=0)


def md_reversed(x, mask):
    return x[mask == 0].mean(0) - x[mask == 1].mean(0)


def md_normalised(x, mask):
    d = x[mask].mean(0) - x[~mask].mean(0)
    return d / torch.linalg.norm(d)


def md_overall_mean(x, mask):
    return x[mask].mean(0) - x.mean(0)


def test_mean_difference():
    ch05.check_mean_difference(md_good)
    rejects(ch05.check_mean_difference, md_reversed, "sign is reversed")
    rejects(ch05.check_mean_difference, md_normalised, "don't normalise")
    rejects(ch05.check_mean_difference, md_overall_mean, "not the mean of all rows")


# -- top_components ----------------------------------------------------------------------------


def tc_good(x, k):
    xc = x - x.mean(dim=0, keepdim=True)
    _, _, vh = torch.linalg.svd(xc, full_matrices=False)
    return -vh[:k]  # the sign is free


def tc_good_eigh(x, k):
    xc = x - x.mean(0)
    vals, vecs = torch.linalg.eigh(xc.T @ xc)
    return vecs[:, -k:].flip(1).T


def tc_no_centre(x, k):
    return torch.linalg.svd(x, full_matrices=False).Vh[:k]


def tc_ascending(x, k):
    xc = x - x.mean(0)
    vals, vecs = torch.linalg.eigh(xc.T @ xc)
    return vecs[:, :k].T


def tc_svd_last(x, k):
    # An SVD user who took the last rows of Vh: the directions of smallest variance.
    return torch.linalg.svd(x - x.mean(0), full_matrices=False).Vh[-k:]


def tc_svd_columns(x, k):
    # Columns of Vh instead of rows (as if it were torch.svd's V).
    return torch.linalg.svd(x - x.mean(0), full_matrices=False).Vh[:, :k].T


def test_top_components():
    ch05.check_top_components(tc_good)
    ch05.check_top_components(tc_good_eigh)
    rejects(ch05.check_top_components, tc_no_centre, "centre the data first")
    rejects(ch05.check_top_components, tc_ascending, "*smallest* variance")


@pytest.mark.parametrize("fn, hint", [(tc_svd_last, "largest singular values (the SVD lists them first)"),
                                      (tc_svd_columns, "*rows* of Vh")])
def test_top_components_svd_mistakes_get_svd_hints(fn, hint):
    rejects(ch05.check_top_components, fn, hint)


# -- logit_lens --------------------------------------------------------------------------------


def ll_good(resid, model):
    normed = F.layer_norm(resid, (resid.shape[-1],), model.ln_final.w, model.ln_final.b, eps=model.cfg.eps)
    return normed @ model.unembed.W_U + model.unembed.b_U


def ll_no_ln(resid, model):
    return resid @ model.unembed.W_U + model.unembed.b_U


def ll_no_ln_weights(resid, model):
    mu = resid.mean(-1, keepdim=True)
    var = resid.var(-1, keepdim=True, unbiased=False)
    return (resid - mu) / torch.sqrt(var + 1e-5) @ model.unembed.W_U + model.unembed.b_U


def ll_no_bias(resid, model):
    return model.ln_final(resid) @ model.unembed.W_U


def test_logit_lens():
    ch05.check_logit_lens(ll_good)
    rejects(ch05.check_logit_lens, ll_no_ln, "apply the final LayerNorm")
    rejects(ch05.check_logit_lens, ll_no_ln_weights, "learned weights")
    rejects(ch05.check_logit_lens, ll_no_bias, "unembedding bias")


# -- steer_resid -------------------------------------------------------------------------------


def st_good(resid, direction, alpha, pos):
    out = resid.clone()
    unit = direction / direction.norm(dim=-1, keepdim=True)
    for i in range(resid.shape[0]):
        out[i, pos[i]] += alpha * (unit[i] if unit.ndim == 2 else unit)
    return out


def st_raw(resid, direction, alpha, pos):
    out = resid.clone()
    out[torch.arange(len(pos)), pos] = out[torch.arange(len(pos)), pos] + alpha * direction
    return out


def st_everywhere(resid, direction, alpha, pos):
    unit = F.normalize(direction, dim=-1)
    if unit.ndim == 2:
        unit = unit[:, None, :]
    return resid + alpha * unit


def st_last(resid, direction, alpha, pos):
    out = resid.clone()
    out[:, -1] += alpha * F.normalize(direction, dim=-1)
    return out


def st_in_place(resid, direction, alpha, pos):
    unit = F.normalize(direction, dim=-1)
    resid[torch.arange(len(pos)), pos] += alpha * unit  # edits the cached residual stream
    return resid


def test_steer_resid():
    ch05.check_steer_resid(st_good)
    rejects(ch05.check_steer_resid, st_in_place, "modified one of its inputs in place")
    rejects(ch05.check_steer_resid, st_raw, "unit length")
    rejects(ch05.check_steer_resid, st_everywhere, "not every position")
    rejects(ch05.check_steer_resid, st_last, "its own position")


# -- angular_order -----------------------------------------------------------------------------


def ao_good(z):
    return torch.atan2(z[:, 1], z[:, 0]).argsort()


def ao_swapped(z):
    return torch.atan2(z[:, 0], z[:, 1]).argsort()


def ao_atan(z):
    return torch.atan(z[:, 1] / z[:, 0]).argsort()


def ao_descending(z):
    return torch.atan2(z[:, 1], z[:, 0]).argsort(descending=True)


def test_angular_order():
    ch05.check_angular_order(ao_good)
    rejects(ch05.check_angular_order, ao_swapped, "atan2 takes (y, x)")
    rejects(ch05.check_angular_order, ao_atan, "use atan2")
    rejects(ch05.check_angular_order, ao_descending, "not decreasing")


def test_is_cyclic_order():
    assert circular_features.is_cyclic_order([2, 3, 4, 5, 6, 0, 1])
    assert circular_features.is_cyclic_order([4, 3, 2, 1, 0, 6, 5])
    assert not circular_features.is_cyclic_order([6, 4, 5, 3, 2, 1, 0])
    with pytest.raises(ValueError, match="permutation"):
        circular_features.is_cyclic_order([0, 0, 1])


# -- gradient_x_input --------------------------------------------------------------------------


def _embed_and_grad(model, tokens, answer_ids, hook_name):
    box = []

    def grab(act, hook):
        act = act.detach().requires_grad_()
        box.append(act)
        return act

    logits = model.run_with_hooks(tokens, fwd_hooks=[(hook_name, grab)])
    target = logits[:, -1].gather(-1, answer_ids[:, None]).sum()
    target.backward()
    return box[0], box[0].grad


def gx_good(model, tokens, answer_ids):
    emb, grad = _embed_and_grad(model, tokens, answer_ids, "hook_embed")
    return (emb * grad).sum(-1).detach()


def gx_grad_only(model, tokens, answer_ids):
    emb, grad = _embed_and_grad(model, tokens, answer_ids, "hook_embed")
    return grad.norm(dim=-1)


def gx_abs(model, tokens, answer_ids):
    emb, grad = _embed_and_grad(model, tokens, answer_ids, "hook_embed")
    return (emb * grad).sum(-1).abs().detach()


def gx_resid(model, tokens, answer_ids):
    emb, grad = _embed_and_grad(model, tokens, answer_ids, "blocks.0.hook_resid_pre")
    return (emb * grad).sum(-1).detach()


def test_gradient_x_input():
    ch05.check_gradient_x_input(gx_good)
    rejects(ch05.check_gradient_x_input, gx_grad_only, "plain gradient saliency")
    rejects(ch05.check_gradient_x_input, gx_abs, "keep the sign")
    rejects(ch05.check_gradient_x_input, gx_resid, "positional")


def test_reference_helpers_validate_input():
    with pytest.raises(ValueError):
        circular_features.angular_order(torch.zeros(4, 3))
    with pytest.raises(ValueError):
        steering.steer_resid(torch.zeros(2, 3, 4), torch.ones(4), 1.0, torch.zeros(3, dtype=torch.long))
    assert math.isclose(probes.fit_pca(torch.randn(10, 3), 2).components.norm(dim=1)[0].item(), 1, rel_tol=1e-5)
