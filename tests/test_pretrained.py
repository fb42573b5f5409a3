"""Shipped checkpoints: integrity checks, the claims Chapter 04 relies on, and reproducible training."""

import argparse
import json
import shutil

import pytest
import torch

from toykit import pretrained
from toykit.circuits import (
    ablated_loss_by_position,
    attention_head_scores,
    composition_score_baseline,
    k_composition_score,
    loss_by_position,
)
from toykit.pretrained import CheckpointError
from toykit.tasks import tinylang
from toykit.tasks.repeated_tokens import generate_repeated_tokens, repeated_half_slices
from toykit.train_recipes import RECIPES, AttnOnlyRecipe, TinyLangRecipe, phase_change_step, register, save
from toykit.transformer import HookedTransformer

SHIPPED = ["attn-only-1l", "attn-only-2l", "grokking", "shapes-cnn", "strokes-cnn", "tinylang", "tinylang-backdoor"]
SEQ_LEN = 32


@pytest.fixture
def checkpoint_copy(tmp_path):
    """A private copy of the shipped checkpoints, safe to damage."""
    root = tmp_path / "checkpoints"
    shutil.copytree(pretrained.CHECKPOINT_DIR, root)
    return root


@pytest.fixture(scope="module")
def fresh_tokens():
    # Not the recipe's evaluation batch (eval_seed 10_000): these sequences were never looked at.
    return generate_repeated_tokens(100, SEQ_LEN, 128, bos=0, seed=2024)


@pytest.fixture(scope="module")
def model_2l():
    return pretrained.load("attn-only-2l", device="cpu")


# -- the registry -------------------------------------------------------------------------------------


def test_available_and_manifest_entries():
    assert set(SHIPPED) <= set(pretrained.available())
    total = 0
    for name in SHIPPED:
        entry = pretrained.manifest()[name]
        for key in ("file", "sha256", "history", "history_sha256", "config", "recipe", "training", "metrics"):
            assert key in entry, (name, key)
        for key in ("steps", "seed", "torch_version", "wall_time_s", "cpu_time_s"):
            assert key in entry["training"], (name, key)
        path = pretrained.CHECKPOINT_DIR / entry["file"]
        assert pretrained.sha256_file(path) == entry["sha256"]
        total += path.stat().st_size + (pretrained.CHECKPOINT_DIR / entry["history"]).stat().st_size
        for extra, sha in entry.get("extra_files", {}).items():
            assert pretrained.sha256_file(pretrained.CHECKPOINT_DIR / extra) == sha
            total += (pretrained.CHECKPOINT_DIR / extra).stat().st_size
    assert total < 20 * 2**20


def test_load_builds_the_configured_model(model_2l):
    assert isinstance(model_2l, HookedTransformer) and not model_2l.training
    assert model_2l.cfg.n_layers == 2 and model_2l.cfg.attn_only and model_2l.device.type == "cpu"
    assert pretrained.load("attn-only-1l", device="cpu").cfg.n_layers == 1


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(KeyError, match="no shipped checkpoint named 'gpt-5'; available: attn-only-1l, attn-only-2l"):
        pretrained.load("gpt-5")
    with pytest.raises(KeyError, match="available"):
        pretrained.load_history("gpt-5")


def test_hash_mismatch_names_the_file_and_both_hashes(checkpoint_copy):
    entry = pretrained.manifest(checkpoint_copy)["attn-only-2l"]
    path = checkpoint_copy / entry["file"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as info:
        pretrained.load("attn-only-2l", device="cpu", root=checkpoint_copy)
    message = str(info.value)
    assert str(path) in message and entry["sha256"] in message and pretrained.sha256_file(path) in message
    assert "toykit train attn-only-2l" in message


def test_unreadable_file_with_a_matching_hash_is_a_clear_error(checkpoint_copy):
    entries = pretrained.manifest(checkpoint_copy)
    path = checkpoint_copy / entries["attn-only-2l"]["file"]
    path.write_bytes(b"this is not a torch checkpoint")
    entries["attn-only-2l"]["sha256"] = pretrained.sha256_file(path)
    (checkpoint_copy / "manifest.json").write_text(json.dumps(entries))
    with pytest.raises(CheckpointError, match="could not be read as a state dict"):
        pretrained.load("attn-only-2l", device="cpu", root=checkpoint_copy)


def test_missing_file_and_damaged_history(checkpoint_copy):
    entry = pretrained.manifest(checkpoint_copy)["attn-only-1l"]
    (checkpoint_copy / entry["file"]).unlink()
    with pytest.raises(CheckpointError, match="is missing"):
        pretrained.load("attn-only-1l", root=checkpoint_copy)
    (checkpoint_copy / pretrained.manifest(checkpoint_copy)["attn-only-2l"]["history"]).write_text("{}")
    with pytest.raises(CheckpointError, match="does not match the manifest"):
        pretrained.load_history("attn-only-2l", root=checkpoint_copy)


def test_config_round_trips_through_json(model_2l):
    cfg = pretrained.config_from_json(pretrained.config_to_json(model_2l.cfg), device="cpu")
    assert cfg == model_2l.cfg


# -- what Chapter 04 relies on -------------------------------------------------------------------------


def test_2l_has_an_induction_head_that_predicts_the_repeat(model_2l, fresh_tokens):
    scores = attention_head_scores(model_2l, fresh_tokens, SEQ_LEN)
    top = scores["prefix_matching"].max()
    assert top >= 0.6
    assert scores["prefix_matching"][0].max() < 0.1  # layer-0 heads cannot do induction
    first, repeated = repeated_half_slices(fresh_tokens.shape[1], SEQ_LEN)
    loss = loss_by_position(model_2l, fresh_tokens)
    assert loss[first].mean() > 4.0  # random tokens: about log(127) ≈ 4.84 nats
    assert loss[repeated].mean() < 0.1 * loss[first].mean()


def test_ablating_the_top_induction_head_raises_the_repeated_loss(model_2l, fresh_tokens):
    scores = attention_head_scores(model_2l, fresh_tokens, SEQ_LEN)["prefix_matching"]
    _, repeated = repeated_half_slices(fresh_tokens.shape[1], SEQ_LEN)
    clean = loss_by_position(model_2l, fresh_tokens)[repeated].mean()
    top = divmod(int(scores.argmax()), model_2l.cfg.n_heads)
    one = ablated_loss_by_position(model_2l, fresh_tokens, [top])[repeated].mean()
    assert one > 1.5 * clean and one - clean > 0.1
    # The layer-1 heads share the job: knocking all induction heads out removes the copying.
    induction_heads = [(1, h) for h in range(model_2l.cfg.n_heads) if scores[1, h] >= 0.6]
    every = ablated_loss_by_position(model_2l, fresh_tokens, induction_heads)[repeated].mean()
    assert every > 3.0


def test_k_composition_links_the_previous_token_head_to_induction_heads(model_2l, fresh_tokens):
    scores = attention_head_scores(model_2l, fresh_tokens, SEQ_LEN)
    prev_head = int(scores["previous_token"][0].argmax())
    assert scores["previous_token"][0, prev_head] > 0.4
    k = k_composition_score(model_2l)  # [layer-0 head, layer-1 head]
    src, dst = divmod(int(k.argmax()), model_2l.cfg.n_heads)
    assert src == prev_head
    assert scores["prefix_matching"][1, dst] >= 0.6
    # The previous-token head's row stands above the random-matrix baseline and the other rows.
    baseline = composition_score_baseline(model_2l.cfg.d_model, model_2l.cfg.d_head)
    assert k[prev_head].min() > 1.5 * baseline
    others = torch.cat([k[:prev_head], k[prev_head + 1:]])
    assert k[prev_head].min() > others.max()


def test_1l_control_has_no_induction_head(fresh_tokens):
    model = pretrained.load("attn-only-1l", device="cpu")
    scores = attention_head_scores(model, fresh_tokens, SEQ_LEN)["prefix_matching"]
    assert scores.max() < 0.3
    first, repeated = repeated_half_slices(fresh_tokens.shape[1], SEQ_LEN)
    loss = loss_by_position(model, fresh_tokens)
    assert loss[repeated].mean() > 2.5  # no copying: far from the 2-layer model's near-zero loss


def test_2l_history_shows_the_phase_change():
    history = pretrained.load_history("attn-only-2l")
    n_layers, n_heads = 2, RECIPES["attn-only-2l"].n_heads
    assert len(history["step"]) >= 50
    assert all(len(s) == n_layers and len(s[0]) == n_heads for s in history["induction_score"])
    top = torch.tensor([max(max(row) for row in s) for s in history["induction_score"]])
    rep = torch.tensor(history["loss_repeated_half"])
    step = phase_change_step(history)
    assert step is not None
    i = history["step"].index(step)
    assert top[: i // 2].max() < 0.1  # the plateau: no induction for a good while
    assert top[-1] >= 0.6
    # The drop is sudden: the repeated-block loss falls by more than half within a few hundred steps.
    j = history["step"].index(min(s for s in history["step"] if s >= step + 300))
    assert rep[j] < 0.5 * rep[max(0, i - 2)]
    assert rep[-1] < 0.25 and history["loss_first_half"][-1] > 4.0
    assert pretrained.manifest()["attn-only-2l"]["metrics"]["phase_change_step"] == step


def test_1l_history_never_forms_induction_heads():
    history = pretrained.load_history("attn-only-1l")
    assert max(max(max(row) for row in s) for s in history["induction_score"]) < 0.3
    assert phase_change_step(history) is None


# -- reproducible training ------------------------------------------------------------------------


TINY = AttnOnlyRecipe(name="tiny", n_layers=2, d_model=16, n_heads=2, d_vocab=20, n_ctx=17, min_period=2,
                      max_period=8, steps=20, log_every=5, eval_batch=4, eval_seq_len=8)


def test_training_a_recipe_twice_gives_the_same_files(tmp_path):
    a = save(TINY, out_dir=tmp_path / "a", device="cpu", progress=False)
    b = save(TINY, out_dir=tmp_path / "b", device="cpu", progress=False)
    assert a["sha256"] == b["sha256"] and a["history_sha256"] == b["history_sha256"]
    assert (tmp_path / "a" / "tiny.pt").read_bytes() == (tmp_path / "b" / "tiny.pt").read_bytes()
    model = pretrained.load("tiny", device="cpu", root=tmp_path / "a")
    history = pretrained.load_history("tiny", root=tmp_path / "a")
    assert history["step"] == [0, 5, 10, 15, 19]
    assert model.cfg.d_model == 16
    c = save(TINY, out_dir=tmp_path / "a", device="cpu", seed=1, progress=False)
    assert c["sha256"] != a["sha256"] and c["training"]["seed"] == 1
    assert pretrained.available(tmp_path / "a") == ["tiny"]


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toykit")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def run_train_command(out_dir, capsys) -> str:
    """`toykit train tiny --out out_dir`; what it printed."""
    args = train_parser().parse_args(["train", "tiny", "--device", "cpu", "--out", str(out_dir), "--no-progress"])
    assert args.func(args) == 0
    return capsys.readouterr().out


def test_train_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(RECIPES, "tiny", TINY)
    out = run_train_command(tmp_path, capsys)
    assert pretrained.manifest(tmp_path)["tiny"]["sha256"] in out
    with pytest.raises(SystemExit):
        train_parser().parse_args(["train", "no-such-model"])


def test_train_command_passes_on_the_shipped_checkpoints_note(tmp_path, monkeypatch, capsys):
    import toykit.train_recipes as train_recipes

    def fake_manifest(root=None):  # toykit's own folder "ships" tiny, with a note
        if root is None:
            return {"tiny": {"sha256": "0" * 64, "note": "trained before the fused kernel"}}
        return pretrained.manifest(root)

    monkeypatch.setitem(RECIPES, "tiny", TINY)
    monkeypatch.setattr(train_recipes, "manifest", fake_manifest)
    out = run_train_command(tmp_path, capsys)
    assert "identical to the shipped checkpoint: no" in out
    assert "about the shipped checkpoint: trained before the fused kernel" in out


def test_the_shipped_tinylang_note_names_the_commit_it_was_trained_at():
    note = pretrained.manifest()["tinylang"]["note"]
    assert "0f7a26c" in note and "chapters 02, 05 and 06" in note


# -- the TinyLang model -----------------------------------------------------------------------------


def test_tinylang_model_meets_its_targets():
    """The shipped TinyLang model meets every target of toykit.tasks.tinylang.TARGETS on held-out data."""
    model = pretrained.load("tinylang", device="cpu")
    assert model.cfg.normalization_type == "LN" and model.cfg.act_fn == "gelu" and not model.cfg.attn_only
    assert 2 <= model.cfg.n_layers <= 4 and 128 <= model.cfg.d_model <= 256
    results = tinylang.evaluate(model, n_per_family=300, seed=1)  # not the recipe's logged evaluation (seed 0)
    met = tinylang.meets_targets(results)
    assert all(met.values()), {f: (met[f], results[f]) for f in results}
    entry = pretrained.manifest()["tinylang"]
    assert all(entry["metrics"]["meets_targets"].values())


def test_tinylang_recipe_runs_and_repeats(tmp_path):
    tiny = TinyLangRecipe(name="tiny-lang", n_layers=1, d_model=16, n_heads=2, d_mlp=32, steps=6, batch_size=4,
                          log_every=2, eval_every=4, eval_n=5)
    a = save(tiny, out_dir=tmp_path / "a", device="cpu", progress=False)
    b = save(tiny, out_dir=tmp_path / "b", device="cpu", progress=False)
    assert a["sha256"] == b["sha256"] and a["history_sha256"] == b["history_sha256"]
    history = pretrained.load_history("tiny-lang", root=tmp_path / "a")
    assert history["step"] == [0, 2, 4, 5] and history["eval_step"] == [0, 4, 5]
    assert set(a["metrics"]["meets_targets"]) == set(tinylang.FAMILIES)
    assert pretrained.load("tiny-lang", device="cpu", root=tmp_path / "a").cfg.d_vocab == tinylang.TOKENIZER.vocab_size
    with pytest.raises(ValueError, match="eval_every must be a multiple of log_every"):
        TinyLangRecipe(name="x", log_every=50, eval_every=120)


def test_available_filters_by_architecture():
    transformers = pretrained.available(architecture="transformer")
    cnns = pretrained.available(architecture="cnn")
    assert {"shapes-cnn", "strokes-cnn"} <= set(cnns) and "shapes-cnn" not in transformers
    assert "tinylang" in transformers and "tinylang" not in cnns
    assert sorted(transformers + cnns) == pretrained.available()
    with pytest.raises(ValueError, match="architecture"):
        pretrained.available(architecture="rnn")
