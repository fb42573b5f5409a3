"""toykit.sae.training: the trainer recovers a planted dictionary, tracks and resamples dead
latents, normalises activations and folds the scale back, and is reproducible."""

import pytest
import torch

from toykit.sae import make_sae
from toykit.sae.metrics import evaluate_sae, mmcs
from toykit.sae.training import activation_scale, reinitialise_latents, resample_dead_latents, train_sae
from toykit.tasks.synthetic_features import SyntheticFeatures

KEYS = {"step", "loss", "mse", "l0", "explained_variance", "dead_fraction", "lr", "sparsity_coefficient",
        "resample_step", "n_resampled", "activation_scale"}


@pytest.fixture(scope="module")
def bench():
    return SyntheticFeatures(d=8, n_true=12, avg_active=2, probability_decay=1.0, seed=0)


@pytest.fixture(scope="module")
def data(bench):
    return bench.sample(8192, seed=1)[0] * 5.0  # an arbitrary scale, which normalisation removes


@pytest.mark.parametrize("architecture, kwargs, coefficient, target", [
    ("standard", {}, 1.0, 0.95),
    ("topk", {"k": 2}, 0.0, 0.95),
])
def test_recovers_a_planted_dictionary(bench, data, architecture, kwargs, coefficient, target):
    sae = make_sae(d_in=8, d_sae=24, architecture=architecture, device="cpu", **kwargs)
    history = train_sae(sae, data, steps=300, batch_size=256, lr=1e-2, sparsity_coefficient=coefficient,
                        progress=False, device="cpu", cpu_threads=1)
    assert set(history) == KEYS
    assert mmcs(sae.W_dec.detach(), bench.features).item() > target
    # the returned SAE works on the raw (unnormalised) activations
    assert evaluate_sae(sae, data)["explained_variance"] > 0.8
    assert history["explained_variance"][-1] > history["explained_variance"][0]


def test_jumprelu_trains_its_thresholds(bench, data):
    sae = make_sae(d_in=8, d_sae=24, architecture="jumprelu", jumprelu_bandwidth=0.05, jumprelu_init_threshold=0.1,
                   device="cpu")
    history = train_sae(sae, data, steps=200, batch_size=256, lr=1e-2, sparsity_coefficient=1.0, progress=False,
                        device="cpu", cpu_threads=1)
    assert (sae.threshold > 0.2).float().mean() > 0.5  # the L0 penalty pushed thresholds up
    assert history["l0"][-1] < history["l0"][0]
    assert torch.allclose(sae.W_dec.norm(dim=1) * history["activation_scale"][0], torch.ones(24), atol=1e-4)


def test_history_and_warmups(data):
    sae = make_sae(d_in=8, d_sae=16, device="cpu")
    history = train_sae(sae, data, steps=20, batch_size=64, lr=1e-3, sparsity_coefficient=2.0, lr_warmup=10,
                        coefficient_warmup=5, log_every=5, progress=False, device="cpu", cpu_threads=1)
    assert history["step"] == [0, 5, 10, 15, 19]
    assert history["lr"][:2] == pytest.approx([1e-4, 6e-4])
    assert history["sparsity_coefficient"] == pytest.approx([0.4, 2.0, 2.0, 2.0, 2.0])
    assert history["activation_scale"][0] == pytest.approx(activation_scale(data[:10_000]))


def test_reproducible(data):
    def run():
        sae = make_sae(d_in=8, d_sae=16, device="cpu", seed=4)
        train_sae(sae, data, steps=30, batch_size=128, sparsity_coefficient=1.0, seed=7, progress=False,
                  device="cpu", cpu_threads=1)
        return sae.W_dec.detach().clone()

    assert torch.equal(run(), run())


def test_batch_fn_data(bench):
    sae = make_sae(d_in=8, d_sae=16, device="cpu")
    history = train_sae(sae, bench.batch_fn(128), steps=10, sparsity_coefficient=1.0, progress=False,
                        device="cpu", cpu_threads=1)
    assert len(history["step"]) == 10


def test_dead_latents_are_tracked_and_resampled(data):
    sae = make_sae(d_in=8, d_sae=16, device="cpu", seed=0)
    with torch.no_grad():
        sae.b_enc[:5] = -1e3  # latents 0-4 can never fire
    history = train_sae(sae, data, steps=40, batch_size=128, lr=1e-3, sparsity_coefficient=1.0, dead_window=512,
                        init_b_dec="zeros", progress=False, device="cpu", cpu_threads=1)
    assert history["dead_fraction"][-1] >= 5 / 16
    assert history["n_resampled"] == []

    sae = make_sae(d_in=8, d_sae=16, device="cpu", seed=0)
    with torch.no_grad():
        sae.b_enc[:5] = -1e3
    history = train_sae(sae, data, steps=40, batch_size=128, lr=1e-3, sparsity_coefficient=1.0, dead_window=512,
                        resample_every=10, init_b_dec="zeros", log_every=1, progress=False, device="cpu", cpu_threads=1)
    assert history["resample_step"][0] == 9 and history["n_resampled"][0] >= 5
    assert history["dead_fraction"][-1] < 5 / 16
    assert (sae.b_enc[:5] > -1e3).all()


def test_resample_dead_latents_and_adam_state():
    sae = make_sae(d_in=4, d_sae=6, device="cpu", seed=0)
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(sae.parameters())
    sae.loss(x, 1.0).loss.backward()
    optimizer.step()
    dead = torch.tensor([True, False, False, True, False, False])
    before = sae.W_dec.detach().clone()
    n = resample_dead_latents(sae, dead, x, generator=torch.Generator().manual_seed(1), optimizer=optimizer)
    assert n == 2
    assert torch.allclose(sae.W_dec[dead].norm(dim=1), torch.ones(2))
    assert torch.equal(sae.W_dec[~dead], before[~dead])
    assert (sae.b_enc[dead] == 0).all()
    for name in ("W_dec", "b_enc"):
        state = optimizer.state[getattr(sae, name)]
        assert (state["exp_avg"][dead] == 0).all() and (state["exp_avg_sq"][dead] == 0).all()
        assert (state["exp_avg_sq"][~dead] != 0).any()
    assert (optimizer.state[sae.W_enc]["exp_avg"][:, dead] == 0).all()
    # each new decoder row points at one of the inputs (minus b_dec)
    directions = torch.nn.functional.normalize(x - sae.b_dec, dim=1)
    assert ((sae.W_dec[dead] @ directions.T).max(dim=1).values > 1 - 1e-5).all()
    assert resample_dead_latents(sae, torch.zeros(6, dtype=torch.bool), x) == 0


def test_reinitialise_latents_by_hand():
    W_enc = torch.tensor([[3.0, 1.0, 0.0], [4.0, 0.0, 1.0]])  # live column norms 5 and 1 -> mean 3
    b_enc, W_dec, b_dec = torch.tensor([1.0, -2.0, 0.5]), torch.ones(3, 2), torch.tensor([1.0, 1.0])
    dead = torch.tensor([False, True, False])
    W_enc2, b_enc2, W_dec2 = reinitialise_latents(W_enc, b_enc, W_dec, b_dec, dead, torch.tensor([[4.0, 5.0]]))
    assert torch.allclose(W_dec2[1], torch.tensor([0.6, 0.8]))  # (4, 5) − (1, 1) = (3, 4), normalised
    assert torch.allclose(W_enc2[:, 1], torch.tensor([0.6, 0.8]) * 0.2 * 3.0)
    assert b_enc2.tolist() == [1.0, 0.0, 0.5]
    assert torch.equal(W_enc[:, 1], torch.tensor([1.0, 0.0]))  # the inputs are not modified


@pytest.mark.parametrize("kwargs, message", [
    (dict(steps=0), "steps"),
    (dict(lr=-1.0), "lr"),
    (dict(sparsity_coefficient=-0.1), "sparsity_coefficient"),
    (dict(init_b_dec="median"), "init_b_dec"),
    (dict(batch_size=100_000), "fewer than batch_size"),
    (dict(lr_schedule="exp"), "lr_schedule"),
    (dict(resample_every=0), "resample_every"),
])
def test_argument_errors(data, kwargs, message):
    args = dict(steps=5, progress=False, device="cpu", cpu_threads=1) | kwargs
    with pytest.raises(ValueError, match=message):
        train_sae(make_sae(d_in=8, d_sae=16, device="cpu"), data, **args)
    with pytest.raises(ValueError, match=r"data must have shape \[n, 8\]"):
        train_sae(make_sae(d_in=8, d_sae=16, device="cpu"), torch.zeros(10, 3), steps=1)
    with pytest.raises(TypeError, match="sae must be an SAE"):
        train_sae(torch.nn.Linear(2, 2), data, steps=1)


def test_arguments_after_steps_are_keyword_only(data):
    """The trainers share one convention: sae, data and steps by position, the rest by name, so
    that a positional argument can never land in the wrong slot."""
    sae = make_sae(d_in=8, d_sae=16, device="cpu")
    with pytest.raises(TypeError, match="positional"):
        train_sae(sae, data, 5, 256)  # batch_size by position
    history = train_sae(sae, data, 5, batch_size=256, progress=False, device="cpu")  # steps by position is fine
    assert history["step"][-1] == 4
