"""Chapter 09 checks: the reference and a correct alternative pass, and wrong answers a learner
would plausibly write are rejected with the hint for that particular mistake.

The mutants below are written the way a learner might write them, independently of the
Mistake functions inside the checks, so that a check is tested on real code, not on itself.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from checker_helpers import accepts, rejects

from toykit.attribution import (
    integrated_gradients,
    occlusion,
    shapley_kernel_weight,
    smoothgrad,
    vanilla_gradient,
)
from toykit.attribution_sanity import mask_mass_fraction, spearman_rank_correlation
from toykit.exercises import ch09, clear_results
from toykit.feature_vis import gradient_ascent_step
from toykit.tuning_curves import OrientationTuning, preferred_orientation


@pytest.fixture(autouse=True)
def fresh():
    torch.set_num_threads(1)
    clear_results()


ALL_CHECKS = [
    ch09.check_preferred_orientation,
    ch09.check_vanilla_gradient,
    ch09.check_integrated_gradients,
    ch09.check_occlusion,
    ch09.check_shapley_kernel_weight,
    ch09.check_smoothgrad,
    ch09.check_mask_mass_fraction,
    ch09.check_spearman_rank_correlation,
    ch09.check_gradient_ascent_step,
]


def test_the_table_holds_every_check():
    assert set(ch09.EXERCISES) == {c.__name__.removeprefix("check_") for c in ALL_CHECKS}


# -- preferred_orientation ---------------------------------------------------------------------------


def po_complex(angles, responses):
    """A correct alternative: complex numbers on the doubled angle."""
    theta = torch.as_tensor(angles, dtype=torch.float64) * math.pi / 90  # 2θ in radians
    r = responses.double()
    z = (r * torch.polar(torch.ones_like(theta), theta).reshape(-1, *([1] * (r.ndim - 1)))).sum(0)
    total = r.sum(0)
    preferred = (torch.angle(z) * 90 / math.pi) % 180
    variance = 1 - z.abs() / total
    preferred[total == 0] = float("nan")
    variance[total == 0] = 1.0
    return OrientationTuning(preferred=preferred.float(), circular_variance=variance.float())


def _po(angles, responses, factor=2.0, radians=True, degrees_out=True, wrap=True, cv="1-R"):
    a = torch.as_tensor(angles, dtype=responses.dtype)
    theta = torch.deg2rad(factor * a) if radians else factor * a
    theta = theta.reshape(-1, *([1] * (responses.ndim - 1)))
    c, s = (responses * theta.cos()).sum(0), (responses * theta.sin()).sum(0)
    total = responses.sum(0)
    angle = torch.atan2(s, c)
    preferred = (torch.rad2deg(angle) if degrees_out else angle) / factor
    if wrap:
        preferred = preferred % 180
    length = torch.sqrt(c**2 + s**2)
    variance = {"1-R": 1 - length / total, "R": length / total, "n": 1 - length / responses.shape[0]}[cv]
    preferred = torch.where(total == 0, float("nan"), preferred)
    variance = torch.where(total == 0, 1.0, variance)
    return OrientationTuning(preferred=preferred, circular_variance=variance)


def po_not_doubled(angles, responses):
    return _po(angles, responses, factor=1.0)


def po_argmax(angles, responses):
    right = _po(angles, responses)
    a = torch.as_tensor(angles, dtype=responses.dtype)
    return OrientationTuning(preferred=a[responses.argmax(0)], circular_variance=right.circular_variance)


def po_degrees_as_radians(angles, responses):
    return _po(angles, responses, radians=False)


def po_radians_out(angles, responses):
    return _po(angles, responses, degrees_out=False)


def po_negative(angles, responses):
    return _po(angles, responses, wrap=False)


def po_resultant(angles, responses):
    return _po(angles, responses, cv="R")


def po_tuple(angles, responses):
    right = _po(angles, responses)
    return right.preferred, right.circular_variance


def test_preferred_orientation_accepts(capsys):
    accepts(ch09.check_preferred_orientation, preferred_orientation, capsys, "preferred_orientation")
    accepts(ch09.check_preferred_orientation, po_complex, capsys, "preferred_orientation")


@pytest.mark.parametrize("fn, hint", [(po_not_doubled, "DOUBLED angles"), (po_argmax, "not the condition with"),
                                      (po_degrees_as_radians, "convert them to radians"),
                                      (po_radians_out, "convert it back to degrees"), (po_negative, "wrap"),
                                      (po_resultant, "the selectivity"), (po_tuple, "OrientationTuning(")])
def test_preferred_orientation_mutants(fn, hint):
    rejects(ch09.check_preferred_orientation, fn, hint)


# -- vanilla_gradient ----------------------------------------------------------------------------------


def _targets(target, n):
    return torch.full((n,), target) if isinstance(target, int) else target


def vg_backward(model, images, target):
    """A correct alternative: backward() on a copy, then the parameters' gradients cleared."""
    was = model.training
    model.eval()
    x = images.clone().requires_grad_(True)
    logits = model(x)
    logits[torch.arange(len(x)), _targets(target, len(x))].sum().backward()
    model.zero_grad(set_to_none=True)
    model.train(was)
    return x.grad


def _vg(model, images, target, scalar):
    x = images.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(scalar(model(x), _targets(target, len(x))), [x])
    return g


def vg_loss(model, images, target):
    return _vg(model, images, target, lambda z, t: F.cross_entropy(z, t))


def vg_probability(model, images, target):
    return _vg(model, images, target, lambda z, t: z.softmax(-1)[torch.arange(len(z)), t].sum())


def vg_predicted(model, images, target):
    return _vg(model, images, target, lambda z, t: z.max(-1).values.sum())


def vg_every_target(model, images, target):
    return _vg(model, images, target, lambda z, t: z[:, t].sum())


def vg_in_place_grad(model, images, target):
    images.requires_grad_(True)
    logits = model(images)
    (g,) = torch.autograd.grad(logits[torch.arange(len(images)), _targets(target, len(images))].sum(), [images])
    return g


def vg_param_grads(model, images, target):
    x = images.clone().requires_grad_(True)
    model(x)[torch.arange(len(x)), _targets(target, len(x))].sum().backward()
    return x.grad


def vg_eval_for_good(model, images, target):
    model.eval()
    return _vg(model, images, target, lambda z, t: z[torch.arange(len(z)), t].sum())


def vg_abs(model, images, target):
    return vanilla_gradient(model, images, target).abs()


def test_vanilla_gradient_accepts(capsys):
    accepts(ch09.check_vanilla_gradient, vanilla_gradient, capsys, "vanilla_gradient")
    accepts(ch09.check_vanilla_gradient, vg_backward, capsys, "vanilla_gradient")


@pytest.mark.parametrize("fn, hint", [(vg_loss, "not the loss"), (vg_probability, "not its probability"),
                                      (vg_predicted, "not the class the model predicts"),
                                      (vg_every_target, "each image has its own target"),
                                      (vg_in_place_grad, "left the images it was given requiring gradients"),
                                      (vg_param_grads, "left gradients in the model's parameters"),
                                      (vg_eval_for_good, "changed the model's mode"),
                                      (vg_abs, "keep the gradient's sign")])
def test_vanilla_gradient_mutants(fn, hint):
    rejects(ch09.check_vanilla_gradient, fn, hint)


# -- integrated_gradients -------------------------------------------------------------------------------


def _ig(model, images, target, baseline, alphas, weights, factor="difference"):
    start = torch.zeros_like(images) if baseline is None else torch.broadcast_to(
        torch.as_tensor(baseline, dtype=images.dtype), images.shape)
    mean_grad = sum(w * vanilla_gradient(model, start + a * (images - start), target) for a, w in zip(alphas, weights))
    return {"difference": images - start, "input": images, "none": 1.0}[factor] * mean_grad


def ig_batched(model, images, target, *, baseline=None, n_steps=50):
    """A correct alternative: every path point in one batch, the trapezoid rule via torch.trapezoid."""
    start = torch.zeros_like(images) if baseline is None else torch.broadcast_to(
        torch.as_tensor(baseline, dtype=images.dtype), images.shape)
    alphas = torch.linspace(0, 1, n_steps + 1)
    path = start + alphas.view(-1, 1, 1, 1, 1) * (images - start)  # [n_steps + 1, batch, c, h, w]
    n, b = path.shape[:2]
    grads = vanilla_gradient(model, path.flatten(0, 1), _targets(target, b).repeat(n)).view(path.shape)
    return (images - start) * torch.trapezoid(grads, dx=1.0 / n_steps, dim=0)


def ig_no_difference(model, images, target, *, baseline=None, n_steps=50):
    n = n_steps
    return _ig(model, images, target, baseline, [k / n for k in range(n + 1)],
               [(0.5 if k in (0, n) else 1.0) / n for k in range(n + 1)], factor="none")


def ig_left_riemann(model, images, target, *, baseline=None, n_steps=50):
    return _ig(model, images, target, baseline, [k / n_steps for k in range(n_steps)], [1 / n_steps] * n_steps)


def ig_linspace(model, images, target, *, baseline=None, n_steps=50):
    return _ig(model, images, target, baseline, torch.linspace(0, 1, n_steps).tolist(), [1 / n_steps] * n_steps)


def ig_ignores_baseline(model, images, target, *, baseline=None, n_steps=50):
    n = n_steps
    return _ig(model, images, target, None, [k / n for k in range(n + 1)],
               [(0.5 if k in (0, n) else 1.0) / n for k in range(n + 1)])


def ig_times_input(model, images, target, *, baseline=None, n_steps=50):
    start = torch.zeros_like(images) if baseline is None else baseline
    return images * integrated_gradients(model, images, target, baseline=baseline, n_steps=n_steps) / (images - start)


def test_integrated_gradients_accepts(capsys):
    accepts(ch09.check_integrated_gradients, integrated_gradients, capsys, "integrated_gradients")
    accepts(ch09.check_integrated_gradients, ig_batched, capsys, "integrated_gradients")


@pytest.mark.parametrize("fn, hint", [(ig_no_difference, "multiply the averaged gradient by (input - baseline)"),
                                      (ig_left_riemann, "left Riemann sum"), (ig_linspace, "count the points"),
                                      (ig_ignores_baseline, "the path starts at the baseline"),
                                      (ig_times_input, "not by the input")])
def test_integrated_gradients_mutants(fn, hint):
    rejects(ch09.check_integrated_gradients, fn, hint)


# -- occlusion -----------------------------------------------------------------------------------------


def oc_unfold(model, images, target, *, patch_size=4, stride=None, fill=None):
    """A correct alternative: one patch at a time, a count of covering patches per pixel."""
    stride = stride or patch_size
    b, c, h, w = images.shape
    t = _targets(target, b)
    filled = torch.zeros_like(images) if fill is None else torch.as_tensor(fill).expand_as(images)
    tops = sorted(set(list(range(0, h - patch_size + 1, stride)) + [h - patch_size]))
    with torch.no_grad():
        clean = model(images)[torch.arange(b), t]
        total, count = torch.zeros(b, 1, h, w), torch.zeros(1, 1, h, w)
        for top in tops:
            for left in tops:
                x = images.clone()
                x[..., top:top + patch_size, left:left + patch_size] = filled[..., top:top + patch_size,
                                                                                left:left + patch_size]
                drop = clean - model(x)[torch.arange(b), t]
                total[..., top:top + patch_size, left:left + patch_size] += drop.view(b, 1, 1, 1)
                count[..., top:top + patch_size, left:left + patch_size] += 1
    return (total / count).expand(b, c, h, w).clone()


def oc_increase(model, images, target, *, patch_size=4, stride=None, fill=None):
    return -occlusion(model, images, target, patch_size=patch_size, stride=stride, fill=fill)


def oc_zero_fill(model, images, target, *, patch_size=4, stride=None, fill=None):
    return oc_unfold(model, images, target, patch_size=patch_size, stride=stride)


def oc_summed(model, images, target, *, patch_size=4, stride=None, fill=None):
    stride = stride or patch_size
    h = images.shape[-1]
    tops = sorted(set(list(range(0, h - patch_size + 1, stride)) + [h - patch_size]))
    count = torch.zeros(h)
    for top in tops:
        count[top:top + patch_size] += 1
    coverage = count[:, None] * count[None, :]
    return oc_unfold(model, images, target, patch_size=patch_size, stride=stride, fill=fill) * coverage


def oc_not_flush(model, images, target, *, patch_size=4, stride=None, fill=None):
    stride = stride or patch_size
    b, c, h, w = images.shape
    t = _targets(target, b)
    filled = torch.zeros_like(images) if fill is None else torch.as_tensor(fill).expand_as(images)
    with torch.no_grad():
        clean = model(images)[torch.arange(b), t]
        total, count = torch.zeros(b, 1, h, w), torch.zeros(1, 1, h, w)
        for top in range(0, h - patch_size + 1, stride):
            for left in range(0, w - patch_size + 1, stride):
                x = images.clone()
                x[..., top:top + patch_size, left:left + patch_size] = filled[..., top:top + patch_size,
                                                                                left:left + patch_size]
                total[..., top:top + patch_size, left:left + patch_size] += (clean - model(x)[torch.arange(b), t]
                                                                              ).view(b, 1, 1, 1)
                count[..., top:top + patch_size, left:left + patch_size] += 1
    return (total / count.clamp_min(1)).expand(b, c, h, w).clone()


def test_occlusion_accepts(capsys):
    accepts(ch09.check_occlusion, occlusion, capsys, "occlusion")
    accepts(ch09.check_occlusion, oc_unfold, capsys, "occlusion")


@pytest.mark.parametrize("fn, hint", [(oc_increase, "DROP"), (oc_zero_fill, "takes the value `fill`"),
                                      (oc_summed, "average the drops"), (oc_not_flush, "flush with the right")])
def test_occlusion_mutants(fn, hint):
    rejects(ch09.check_occlusion, fn, hint)


# -- shapley_kernel_weight -------------------------------------------------------------------------------


def sk_lgamma(n_segments, size):
    """A correct alternative: the binomial from log-gamma."""
    k = torch.as_tensor(size, dtype=torch.float64)
    m = torch.tensor(float(n_segments), dtype=torch.float64)
    log_binom = torch.lgamma(m + 1) - torch.lgamma(k + 1) - torch.lgamma(m - k + 1)
    return (m - 1) / (torch.exp(log_binom).round() * k * (m - k))


def sk_lime(n_segments, size):
    k = torch.as_tensor(size, dtype=torch.float64)
    d = 1 - torch.sqrt(k / n_segments)
    return torch.exp(-d**2 / 0.25**2)


def sk_no_binomial(n_segments, size):
    k = torch.as_tensor(size, dtype=torch.float64)
    return (n_segments - 1) / (k * (n_segments - k))


def sk_zero_ends(n_segments, size):
    w = sk_lgamma(n_segments, size)
    return torch.nan_to_num(w, posinf=0.0)


def test_shapley_kernel_weight_accepts(capsys):
    accepts(ch09.check_shapley_kernel_weight, shapley_kernel_weight, capsys, "shapley_kernel_weight")
    accepts(ch09.check_shapley_kernel_weight, sk_lgamma, capsys, "shapley_kernel_weight")


@pytest.mark.parametrize("fn, hint", [(sk_lime, "LIME's exponential kernel"),
                                      (sk_no_binomial, "divide by the binomial"), (sk_zero_ends, "infinite weight")])
def test_shapley_kernel_weight_mutants(fn, hint):
    rejects(ch09.check_shapley_kernel_weight, fn, hint)


# -- smoothgrad ------------------------------------------------------------------------------------------


def sg_loop(model, images, target, *, n_samples=50, noise_level=0.15, seed=None):
    """A correct alternative: its own noise draws, one copy at a time."""
    g = torch.Generator().manual_seed(1000 + (seed or 0))
    sigma = noise_level * (images.amax(dim=(1, 2, 3)) - images.amin(dim=(1, 2, 3)))
    total = torch.zeros_like(images)
    for _ in range(n_samples):
        noisy = images + sigma.view(-1, 1, 1, 1) * torch.randn(images.shape, generator=g)
        total += vanilla_gradient(model, noisy, target)
    return total / n_samples


def sg_absolute_sigma(model, images, target, *, n_samples=50, noise_level=0.15, seed=None):
    g = torch.Generator().manual_seed(seed or 0)
    noise = torch.randn((n_samples, *images.shape), generator=g)
    grads = [vanilla_gradient(model, images + noise_level * n, target) for n in noise]
    return torch.stack(grads).mean(0)


def sg_global_rng(model, images, target, *, n_samples=50, noise_level=0.15, seed=None):
    sigma = noise_level * (images.amax(dim=(1, 2, 3)) - images.amin(dim=(1, 2, 3)))
    grads = [vanilla_gradient(model, images + sigma.view(-1, 1, 1, 1) * torch.randn(images.shape), target)
             for _ in range(n_samples)]
    return torch.stack(grads).mean(0)


def sg_summed(model, images, target, *, n_samples=50, noise_level=0.15, seed=None):
    return n_samples * smoothgrad(model, images, target, n_samples=n_samples, noise_level=noise_level, seed=seed)


def sg_input_times(model, images, target, *, n_samples=50, noise_level=0.15, seed=None):
    return images * smoothgrad(model, images, target, n_samples=n_samples, noise_level=noise_level, seed=seed)


def sg_unseeded_each_sample(model, images, target, *, n_samples=50, noise_level=0.15, seed=None):
    """The same noise for every copy: one noisy gradient, not an average."""
    g = torch.Generator().manual_seed(seed or 0)
    sigma = noise_level * (images.amax(dim=(1, 2, 3)) - images.amin(dim=(1, 2, 3)))
    noise = torch.randn(images.shape, generator=g)
    return vanilla_gradient(model, images + sigma.view(-1, 1, 1, 1) * noise, target)


def test_smoothgrad_accepts(capsys):
    accepts(ch09.check_smoothgrad, smoothgrad, capsys, "smoothgrad")
    accepts(ch09.check_smoothgrad, sg_loop, capsys, "smoothgrad")


@pytest.mark.parametrize("fn, hint", [(sg_absolute_sigma, "range of each image"), (sg_global_rng, "seeded with"),
                                      (sg_summed, "don't sum them"), (sg_input_times, "plain gradient"),
                                      (sg_unseeded_each_sample, "further from the average gradient")])
def test_smoothgrad_mutants(fn, hint):
    rejects(ch09.check_smoothgrad, fn, hint)


# -- mask_mass_fraction ----------------------------------------------------------------------------------


def mm_einsum(attributions, mask):
    heat = attributions.abs().sum(1) if attributions.dim() == 4 else attributions.abs()
    return torch.einsum("bhw,bhw->b", heat, mask.float()) / heat.sum(dim=(1, 2))


def mm_signed(attributions, mask):
    heat = attributions.sum(1) if attributions.dim() == 4 else attributions
    return (heat * mask).sum(dim=(1, 2)) / heat.sum(dim=(1, 2))


def mm_abs_after_channels(attributions, mask):
    heat = attributions.sum(1).abs() if attributions.dim() == 4 else attributions.abs()
    return (heat * mask).sum(dim=(1, 2)) / heat.sum(dim=(1, 2))


def mm_per_pixel(attributions, mask):
    heat = attributions.abs().sum(1) if attributions.dim() == 4 else attributions.abs()
    return (heat * mask).sum(dim=(1, 2)) / mask.sum(dim=(1, 2))


def mm_inside_over_outside(attributions, mask):
    heat = attributions.abs().sum(1) if attributions.dim() == 4 else attributions.abs()
    return (heat * mask).sum(dim=(1, 2)) / (heat * ~mask).sum(dim=(1, 2))


def test_mask_mass_fraction_accepts(capsys):
    accepts(ch09.check_mask_mass_fraction, mask_mass_fraction, capsys, "mask_mass_fraction")
    accepts(ch09.check_mask_mass_fraction, mm_einsum, capsys, "mask_mass_fraction")


@pytest.mark.parametrize("fn, hint", [(mm_signed, "use absolute values"), (mm_abs_after_channels, "each channel"),
                                      (mm_per_pixel, "not by the number of pixels"),
                                      (mm_inside_over_outside, "not by the mass outside")])
def test_mask_mass_fraction_mutants(fn, hint):
    rejects(ch09.check_mask_mass_fraction, fn, hint)


# -- spearman_rank_correlation ---------------------------------------------------------------------------


def _avg_ranks(x):
    sorted_x, order = x.sort()
    ranks = torch.empty_like(x)
    ranks[order] = torch.arange(1, len(x) + 1, dtype=x.dtype)
    for v in sorted_x.unique():
        ranks[x == v] = ranks[x == v].mean()
    return ranks


def _corr(a, b):
    a, b = a - a.mean(), b - b.mean()
    return (a * b).sum() / (a.norm() * b.norm())


def sp_loop(a, b, *, absolute=True):
    rows = []
    for x, y in zip(a.flatten(1).double(), b.flatten(1).double()):
        if absolute:
            x, y = x.abs(), y.abs()
        rows.append(_corr(_avg_ranks(x), _avg_ranks(y)))
    return torch.stack(rows)


def sp_pearson(a, b, *, absolute=True):
    a, b = a.flatten(1), b.flatten(1)
    if absolute:
        a, b = a.abs(), b.abs()
    return torch.stack([_corr(x, y) for x, y in zip(a, b)])


def sp_argsort_ranks(a, b, *, absolute=True):
    a, b = a.flatten(1).double(), b.flatten(1).double()
    if absolute:
        a, b = a.abs(), b.abs()
    return torch.stack([_corr(x.argsort().argsort().double(), y.argsort().argsort().double()) for x, y in zip(a, b)])


def sp_never_abs(a, b, *, absolute=True):
    return sp_loop(a, b, absolute=False)


def sp_whole_batch(a, b, *, absolute=True):
    return sp_loop(a.flatten()[None], b.flatten()[None], absolute=absolute)[0]


def test_spearman_rank_correlation_accepts(capsys):
    accepts(ch09.check_spearman_rank_correlation, spearman_rank_correlation, capsys, "spearman_rank_correlation")
    accepts(ch09.check_spearman_rank_correlation, sp_loop, capsys, "spearman_rank_correlation")


@pytest.mark.parametrize("fn, hint", [(sp_pearson, "not the values themselves"), (sp_argsort_ranks, "average rank"),
                                      (sp_never_abs, "compare |a| with |b|"),
                                      (sp_whole_batch, "one correlation per image")])
def test_spearman_rank_correlation_mutants(fn, hint):
    rejects(ch09.check_spearman_rank_correlation, fn, hint)


# -- gradient_ascent_step --------------------------------------------------------------------------------


def _channel_mean(model, x, hook_name, channel, reduce=lambda a, c: a[:, c].mean(dim=(-2, -1))):
    store = {}
    model.run_with_hooks(x, fwd_hooks=[(hook_name, lambda act, hook: store.setdefault("a", act))])
    return reduce(store["a"], channel)


def ga_hooks(model, images, hook_name, channel, *, lr):
    """A correct alternative: a hook stores the activation; the mode is saved and restored."""
    was = model.training
    model.eval()
    x = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(_channel_mean(model, x, hook_name, channel).sum(), x)
    model.train(was)
    return torch.clamp(images + lr * grad, min=0.0, max=1.0)


def _step(model, images, hook_name, channel, lr, sign=1.0, reduce=None, clamp=True):
    x = images.clone().requires_grad_(True)
    objective = _channel_mean(model, x, hook_name, channel, **({"reduce": reduce} if reduce else {}))
    (grad,) = torch.autograd.grad(objective.sum(), x)
    out = images + sign * lr * grad
    return out.clamp(0, 1) if clamp else out


def ga_descent(model, images, hook_name, channel, *, lr):
    return _step(model, images, hook_name, channel, lr, sign=-1.0)


def ga_whole_layer(model, images, hook_name, channel, *, lr):
    return _step(model, images, hook_name, channel, lr, reduce=lambda a, c: a.mean(dim=(1, 2, 3)))


def ga_no_clamp(model, images, hook_name, channel, *, lr):
    return _step(model, images, hook_name, channel, lr, clamp=False)


def ga_in_place(model, images, hook_name, channel, *, lr):
    step = _step(model, images, hook_name, channel, lr) - images
    images += step
    return images.clone()


def ga_batch_mean(model, images, hook_name, channel, *, lr):
    return _step(model, images, hook_name, channel, lr / len(images))


def ga_max(model, images, hook_name, channel, *, lr):
    return _step(model, images, hook_name, channel, lr, reduce=lambda a, c: a[:, c].flatten(1).max(1).values)


def test_gradient_ascent_step_accepts(capsys):
    accepts(ch09.check_gradient_ascent_step, gradient_ascent_step, capsys, "gradient_ascent_step")
    accepts(ch09.check_gradient_ascent_step, ga_hooks, capsys, "gradient_ascent_step")


@pytest.mark.parametrize("fn, hint", [(ga_descent, "step UP the gradient"), (ga_whole_layer, "ONE channel"),
                                      (ga_no_clamp, "clip the new images"), (ga_in_place, "in place"),
                                      (ga_batch_mean, "SUM of the objectives"), (ga_max, "MEAN over positions")])
def test_gradient_ascent_step_mutants(fn, hint):
    rejects(ch09.check_gradient_ascent_step, fn, hint)
