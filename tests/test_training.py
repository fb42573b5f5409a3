"""train_lm: schedules, logging, determinism, input errors, devices."""

import math

import pytest
import torch

from toykit.tasks.repeated_tokens import generate_periodic_tokens
from toykit.training import lr_factor, train_lm
from toykit.transformer import HookedTransformer, TransformerConfig


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny models on a busy 2-core machine run several times faster on one thread.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_model(seed: int = 0, device: str = "cpu") -> HookedTransformer:
    cfg = TransformerConfig(n_layers=1, d_model=16, n_heads=2, d_vocab=12, n_ctx=16, attn_only=True, seed=seed,
                            device=device)
    return HookedTransformer(cfg)


def periodic_batches(step: int, generator: torch.Generator) -> torch.Tensor:
    return generate_periodic_tokens(8, 16, 12, 2, 4, bos=0, generator=generator)


def test_lr_factor_schedules():
    assert [lr_factor("constant", s, 10, warmup=4) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert lr_factor("cosine", 0, 10) == 1.0
    assert lr_factor("cosine", 5, 10) == pytest.approx(0.5)
    assert lr_factor("cosine", 10, 10) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor("linear", 5, 10) == pytest.approx(0.5)
    assert lr_factor("linear", 2, 10, warmup=2) == 1.0
    assert lr_factor(lambda s, n: s / n, 3, 10) == 0.3
    with pytest.raises(ValueError, match="schedule must be one of"):
        lr_factor("exponential", 0, 10)


def test_history_layout_and_learning():
    model = tiny_model()
    history = train_lm(model, periodic_batches, steps=200, lr=3e-3, log_every=50, progress=False, device="cpu",
                       eval_fn=lambda m, step: {"double_step": 2 * step, "vec": torch.arange(2)})
    assert history["step"] == [0, 50, 100, 150, 199]
    assert set(history) == {"step", "loss", "lr", "double_step", "vec"}
    assert history["double_step"] == [0, 100, 200, 300, 398]
    assert history["vec"][0] == [0, 1]  # tensors become plain lists (JSON-ready)
    assert history["loss"][-1] < history["loss"][0] - 0.3
    assert not model.training


def test_same_seed_repeats_exactly_and_another_seed_differs():
    def run(seed):
        model = tiny_model()
        history = train_lm(model, periodic_batches, steps=30, log_every=10, seed=seed, progress=False, device="cpu",
                           lr_warmup=5, lr_schedule="cosine")
        return model.state_dict(), history

    (a, ha), (b, hb), (_, hc) = run(0), run(0), run(1)
    assert ha == hb
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert ha["loss"] != hc["loss"]
    assert ha["lr"][0] == pytest.approx(1e-3 / 5)


def test_tensor_data_is_sampled_with_the_generator():
    data = generate_periodic_tokens(64, 16, 12, 2, 4, seed=0)
    h1 = train_lm(tiny_model(), data, steps=20, batch_size=4, log_every=5, progress=False, device="cpu")
    h2 = train_lm(tiny_model(), data, steps=20, batch_size=4, log_every=5, progress=False, device="cpu")
    assert h1 == h2 and len(h1["loss"]) == 5


def test_weight_decay_leaves_biases_and_layernorm_alone():
    model = tiny_model()
    train_lm(model, periodic_batches, steps=1, lr=1e-9, weight_decay=0.5, progress=False, device="cpu")
    # With a vanishing lr only decay could move things; biases and LN weights must not decay.
    assert torch.equal(model.blocks[0].ln1.w, torch.ones(16))


def test_progress_bar_is_off_with_progress_false(capsys):
    train_lm(tiny_model(), periodic_batches, steps=3, progress=False, device="cpu")
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
    train_lm(tiny_model(), periodic_batches, steps=3, progress=True, device="cpu")
    assert "training" in capsys.readouterr().err


def test_cpu_threads_are_restored():
    train_lm(tiny_model(), periodic_batches, steps=2, progress=False, device="cpu", cpu_threads=2)
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"data": [[1, 2]]}, TypeError, "data must be a token tensor"),
        ({"data": torch.zeros(4, 5)}, TypeError, "data must be an integer tensor"),
        ({"data": torch.zeros(4, 1, dtype=torch.long)}, ValueError, "at least 2 tokens"),
        ({"lr": 0}, ValueError, "lr must be a positive number"),
        ({"steps": 0}, ValueError, "steps must be a positive int"),
        ({"weight_decay": -1.0}, ValueError, "weight_decay must be"),
        ({"lr_schedule": "step"}, ValueError, "schedule must be one of"),
        ({"lr_warmup": -1}, ValueError, "lr_warmup must be an int >= 0"),
        ({"seed": -1}, ValueError, "seed must be a non-negative int"),
        ({"eval_fn": lambda m, s: {"loss": 1.0}}, ValueError, "reserved key 'loss'"),
        ({"eval_fn": lambda m, s: 1.0}, TypeError, "eval_fn must return a dict"),
        ({"data": lambda step, g: torch.zeros(3)}, ValueError, r"batch_fn\(step, generator\) must have shape"),
    ],
)
def test_input_errors(kwargs, error, match):
    args = {"data": periodic_batches, "steps": 2, "progress": False, "device": "cpu", **kwargs}
    with pytest.raises(error, match=match):
        train_lm(tiny_model(), **args)


@pytest.mark.parametrize("kwargs", [{"warmup": 5}, {"schedule": "cosine"}])
def test_old_keyword_names_are_refused(kwargs):
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        train_lm(tiny_model(), periodic_batches, 2, progress=False, device="cpu", **kwargs)


def test_settings_after_steps_are_keyword_only():
    with pytest.raises(TypeError, match="positional argument"):
        train_lm(tiny_model(), periodic_batches, 2, 32)


def test_model_type_is_checked():
    with pytest.raises(TypeError, match="model must be a HookedTransformer"):
        train_lm(torch.nn.Linear(2, 2), periodic_batches, steps=1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_unchanged_on_cuda():
    model = tiny_model(device="cuda")
    history = train_lm(model, periodic_batches, steps=50, lr=3e-3, log_every=10, progress=False, device="cuda",
                       eval_fn=lambda m, s: {"w": m.W_E.sum()})
    assert model.device.type == "cuda"
    assert all(math.isfinite(x) for x in history["loss"]) and isinstance(history["w"][0], float)
    # The batches come from a CPU generator, so they are the same as on the CPU.
    cpu_history = train_lm(tiny_model(), periodic_batches, steps=50, lr=3e-3, log_every=10, progress=False,
                           device="cpu")
    assert history["loss"][0] == pytest.approx(cpu_history["loss"][0], rel=1e-4)
