"""HookedCNN: config checks, hook points, train_cnn, and the shipped shapes-cnn checkpoint."""

import json

import pytest
import torch

from toykit import pretrained
from toykit.cnn import CNNConfig, HookedCNN
from toykit.cnn_training import train_cnn
from toykit.dataset_examples import ReceptiveField, receptive_field
from toykit.tasks.shapes import CLASSES, STROKE_CLASSES, generate_shapes, generate_strokes
from toykit.train_recipes import RECIPES, ShapesCNNRecipe, StrokesCNNRecipe, save

HOOKS = ["conv.0.hook_pre", "conv.0.hook_post", "conv.1.hook_pre", "conv.1.hook_post", "conv.2.hook_pre",
         "conv.2.hook_post", "hook_pooled", "hook_logits"]


@pytest.fixture(scope="module")
def model():
    return HookedCNN(CNNConfig(device="cpu"))


@pytest.fixture(scope="module")
def images():
    return generate_shapes(6, seed=0).images


def test_hook_names_and_cache_shapes(model, images):
    assert list(model.hook_dict) == HOOKS
    logits, cache = model.run_with_cache(images)
    assert logits.shape == (6, 5)
    c0, c1, c2 = model.cfg.channels
    expected = {"conv.0.hook_pre": (6, c0, 32, 32), "conv.0.hook_post": (6, c0, 32, 32),
                "conv.1.hook_pre": (6, c1, 16, 16), "conv.1.hook_post": (6, c1, 16, 16),
                "conv.2.hook_pre": (6, c2, 8, 8), "conv.2.hook_post": (6, c2, 8, 8),
                "hook_pooled": (6, c2), "hook_logits": (6, 5)}
    assert {k: tuple(v.shape) for k, v in cache.items()} == expected
    assert torch.equal(cache["hook_logits"], logits)
    assert torch.equal(cache["conv.0.hook_post"], cache["conv.0.hook_pre"].relu())
    assert torch.allclose(cache["hook_pooled"], cache["conv.2.hook_post"].mean(dim=(2, 3)))
    _, only = model.run_with_cache(images, names_filter=lambda name: name.endswith("hook_post"))
    assert list(only) == ["conv.0.hook_post", "conv.1.hook_post", "conv.2.hook_post"]


def test_run_with_hooks_replaces_activations_and_cleans_up(model, images):
    def zero(act, hook):
        return torch.zeros_like(act)

    logits = model.run_with_hooks(images, fwd_hooks=[("hook_pooled", zero)])
    assert torch.equal(logits, model.b_U.detach().expand(6, -1))  # nothing but the readout's bias is left
    assert not any(hp.has_hooks for hp in model.hook_points())
    assert not torch.equal(model(images), logits)
    with pytest.raises(KeyError, match="did you mean"):
        model.run_with_hooks(images, fwd_hooks=[("conv.0.hook_psot", zero)])


def test_forward_leaves_its_input_alone_and_checks_it(model, images):
    before = images.clone()
    model(images)
    assert torch.equal(images, before)
    with pytest.raises(ValueError, match="images must have shape"):
        model(images[:, 0])
    with pytest.raises(TypeError, match="images must be a floating-point tensor"):
        model((images * 255).long())


def test_init_is_seeded_and_kernels_are_7x7():
    a, b, c = (HookedCNN(CNNConfig(seed=s, device="cpu")) for s in (1, 1, 2))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.conv[0].W, c.conv[0].W)
    assert a.conv[0].W.shape == (16, 1, 7, 7) and a.W_U.shape == (32, 5)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"channels": ()}, ValueError, "CNNConfig: channels must be a non-empty sequence"),
    ({"channels": (8, 0, 4)}, ValueError, "CNNConfig: channels must be a positive int, got 0"),
    ({"kernel_sizes": (7, 3)}, ValueError, "CNNConfig: kernel_sizes must have one entry per layer"),
    ({"kernel_sizes": (6, 3, 3)}, ValueError, "CNNConfig: kernel_sizes must be odd"),
    ({"image_size": 30}, ValueError, "CNNConfig: image_size must be divisible by 2 \\*\\* \\(n_layers - 1\\) = 4"),
    ({"n_classes": 0}, ValueError, "CNNConfig: n_classes must be a positive int"),
    ({"seed": -1}, ValueError, "CNNConfig: seed must be a non-negative int"),
    ({"dtype": torch.int64}, TypeError, "CNNConfig: dtype must be a floating-point"),
])
def test_config_rejects_bad_fields(kwargs, error, match):
    with pytest.raises(error, match=match):
        CNNConfig(**kwargs)


def test_config_from_a_dict_and_through_json():
    model = HookedCNN({"channels": [4, 8], "kernel_sizes": [5, 3], "device": torch.device("cpu")})
    assert model.cfg.channels == (4, 8) and model.cfg.n_layers == 2
    data = pretrained.config_to_json(model.cfg)
    assert data["architecture"] == "cnn"
    assert pretrained.config_from_json(data, device="cpu") == model.cfg
    with pytest.raises(TypeError, match="cfg must be a CNNConfig or a dict"):
        HookedCNN("small")


# -- train_cnn ----------------------------------------------------------------------------------------


def tiny_model(seed=0):
    return HookedCNN(CNNConfig(channels=(4, 8), kernel_sizes=(5, 3), device="cpu", seed=seed))


def test_train_cnn_learns_and_repeats_bit_for_bit():
    data = generate_shapes(200, seed=1, classes=["line", "circle"])
    runs = []
    for _ in range(2):
        model = tiny_model()
        history = train_cnn(model, (data.images, data.labels), 150, batch_size=32, lr=1e-2, log_every=50,
                            device="cpu", progress=False, cpu_threads=1,
                            eval_fn=lambda m, step: {"train_accuracy": (m(data.images).argmax(-1) == data.labels)
                                                     .float().mean()})
        runs.append((model, history))
    (a, ha), (b, hb) = runs
    assert ha == hb and all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert ha["step"] == [0, 50, 100, 149] and not a.training
    assert ha["loss"][-1] < 0.5 * ha["loss"][0]
    assert ha["train_accuracy"][0] <= 0.55 and ha["train_accuracy"][-1] > 0.75  # two classes: chance is 0.5


def test_train_cnn_takes_a_batch_function():
    def batch_fn(step, generator):
        batch = generate_shapes(16, generator=generator)
        return batch.images, batch.labels

    history = train_cnn(tiny_model(), batch_fn, 3, log_every=1, device="cpu", progress=False)
    assert history["step"] == [0, 1, 2] and len(history["lr"]) == 3


@pytest.mark.parametrize("args, kwargs, error, match", [
    (("model",), {}, TypeError, "model must be a HookedCNN"),
    ((), {"steps": 0}, ValueError, "steps must be a positive int"),
    ((), {"lr": 0}, ValueError, "lr must be a positive number"),
    ((), {"weight_decay": -1}, ValueError, "weight_decay must be a number >= 0"),
    ((), {"lr_schedule": "triangle"}, ValueError, "schedule must be one of"),
    ((), {"data": torch.zeros(4, 1, 32, 32)}, TypeError, "data must be a pair"),
    ((), {"data": (torch.zeros(4, 1, 32, 32), torch.zeros(3, dtype=torch.long))}, ValueError, "n=4"),
    ((), {"data": lambda step, g: torch.zeros(2, 1, 32, 32)}, TypeError, "must return \\(images, labels\\)"),
])
def test_train_cnn_rejects_bad_arguments(args, kwargs, error, match):
    call = {"model": tiny_model(), "data": (torch.zeros(4, 1, 32, 32), torch.zeros(4, dtype=torch.long)),
            "steps": 2, **kwargs}
    if args:
        call["model"] = "not a model"
    with pytest.raises(error, match=match):
        train_cnn(call.pop("model"), call.pop("data"), call.pop("steps"), device="cpu", progress=False, **call)


def test_a_short_recipe_run_writes_a_loadable_checkpoint(tmp_path):
    recipe = ShapesCNNRecipe(name="tiny-cnn", channels=(4, 8), kernel_sizes=(5, 3), steps=4, batch_size=16,
                             log_every=2, eval_n=50, lr_warmup=1)
    entry = save(recipe, tmp_path, device="cpu", progress=False)
    assert entry["config"]["architecture"] == "cnn" and entry["recipe"]["kind"] == "ShapesCNNRecipe"
    assert set(entry["metrics"]) == {"eval_accuracy", "eval_loss", "meets_target", "n_params", "final_train_loss"}
    model = pretrained.load("tiny-cnn", device="cpu", root=tmp_path)
    assert isinstance(model, HookedCNN) and model.cfg.channels == (4, 8)
    again = save(recipe, tmp_path / "again", device="cpu", progress=False)
    assert again["sha256"] == entry["sha256"] and again["history_sha256"] == entry["history_sha256"]


def test_a_short_strokes_recipe_run_has_three_outputs(tmp_path):
    recipe = StrokesCNNRecipe(name="tiny-strokes", channels=(4,), kernel_sizes=(5,), steps=2, batch_size=12,
                              log_every=1, eval_n=30, lr_warmup=1)
    entry = save(recipe, tmp_path, device="cpu", progress=False)
    assert entry["recipe"]["kind"] == "StrokesCNNRecipe" and entry["config"]["n_classes"] == len(STROKE_CLASSES)
    assert pretrained.load("tiny-strokes", device="cpu", root=tmp_path).cfg.n_classes == 3


def test_layer_geometry_lists_the_convs_and_the_pools_between_them():
    model = HookedCNN(CNNConfig(seed=0, device="cpu"))  # kernels 7, 5, 3
    assert model.layer_geometry(0) == [(7, 1, 3)]
    assert model.layer_geometry(2) == [(7, 1, 3), (2, 2, 0), (5, 1, 2), (2, 2, 0), (3, 1, 1)]
    # a conv.2 unit sees 7 + 1 + 4 x 2 + 1 x 2 + 2 x 4 = 26 pixels; an input pixel moves it by 4
    assert receptive_field(model.layer_geometry(2)) == ReceptiveField(size=26, stride=4, padding=11)
    # every input pixel that changes one conv.2 unit lies inside that field
    images = torch.rand(1, 1, 32, 32, requires_grad=True)
    seen = {}
    model.run_with_hooks(images, fwd_hooks=[("conv.2.hook_pre", lambda act, hook: seen.setdefault("act", act))])
    seen["act"][0, 0, 4, 4].backward()
    rows, cols = images.grad[0, 0].abs().sum(1).nonzero(), images.grad[0, 0].abs().sum(0).nonzero()
    start = 4 * 4 - 11  # stride x position - padding
    assert rows.min() >= start and rows.max() < start + 26 and cols.min() >= start and cols.max() < start + 26
    for bad in (-1, 3, 1.0, True):
        with pytest.raises(ValueError, match="layer"):
            model.layer_geometry(bad)


# -- the shipped checkpoints ----------------------------------------------------------------------------


def test_shipped_checkpoint_is_small_and_matches_its_recipe():
    entry = pretrained.manifest()["shapes-cnn"]
    assert (pretrained.CHECKPOINT_DIR / entry["file"]).stat().st_size <= 2 * 2**20
    assert entry["recipe"] == json.loads(json.dumps(RECIPES["shapes-cnn"].describe()))
    assert entry["metrics"]["eval_accuracy"] >= 0.97 and entry["metrics"]["meets_target"]


def test_shipped_checkpoint_classifies_fresh_images():
    model = pretrained.load("shapes-cnn", device="cpu")
    assert isinstance(model, HookedCNN) and not model.training
    # A seed far from the training stream (data_seed + step) and from the recipe's eval_seed.
    batch = generate_shapes(1000, seed=987_654_321)
    with torch.no_grad():
        predictions = model(batch.images).argmax(-1)
    assert (predictions == batch.labels).float().mean() >= 0.97
    for label in range(len(CLASSES)):  # every class, not just most of them
        sel = batch.labels == label
        assert (predictions[sel] == label).float().mean() >= 0.9, CLASSES[label]
    # An untrained model of the same shape is near chance (1/5).
    untrained = HookedCNN(model.cfg)
    with torch.no_grad():
        assert (untrained(batch.images).argmax(-1) == batch.labels).float().mean() < 0.4


def test_shipped_strokes_checkpoint_matches_its_recipe_and_classifies_fresh_strokes():
    entry = pretrained.manifest()["strokes-cnn"]
    assert (pretrained.CHECKPOINT_DIR / entry["file"]).stat().st_size <= 2 * 2**20
    assert entry["recipe"] == json.loads(json.dumps(RECIPES["strokes-cnn"].describe()))
    assert entry["metrics"]["meets_target"]
    model = pretrained.load("strokes-cnn", device="cpu")
    batch = generate_strokes(1000, seed=987_654_321)
    with torch.no_grad():
        predictions = model(batch.images).argmax(-1)
    # measured: 0.975 (arc 0.96, segment 1.00, corner 0.97); untrained 0.333
    assert (predictions == batch.labels).float().mean() >= StrokesCNNRecipe.target_accuracy
    for label, name in enumerate(STROKE_CLASSES):
        assert (predictions[batch.labels == label] == label).float().mean() >= 0.8, name
    with torch.no_grad():
        assert (HookedCNN(model.cfg)(batch.images).argmax(-1) == batch.labels).float().mean() < 0.45
