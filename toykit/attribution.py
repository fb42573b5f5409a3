"""Attribution methods for image classifiers: which pixels does one output logit depend on?

Every method here works for ANY image classifier: a ``torch.nn.Module`` (or plain callable)
that maps images ``[batch, channels, height, width]`` (float) to logits ``[batch, n_classes]``.
Every method has the same signature and the same output::

    method(model, images, target, **settings) -> attributions [batch, channels, height, width]

where ``target`` is the class whose logit is explained: an int (the same class for every
image) or an int tensor ``[batch]``. The explained quantity is always the target *logit*
F(x), never a probability.

Methods (paper, and where in it):

- ``vanilla_gradient``: ∂F/∂x (Simonyan et al. 2014, §3, image-specific class saliency).
- ``gradient_x_input``: x · ∂F/∂x, elementwise (Shrikumar et al. 2016; Ancona et al. 2018).
- ``smoothgrad``: the gradient averaged over noisy copies of x (Smilkov et al. 2017, §3).
- ``integrated_gradients``: (x − x′) · the path integral of ∂F/∂x from a baseline x′ to x
  (Sundararajan et al. 2017, Eq. 1; Riemann approximation in §5). ``completeness_gap``
  measures how far the attributions' sum is from F(x) − F(x′) (their Proposition 1).
- ``occlusion``: the drop in F when a patch is covered (Zeiler & Fergus 2014, §4.2).
- ``kernel_shap``: Shapley values of superpixels estimated by weighted linear regression
  (Lundberg & Lee 2017, Theorem 2, the Shapley kernel); ``kernel_shap_values`` gives the
  per-superpixel values and ``exact_shapley_values`` the brute-force answer for few superpixels.
- ``lime_values``: a LIME-style weighted linear surrogate over the same superpixels
  (Ribeiro et al. 2016), per superpixel.

Side effects: none. Inputs are never modified in place and never left with ``requires_grad``;
gradients are taken with ``torch.autograd.grad`` with respect to the input only, so the
model's parameter ``.grad`` fields are untouched; the model runs in eval mode and gets its
training flag back (``toykit.runtime.eval_mode``). Random methods take ``seed`` or
``generator`` (``toykit.runtime.make_generator``); noise is drawn on the CPU, so a seed gives
the same attributions on every machine up to floating-point differences of the model.

``toykit.saliency.gradient_x_input`` is the token-level version for the hooked transformer:
it differentiates with respect to the token embeddings (read at ``hook_embed``) and sums over
``d_model``, giving one number per token. The function here differentiates with respect to
the pixels themselves, one number per pixel and channel.
"""

from __future__ import annotations

from collections.abc import Callable
from math import comb, factorial

import torch

from toykit.runtime import eval_mode, make_generator
from toykit.validation import check_one_of, check_positive_int, check_positive_number, check_tensor

__all__ = [
    "attribution_heatmap",
    "completeness_gap",
    "exact_shapley_values",
    "gradient_x_input",
    "grid_segments",
    "integrated_gradients",
    "integration_points",
    "kernel_shap",
    "kernel_shap_values",
    "lime_values",
    "occlusion",
    "segments_to_pixels",
    "shapley_coalitions",
    "shapley_kernel_weight",
    "smoothgrad",
    "superpixels",
    "target_logits",
    "vanilla_gradient",
]

Model = Callable[[torch.Tensor], torch.Tensor]
DEFAULT_BATCH_SIZE = 256  # images per forward pass; IG steps, noisy copies and masks go in chunks


# ---------------------------------------------------------------- shared checks and helpers


def check_images(images: object) -> dict[str, int]:
    """``images`` must be a float tensor [batch, channels, height, width]; returns its named sizes."""
    return check_tensor("images", images, ["batch", "channels", "height", "width"], dtype="float")


def check_target(target: object, images: torch.Tensor) -> torch.Tensor:
    """``target`` as a long tensor [batch] on the images' device (an int means every image)."""
    batch = images.shape[0]
    if isinstance(target, int) and not isinstance(target, bool):
        target = torch.full((batch,), target, dtype=torch.long)
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be an int or an int tensor [batch], got {type(target).__name__}")
    check_tensor("target", target, [batch], dtype="int")
    assert isinstance(target, torch.Tensor)
    if (target < 0).any():
        raise ValueError(f"target must hold class indices >= 0, got {target.min().item()}")
    return target.to(device=images.device, dtype=torch.long)


def check_fill(name: str, fill: object, images: torch.Tensor) -> torch.Tensor:
    """A reference image broadcast to images' shape: None (zeros), a number, or a float tensor
    that broadcasts to [batch, channels, height, width] (e.g. [channels, height, width])."""
    if fill is None:
        return torch.zeros_like(images)
    if isinstance(fill, (int, float)) and not isinstance(fill, bool):
        return torch.full_like(images, float(fill))
    if not isinstance(fill, torch.Tensor) or not fill.is_floating_point():
        raise TypeError(f"{name} must be None, a number or a float tensor, got {type(fill).__name__}"
                        + (f" of dtype {fill.dtype}" if isinstance(fill, torch.Tensor) else ""))
    try:
        return torch.broadcast_to(fill.to(device=images.device, dtype=images.dtype), images.shape)
    except RuntimeError as e:
        raise ValueError(f"{name} must broadcast to the images' shape {list(images.shape)}, "
                         f"got {list(fill.shape)}") from e


def check_model(model: object) -> Model:
    if not callable(model):
        raise TypeError(f"model must be a torch.nn.Module or a callable mapping images to logits, "
                        f"got {type(model).__name__}")
    return model


def target_logits(model: Model, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The logit of ``target`` for each image: images [n, c, h, w], target [n] -> [n].

    Checks that the model returns logits [n, n_classes] and that target < n_classes.
    Grad mode is whatever the caller set; the model's mode too.
    """
    logits = model(images)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != images.shape[0]:
        got = list(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"model must map images [batch, channels, height, width] to logits "
                         f"[batch, n_classes]; for {images.shape[0]} images it returned {got}")
    if target.numel() and target.max() >= logits.shape[1]:
        raise ValueError(f"target must be a class index below n_classes={logits.shape[1]}, "
                         f"got {target.max().item()}")
    return logits.gather(1, target[:, None])[:, 0]


def _logits_in_chunks(model: Model, images: torch.Tensor, target: torch.Tensor, batch_size: int) -> torch.Tensor:
    """target_logits without gradients, ``batch_size`` images per forward pass: [n]."""
    with torch.no_grad():
        return torch.cat([target_logits(model, images[i:i + batch_size], target[i:i + batch_size])
                          for i in range(0, images.shape[0], batch_size)])


def _gradients_in_chunks(model: Model, images: torch.Tensor, target: torch.Tensor, batch_size: int) -> torch.Tensor:
    """∂ logit[target] / ∂ images for each image, [n, c, h, w], ``batch_size`` at a time.

    The logits of a chunk are summed before differentiating: the model is in eval mode, so
    image i's logit does not depend on image j and the sum's gradient is each image's own.
    """
    grads = []
    for i in range(0, images.shape[0], batch_size):
        # detach(): a new leaf, so requires_grad never reaches the caller's tensor
        x = images[i:i + batch_size].detach().requires_grad_(True)
        with torch.enable_grad():
            out = target_logits(model, x, target[i:i + batch_size])
            if not out.requires_grad:
                raise ValueError("model's logits do not depend differentiably on images "
                                 "(did it detach its input or run under torch.no_grad?)")
            # autograd.grad with inputs=x only: parameter .grad fields are never written
            (grad,) = torch.autograd.grad(out.sum(), x, allow_unused=True)
        grads.append(torch.zeros_like(x) if grad is None else grad.detach())
    return torch.cat(grads)


def _setup(model: object, images: object, target: object,
           batch_size: object) -> tuple[Model, torch.Tensor, torch.Tensor]:
    check_images(images)
    assert isinstance(images, torch.Tensor)
    check_positive_int("batch_size", batch_size)
    return check_model(model), images.detach(), check_target(target, images)


# ---------------------------------------------------------------- gradient methods


def vanilla_gradient(model: Model, images: torch.Tensor, target: int | torch.Tensor, *,
                     batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
    """The gradient of the target logit with respect to each pixel (Simonyan et al. 2014, §3.1).

    images: [batch, channels, height, width]; target: int or [batch].
    Returns [batch, channels, height, width]. Simonyan et al. display max over channels of
    |gradient|; ``attribution_heatmap(..., reduce="abs_max")`` gives that picture.
    """
    model, images, target = _setup(model, images, target, batch_size)
    with eval_mode(model):
        return _gradients_in_chunks(model, images, target, batch_size)


def gradient_x_input(model: Model, images: torch.Tensor, target: int | torch.Tensor, *,
                     batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
    """Gradient × input: images · ∂ logit[target] / ∂ images, elementwise.

    images: [batch, channels, height, width]; target: int or [batch].
    Returns [batch, channels, height, width]. For a linear model F(x) = w·x + b it is w·x
    exactly, which is also integrated gradients from a zero baseline. For the token-level
    version on a transformer (gradient with respect to the token embeddings, summed over
    d_model, one number per token) see ``toykit.saliency.gradient_x_input``.
    """
    return images.detach() * vanilla_gradient(model, images, target, batch_size=batch_size)


def smoothgrad(model: Model, images: torch.Tensor, target: int | torch.Tensor, *, n_samples: int = 50,
               noise_level: float = 0.15, seed: int | None = None, generator: torch.Generator | None = None,
               batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
    """SmoothGrad: the gradient averaged over ``n_samples`` noisy copies of each image.

    (Smilkov et al. 2017, §3: M̂(x) = (1/n) Σ_k ∂F/∂x (x + N(0, σ²)).) The noise's standard
    deviation is σ = noise_level · (max(x) − min(x)), the range taken per image, which is the
    paper's "noise level" σ / (x_max − x_min); their experiments found 10–20 % works well,
    with n ≈ 50 samples (§4, Fig. 3).
    Noise is drawn on the CPU from ``seed`` or ``generator`` (give at most one), so the same
    seed gives the same noise everywhere.

    images: [batch, channels, height, width]; target: int or [batch].
    Returns [batch, channels, height, width].
    """
    model, images, target = _setup(model, images, target, batch_size)
    check_positive_int("n_samples", n_samples)
    if not isinstance(noise_level, (int, float)) or isinstance(noise_level, bool) or noise_level < 0:
        raise ValueError(f"noise_level must be a number >= 0 (a fraction of each image's range), got {noise_level!r}")
    gen = make_generator(seed, generator)
    batch = images.shape[0]
    flat = images.flatten(1)
    sigma = noise_level * (flat.max(1).values - flat.min(1).values)  # [batch]
    noise = torch.randn((n_samples, *images.shape), generator=gen).to(images.device, images.dtype)
    noisy = (images + sigma.view(1, batch, 1, 1, 1) * noise).flatten(0, 1)  # [n_samples * batch, c, h, w]
    with eval_mode(model):
        grads = _gradients_in_chunks(model, noisy, target.repeat(n_samples), batch_size)
    return grads.view(n_samples, *images.shape).mean(0)


# ---------------------------------------------------------------- integrated gradients

IG_RULES = ("trapezoid", "riemann_left", "riemann_right", "riemann_middle")


def integration_points(n_steps: int, rule: str = "trapezoid") -> tuple[torch.Tensor, torch.Tensor]:
    """Points α on [0, 1] and weights for ∫₀¹ g(α) dα ≈ Σ weight_k · g(α_k).

    rule: "trapezoid" (n_steps + 1 points), or "riemann_left", "riemann_right",
    "riemann_middle" (n_steps points each, weight 1/n_steps). Returns (alphas, weights), float64.
    """
    check_positive_int("n_steps", n_steps)
    check_one_of("rule", rule, IG_RULES)
    k = torch.arange(n_steps + (rule == "trapezoid"), dtype=torch.float64)
    weights = torch.full_like(k, 1.0 / n_steps)
    if rule == "trapezoid":
        weights[0] = weights[-1] = 0.5 / n_steps
    alphas = {"trapezoid": k / n_steps, "riemann_left": k / n_steps,
              "riemann_right": (k + 1) / n_steps, "riemann_middle": (k + 0.5) / n_steps}[rule]
    return alphas, weights


def integrated_gradients(model: Model, images: torch.Tensor, target: int | torch.Tensor, *,
                         baseline: float | torch.Tensor | None = None, n_steps: int = 50, rule: str = "trapezoid",
                         batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
    """Integrated gradients (Sundararajan et al. 2017, Eq. 1, approximated as in their §5).

    IG_i(x) = (x_i − x′_i) · ∫₀¹ ∂F/∂x_i (x′ + α (x − x′)) dα, with the integral replaced by
    a sum over ``n_steps`` steps (``integration_points``; "trapezoid" by default). By
    completeness (their Proposition 1) Σ_i IG_i = F(x) − F(x′); ``completeness_gap`` measures
    how far the approximation is from that. The paper suggests 20 to 300 steps (§5).

    images: [batch, channels, height, width]; target: int or [batch].
    baseline x′: None (black image, zeros), a number, or a float tensor broadcastable to images.
    Returns [batch, channels, height, width]. The path points of all steps are run in chunks
    of ``batch_size`` images.
    """
    model, images, target = _setup(model, images, target, batch_size)
    start = check_fill("baseline", baseline, images)
    alphas, weights = integration_points(n_steps, rule)
    alphas, weights = alphas.to(images.device, images.dtype), weights.to(images.device, images.dtype)
    mean_grad = torch.zeros_like(images)
    step = max(1, batch_size // images.shape[0])  # path points per forward pass
    with eval_mode(model):
        for i in range(0, len(alphas), step):
            a, w = alphas[i:i + step].view(-1, 1, 1, 1, 1), weights[i:i + step].view(-1, 1, 1, 1, 1)
            # the path points of this chunk for every image: [k * batch, c, h, w]
            path = (start + a * (images - start)).flatten(0, 1)
            grads = _gradients_in_chunks(model, path, target.repeat(len(a)), batch_size)
            mean_grad += (w * grads.view(len(a), *images.shape)).sum(0)
    return (images - start) * mean_grad


def completeness_gap(model: Model, images: torch.Tensor, target: int | torch.Tensor, attributions: torch.Tensor, *,
                     baseline: float | torch.Tensor | None = None, relative: bool = False,
                     batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
    """How far attributions are from adding up to the output difference, per image: [batch].

    gap = Σ attributions − (F(x) − F(x′)) with F the target logit and x′ the baseline
    (Sundararajan et al. 2017, Proposition 1: exact IG has gap 0). relative=True divides by
    |F(x) − F(x′)|, so 0.01 means the sum is off by 1 % of the output difference.
    attributions: [batch, channels, height, width], e.g. from ``integrated_gradients`` with
    the same baseline.
    """
    model, images, target = _setup(model, images, target, batch_size)
    check_tensor("attributions", attributions, list(images.shape), dtype="float")
    start = check_fill("baseline", baseline, images)
    with eval_mode(model):
        f_x = _logits_in_chunks(model, images, target, batch_size)
        f_start = _logits_in_chunks(model, start, target, batch_size)
    difference = f_x - f_start
    gap = attributions.detach().flatten(1).sum(1) - difference
    return gap / difference.abs() if relative else gap


# ---------------------------------------------------------------- occlusion


def _pair(name: str, value: object) -> tuple[int, int]:
    if isinstance(value, tuple) and len(value) == 2:
        return check_positive_int(name, value[0]), check_positive_int(name, value[1])
    size = check_positive_int(name, value)
    return size, size


def _starts(length: int, patch: int, stride: int) -> list[int]:
    """Patch start positions along one axis; the last patch is moved flush with the edge so
    that every pixel is covered."""
    starts = list(range(0, length - patch + 1, stride))
    if starts[-1] != length - patch:
        starts.append(length - patch)
    return starts


def occlusion(model: Model, images: torch.Tensor, target: int | torch.Tensor, *, patch_size: int | tuple[int, int] = 4,
              stride: int | tuple[int, int] | None = None, fill: float | torch.Tensor | None = None,
              batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
    """Occlusion sensitivity (Zeiler & Fergus 2014, §4.2): the drop in the target logit when a
    patch of the image (all channels) is replaced by ``fill``.

    Each patch position p gives drop_p = F(x) − F(x with patch p filled). A pixel's attribution
    is the mean drop over the patches that cover it, the same for every channel. Positive:
    covering the pixel lowers the logit.

    images: [batch, channels, height, width]; target: int or [batch].
    patch_size, stride: int or (height, width); stride defaults to patch_size (no overlap).
    Patches start every ``stride`` pixels and the last one on each axis sits flush with the
    edge, so every pixel is covered. fill: None (zeros), a number, or a float tensor
    broadcastable to images (e.g. the dataset mean image).
    Returns [batch, channels, height, width].
    """
    model, images, target = _setup(model, images, target, batch_size)
    ph, pw = _pair("patch_size", patch_size)
    sh, sw = _pair("stride", (ph, pw) if stride is None else stride)
    batch, channels, height, width = images.shape
    if ph > height or pw > width:
        raise ValueError(f"patch_size must fit in the image ({height}×{width}), got {(ph, pw)}")
    filled = check_fill("fill", fill, images)
    masks = []
    for top in _starts(height, ph, sh):
        for left in _starts(width, pw, sw):
            mask = torch.zeros(height, width, dtype=torch.bool, device=images.device)
            mask[top:top + ph, left:left + pw] = True
            masks.append(mask)
    patches = torch.stack(masks)  # [n_patches, h, w]
    step = max(1, batch_size // batch)  # patches per forward pass
    chunks = []
    with eval_mode(model):
        f_x = _logits_in_chunks(model, images, target, batch_size)
        for i in range(0, len(patches), step):
            chunk = patches[i:i + step]
            # this chunk's patches on every image: [k * batch, c, h, w]
            occluded = torch.where(chunk[:, None, None], filled, images).flatten(0, 1)
            f_occluded = _logits_in_chunks(model, occluded, target.repeat(len(chunk)), batch_size)
            chunks.append(f_x - f_occluded.view(len(chunk), batch))
    drops = torch.cat(chunks)  # [n_patches, batch]
    total = torch.einsum("pb,phw->bhw", drops, patches.to(drops.dtype))
    coverage = patches.sum(0).to(drops.dtype)  # [h, w], >= 1 everywhere
    return (total / coverage)[:, None].expand(batch, channels, height, width).clone()


# ---------------------------------------------------------------- superpixels and Shapley values


def grid_segments(height: int, width: int, cell_size: int | tuple[int, int]) -> torch.Tensor:
    """Square superpixels: a label map [height, width] of ints 0..n_segments−1, row by row.

    Cells at the right and bottom edges are smaller when cell_size does not divide the image.
    """
    check_positive_int("height", height)
    check_positive_int("width", width)
    ch, cw = _pair("cell_size", cell_size)
    rows = torch.arange(height) // ch
    cols = torch.arange(width) // cw
    return rows[:, None] * (-(-width // cw)) + cols[None, :]


def superpixels(segments: torch.Tensor | None, cell_size: int | tuple[int, int] | None,
                images: torch.Tensor) -> torch.Tensor:
    """The superpixel label map a caller asked for: ``segments`` as given, or the square grid of
    ``cell_size`` over images [batch, channels, height, width]. Exactly one of the two is given."""
    if (segments is None) == (cell_size is None):
        raise ValueError("give exactly one of segments (a label map) and cell_size (square superpixels)")
    if segments is None:
        assert cell_size is not None
        return grid_segments(images.shape[2], images.shape[3], cell_size)
    return segments


def check_segments(segments: object, images: torch.Tensor) -> tuple[torch.Tensor, int]:
    """segments: an int label map [height, width] (shared) or [batch, height, width], labels
    0..n_segments−1. Returns the [batch, height, width] map on images' device, and n_segments."""
    batch, _, height, width = images.shape
    if isinstance(segments, torch.Tensor) and segments.ndim == 2:
        check_tensor("segments", segments, [height, width], dtype="int")
        segments = segments.expand(batch, height, width)
    check_tensor("segments", segments, [batch, height, width], dtype="int")
    assert isinstance(segments, torch.Tensor)
    if (segments < 0).any():
        raise ValueError(f"segments must hold labels >= 0, got {segments.min().item()}")
    return segments.to(device=images.device, dtype=torch.long), int(segments.max().item()) + 1


def segments_to_pixels(values: torch.Tensor, segments: torch.Tensor, channels: int = 1) -> torch.Tensor:
    """Give every pixel its superpixel's value.

    values: [batch, n_segments]; segments: [height, width] or [batch, height, width].
    Returns [batch, channels, height, width] (the same value in every channel).
    """
    dims = check_tensor("values", values, ["batch", "n_segments"], dtype="float")
    check_positive_int("channels", channels)
    if isinstance(segments, torch.Tensor) and segments.ndim == 2:
        segments = segments.expand(dims["batch"], *segments.shape)
    check_tensor("segments", segments, [dims["batch"], None, None], dtype="int")
    if segments.max() >= dims["n_segments"] or segments.min() < 0:
        raise ValueError(f"segments must hold labels in [0, {dims['n_segments']}), "
                         f"got {segments.min().item()}..{segments.max().item()}")
    pixels = values.gather(1, segments.flatten(1).to(values.device)).view(segments.shape)
    return pixels[:, None].expand(-1, channels, -1, -1).clone()


def _coalition_logits(model: Model, images: torch.Tensor, target: torch.Tensor, segments: torch.Tensor,
                      filled: torch.Tensor, coalitions: torch.Tensor, batch_size: int) -> torch.Tensor:
    """F on each image with only the coalition's superpixels kept (others set to ``filled``).

    coalitions: bool [n, n_segments]; segments: [batch, h, w]. Returns [n, batch].
    """
    n, batch = coalitions.shape[0], images.shape[0]
    out = []
    step = max(1, batch_size // batch)  # coalitions per forward pass
    for i in range(0, n, step):
        chunk = coalitions[i:i + step].to(images.device)  # [k, n_segments]
        # keep[k, b, h, w]: is pixel (h, w) of image b in a kept superpixel of coalition k?
        keep = chunk[:, segments]
        masked = torch.where(keep[:, :, None], images, filled).flatten(0, 1)
        out.append(target_logits(model, masked, target.repeat(len(chunk))).view(len(chunk), batch))
    return torch.cat(out)


def shapley_kernel_weight(n_segments: int, size: int | torch.Tensor) -> torch.Tensor:
    """The Shapley kernel π(z) = (M − 1) / (C(M, |z|) · |z| · (M − |z|)) for a coalition with
    |z| = size of M = n_segments players (Lundberg & Lee 2017, Theorem 2). Infinite for the
    empty and full coalitions, which Kernel SHAP handles as exact constraints instead."""
    check_positive_int("n_segments", n_segments)
    size = torch.as_tensor(size, dtype=torch.float64)
    binom = torch.tensor([comb(n_segments, int(s)) for s in size.flatten().tolist()],
                         dtype=torch.float64).view(size.shape)
    return (n_segments - 1) / (binom * size * (n_segments - size))


def shapley_coalitions(n_segments: int, n_samples: int, *, seed: int | None = None,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The coalitions Kernel SHAP evaluates and their regression weights.

    Returns z, bool [n, n_segments] (True: the superpixel is kept), and weights [n], float64.
    When all 2^M − 2 proper coalitions fit in n_samples: all of them, each weighted by the
    Shapley kernel π(z) (``shapley_kernel_weight``), which makes Kernel SHAP exact. Otherwise
    n_samples coalitions drawn with probability ∝ π(z): a size k with probability
    ∝ (M − 1) / (k (M − k)), the kernel's total mass at size k, then a uniform subset of that
    size; each gets weight 1, and every draw is paired with its complement (same probability,
    lower variance). Draws come from ``seed`` or ``generator`` (at most one).
    """
    m = check_positive_int("n_segments", n_segments)
    check_positive_int("n_samples", n_samples)
    if m < 2:
        raise ValueError(f"n_segments must be at least 2 for a coalition to be proper, got {m}")
    gen = make_generator(seed, generator)
    if 2**m - 2 <= n_samples:
        codes = torch.arange(1, 2**m - 1)
        z = (codes[:, None] >> torch.arange(m)) & 1 == 1
        return z, shapley_kernel_weight(m, z.sum(1))
    sizes = torch.arange(1, m, dtype=torch.float64)
    size_probs = (m - 1) / (sizes * (m - sizes))
    half = (n_samples + 1) // 2
    k = 1 + torch.multinomial(size_probs, half, replacement=True, generator=gen)  # [half]
    ranks = torch.rand(half, m, generator=gen).argsort(1).argsort(1)  # a random order of players
    z = ranks < k[:, None]
    z = torch.cat([z, ~z])[:n_samples]
    return z, torch.ones(len(z), dtype=torch.float64)


def kernel_shap_values(model: Model, images: torch.Tensor, target: int | torch.Tensor, *,
                       segments: torch.Tensor | None = None, cell_size: int | tuple[int, int] | None = None,
                       n_samples: int = 256, fill: float | torch.Tensor | None = None, seed: int | None = None,
                       generator: torch.Generator | None = None, batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
    """Kernel SHAP (Lundberg & Lee 2017, §4.1 and Theorem 2): one Shapley value per superpixel.

    Players are superpixels; coalition z keeps its superpixels and sets the others to ``fill``,
    and v(z) = F(x with z kept). The Shapley values φ solve the weighted least squares
    min Σ_z π(z) (v(z) − φ₀ − Σ_i z_i φ_i)² with the Shapley kernel π (``shapley_kernel_weight``),
    under the two constraints the infinite weights of the empty and full coalitions impose:
    φ₀ = v(∅) and Σ_i φ_i = v(all) − v(∅) (efficiency). The efficiency constraint is solved
    exactly by eliminating the last φ. With 2^M − 2 ≤ n_samples every coalition is used and the
    result equals ``exact_shapley_values``. Otherwise n_samples coalitions are drawn from ``seed``
    or ``generator`` with probability ∝ π(z), each paired with its complement, and weighted
    equally in the regression.

    images: [batch, channels, height, width]; target: int or [batch].
    segments: int label map [height, width] or [batch, height, width] (labels 0..M−1), or
    give cell_size instead for square superpixels (``grid_segments``).
    fill: what a removed superpixel becomes: None (zeros), a number, or a float tensor
    broadcastable to images. Returns φ: [batch, n_segments], float32 on the images' device.
    """
    model, images, target = _setup(model, images, target, batch_size)
    check_positive_int("n_samples", n_samples)
    seg, m = check_segments(superpixels(segments, cell_size, images), images)
    filled = check_fill("fill", fill, images)
    gen = make_generator(seed, generator)
    everyone = torch.ones(1, m, dtype=torch.bool)
    with eval_mode(model), torch.no_grad():
        ends = _coalition_logits(model, images, target, seg, filled, torch.cat([~everyone, everyone]), batch_size)
        v_empty, v_full = ends[0].double(), ends[1].double()
        if m == 1:
            return (v_full - v_empty)[:, None].to(images.dtype)
        z, weights = shapley_coalitions(m, n_samples, generator=gen)
        v = _coalition_logits(model, images, target, seg, filled, z, batch_size).double()  # [n, batch]
    z = z.to(images.device, torch.float64)
    weights = weights.to(images.device)
    # substitute φ_M = Δ − Σ_{i<M} φ_i:  v − v(∅) − z_M Δ = Σ_{i<M} (z_i − z_M) φ_i
    delta = v_full - v_empty  # [batch]
    design = z[:, :-1] - z[:, -1:]  # [n, M−1]
    response = v - v_empty - z[:, -1:] * delta  # [n, batch]
    root = weights.sqrt()[:, None]
    if torch.linalg.matrix_rank(root * design) < m - 1:
        raise ValueError(f"n_samples={n_samples} coalitions do not determine the values of {m} superpixels "
                         "(the regression is underdetermined); use more samples")
    phi_rest = torch.linalg.lstsq(root * design, root * response).solution  # [M−1, batch]
    phi = torch.cat([phi_rest, (delta - phi_rest.sum(0))[None]])  # [M, batch]
    return phi.T.contiguous().to(images.dtype)


def kernel_shap(model: Model, images: torch.Tensor, target: int | torch.Tensor, *,
                segments: torch.Tensor | None = None, cell_size: int | tuple[int, int] | None = None,
                n_samples: int = 256, fill: float | torch.Tensor | None = None, seed: int | None = None,
                generator: torch.Generator | None = None, batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
    """Kernel SHAP values of superpixels (``kernel_shap_values``), given to their pixels.

    Returns [batch, channels, height, width]: each pixel holds its superpixel's Shapley value,
    not divided by the superpixel's size, so the map's sum is not F(x) − F(fill); the values
    themselves (``kernel_shap_values``) add up to it.
    """
    values = kernel_shap_values(model, images, target, segments=segments, cell_size=cell_size, n_samples=n_samples,
                                fill=fill, seed=seed, generator=generator, batch_size=batch_size)
    return segments_to_pixels(values, superpixels(segments, cell_size, images).to(images.device), images.shape[1])


def lime_values(model: Model, images: torch.Tensor, target: int | torch.Tensor, *,
                segments: torch.Tensor | None = None, cell_size: int | tuple[int, int] | None = None,
                n_samples: int = 256, kernel_width: float = 0.25, ridge: float = 0.0,
                fill: float | torch.Tensor | None = None, seed: int | None = None,
                generator: torch.Generator | None = None, batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
    """A LIME-style local linear surrogate over superpixels (Ribeiro et al. 2016, §3.3–3.4).

    Coalitions z are drawn uniformly (each superpixel kept with probability 1/2), v(z) is the
    target logit with the other superpixels set to ``fill`` (as in ``kernel_shap_values``), and
    a linear model v ≈ β₀ + Σ_i z_i β_i is fitted by least squares weighted with the proximity
    kernel √exp(−d(z)² / kernel_width²), d the cosine distance between z and the full image,
    as in the reference LIME code's image explainer (kernel_width 0.25 there too). That code
    fits a ridge regression with penalty 1; here ridge=0 by default (plain weighted least
    squares), and ridge > 0 penalises the β_i but not β₀. Unlike Kernel SHAP, nothing forces
    Σ β = F(x) − F(fill): with this kernel the coefficients are not Shapley values, except for
    a model additive over superpixels, where both recover each superpixel's own effect.

    segments or cell_size: as in ``kernel_shap_values``. Returns β: [batch, n_segments].
    """
    model, images, target = _setup(model, images, target, batch_size)
    check_positive_int("n_samples", n_samples)
    check_positive_number("kernel_width", kernel_width)
    if not isinstance(ridge, (int, float)) or isinstance(ridge, bool) or ridge < 0:
        raise ValueError(f"ridge must be a number >= 0, got {ridge!r}")
    seg, m = check_segments(superpixels(segments, cell_size, images), images)
    filled = check_fill("fill", fill, images)
    gen = make_generator(seed, generator)
    # the full image first, as LIME does, then uniform random coalitions
    z = torch.cat([torch.ones(1, m, dtype=torch.bool), torch.rand(n_samples - 1, m, generator=gen) < 0.5])
    with eval_mode(model), torch.no_grad():
        v = _coalition_logits(model, images, target, seg, filled, z, batch_size).double()  # [n, batch]
    zf = z.to(images.device, torch.float64)
    cosine = zf.sum(1) / (zf.norm(dim=1) * m**0.5).clamp_min(1e-12)  # cos(z, all ones); 0 for the empty z
    weights = torch.exp(-((1 - cosine) ** 2) / kernel_width**2).sqrt()
    design = torch.cat([torch.ones_like(zf[:, :1]), zf], 1)  # intercept, then one column per superpixel
    penalty = ridge * torch.eye(m + 1, dtype=torch.float64, device=zf.device)
    penalty[0, 0] = 0.0  # the intercept is not penalised
    gram = design.T @ (weights[:, None] * design) + penalty
    if torch.linalg.matrix_rank(gram) < m + 1:
        raise ValueError(f"n_samples={n_samples} coalitions do not determine the values of {m} superpixels "
                         "(the regression is underdetermined); use more samples or ridge > 0")
    beta = torch.linalg.solve(gram, design.T @ (weights[:, None] * v))  # [1 + M, batch]
    return beta[1:].T.contiguous().to(images.dtype)


def exact_shapley_values(model: Model, images: torch.Tensor, target: int | torch.Tensor, *, segments: torch.Tensor,
                         fill: float | torch.Tensor | None = None, max_segments: int = 14,
                         batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
    """Exact Shapley values of superpixels by enumerating all 2^M coalitions (Shapley 1953):

    φ_i = Σ_{S ∌ i} |S|! (M − |S| − 1)! / M! · (v(S ∪ {i}) − v(S)),

    with v as in ``kernel_shap_values``. 2^M forward passes per image, so M ≤ max_segments.
    segments: [height, width] or [batch, height, width]. Returns [batch, n_segments].
    """
    model, images, target = _setup(model, images, target, batch_size)
    seg, m = check_segments(segments, images)
    if m > max_segments:
        raise ValueError(f"segments has {m} superpixels: 2^{m} coalitions is too many for exact Shapley values "
                         f"(max_segments={max_segments})")
    filled = check_fill("fill", fill, images)
    codes = torch.arange(2**m)
    z = (codes[:, None] >> torch.arange(m)) & 1 == 1  # coalition number c holds player i iff bit i is set
    with eval_mode(model), torch.no_grad():
        v = _coalition_logits(model, images, target, seg, filled, z, batch_size).double()  # [2^M, batch]
    sizes = z.sum(1)
    fact = torch.tensor([float(factorial(k)) for k in range(m + 1)], dtype=torch.float64)
    phi = []
    for i in range(m):
        without = codes[~z[:, i]]
        weight = fact[sizes[without]] * fact[m - sizes[without] - 1] / fact[m]
        phi.append((weight.to(v.device)[:, None] * (v[without | (1 << i)] - v[without])).sum(0))
    return torch.stack(phi, 1).to(images.dtype)


# ---------------------------------------------------------------- display


def attribution_heatmap(attributions: torch.Tensor, reduce: str = "sum") -> torch.Tensor:
    """One number per pixel: attributions [batch, channels, height, width] -> [batch, height, width].

    reduce: "sum" (signed sum over channels), "abs_sum" (Σ_c |a_c|) or "abs_max" (max_c |a_c|,
    the picture of Simonyan et al. 2014, §3.1).
    """
    check_tensor("attributions", attributions, ["batch", "channels", "height", "width"], dtype="float")
    check_one_of("reduce", reduce, ("sum", "abs_sum", "abs_max"))
    if reduce == "sum":
        return attributions.sum(1)
    if reduce == "abs_sum":
        return attributions.abs().sum(1)
    return attributions.abs().amax(1)
