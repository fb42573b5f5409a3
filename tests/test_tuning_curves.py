import pytest
import torch
from vision_helpers import TinyCNN, line_detector_net, render_lines

from toykit.tuning_curves import preferred_orientation, tuning_curves

ANGLES = torch.arange(0.0, 180.0, 15.0)


def _stimuli(n=16):
    """[n_conditions, n, 1, 32, 32]: lines at each of ANGLES, at random offsets."""
    return torch.stack([render_lines(a.item(), n, seed=i) for i, a in enumerate(ANGLES)])


@pytest.mark.parametrize("true_angle", [0.0, 30.0, 75.0, 100.0, 165.0])
def test_the_hand_set_line_detector_prefers_its_orientation(true_angle):
    model = line_detector_net(true_angle)
    curves = tuning_curves(model, "conv.0.hook_post", _stimuli())
    assert curves.shape == (len(ANGLES), 4)
    tuning = preferred_orientation(ANGLES, curves)
    error = abs((tuning.preferred[0].item() - true_angle + 90) % 180 - 90)
    assert error < 5.0, (true_angle, tuning.preferred[0].item())
    # baseline: the three random 7×7 filters of the same layer are far less selective
    assert tuning.circular_variance[0] < tuning.circular_variance[1:].min() - 0.2
    assert tuning.selectivity[0] == pytest.approx(1 - tuning.circular_variance[0].item())


def test_tuning_curves_take_uneven_conditions_and_leave_model_and_inputs_alone():
    model = line_detector_net(30.0)
    model.train()
    stimuli = _stimuli(6)
    before = stimuli.clone()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    as_tensor = tuning_curves(model, "conv.0.hook_pre", stimuli, where="mean", batch_size=4)
    assert model.training and not any(model.seen_training)  # measured in eval mode, then restored
    as_list = tuning_curves(model, "conv.0.hook_pre", [s[: 3 + i % 3] for i, s in enumerate(stimuli)], where="mean")
    with torch.no_grad():
        model.eval()
        by_hand = torch.stack([model.run_with_cache(s)[1]["conv.0.hook_pre"].mean(dim=(0, 2, 3)) for s in stimuli])
        model.train()
        model.seen_training.clear()
    assert torch.allclose(as_tensor, by_hand, atol=1e-5)
    assert torch.allclose(as_list[1], tuning_curves(model, "conv.0.hook_pre", stimuli[1:2, :4], where="mean")[0])
    assert torch.equal(stimuli, before)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert not any(hp.has_hooks for hp in model.hook_points())
    dense = tuning_curves(model, "hook_logits", stimuli)
    assert dense.shape == (len(ANGLES), 3)


def test_preferred_orientation_wraps_around_180_degrees():
    angles = torch.tensor([0.0, 10.0, 90.0, 170.0])
    tuning = preferred_orientation(angles, torch.tensor([1.0, 0.5, 0.0, 0.5]))
    # 170° is -10°: the votes at ±10° cancel sideways and leave 0°, not the linear mean 87.5°
    assert min(tuning.preferred.item(), 180 - tuning.preferred.item()) < 1e-4
    flat = preferred_orientation(ANGLES, torch.ones(len(ANGLES)))
    assert flat.circular_variance.item() == pytest.approx(1.0, abs=1e-6)
    silent = preferred_orientation(ANGLES, torch.zeros(len(ANGLES), 2))
    assert silent.preferred.isnan().all() and (silent.circular_variance == 1).all()
    # the same tuning sampled at angles 180° apart is the same tuning
    responses = torch.rand(len(ANGLES), 3, generator=torch.Generator().manual_seed(0))
    shifted = preferred_orientation(ANGLES + 180, responses)
    plain = preferred_orientation(ANGLES, responses)
    assert torch.allclose(shifted.preferred, plain.preferred, atol=1e-3)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="responses"):
        preferred_orientation(ANGLES, -torch.ones(len(ANGLES)))
    with pytest.raises(ValueError, match="angles"):
        preferred_orientation(ANGLES[:3], torch.ones(len(ANGLES)))
    with pytest.raises(ValueError, match="responses"):
        preferred_orientation([], torch.ones(0))
    model = TinyCNN(0)
    with pytest.raises(ValueError, match="images_by_condition"):
        tuning_curves(model, "conv.0.hook_post", torch.rand(3, 1, 32, 32))
    with pytest.raises(ValueError, match="images_by_condition"):
        tuning_curves(model, "conv.0.hook_post", [torch.rand(2, 1, 32, 32), torch.rand(2, 1, 16, 16)])
    with pytest.raises(TypeError, match="images_by_condition"):
        tuning_curves(model, "conv.0.hook_post", "lines")
    with pytest.raises(ValueError, match="where"):
        tuning_curves(model, "conv.0.hook_post", _stimuli(1), where="median")
    with pytest.raises(ValueError, match="batch_size"):
        tuning_curves(model, "conv.0.hook_post", _stimuli(1), batch_size=0)
    with pytest.raises(KeyError, match="conv.0.hook_post"):
        tuning_curves(model, "conv.0.hook_pst", _stimuli(1))
