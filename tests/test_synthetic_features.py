"""The synthetic benchmark of Sharkey et al.: a known dictionary, sparse non-negative
coefficients with decaying probabilities, optional correlations; seeded."""

import pytest
import torch

from toykit.tasks.synthetic_features import SyntheticFeatures


def test_dictionary_probabilities_and_data():
    bench = SyntheticFeatures(d=10, n_true=30, avg_active=3.0, probability_decay=0.95, seed=0)
    assert bench.features.shape == (30, 10)
    assert torch.allclose(bench.features.norm(dim=1), torch.ones(30))
    p = bench.probabilities
    assert p.sum().item() == pytest.approx(3.0, rel=1e-4)
    assert torch.allclose(p[1:] / p[:-1], torch.full((29,), 0.95), rtol=1e-4)
    x, c = bench.sample(40_000, seed=1)
    assert x.shape == (40_000, 10) and c.shape == (40_000, 30)
    assert torch.allclose(x, c @ bench.features)
    assert (c >= 0).all() and (c <= 1).all()
    assert torch.allclose((c > 0).float().mean(0), p, atol=0.01)
    assert (c > 0).float().sum(1).mean().item() == pytest.approx(3.0, abs=0.05)
    present = c[c > 0]
    assert present.mean().item() == pytest.approx(0.5, abs=0.01)  # uniform on [0, 1]


def test_probabilities_are_capped_at_one():
    bench = SyntheticFeatures(d=4, n_true=5, avg_active=4.5, probability_decay=0.5, seed=0)
    assert bench.probabilities.max().item() == pytest.approx(1.0)
    assert bench.probabilities.sum().item() == pytest.approx(4.5, rel=1e-4)


def test_seeded():
    a, b = SyntheticFeatures(d=6, n_true=9, seed=3), SyntheticFeatures(d=6, n_true=9, seed=3)
    assert torch.equal(a.features, b.features)
    assert torch.equal(a.sample(50, seed=1)[0], b.sample(50, seed=1)[0])
    assert not torch.equal(a.sample(50, seed=1)[0], a.sample(50, seed=2)[0])
    assert not torch.equal(a.features, SyntheticFeatures(d=6, n_true=9, seed=4).features)


def test_correlation_keeps_marginals_and_adds_co_occurrence():
    kwargs = dict(d=8, n_true=16, avg_active=3.0, probability_decay=1.0, seed=0)
    independent = SyntheticFeatures(**kwargs, correlation=0.0).sample(50_000, seed=1)[1] > 0
    correlated = SyntheticFeatures(**kwargs, correlation=0.8).sample(50_000, seed=1)[1] > 0
    for on in (independent, correlated):
        assert torch.allclose(on.float().mean(0), torch.full((16,), 3 / 16), atol=0.01)

    def max_abs_corr(on):
        corr = torch.corrcoef(on.float().T)
        return (corr - torch.eye(16)).abs().max().item()

    assert max_abs_corr(independent) < 0.03
    assert max_abs_corr(correlated) > 0.2


def test_batch_fn_and_errors():
    bench = SyntheticFeatures(d=4, n_true=6, seed=0)
    fn = bench.batch_fn(32)
    assert fn(0, torch.Generator().manual_seed(0)).shape == (32, 4)
    for kwargs, message in [(dict(avg_active=10.0), "avg_active"), (dict(probability_decay=1.5), "probability_decay"),
                            (dict(correlation=1.0), "correlation"), (dict(seed=-1), "seed")]:
        with pytest.raises(ValueError, match=message):
            SyntheticFeatures(d=4, n_true=6, **kwargs)
    with pytest.raises(ValueError, match="seed or generator"):
        bench.sample(3, seed=1, generator=torch.Generator())
