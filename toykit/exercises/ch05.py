"""Checks for chapter 05, Probing and linear representations.

Each ``check_<name>(fn)`` runs your ``fn`` and toykit's reference on seeded cases, prints one
line when they agree, and otherwise raises CheckFailure with a hint chosen by recognising the
usual mistakes. References: ``toykit.probes``, ``toykit.logit_lens``, ``toykit.steering``,
``toykit.circular_features`` and ``toykit.saliency`` (the chapter imports them from there).

Signatures the checks expect:

- ``probe_accuracy(x, y, W, b) -> float``: x [n, d], y [n], W [d, C], b [C].
- ``mean_difference(x, mask) -> [d]``: mean of x[mask] minus mean of x[~mask].
- ``top_components(x, k) -> [k, d]``: the top-k principal directions (compared up to sign).
- ``logit_lens(resid, model) -> [..., d_vocab]``: final LayerNorm then unembedding.
- ``steer_resid(resid, direction, alpha, pos) -> [batch, pos, d_model]``.
- ``angular_order(z) -> [n]``: indices sorting 2-D points by angle.
- ``gradient_x_input(model, tokens, answer_ids) -> [batch, pos]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from toykit import probes
from toykit.circular_features import angular_order
from toykit.exercises.checking import Case, ExerciseTable, Mistake, rng, run_check
from toykit.logit_lens import apply_final_norm
from toykit.saliency import gradient_x_input
from toykit.steering import steer_resid
from toykit.transformer import HookedTransformer, LayerNorm, TransformerConfig

# exercise id -> its check and toykit's reference (filled by @EXERCISES.check below)
EXERCISES = ExerciseTable()

__all__ = [
    "check_angular_order",
    "check_gradient_x_input",
    "check_logit_lens",
    "check_mean_difference",
    "check_probe_accuracy",
    "check_steer_resid",
    "check_top_components",
]


# -- probe_accuracy -----------------------------------------------------------------------------


def _probe_ref(x, y, W, b):
    return probes.LinearProbe(W, b, "classification").score(x, y)


def _probe_cases() -> list[Case]:
    cases = []
    for i, (n, d, c) in enumerate([(200, 16, 4), (97, 8, 3), (50, 5, 2), (300, 32, 9)]):
        g = rng(i)
        x = torch.randn(n, d, generator=g)
        W = torch.randn(d, c, generator=g)
        b = 3 * torch.randn(c, generator=g)  # a large bias, so forgetting it shows
        y = (x @ W + b + torch.randn(n, c, generator=g)).argmax(-1)
        cases.append(Case(f"n={n}, d={d}, {c} classes", (x, y, W, b)))
    return cases


@EXERCISES.check(_probe_ref)
def check_probe_accuracy(probe_accuracy: Callable[..., float]) -> None:
    """Check ``probe_accuracy(x, y, W, b) -> float``: the fraction of rows whose largest logit
    x @ W + b is the true class."""
    mistakes = [
        Mistake("the bias b is part of the probe: logits = x @ W + b", lambda x, y, W, b: (
            (x @ W).argmax(-1) == y).float().mean().item()),
        Mistake("return a fraction in [0, 1], not a percentage",
                lambda x, y, W, b: 100 * ((x @ W + b).argmax(-1) == y).float().mean().item()),
        Mistake("accuracy is a fraction in [0, 1]: divide the number correct by n",
                lambda x, y, W, b: float(((x @ W + b).argmax(-1) == y).sum())),
    ]
    run_check("probe_accuracy", probe_accuracy, _probe_ref, _probe_cases(), mistakes,
              hint="the probe predicts the class with the largest logit (bias included); accuracy is the "
                   "fraction of rows predicted right")


# -- mean_difference ----------------------------------------------------------------------------


def _md_cases() -> list[Case]:
    cases = []
    for i, (n, d, frac) in enumerate([(100, 8, 0.5), (60, 5, 0.2), (41, 12, 0.7)]):
        g = rng(10 + i)
        x = torch.randn(n, d, generator=g) + torch.randn(d, generator=g)
        mask = torch.rand(n, generator=g) < frac
        mask[0], mask[1] = True, False
        cases.append(Case(f"n={n}, d={d}, {int(mask.sum())} positives", (x, mask)))
    return cases


@EXERCISES.check(probes.mean_difference)
def check_mean_difference(mean_difference: Callable[..., torch.Tensor]) -> None:
    """Check ``mean_difference(x, mask) -> [d]`` = mean(x[mask]) - mean(x[~mask])."""
    mistakes = [
        Mistake("the sign is reversed: positives (mask True) minus negatives, so the direction points toward "
                "the positive class", lambda x, m: x[~m].mean(0) - x[m].mean(0)),
        Mistake("don't normalise: return the raw difference of the two means",
                lambda x, m: F.normalize(x[m].mean(0) - x[~m].mean(0), dim=0)),
        Mistake("subtract the mean of the *negatives* (x[~mask]), not the mean of all rows",
                lambda x, m: x[m].mean(0) - x.mean(0)),
    ]
    run_check("mean_difference", mean_difference, lambda x, m: probes.mean_difference(x, m), _md_cases(),
              mistakes, hint="the mean of the rows where mask is True minus the mean of the rows where it is False")


# -- top_components -----------------------------------------------------------------------------
# Principal directions have no fixed sign, so both answers are compared as projectors C^T C.


def _projector(components: torch.Tensor) -> torch.Tensor:
    return components.T @ components


def _pc_cases() -> list[Case]:
    cases = []
    for i, (n, d, k) in enumerate([(80, 6, 2), (50, 10, 3), (30, 4, 1)]):
        g = rng(20 + i)
        scales = torch.linspace(3.0, 0.3, d)
        x = torch.randn(n, d, generator=g) * scales @ torch.linalg.qr(torch.randn(d, d, generator=g))[0]
        x = x + 5 * torch.randn(d, generator=g)  # far from the origin: centring matters
        cases.append(Case(f"n={n}, d={d}, k={k}", (x, k)))
    return cases


def _pc_uncentred(x, k):
    return torch.linalg.svd(x, full_matrices=False)[2][:k]


def _pc_smallest(x, k):
    evals, evecs = torch.linalg.eigh(torch.cov(x.T))
    return evecs[:, :k].T


def _top_components_reference(x: torch.Tensor, k: int) -> torch.Tensor:
    return probes.fit_pca(x, k).components


@EXERCISES.check(_top_components_reference)
def check_top_components(top_components: Callable[..., torch.Tensor]) -> None:
    """Check ``top_components(x, k) -> [k, d]``: orthonormal rows spanning the k directions of
    largest variance of x [n, d] (signs are free: compared through C^T C)."""
    mistakes = [
        Mistake("centre the data first (x - x.mean(0)): otherwise the top direction points at the mean",
                lambda x, k: _projector(_pc_uncentred(x, k))),
        Mistake("you returned the directions of *smallest* variance: the top components belong to the largest "
                "singular values (the SVD lists them first) or eigenvalues (torch.linalg.eigh lists them last)",
                lambda x, k: _projector(_pc_smallest(x, k))),
        Mistake("the principal directions are the *rows* of Vh (torch.linalg.svd returns Vh = Vᵀ), not its "
                "columns; torch.svd, by contrast, returns V, whose columns they are",
                lambda x, k: _projector(torch.linalg.svd(x - x.mean(0), full_matrices=False)[2][:, :k].T)),
        Mistake("the principal directions are the rows of Vh (or columns of V) from the SVD of the centred "
                "x, not of U: they live in the d-dimensional space",
                lambda x, k: _projector(torch.linalg.svd((x - x.mean(0)).T, full_matrices=False)[2][:k])),
    ]
    run_check("top_components", lambda x, k: _projector(top_components(x, k)),
              lambda x, k: _projector(_top_components_reference(x, k)), _pc_cases(), mistakes,
              hint="principal directions are the right singular vectors of the *centred* data (equivalently "
                   "the eigenvectors of its covariance), taken in order of decreasing variance", atol=1e-4)


# -- logit_lens ---------------------------------------------------------------------------------


def _tiny_model(seed: int, d_vocab: int = 13) -> HookedTransformer:
    cfg = TransformerConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=d_vocab, n_ctx=12,
                            act_fn="gelu", normalization_type="LN", seed=seed)
    model = HookedTransformer(cfg)
    with torch.no_grad():  # non-trivial LayerNorm weights and biases, so skipping them shows
        g = rng(seed)
        ln_final = model.ln_final
        assert isinstance(ln_final, LayerNorm)  # normalization_type="LN"
        ln_final.w.copy_(1 + 0.5 * torch.randn(16, generator=g))
        ln_final.b.copy_(0.5 * torch.randn(16, generator=g))
        model.unembed.b_U.copy_(torch.randn(d_vocab, generator=g))
    return model.eval()


def _lens_ref(resid, model):
    with torch.no_grad():
        return model.unembed(apply_final_norm(model, resid))


def _lens_cases() -> list[Case]:
    cases = []
    for i, shape in enumerate([(3, 4, 16), (5, 16), (2, 3, 7, 16)]):
        g = rng(30 + i)
        cases.append(Case(f"resid {list(shape)}", (3 * torch.randn(*shape, generator=g) + 1, _tiny_model(i))))
    return cases


def _lens_learner(fn):
    def run(resid, model):
        with torch.no_grad():
            return fn(resid, model)
    return run


@EXERCISES.check(_lens_ref)
def check_logit_lens(logit_lens: Callable[..., torch.Tensor]) -> None:
    """Check ``logit_lens(resid, model) -> [..., d_vocab]``: layer-normalise resid with the final
    LayerNorm (its own scale, weight ln_final.w and bias ln_final.b), then x @ W_U + b_U."""
    W = lambda m: (m.unembed.W_U, m.unembed.b_U, m.ln_final.w, m.ln_final.b)  # noqa: E731
    mistakes = [
        Mistake("apply the final LayerNorm before unembedding: the unembedding was trained on normalised "
                "residuals", lambda r, m: r @ W(m)[0] + W(m)[1]),
        Mistake("the LayerNorm has learned weights: multiply by ln_final.w and add ln_final.b after "
                "normalising", lambda r, m: F.layer_norm(r, r.shape[-1:]) @ W(m)[0] + W(m)[1]),
        Mistake("add the unembedding bias b_U", lambda r, m: apply_final_norm(m, r) @ W(m)[0]),
        Mistake("normalise over d_model (the last axis), subtracting the mean as well as dividing by the std",
                lambda r, m: (r / r.norm(dim=-1, keepdim=True) * math.sqrt(r.shape[-1]) * W(m)[2] + W(m)[3])
                @ W(m)[0] + W(m)[1]),
    ]
    run_check("logit_lens", _lens_learner(logit_lens), _lens_ref, _lens_cases(), mistakes,
              hint="read the residual stream as if it were the last layer's: the model's own final LayerNorm, "
                   "then its unembedding",
              atol=1e-4)


# -- steer_resid --------------------------------------------------------------------------------


def _steer_cases() -> list[Case]:
    cases = []
    for i, (b, p, d, per_row) in enumerate([(4, 6, 8, False), (3, 5, 8, True), (1, 3, 4, False)]):
        g = rng(40 + i)
        resid = torch.randn(b, p, d, generator=g)
        direction = 3 * torch.randn(b, d, generator=g) if per_row else 3 * torch.randn(d, generator=g)
        pos = torch.randint(0, p, (b,), generator=g)
        pos[0] = p - 2 if p > 2 else 0  # not the last position, so "always the last" shows
        cases.append(Case(f"batch {b}, {'one direction per row' if per_row else 'one direction'}",
                          (resid, direction, 2.5, pos)))
    return cases


def _steer_everywhere(resid, direction, alpha, pos):
    unit = direction / direction.norm(dim=-1, keepdim=True)
    return resid + alpha * (unit[:, None] if unit.ndim == 2 else unit)


def _steer_last(resid, direction, alpha, pos):
    return steer_resid(resid, direction, alpha, torch.full_like(pos, resid.shape[1] - 1))


@EXERCISES.check(steer_resid)
def check_steer_resid(steer: Callable[..., torch.Tensor]) -> None:
    """Check ``steer_resid(resid, direction, alpha, pos) -> [batch, pos, d_model]``: adds
    alpha * direction / ‖direction‖ at position pos[i] of row i only; a new tensor (resid is
    not modified in place)."""
    mistakes = [
        Mistake("normalise the direction to unit length first, so alpha is the size of the push",
                lambda r, dvec, a, p: r + _raw_add(r, dvec, a, p)),
        Mistake("steer only position pos[i] of each row i, not every position",
                _steer_everywhere),
        Mistake("use pos: each prompt is steered at its own position pos[i], not always the last one",
                _steer_last),
    ]
    run_check("steer_resid", steer, steer_resid, _steer_cases(), mistakes,
              hint="return a new tensor: resid plus alpha times the unit direction, at each row's own position "
                   "only (resid itself stays unchanged)")


def _raw_add(resid, direction, alpha, pos):
    """The increment of steering with the raw (unnormalised) direction."""
    out = torch.zeros_like(resid)
    out[torch.arange(resid.shape[0]), pos] = alpha * direction
    return out


# -- angular_order ------------------------------------------------------------------------------


def _angle_cases() -> list[Case]:
    cases = []
    for i, n in enumerate([7, 12, 5]):
        g = rng(50 + i)
        angles = torch.rand(n, generator=g) * 2 * math.pi - math.pi
        radii = 0.5 + torch.rand(n, generator=g)
        z = torch.stack([radii * angles.cos(), radii * angles.sin()], -1)
        cases.append(Case(f"{n} points in all four quadrants", (z,)))
    return cases


@EXERCISES.check(angular_order)
def check_angular_order(angular_order_fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Check ``angular_order(z) -> [n]``: argsort of the angles atan2(z[:, 1], z[:, 0])."""
    mistakes = [
        Mistake("torch.atan2 takes (y, x): the angle of (z0, z1) is atan2(z[:, 1], z[:, 0])",
                lambda z: torch.argsort(torch.atan2(z[:, 0], z[:, 1]))),
        Mistake("atan(y / x) cannot tell opposite quadrants apart: use atan2, which covers the whole circle",
                lambda z: torch.argsort(torch.atan(z[:, 1] / z[:, 0]))),
        Mistake("sort in increasing angle (counter-clockwise), not decreasing",
                lambda z: torch.argsort(torch.atan2(z[:, 1], z[:, 0]), descending=True)),
    ]
    run_check("angular_order", angular_order_fn, angular_order, _angle_cases(), mistakes,
              hint="the order of the points by their angle around the origin, counter-clockwise from the "
                   "negative x-axis (angles in (-π, π]); return indices, not angles")


# -- gradient_x_input ---------------------------------------------------------------------------


def _gxi_cases() -> list[Case]:
    cases = []
    for i, (b, p) in enumerate([(3, 6), (2, 9), (1, 4)]):
        g = rng(60 + i)
        model = _tiny_model(10 + i)
        tokens = torch.randint(0, 13, (b, p), generator=g)
        answers = torch.randint(0, 13, (b,), generator=g)
        cases.append(Case(f"batch {b}, {p} positions", (model, tokens, answers)))
    return cases


def _gxi_variant(model, tokens, answer_ids, hook_name="hook_embed", combine="dot"):
    stored = {}

    def keep(act, hook):
        act = act.detach().requires_grad_(True)
        stored["x"] = act
        return act

    with torch.enable_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=[(hook_name, keep)])
        picked = logits[torch.arange(tokens.shape[0]), -1, answer_ids]
        (grad,) = torch.autograd.grad(picked.sum(), stored["x"])
    if combine == "grad_norm":
        return grad.norm(dim=-1)
    out = (grad * stored["x"]).sum(-1)
    return out.abs() if combine == "abs" else out


@EXERCISES.check(gradient_x_input)
def check_gradient_x_input(gradient_x_input_fn: Callable[..., torch.Tensor]) -> None:
    """Check ``gradient_x_input(model, tokens, answer_ids) -> [batch, pos]``: Σ_d of
    d(answer logit at the last position)/d(embed) × embed, with embed = hook_embed."""
    mistakes = [
        Mistake("multiply the gradient by the input and sum over d_model: ‖grad‖ alone is plain gradient "
                "saliency, not gradient × input",
                lambda m, t, a: _gxi_variant(m, t, a, combine="grad_norm")),
        Mistake("keep the sign: gradient × input is signed (negative tokens push the answer down)",
                lambda m, t, a: _gxi_variant(m, t, a, combine="abs")),
        Mistake("use the token embedding (hook_embed), not the residual stream with the positional "
                "embedding added (blocks.0.hook_resid_pre)",
                lambda m, t, a: _gxi_variant(m, t, a, hook_name="blocks.0.hook_resid_pre")),
    ]
    run_check("gradient_x_input", gradient_x_input_fn, gradient_x_input, _gxi_cases(), mistakes,
              hint="the gradient of the answer's logit at the last position with respect to the token "
                   "embeddings, multiplied by those embeddings and summed over d_model", atol=1e-4)
