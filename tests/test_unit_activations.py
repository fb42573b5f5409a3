import pytest
import torch
from vision_helpers import TinyCNN

from toykit.hooks import HookedRootModule, HookPoint
from toykit.unit_activations import channel_response, read_activation, spatial_reduce


def _images(n=3, seed=0):
    return torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(seed))


def _no_hooks(model):
    return not any(hp.has_hooks for hp in model.hook_points())


def test_read_activation_matches_the_cache_and_stops_at_the_hook():
    model, images = TinyCNN(0), _images()
    _, cache = model.run_with_cache(images)
    later = []
    model.add_hook("hook_logits", lambda act, hook: later.append(1), is_permanent=True)
    with torch.no_grad():
        acts = read_activation(model, images, "conv.0.hook_post")
    assert torch.equal(acts, cache["conv.0.hook_post"])
    assert acts.shape == (3, 4, 32, 32)
    assert later == []  # the layers after conv.0 never ran
    model.reset_hooks(including_permanent=True)
    assert _no_hooks(model)


def test_read_activation_keeps_the_graph_for_gradients():
    model, images = TinyCNN(0), _images().requires_grad_(True)
    acts = read_activation(model, images, "conv.1.hook_pre")
    (grad,) = torch.autograd.grad(acts[:, 2].sum(), images)
    assert grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_read_activation_removes_its_hook_after_an_error_and_when_the_hook_never_fires():
    model = TinyCNN(0)
    model.boom = True
    with pytest.raises(RuntimeError, match="boom"):
        read_activation(model, _images(), "conv.0.hook_post")
    assert _no_hooks(model)

    class Unused(HookedRootModule):
        def __init__(self):
            super().__init__()
            self.hook_never = HookPoint()
            self.setup()

        def forward(self, x):
            return x

    unused = Unused()
    with pytest.raises(RuntimeError, match="did not fire"):
        read_activation(unused, _images(), "hook_never")
    assert _no_hooks(unused)


def test_read_activation_rejects_bad_arguments():
    model = TinyCNN(0)
    with pytest.raises(KeyError, match="conv.0.hook_post"):
        read_activation(model, _images(), "conv.0.hook_pst")
    with pytest.raises(ValueError, match="images"):
        read_activation(model, torch.rand(32, 32), "conv.0.hook_post")
    with pytest.raises(TypeError, match="model"):
        read_activation(torch.nn.Conv2d(1, 1, 3), _images(), "conv.0.hook_post")


def test_spatial_reduce_and_channel_response():
    acts = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    before = acts.clone()
    assert torch.equal(spatial_reduce(acts, "mean"), acts.mean(dim=(2, 3)))
    assert torch.equal(spatial_reduce(acts, "max"), acts[:, :, 3, 4])
    assert torch.equal(spatial_reduce(acts, "centre"), acts[:, :, 2, 2])
    assert torch.equal(spatial_reduce(acts, (1, -1)), acts[:, :, 1, 4])
    assert torch.equal(channel_response(acts, 2, "max"), acts[:, 2, 3, 4])
    dense = torch.rand(2, 6)
    assert torch.equal(channel_response(dense, 5), dense[:, 5])
    assert torch.equal(acts, before)


@pytest.mark.parametrize("where", ["median", (1,), (1.0, 2), None])
def test_spatial_reduce_rejects_a_bad_where(where):
    with pytest.raises(ValueError, match="where"):
        spatial_reduce(torch.rand(2, 3, 4, 4), where)


def test_bad_positions_and_channels_are_named():
    with pytest.raises(ValueError, match="where"):
        spatial_reduce(torch.rand(2, 3, 4, 4), (4, 0))
    with pytest.raises(ValueError, match="where"):
        spatial_reduce(torch.rand(2, 3), (0, 0))
    with pytest.raises(ValueError, match="acts"):
        spatial_reduce(torch.rand(2, 3, 4), "mean")
    for channel in (3, -1, 1.0, True):
        with pytest.raises(ValueError, match="channel"):
            channel_response(torch.rand(2, 3, 4, 4), channel)
