import pytest
import torch
import torch.nn as nn
from vision_helpers import TinyCNN, line_detector_net, render_lines

from toykit.dataset_examples import ReceptiveField, layers_before, receptive_field, top_k_examples


def _line_data(n_per_angle=4):
    """Lines at 0°, 10°, ..., 170°, n_per_angle each: images [18 n, 1, 32, 32] and angles [18 n]."""
    angles = torch.arange(0.0, 180.0, 10.0)
    images = torch.cat([render_lines(a.item(), n_per_angle, seed=i) for i, a in enumerate(angles)])
    return images, angles.repeat_interleave(n_per_angle)


def _angle_error(a, b):
    return ((a - b + 90) % 180 - 90).abs()


def test_receptive_field_of_the_tiny_cnn_matches_its_gradient_support():
    model = TinyCNN(0)
    images = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    layers = layers_before(model, "conv.1.hook_pre", images)
    # running order, although the pool was registered after both convs
    assert layers == [model.conv[0].conv, model.pool, model.conv[1].conv]
    field = receptive_field(layers)
    assert field == ReceptiveField(size=12, stride=2, padding=5)
    # the pixels that move unit (y, x) of conv.1 lie inside its box, and fill it
    for y, x in [(0, 0), (7, 9), (15, 15)]:
        image = images.clone().requires_grad_(True)
        acts = model.conv[1].conv(model.pool(model.conv[0](image)))
        (grad,) = torch.autograd.grad(acts[0, 0, y, x], image)
        rows, cols = grad[0, 0].abs().gt(0).nonzero().unbind(1)
        top, left, bottom, right = field.box(y, x)
        assert rows.min() >= max(top, 0) and rows.max() < min(bottom, 32)
        assert cols.min() >= max(left, 0) and cols.max() < min(right, 32)
        if (y, x) == (7, 9):  # away from the border the support spans nearly the whole box
            assert rows.max() - rows.min() >= field.size - 2


def test_receptive_field_by_hand_and_from_modules():
    assert receptive_field([]) == ReceptiveField(1, 1, 0)
    assert receptive_field([(3, 1, 1)] * 3) == ReceptiveField(7, 1, 3)
    dilated = nn.Conv2d(1, 1, 3, dilation=2, padding=2)
    assert receptive_field([dilated]) == ReceptiveField(5, 1, 2)
    assert receptive_field([nn.AvgPool2d(2), nn.Conv2d(1, 1, 3, stride=2)]) == ReceptiveField(6, 4, 0)
    assert ReceptiveField(12, 2, 5).box(3, 4) == (1, 3, 13, 15)


def test_top_k_examples_find_lines_at_the_detectors_orientation():
    model = line_detector_net(30.0)
    images, angles = _line_data()
    before = images.clone()
    model.train()
    found = top_k_examples(model, images, "conv.0.hook_post", 0, k=8, batch_size=20)
    assert model.training and not any(model.seen_training)
    assert torch.equal(images, before)
    assert (found.activations[:-1] >= found.activations[1:]).all()
    assert torch.equal(found.images, images[found.indices])
    assert _angle_error(angles[found.indices], 30.0).max() <= 10.0
    # baseline: the 8 weakest examples are far from 30°; random picks would sit about 45° off
    weakest = top_k_examples(model, images, "conv.0.hook_post", 0, k=len(images)).indices[-8:]
    assert _angle_error(angles[weakest], 30.0).mean() > 30.0
    # conv.0 keeps the image's 32 × 32 grid: the crop is the 7 × 7 patch around the best unit
    assert found.crops is not None and found.positions is not None
    assert found.crops.shape == (8, 1, 7, 7)
    for crop, image, (y, x) in zip(found.crops, found.images, found.positions.tolist()):
        padded = nn.functional.pad(image, (3, 3, 3, 3))
        assert torch.equal(crop, padded[:, y:y + 7, x:x + 7])
        assert crop[0, 3, 3] > 0.5  # the best unit sits on the line


def test_top_k_examples_of_a_dense_unit_and_ties():
    model = TinyCNN(0)
    images = torch.rand(10, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    found = top_k_examples(model, images, "hook_logits", 2, k=3)
    with torch.no_grad():
        logits = model(images)[:, 2]
    assert torch.equal(found.indices, logits.argsort(descending=True)[:3])
    assert found.positions is None and found.crops is None
    same = top_k_examples(model, images[:1].expand(4, -1, -1, -1), "conv.1.hook_post", 0, k=4)
    assert same.indices.tolist() == [0, 1, 2, 3]
    assert same.crops is not None and same.crops.shape == (4, 1, 12, 12)
    assert not any(hp.has_hooks for hp in model.hook_points())


def test_a_layer_that_is_not_a_module_is_caught():
    class FunctionalPool(TinyCNN):
        def forward(self, x):
            x = nn.functional.max_pool2d(self.conv[0](x), 2)
            return self.hook_logits(self.readout(self.conv[1](x).mean(dim=(-2, -1))))

    model = FunctionalPool(0)
    images = torch.rand(3, 1, 32, 32)
    with pytest.raises(ValueError, match="receptive_field yourself"):
        top_k_examples(model, images, "conv.1.hook_post", 0, k=2)
    given = top_k_examples(model, images, "conv.1.hook_post", 0, k=2, field=ReceptiveField(12, 2, 5))
    assert given.crops is not None and given.crops.shape == (2, 1, 12, 12)
    assert all(not hp.has_hooks for hp in model.hook_points())
    assert not any(m._forward_hooks for m in model.modules())


def test_bad_arguments_are_named():
    model, images = TinyCNN(0), torch.rand(5, 1, 32, 32)
    with pytest.raises(ValueError, match="k must be at most"):
        top_k_examples(model, images, "conv.0.hook_post", 0, k=6)
    with pytest.raises(ValueError, match="channel"):
        top_k_examples(model, images, "conv.0.hook_post", 4, k=2)
    with pytest.raises(ValueError, match="channel"):
        top_k_examples(model, images, "conv.0.hook_post", -1, k=2)
    with pytest.raises(ValueError, match="images"):
        top_k_examples(model, images[0], "conv.0.hook_post", 0, k=2)
    with pytest.raises(TypeError, match="field"):
        top_k_examples(model, images, "conv.0.hook_post", 0, k=2, field=(7, 1, 3))
    with pytest.raises(TypeError, match=r"layers\[1\]"):
        receptive_field([(3, 1, 1), (0, 1, 1)])
    with pytest.raises(ValueError, match="stride"):
        receptive_field([nn.Conv2d(1, 1, 3, stride=(1, 2))])
    with pytest.raises(TypeError, match="layers"):
        receptive_field(nn.Conv2d(1, 1, 3))
