"""Modular addition, the grokking model's fast forward pass, full-batch training, and the
shipped-run recipe (a shortened version run end to end: files, manifest, loading)."""

import json
import math
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from toykit import pretrained
from toykit.grokking import (
    GrokkingRecipe,
    grokking_config,
    grokking_model,
    grokking_phases,
    key_frequencies_of,
    last_position_logits,
    logit_table,
    paper_split,
    train_grokking,
    weight_norm,
)
from toykit.tasks.modular_addition import all_pairs, make_split
from toykit.train_recipes import RECIPES, save
from toykit.transformer import HookedTransformer, TransformerConfig, copy_model

torch.set_num_threads(1)

SMALL = dict(d_model=32, n_heads=4, d_mlp=64)


# -- the task --------------------------------------------------------------------------------------


def test_all_pairs():
    tokens, labels = all_pairs(7)
    assert tokens.shape == (49, 3) and labels.shape == (49,)
    assert tokens[3 * 7 + 5].tolist() == [3, 5, 7] and labels[3 * 7 + 5].item() == 1
    assert tokens.dtype == labels.dtype == torch.int64


def test_split_is_a_seeded_partition():
    split = make_split(13, 0.3, seed=4)
    n = 13 * 13
    assert len(split.train_index) == round(0.3 * n) and len(split.test_index) == n - round(0.3 * n)
    both = torch.cat([split.train_index, split.test_index]).sort().values
    assert torch.equal(both, torch.arange(n))
    assert torch.equal(split.train_labels, (split.train_tokens[:, 0] + split.train_tokens[:, 1]) % 13)
    assert split.train_mask.sum() == len(split.train_index)
    assert split.train_mask[split.train_tokens[0, 0], split.train_tokens[0, 1]]
    again, other = make_split(13, 0.3, seed=4), make_split(13, 0.3, seed=5)
    assert torch.equal(again.train_index, split.train_index)
    assert not torch.equal(other.train_index, split.train_index)


@pytest.mark.parametrize("kwargs, match", [
    (dict(p=1), "p must be"), (dict(frac_train=1.0), "frac_train"), (dict(frac_train=0), "frac_train"),
    (dict(seed=-1), "seed"), (dict(p=3, frac_train=0.01), "empty"),
])
def test_split_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_split(**kwargs)


# -- the model and its fast forward pass ---------------------------------------------------------


def test_config_is_the_papers():
    cfg = grokking_config(113, device="cpu")
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp) == (1, 128, 4, 32, 512)
    assert (cfg.d_vocab, cfg.n_ctx, cfg.act_fn, cfg.normalization_type) == (114, 3, "relu", None)
    assert cfg.init_range == pytest.approx(1 / math.sqrt(128))


def test_initialisation_is_the_papers():
    # transformers.py of the paper's code: randn / sqrt(d_model), except W_U: randn / sqrt(d_vocab); biases 0.
    model = grokking_model(113, seed=3, device="cpu")
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "W_U":
            assert p.std().item() == pytest.approx(1 / math.sqrt(114), rel=0.03)
        elif leaf.startswith("W_"):
            assert p.std().item() == pytest.approx(1 / math.sqrt(128), rel=0.03), name
        else:
            assert torch.all(p == 0), name
    again = grokking_model(113, seed=3, device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))


def test_paper_split_is_the_papers_gen_train_test():
    # The paper's gen_train_test, written out: shuffle the (i, j, p) triples with Python's random.
    pairs = [(i, j, 13) for i in range(13) for j in range(13)]
    random.seed(5)
    random.shuffle(pairs)
    div = int(0.3 * len(pairs))
    split = paper_split(13, 0.3, seed=5)
    assert sorted(map(tuple, split.train_tokens.tolist())) == sorted(pairs[:div])
    assert sorted(map(tuple, split.test_tokens.tolist())) == sorted(pairs[div:])
    assert torch.equal(split.train_labels, (split.train_tokens[:, 0] + split.train_tokens[:, 1]) % 13)
    assert (len(paper_split().train_index), len(paper_split().test_index)) == (3830, 8939)
    assert not torch.equal(paper_split(13, 0.3, seed=6).train_index, split.train_index)
    with pytest.raises(ValueError, match="seed"):
        paper_split(13, 0.3, seed=-1)
    with pytest.raises(ValueError, match="frac_train"):
        paper_split(13, 1.5)


def _with_random_biases(model: HookedTransformer) -> HookedTransformer:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.rsplit(".", 1)[-1].startswith("W_"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model


@pytest.mark.parametrize("attn_only", [False, True])
def test_last_position_logits_match_the_full_forward_pass(attn_only):
    cfg = TransformerConfig(n_layers=1, d_model=32, n_heads=4, d_mlp=64, d_vocab=18, n_ctx=3, attn_only=attn_only,
                            normalization_type=None, device="cpu")
    model = _with_random_biases(HookedTransformer(cfg))
    tokens, labels = all_pairs(17)
    fast = last_position_logits(model, tokens, 17)
    full = model(tokens)[:, -1, :17]
    assert torch.allclose(fast, full, atol=1e-5)
    # The gradients agree too: training on the fast path is training the model.
    grads = []
    for logits in (fast, full):
        model.zero_grad()
        F.cross_entropy(logits, labels).backward(retain_graph=True)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-6), name
    # Shorter inputs work as well.
    assert torch.allclose(last_position_logits(model, tokens[:, :2]), model(tokens[:, :2])[:, -1], atol=1e-5)


def test_hooks_and_other_models_take_the_ordinary_path():
    model = grokking_model(11, **SMALL, device="cpu")
    tokens, _ = all_pairs(11)
    seen = []
    model.add_hook("blocks.0.mlp.hook_post", lambda act, hook: seen.append(act.shape))
    logits = last_position_logits(model, tokens, 11)
    model.reset_hooks()
    assert seen == [torch.Size([121, 3, 64])]
    assert torch.allclose(logits, last_position_logits(model, tokens, 11), atol=1e-5)
    two = HookedTransformer(TransformerConfig(n_layers=2, d_model=16, d_vocab=12, n_ctx=3, normalization_type="LN",
                                              device="cpu"))
    assert torch.equal(last_position_logits(two, tokens, 11), two(tokens)[:, -1, :11])
    with pytest.raises(ValueError, match="n_out"):
        last_position_logits(model, tokens, 13)
    assert logit_table(model).shape == (11, 11, 11)


# -- training -------------------------------------------------------------------------------------


def _short_run(**kwargs):
    model = grokking_model(23, **SMALL, seed=0, device="cpu")
    split = make_split(23, 0.5, seed=0)
    args = dict(log_every=20, snapshot_epochs=(0, 30, 60), progress=False, device="cpu", cpu_threads=1)
    return train_grokking(model, split, 60, **{**args, **kwargs})


def test_training_logs_measures_and_snapshots():
    run = _short_run()
    h = run.history
    assert h["epoch"] == [0, 20, 40, 60]
    for key in ("train_loss", "test_loss", "train_accuracy", "test_accuracy", "weight_norm", "restricted_loss",
                "excluded_loss", "embed_frequency_energy"):
        assert len(h[key]) == 4, key
    assert len(h["embed_frequency_energy"][0]) == 23 // 2 + 1
    assert h["train_loss"][-1] < h["train_loss"][0]  # it learns
    assert h["weight_norm"][-1] == pytest.approx(weight_norm(run.model))
    assert sorted(run.snapshots) == [0, 30, 60]
    final = run.model.state_dict()
    assert all(torch.equal(run.snapshots[60][k], final[k]) for k in final)
    assert not torch.equal(run.snapshots[0]["embed.W_E"], final["embed.W_E"])
    # The MLP biases are trained (the paper's code); the others stay at 0, and trainable afterwards.
    for name, p in run.model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("b_in", "b_out"):
            assert torch.any(p != 0), name
        elif not leaf.startswith("W_"):
            assert torch.all(p == 0) and p.requires_grad, name
    assert run.key_frequencies and all(1 <= w <= 11 for w in run.key_frequencies)
    json.dumps(h)  # JSON-ready


def test_training_is_deterministic():
    a, b = _short_run(snapshot_epochs=()), _short_run(snapshot_epochs=())
    assert a.history == b.history
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))


def test_training_options_of_transformer_lens_demo():
    run = _short_run(train_mlp_biases=False, measures=False)
    for name, p in run.model.named_parameters():
        if not name.rsplit(".", 1)[-1].startswith("W_"):
            assert torch.all(p == 0), name
    assert not torch.equal(run.model.W_E, _short_run(measures=False).model.W_E)


def test_warmup_follows_the_papers_schedule():
    # LambdaLR(lambda step: min(step / 10, 1)): the first step has lr 0 and leaves the weights alone.
    run = _short_run(snapshot_epochs=(0, 1, 2), measures=False)
    assert all(torch.equal(run.snapshots[0][k], run.snapshots[1][k]) for k in run.snapshots[0])
    assert not torch.equal(run.snapshots[1]["embed.W_E"], run.snapshots[2]["embed.W_E"])
    cold = _short_run(snapshot_epochs=(0, 1), measures=False, lr_warmup=0)
    assert not torch.equal(cold.snapshots[0]["embed.W_E"], cold.snapshots[1]["embed.W_E"])


def test_loss_is_over_n_classes():
    model = grokking_model(23, **SMALL, seed=0, device="cpu")
    split = make_split(23, 0.5, seed=0)
    logits = model(split.tokens)[:, -1].double()  # [p * p, d_vocab = 24]
    for n_classes in (None, 23):
        run = train_grokking(copy_model(model), split, 0, n_classes=n_classes, measures=False, progress=False)
        n = 24 if n_classes is None else 23
        expected = F.cross_entropy(logits[split.train_index, :n], split.train_labels)
        assert run.history["train_loss"][0] == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="n_classes"):
        train_grokking(copy_model(model), split, 1, n_classes=22, progress=False)


def test_phases_follow_the_test_loss_collapse():
    history = {"epoch": list(range(0, 1000, 100)),
               "train_loss": [4.7, 0.5, 0.005, 1e-4, 1e-4, 1e-4, 1e-4, 1e-4, 1e-4, 1e-4],
               "test_loss": [4.7, 9.0, 20.0, 18.0, 16.0, 9.0, 2.0, 0.05, 0.005, 0.001]}
    # memorised at 200; the test loss peaks at 20 and is first below 10 at 500, below 0.01 at 800
    assert grokking_phases(history) == {"memorisation": (0, 200), "circuit_formation": (200, 500),
                                        "cleanup": (500, 800)}
    assert grokking_phases(history, collapse_below=0.95)["cleanup"] == (300, 800)
    with pytest.raises(ValueError, match="has not grokked"):
        grokking_phases({**history, "test_loss": [4.7, 9.0, 20.0] + [18.0] * 7})
    with pytest.raises(ValueError, match="collapse_below"):
        grokking_phases(history, collapse_below=1.5)


def test_training_without_measures():
    run = _short_run(measures=False, snapshot_epochs=())
    assert "restricted_loss" not in run.history and run.key_frequencies == []


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(epochs=-1), ValueError, "epochs"),
    (dict(lr=0), ValueError, "lr"),
    (dict(snapshot_epochs=(61,)), ValueError, "snapshot_epochs"),
    (dict(split="data"), TypeError, "ModularAdditionSplit"),
    (dict(split=make_split(19, 0.5)), ValueError, "d_vocab"),
    (dict(lr_warmup=-1), ValueError, "lr_warmup must be an int >= 0"),
    (dict(n_classes=25), ValueError, "n_classes"),
])
def test_training_rejects_bad_arguments(kwargs, error, match):
    args = dict(model=grokking_model(23, **SMALL, device="cpu"), split=make_split(23, 0.5), epochs=60,
                progress=False)
    with pytest.raises(error, match=match):
        train_grokking(**{**args, **kwargs})


def test_old_keyword_names_and_extra_positional_arguments_are_refused():
    model, split = grokking_model(23, **SMALL, device="cpu"), make_split(23, 0.5)
    with pytest.raises(TypeError, match="unexpected keyword argument 'warmup'"):
        train_grokking(model, split, 1, warmup=0, progress=False)
    with pytest.raises(TypeError, match="positional argument"):
        train_grokking(model, split, 1, 1e-3)
    recipe = RECIPES["grokking"]
    for call in (lambda: recipe.train("cpu"), lambda: recipe.run("cpu"), lambda: save(recipe, None, "cpu")):
        with pytest.raises(TypeError, match="positional argument"):
            call()


# -- the shipped-run recipe -------------------------------------------------------------------------


def test_recipe_is_registered_with_the_papers_settings():
    recipe = RECIPES["grokking"]
    assert isinstance(recipe, GrokkingRecipe)
    assert (recipe.p, recipe.frac_train, recipe.lr, recipe.weight_decay, recipe.betas) == (113, 0.3, 1e-3, 1.0,
                                                                                          (0.9, 0.98))
    assert (recipe.d_model, recipe.n_heads, recipe.d_mlp) == (128, 4, 512)
    # The paper's code: 10-step warm-up, trained MLP biases, a softmax over all p + 1 tokens, its split.
    assert (recipe.lr_warmup, recipe.train_mlp_biases, recipe.n_classes) == (10, True, None)
    assert torch.equal(recipe.split().train_index, paper_split(113, 0.3, recipe.data_seed).train_index)
    assert 8 <= len(recipe.snapshot_epochs) <= 12 and recipe.snapshot_epochs[-1] == recipe.epochs
    json.dumps(recipe.describe())


def test_shortened_recipe_end_to_end(tmp_path):
    recipe = GrokkingRecipe(name="grok-mini", p=23, frac_train=0.5, epochs=60, **SMALL, log_every=20,
                            snapshot_epochs=(0, 30, 60))
    entry = save(recipe, out_dir=tmp_path, device="cpu", progress=False)
    snapshot_file = tmp_path / "grok-mini.snapshots.pt"
    assert entry["extra_files"] == {"grok-mini.snapshots.pt": pretrained.sha256_file(snapshot_file)}
    assert entry["training"]["steps"] == 60
    assert set(entry["metrics"]) >= {"test_accuracy", "key_frequencies", "test_loss_below_1_epoch"}
    model = pretrained.load("grok-mini", device="cpu", root=tmp_path)
    history = pretrained.load_history("grok-mini", root=tmp_path)
    snapshots = pretrained.load_snapshots("grok-mini", device="cpu", root=tmp_path)
    assert history["epoch"] == [0, 20, 40, 60]
    assert list(snapshots) == [0, 30, 60]
    assert snapshots[60].W_E.dtype == torch.float32
    for name, value in model.state_dict().items():  # the last snapshot is the final model, in half precision
        assert torch.allclose(snapshots[60].state_dict()[name], value, atol=2e-3, rtol=2e-3), name
    # Deterministic: a second save writes the same bytes.
    again = save(recipe, out_dir=tmp_path / "again", device="cpu", progress=False)
    assert (again["sha256"], again["history_sha256"], again["extra_files"]["grok-mini.snapshots.pt"]) == (
        entry["sha256"], entry["history_sha256"], entry["extra_files"]["grok-mini.snapshots.pt"])
    # A changed snapshot file is refused.
    path = snapshot_file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(pretrained.CheckpointError, match="does not match the manifest"):
        pretrained.load_snapshots("grok-mini", root=tmp_path)


def test_load_snapshots_of_a_checkpoint_without_them():
    name = pretrained.available()[0]
    if "extra_files" in pretrained.manifest()[name]:
        pytest.skip("the first checkpoint has extra files")
    with pytest.raises(pretrained.CheckpointError, match="ships no snapshots"):
        pretrained.load_snapshots(name)


def test_shipped_checkpoints_stay_small():
    total = sum(f.stat().st_size for f in Path(pretrained.CHECKPOINT_DIR).iterdir() if f.is_file())
    assert total <= 20 * 2**20, f"toykit/checkpoints holds {total / 2**20:.1f} MB, over the 20 MB budget"


@pytest.mark.skipif("grokking" not in pretrained.available(), reason="the grokking run is not shipped yet")
def test_shipped_grokking_run():
    entry = pretrained.manifest()["grokking"]
    model = pretrained.load("grokking", device="cpu")
    snapshots = pretrained.load_snapshots("grokking", device="cpu")
    history = pretrained.load_history("grokking")
    assert list(snapshots) == list(RECIPES["grokking"].snapshot_epochs)
    assert history["epoch"][-1] == entry["training"]["steps"]
    assert entry["metrics"]["test_accuracy"] >= 0.99
    split = RECIPES["grokking"].split()
    logits = last_position_logits(model, split.test_tokens, 113)
    assert (logits.argmax(-1) == split.test_labels).float().mean() >= 0.99
    # The manifest's facts are the history's: it groks, and a handful of frequencies do the work.
    phases = grokking_phases(history)
    assert entry["metrics"]["phases"] == {name: list(span) for name, span in phases.items()}
    assert phases["cleanup"][1] < history["epoch"][-1]
    assert 2 <= len(entry["metrics"]["key_frequencies"]) <= 8
    assert entry["metrics"]["key_frequencies"] == key_frequencies_of(model)
