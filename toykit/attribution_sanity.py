"""Sanity checks for attribution maps (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

A map that explains a model must change when the model changes. Adebayo et al. test this two ways:

- **model-parameter randomisation** (their §3): re-initialise the weights, from the output
  layer down towards the input one layer at a time ("cascading", Fig. 2) or one layer alone
  ("independent"), and measure how similar each map stays to the trained model's map;
  ``cascading_randomization``, ``independent_randomization`` and ``randomization_table``;
- **data randomisation** (their §4): train the same architecture on randomly permuted labels
  and compare its maps with the real model's; ``shuffled_labels`` permutes the labels (the
  training is the caller's), ``compare_attributions`` compares two models' maps.

Similarity is the Spearman rank correlation between two maps, with and without absolute
values (their §3, Fig. 4 reports both, "ABS" and "No ABS"), or the structural similarity
(SSIM) of two heat maps. A separate ground-truth test,
``mask_mass_fraction``, asks how much of a map's mass |attribution| falls inside the true
object mask; a random map gets the mask's area fraction (``random_map_like`` gives that
baseline).

Nothing here touches its inputs: randomised models are deep copies, and the original model's
parameters, buffers and mode are left as they were.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from toykit.ranks import spearman
from toykit.runtime import make_generator
from toykit.validation import check_bool, check_tensor

__all__ = [
    "RandomizationTable",
    "cascading_randomization",
    "compare_attributions",
    "independent_randomization",
    "mask_area_fraction",
    "mask_mass_fraction",
    "random_map_like",
    "randomization_table",
    "randomize_layers",
    "shuffled_labels",
    "spearman_rank_correlation",
    "structural_similarity",
]

AttributionMethod = Callable[[torch.nn.Module, torch.Tensor, int | torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------- model randomisation


def _check_layer_names(model: object, layer_names: object) -> list[str]:
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(layer_names, str) or not isinstance(layer_names, Sequence) or not layer_names:
        raise TypeError(f"layer_names must be a non-empty list of sub-module names, got {layer_names!r}")
    names = dict(model.named_modules())
    for name in layer_names:
        if not isinstance(name, str) or name not in names:
            known = ", ".join(repr(n) for n in names if n)
            raise ValueError(f"layer_names: {name!r} is not a sub-module of model; its sub-modules are {known}")
        if not any(True for _ in names[name].parameters()):
            raise ValueError(f"layer_names: {name!r} has no parameters to randomise")
    if len(set(layer_names)) != len(layer_names):
        raise ValueError(f"layer_names must not repeat a name, got {list(layer_names)}")
    return list(layer_names)


def randomize_layers(model: torch.nn.Module, layer_names: Sequence[str], *, seed: int | None = None,
                     generator: torch.Generator | None = None) -> torch.nn.Module:
    """A deep copy of ``model`` with the parameters of the named sub-modules re-initialised.

    Each sub-module that defines ``reset_parameters`` (nn.Linear, nn.Conv2d, norms...) gets
    PyTorch's own default initialisation, the one an untrained model starts from, so the
    randomised layer looks like a layer before training. A parameter of a module without
    ``reset_parameters`` is redrawn from a normal distribution with its own mean and standard
    deviation. Randomness comes from ``seed`` or ``generator`` (one seed drawn per layer, in
    the order given). The original model is not touched, and the copy keeps its mode.
    """
    names = _check_layer_names(model, layer_names)
    gen = make_generator(seed, generator)
    randomized = copy.deepcopy(model)
    devices = sorted({p.device.index or 0 for p in randomized.parameters() if p.device.type == "cuda"})
    for name in names:
        layer = randomized.get_submodule(name)
        layer_seed = int(torch.randint(2**62, (1,), generator=gen).item())
        # fork_rng: reset_parameters draws from the global RNG; seed it here, restore it after
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(layer_seed)
            covered: set[int] = set()
            for module in layer.modules():
                reset = getattr(module, "reset_parameters", None)
                if callable(reset):
                    reset()
                    covered.update(id(p) for p in module.parameters(recurse=False))
            for p in layer.parameters():
                if id(p) not in covered:
                    std = p.std() if p.numel() > 1 else p.new_zeros(())
                    p.copy_(p.mean() + std * torch.randn(p.shape).to(p.device, p.dtype))
    return randomized


def cascading_randomization(model: torch.nn.Module, layer_names: Sequence[str], *, seed: int | None = None,
                            generator: torch.Generator | None = None) -> list[tuple[str, torch.nn.Module]]:
    """Cascading model-parameter randomisation (Adebayo et al. 2018, §3, Fig. 2).

    layer_names: sub-module names ordered from the output towards the input, e.g.
    ["fc", "conv.1", "conv.0"]. Returns one (name, model) pair per name: step k is a copy of
    ``model`` with layer_names[0..k] all re-initialised (``randomize_layers``), so the last
    step is fully randomised over the listed layers. A layer keeps the same random weights in
    every step where it is randomised. The original model is not touched.
    """
    names = _check_layer_names(model, layer_names)
    gen = make_generator(seed, generator)
    layer_seeds = torch.randint(2**62, (len(names),), generator=gen).tolist()
    steps = []
    randomized = model
    for name, layer_seed in zip(names, layer_seeds):
        # each step copies the previous one and randomises one more layer
        randomized = randomize_layers(randomized, [name], seed=layer_seed)
        steps.append((name, randomized))
    return steps


def independent_randomization(model: torch.nn.Module, layer_names: Sequence[str], *, seed: int | None = None,
                              generator: torch.Generator | None = None) -> list[tuple[str, torch.nn.Module]]:
    """Independent randomisation (Adebayo et al. 2018, §3): one copy per name with only that
    layer re-initialised, every other layer as trained. Returns [(name, model), ...]. The
    random weights of a layer are the same as in ``cascading_randomization`` with the same seed
    and names."""
    names = _check_layer_names(model, layer_names)
    gen = make_generator(seed, generator)
    layer_seeds = torch.randint(2**62, (len(names),), generator=gen).tolist()
    return [(name, randomize_layers(model, [name], seed=s)) for name, s in zip(names, layer_seeds)]


def shuffled_labels(labels: torch.Tensor, *, seed: int | None = None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """A random permutation of ``labels`` [n] for the data-randomisation test (Adebayo et al.
    2018, §4): a model trained on them can only memorise. Returns a new tensor; the class
    counts are unchanged."""
    check_tensor("labels", labels, ["n"])
    gen = make_generator(seed, generator)
    return labels[torch.randperm(labels.shape[0], generator=gen).to(labels.device)]


# ---------------------------------------------------------------- similarity of maps


def spearman_rank_correlation(a: torch.Tensor, b: torch.Tensor, *, absolute: bool = True) -> torch.Tensor:
    """Spearman rank correlation between two maps, per image: [batch].

    a, b: [batch, ...] of the same shape (e.g. [batch, channels, height, width] or heat maps
    [batch, height, width]); each image's entries are flattened. absolute=True compares |a|
    with |b| (Adebayo et al. 2018, §3, "rank correlation (ABS)": the sign of a gradient
    often flips while its importance does not); absolute=False compares the signed values.
    Ties get their average rank (as scipy.stats.spearmanr). An image whose map is constant has
    no ranking: its correlation is NaN.
    """
    check_tensor("a", a, dtype="float")
    check_tensor("b", b, list(a.shape), dtype="float")
    check_bool("absolute", absolute)
    if a.ndim < 2 or a[0].numel() < 2:
        raise ValueError(f"a and b must be [batch, ...] with at least 2 entries per image, got {list(a.shape)}")
    a, b = a.detach().flatten(1).double(), b.detach().flatten(1).double()
    if absolute:
        a, b = a.abs(), b.abs()
    return torch.tensor([spearman(row_a, row_b) for row_a, row_b in zip(a, b)])


def structural_similarity(a: torch.Tensor, b: torch.Tensor, *, window: int = 7) -> torch.Tensor:
    """Mean structural similarity (SSIM, Wang et al. 2004, Eq. 13) of two heat maps, per image: [batch].

    Adebayo et al. 2018 (§3, Fig. 4) report it beside the rank correlation. a, b: [batch,
    height, width] (e.g. ``attribution_heatmap``). Local means, variances and covariance are
    taken over every window × window square (sample covariance, no padding), with
    C1 = (0.01 L)², C2 = (0.03 L)² and L the range of values of the two maps together;
    the same conventions as scikit-image's ``structural_similarity`` with a uniform window.
    1 means identical maps; two maps of one constant value have no range: NaN.
    """
    dims = check_tensor("a", a, ["batch", "height", "width"], dtype="float")
    check_tensor("b", b, ["batch", "height", "width"], dtype="float", dims=dims)
    if not isinstance(window, int) or isinstance(window, bool) or window < 2 or window % 2 == 0:
        raise ValueError(f"window must be an odd int >= 3, got {window!r}")
    if window > min(dims["height"], dims["width"]):
        raise ValueError(f"window must fit in the maps ({dims['height']}×{dims['width']}), got {window}")
    x, y = a.detach().double()[:, None], b.detach().double()[:, None]
    both = torch.cat([x, y], 1).flatten(1)
    value_range = (both.max(1).values - both.min(1).values).view(-1, 1, 1, 1)
    c1, c2 = (0.01 * value_range) ** 2, (0.03 * value_range) ** 2

    def local_mean(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(t, window, stride=1)

    n = window * window
    mx, my = local_mean(x), local_mean(y)
    unbiased = n / (n - 1)  # sample (co)variances, as scikit-image
    vx = unbiased * (local_mean(x * x) - mx**2)
    vy = unbiased * (local_mean(y * y) - my**2)
    cxy = unbiased * (local_mean(x * y) - mx * my)
    ssim_map = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return ssim_map.flatten(1).mean(1).float()


def _heat(name: str, attributions: object, height: int, width: int, batch: int) -> torch.Tensor:
    """|attributions| summed over channels: [batch, height, width]."""
    if isinstance(attributions, torch.Tensor) and attributions.ndim == 3:
        check_tensor(name, attributions, [batch, height, width], dtype="float")
        return attributions.detach().abs()
    check_tensor(name, attributions, [batch, None, height, width], dtype="float")
    assert isinstance(attributions, torch.Tensor)
    return attributions.detach().abs().sum(1)


def mask_mass_fraction(attributions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The fraction of attribution mass inside the ground-truth mask, per image: [batch].

    Σ_{pixels in mask} |a| / Σ_{all pixels} |a|, with |a| summed over channels.
    attributions: [batch, channels, height, width] or [batch, height, width].
    mask: bool [batch, height, width]. A map spread at random scores the mask's area fraction
    (``mask_area_fraction``) on average; 1 means all the mass is on the object. An all-zero
    map has no mass: NaN.
    """
    check_tensor("mask", mask, ["batch", "height", "width"], dtype="bool")
    heat = _heat("attributions", attributions, mask.shape[1], mask.shape[2], mask.shape[0])
    inside = (heat * mask.to(heat.device)).flatten(1).sum(1)
    total = heat.flatten(1).sum(1)
    return inside / total


def mask_area_fraction(mask: torch.Tensor) -> torch.Tensor:
    """The fraction of pixels inside the mask, per image: [batch]. mask: bool [batch, height, width]."""
    check_tensor("mask", mask, ["batch", "height", "width"], dtype="bool")
    return mask.flatten(1).float().mean(1)


def random_map_like(attributions: torch.Tensor, *, seed: int | None = None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """A random attribution map of the same shape (standard normal, drawn on the CPU, returned
    on the input's device): the baseline a method must beat in ``mask_mass_fraction`` and
    ``spearman_rank_correlation``."""
    check_tensor("attributions", attributions, None, dtype="float")
    gen = make_generator(seed, generator)
    return torch.randn(attributions.shape, generator=gen).to(attributions.device, attributions.dtype)


# ---------------------------------------------------------------- comparing models' maps


def _check_method(name: str, method: object) -> AttributionMethod:
    if not callable(method):
        raise TypeError(f"{name} must be an attribution method, method(model, images, target) -> "
                        f"[batch, channels, height, width], got {type(method).__name__}")
    return method


def compare_attributions(method: AttributionMethod, model_a: torch.nn.Module, model_b: torch.nn.Module,
                         images: torch.Tensor, target: int | torch.Tensor) -> dict[str, torch.Tensor]:
    """Run one attribution method on two models and compare the maps, per image.

    For the data-randomisation test (Adebayo et al. 2018, §4: model_a trained on the true
    labels, model_b on ``shuffled_labels``) or any other pair. ``method`` is called as
    method(model, images, target); bind its settings first (functools.partial), with a fixed
    seed for a random method so that both models see the same noise.
    Returns {"spearman_abs": [batch], "spearman": [batch], "maps_a": ..., "maps_b": ...}.
    """
    method = _check_method("method", method)
    maps_a, maps_b = method(model_a, images, target), method(model_b, images, target)
    return {"spearman_abs": spearman_rank_correlation(maps_a, maps_b, absolute=True),
            "spearman": spearman_rank_correlation(maps_a, maps_b, absolute=False),
            "maps_a": maps_a, "maps_b": maps_b}


@dataclass
class RandomizationTable:
    """Similarity of each method's maps to the trained model's maps, step by step.

    steps: "trained", then the layer randomised at each step (cumulatively for the cascade).
    spearman_abs, spearman: method name -> [n_steps, batch] rank correlations with the
    trained model's maps (row 0 compares the trained model with itself: 1).
    """

    steps: list[str]
    spearman_abs: dict[str, torch.Tensor]
    spearman: dict[str, torch.Tensor]

    def rows(self) -> list[dict[str, object]]:
        """One row per (method, step): mean and standard deviation over images."""
        out: list[dict[str, object]] = []
        for method, values in self.spearman_abs.items():
            for k, step in enumerate(self.steps):
                out.append({"method": method, "step": step,
                            "spearman_abs": values[k].nanmean().item(), "spearman_abs_std": values[k].std().item(),
                            "spearman": self.spearman[method][k].nanmean().item()})
        return out


def randomization_table(methods: Mapping[str, AttributionMethod], model: torch.nn.Module, layer_names: Sequence[str],
                        images: torch.Tensor, target: int | torch.Tensor, *, cascading: bool = True,
                        seed: int | None = None, generator: torch.Generator | None = None) -> RandomizationTable:
    """Run each method through the model-parameter randomisation test (Adebayo et al. 2018, §3).

    methods: name -> method(model, images, target) (bind settings and seeds with
    functools.partial). layer_names: from the output towards the input. cascading=True
    randomises cumulatively (``cascading_randomization``), False one layer at a time
    (``independent_randomization``). A method whose maps stay highly correlated after the
    weights are randomised does not depend on what the model learnt.
    """
    if not isinstance(methods, Mapping) or not methods:
        raise TypeError(f"methods must be a non-empty dict of name -> attribution method, got {methods!r}")
    for name, method in methods.items():
        _check_method(f"methods[{name!r}]", method)
    check_bool("cascading", cascading)
    randomize = cascading_randomization if cascading else independent_randomization
    steps = [("trained", model)] + randomize(model, layer_names, seed=seed, generator=generator)
    spearman_abs, spearman = {}, {}
    for name, method in methods.items():
        reference = method(model, images, target)
        maps = [reference] + [method(step_model, images, target) for _, step_model in steps[1:]]
        spearman_abs[name] = torch.stack([spearman_rank_correlation(reference, m, absolute=True) for m in maps])
        spearman[name] = torch.stack([spearman_rank_correlation(reference, m, absolute=False) for m in maps])
    return RandomizationTable([name for name, _ in steps], spearman_abs, spearman)
