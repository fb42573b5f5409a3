import pytest
import torch
from vision_helpers import render_lines

from toykit.image_statistics import (
    frequency_grid,
    high_frequency_fraction,
    power_spectrum,
    spectral_orientation,
    total_variation,
)


def _smooth_and_rough(seed=0):
    g = torch.Generator().manual_seed(seed)
    rows = torch.linspace(0, 1, 32)
    smooth = (rows[:, None] + rows[None, :]).expand(1, 1, 32, 32) / 2
    rough = torch.rand(1, 1, 32, 32, generator=g)
    checker = ((torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2).float().expand(1, 1, 32, 32)
    return torch.cat([smooth, rough, checker])


def test_high_frequency_fraction_orders_smooth_noise_and_checkerboard():
    images = _smooth_and_rough()
    before = images.clone()
    smooth, noise, checker = high_frequency_fraction(images).tolist()
    assert smooth < 0.01
    # white noise spreads its power evenly: the share above 0.25 cycles/pixel is the share of
    # the frequency square outside the disc of radius 0.25, 1 - π/16 ≈ 0.80
    assert noise == pytest.approx(1 - torch.pi / 16, abs=0.08)
    assert checker > 0.99
    assert high_frequency_fraction(torch.full((1, 1, 8, 8), 0.3)).item() == 0.0
    assert torch.equal(images, before)


def test_total_variation_by_hand():
    image = torch.tensor([[0.0, 1.0], [1.0, 3.0]])[None, None]
    # vertical differences 1 and 2, horizontal 1 and 2: mean 1.5 each
    assert total_variation(image).item() == pytest.approx(1.5)
    smooth, noise, checker = total_variation(_smooth_and_rough()).tolist()
    assert smooth < noise < checker == 1.0


def test_power_spectrum_has_no_constant_term_and_matches_the_grid():
    images = _smooth_and_rough()
    power = power_spectrum(images + 5.0)
    assert power.shape == (3, 32, 32)
    assert (power[:, 0, 0] == 0).all()
    assert torch.allclose(power, power_spectrum(images), atol=1e-3)
    fy, fx = frequency_grid(4, 6)
    assert fy[:, 0].tolist() == [0.0, 0.25, -0.5, -0.25] and fx[0, 1].item() == pytest.approx(1 / 6)


def test_spectral_orientation_reads_the_angle_of_rendered_lines():
    angles = torch.arange(0.0, 180.0, 15.0)
    images = torch.cat([render_lines(a.item(), 1, seed=i) for i, a in enumerate(angles)])
    found = spectral_orientation(images)
    error = ((found.preferred - angles + 90) % 180 - 90).abs()
    assert error.max() < 2.0, error
    noise = spectral_orientation(torch.rand(8, 1, 32, 32, generator=torch.Generator().manual_seed(0)))
    # a line concentrates its power along one orientation; noise spreads it over all
    assert found.circular_variance.max() < 0.2 < 0.8 < noise.circular_variance.min()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="cutoff"):
        high_frequency_fraction(torch.rand(1, 1, 8, 8), cutoff=0.7)
    with pytest.raises(ValueError, match="images"):
        high_frequency_fraction(torch.rand(8, 8))
    with pytest.raises(ValueError, match="images"):
        total_variation(torch.rand(1, 1, 1, 8))
    with pytest.raises(TypeError, match="window"):
        power_spectrum(torch.rand(1, 1, 8, 8), window=1)
