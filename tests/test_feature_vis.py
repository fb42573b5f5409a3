import pytest
import torch
from vision_helpers import TinyCNN, line_detector_net

from toykit.feature_vis import channel_objective, fourier_scale, gradient_ascent_step, visualise_feature
from toykit.image_statistics import high_frequency_fraction, spectral_orientation, total_variation
from toykit.runtime import make_generator
from toykit.unit_activations import channel_response, read_activation

NAIVE = {"fourier": False, "jitter": 0, "scale": None, "rotate": 0.0}
FAST = {"cpu_threads": 1}  # tiny convolutions: one thread avoids contention on a busy machine


def _angle_error(a, b):
    return abs((a - b + 90) % 180 - 90)


def _noise(n=64):
    return torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("true_angle", [30.0, 100.0])
@pytest.mark.parametrize("naive", [True, False])
def test_the_image_that_excites_a_line_detector_has_its_orientation(true_angle, naive):
    model = line_detector_net(true_angle)
    result = visualise_feature(model, "conv.0.hook_post", 0, steps=96, seed=0, **FAST, **(NAIVE if naive else {}))
    found = spectral_orientation(result.images)
    # measured: errors of 2.7° (30°, naive), 1.7° (30°), 6.2° (100°, naive), 5.3° (100°)
    assert _angle_error(found.preferred.item(), true_angle) < 10.0
    # baseline: noise has no orientation to speak of, the optimised image a clear one
    assert found.circular_variance.item() < 0.5 < 0.8 < spectral_orientation(_noise(8)).circular_variance.min()
    with torch.no_grad():
        noise_response = channel_response(read_activation(model, _noise(), "conv.0.hook_post"), 0).max()
    assert result.activation.item() > 2 * noise_response


def test_regularised_images_have_less_high_frequency_power_at_a_comparable_activation():
    model = TinyCNN(0)
    naive = visualise_feature(model, "conv.1.hook_post", 3, steps=128, seed=0, **FAST, **NAIVE)
    regularised = visualise_feature(model, "conv.1.hook_post", 3, steps=128, seed=0, **FAST)
    hf_naive = high_frequency_fraction(naive.images).item()
    hf_regularised = high_frequency_fraction(regularised.images).item()
    # measured: 0.90 naive against 0.67 regularised, activations 0.247 against 0.199
    assert hf_regularised < hf_naive - 0.15
    assert regularised.activation.item() > 0.7 * naive.activation.item()
    # baseline: uniform noise images, as rough as the naive image, excite the channel less
    with torch.no_grad():
        noise = channel_response(read_activation(model, _noise(), "conv.1.hook_post"), 3).mean().item()
    assert regularised.activation.item() > 1.25 * noise and naive.activation.item() > 1.5 * noise


def test_the_total_variation_penalty_smooths_the_image():
    model = TinyCNN(0)
    plain = visualise_feature(model, "conv.1.hook_post", 3, steps=64, seed=0, **FAST, **NAIVE)
    smoothed = visualise_feature(model, "conv.1.hook_post", 3, steps=64, seed=0, tv_weight=1.0, **FAST, **NAIVE)
    assert total_variation(smoothed.images).item() < 0.5 * total_variation(plain.images).item()


def test_results_are_deterministic_from_the_seed_and_shaped_as_documented():
    model = TinyCNN(0)
    kwargs = dict(steps=20, n_images=2, image_shape=(1, 24, 20), value_range=(-1.0, 2.0), cpu_threads=1)
    first = visualise_feature(model, "conv.1.hook_pre", 5, seed=3, **kwargs)
    again = visualise_feature(model, "conv.1.hook_pre", 5, seed=3, **kwargs)
    from_generator = visualise_feature(model, "conv.1.hook_pre", 5, generator=make_generator(3), **kwargs)
    other = visualise_feature(model, "conv.1.hook_pre", 5, seed=4, **kwargs)
    assert torch.equal(first.images, again.images) and torch.equal(first.trace, again.trace)
    assert torch.equal(first.images, from_generator.images)
    assert not torch.equal(first.images, other.images)
    assert not torch.equal(first.images[0], first.images[1])
    assert first.images.shape == (2, 1, 24, 20) and first.trace.shape == (20, 2) and first.activation.shape == (2,)
    assert first.images.min() >= -1.0 and first.images.max() <= 2.0
    assert (first.activation > first.trace[0]).all()  # the optimiser climbed
    unit = visualise_feature(model, "hook_logits", 1, steps=20, seed=0, **FAST)  # a dense unit
    assert unit.activation.shape == (1,)
    centre = visualise_feature(model, "conv.1.hook_post", 0, where="centre", steps=5, seed=0, **FAST)
    assert centre.images.shape == (1, 1, 32, 32)


def test_images_follow_the_models_dtype():
    model = TinyCNN(0).double()
    result = visualise_feature(model, "conv.1.hook_post", 0, steps=3, seed=0, **FAST)
    assert result.images.dtype == torch.float64 and result.activation.dtype == torch.float64


def test_the_model_is_left_as_it_was_even_after_an_error():
    model = TinyCNN(0)
    model.train()
    model.conv[1].conv.bias.requires_grad_(False)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    with torch.no_grad():  # a caller's no_grad block does not stop the optimisation
        result = visualise_feature(model, "conv.1.hook_post", 2, steps=10, seed=0, **FAST)
    assert torch.isfinite(result.images).all()
    assert model.seen_training and not any(model.seen_training)  # ran in eval mode
    assert model.training
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert not any(hp.has_hooks for hp in model.hook_points())
    model.boom = True
    with pytest.raises(RuntimeError, match="boom"):
        visualise_feature(model, "conv.1.hook_post", 2, steps=10, seed=0, **FAST)
    assert model.training and not any(hp.has_hooks for hp in model.hook_points())
    assert all(p.grad is None for p in model.parameters())
    model.boom = False
    with pytest.raises(ValueError, match="channel"):
        visualise_feature(model, "conv.1.hook_post", 8, steps=10, seed=0, **FAST)
    assert model.training and not any(hp.has_hooks for hp in model.hook_points())


def test_fourier_scale():
    scale = fourier_scale(8, 6)
    assert scale.shape == (8, 4)
    assert scale[0, 0] == pytest.approx(8.0)  # the floor 1 / max(h, w) at the constant term
    assert scale[0, 3] == pytest.approx(2.0)  # 0.5 cycles per pixel
    assert torch.equal(fourier_scale(8, 6, decay_power=0), torch.ones(8, 4))


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"image_shape": (1, 32)}, "image_shape"),
    ({"image_shape": (1, 32, 0)}, "image_shape"),
    ({"n_images": 0}, "n_images"),
    ({"steps": 0}, "steps"),
    ({"lr": 0.0}, "lr"),
    ({"fourier": 1}, "fourier"),
    ({"jitter": -1}, "jitter"),
    ({"scale": (0.0, 1.0)}, "scale"),
    ({"scale": (1.1, 0.9)}, "scale"),
    ({"rotate": -5.0}, "rotate"),
    ({"tv_weight": -1.0}, "tv_weight"),
    ({"value_range": (1.0, 0.0)}, "value_range"),
    ({"decay_power": -1.0}, "decay_power"),
    ({"where": "median"}, "where"),
    ({"seed": 0, "generator": torch.Generator()}, "seed"),
    ({"cpu_threads": 0}, "cpu_threads"),
])
def test_bad_arguments_are_named(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name):
        visualise_feature(TinyCNN(0), "conv.0.hook_post", 0, steps=2, **kwargs)


def test_bad_model_and_hook_are_named():
    with pytest.raises(TypeError, match="model"):
        visualise_feature(torch.nn.Conv2d(1, 1, 3), "conv.0.hook_post", 0)
    with pytest.raises(KeyError, match="conv.0.hook_post"):
        visualise_feature(TinyCNN(0), "conv.0.hook_pst", 0)


def test_channel_objective_is_the_channels_mean_response_and_carries_gradients():
    model = TinyCNN(0)
    images = _noise(4).requires_grad_(True)
    objective = channel_objective(model, images, "conv.1.hook_post", 5)
    _, cache = model.run_with_cache(images.detach())
    assert torch.allclose(objective.detach(), cache["conv.1.hook_post"][:, 5].mean(dim=(-2, -1)))
    assert objective.shape == (4,) and objective.requires_grad
    centre = channel_objective(model, images.detach(), "conv.1.hook_post", 5, where="centre")
    assert torch.equal(centre, cache["conv.1.hook_post"][:, 5, 8, 8])


def test_one_ascent_step_raises_the_objective_and_leaves_everything_else_alone():
    model = TinyCNN(0)
    model.train()
    images = _noise(3) * 0.5 + 0.25  # inside (0, 1): a small step is not clipped
    before = images.clone()
    stepped = gradient_ascent_step(model, images, "conv.1.hook_post", 2, lr=0.05)
    with torch.no_grad():
        gain = channel_objective(model, stepped, "conv.1.hook_post", 2) - channel_objective(
            model, images, "conv.1.hook_post", 2)
    assert (gain > 0).all()  # baseline: a step of the same size against the gradient lowers it
    x = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(channel_objective(model, x, "conv.1.hook_post", 2).sum(), [x])
    assert torch.allclose(stepped, (images + 0.05 * grad).clamp(0, 1))
    with torch.no_grad():
        down = channel_objective(model, (images - 0.05 * grad).clamp(0, 1), "conv.1.hook_post", 2)
    assert (down < channel_objective(model, images, "conv.1.hook_post", 2).detach()).all()
    assert torch.equal(images, before) and not images.requires_grad
    assert model.training and all(p.grad is None for p in model.parameters())
    big = gradient_ascent_step(model, images, "conv.1.hook_post", 2, lr=1e4, value_range=(0.1, 0.9))
    assert big.min() >= 0.1 and big.max() <= 0.9
    assert ((big == 0.1) | (big == 0.9))[grad.abs() > 1e-3].all() and torch.equal(big[grad == 0], images[grad == 0])
    with pytest.raises(ValueError, match="lr"):
        gradient_ascent_step(model, images, "conv.1.hook_post", 2, lr=0.0)
    with pytest.raises(ValueError, match="value_range"):
        gradient_ascent_step(model, images, "conv.1.hook_post", 2, lr=0.1, value_range=(1.0, 0.0))
