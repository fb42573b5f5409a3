"""toykit.metrics.normalize_metric: the one normalised metric behind patching, faithfulness and loss recovered."""

import pytest
import torch

from toykit.metrics import normalize_metric


def test_end_points_and_tensors():
    assert normalize_metric(2.0, baseline=2.0, target=7.0) == pytest.approx(0.0)
    assert normalize_metric(7.0, baseline=2.0, target=7.0) == pytest.approx(1.0)
    assert normalize_metric(12.0, baseline=2.0, target=7.0) == pytest.approx(2.0)  # over-shoot is kept, not clipped
    v = torch.tensor([[-1.0, 0.5], [2.0, 3.0]])
    torch.testing.assert_close(normalize_metric(v, baseline=torch.tensor(-1.0), target=3.0), (v + 1) / 4)
    # Loss recovered is the same ratio: baseline the ablated loss, target the clean loss.
    assert normalize_metric(3.0, baseline=5.0, target=2.5) == pytest.approx(0.8)


def test_errors():
    with pytest.raises(TypeError):
        normalize_metric(1.0, 0.0, 2.0)
    with pytest.raises(ValueError, match="equal"):
        normalize_metric(1.0, baseline=2.0, target=2.0)
    with pytest.raises(ValueError, match="1-element"):
        normalize_metric(1.0, baseline=torch.zeros(2), target=1.0)
    with pytest.raises(TypeError, match="baseline"):
        normalize_metric(1.0, baseline="0", target=1.0)
