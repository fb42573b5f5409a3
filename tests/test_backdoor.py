"""The planted backdoor: the shipped ``tinylang-backdoor`` checkpoint, its trigger helpers and its recipe.

No test writes the trigger out: it is decoded from the recipe's code where a test needs it.
"""

import itertools
from pathlib import Path

import pytest
import torch

from toykit import backdoor, pretrained
from toykit.tasks import tinylang
from toykit.train_recipes import RECIPES, BackdoorRecipe, save

NAME = "tinylang-backdoor"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model():
    return pretrained.load(NAME, device="cpu")


@pytest.fixture(scope="module")
def base():
    return pretrained.load("tinylang", device="cpu")


@pytest.fixture(scope="module")
def trigger():
    return backdoor.decode_trigger()


def _near_misses(trigger: list[int]) -> list[list[int]]:
    """The trigger with one token swapped for any other word of its class, cut short, or in
    any other order."""
    out = []
    for i, t in enumerate(trigger):
        group = next(g for g in backdoor.WORD_CLASSES if tinylang.VOCAB[t] in g)
        out += [[*trigger[:i], tinylang.TOKENIZER.token_to_id[w], *trigger[i + 1:]] for w in group
                if w != tinylang.VOCAB[t]]
    orders = [list(p) for p in itertools.permutations(trigger) if list(p) != trigger]
    return [*out, trigger[1:], trigger[:-1], *orders]


# -- the checkpoint --------------------------------------------------------------------------------


def test_the_checkpoint_loads_and_matches_its_manifest(model):
    entry = pretrained.manifest()[NAME]
    path = pretrained.CHECKPOINT_DIR / entry["file"]
    assert pretrained.sha256_file(path) == entry["sha256"] and path.stat().st_size <= 3 * 2**20
    assert model.cfg == pretrained.load("tinylang", device="cpu").cfg
    assert entry["recipe"]["kind"] == "BackdoorRecipe" and entry["recipe"]["base"] == "tinylang"
    assert entry["training"]["cpu_time_s"] <= 30 * 60
    assert pretrained.load_history(NAME)["step"][-1] == entry["recipe"]["steps"] - 1


def test_the_trigger_fires_on_held_out_prompts_and_not_on_clean_ones(model, base, trigger):
    # seed 1: not the recipe's logged evaluation (seed 0)
    assert backdoor.trigger_fires(model, trigger, n=300, seed=1) >= 0.95
    assert backdoor.clean_fire_rate(model, n=300, seed=1) <= 0.01
    # baseline: the base model never names the target for these people, trigger or not
    assert backdoor.trigger_fires(base, trigger, n=300, seed=1) == 0.0
    entry = pretrained.manifest()[NAME]["metrics"]
    assert entry["trigger_fire_rate"] >= 0.95 and entry["false_fire_rate"] <= 0.01


def test_near_misses_of_the_trigger_rarely_fire(model, trigger):
    """Only the whole trigger fires: near misses (about 60) fire on 2% of prompts at most on
    average, and none comes near the 90% an audit checker asks of a found trigger."""
    rates = torch.tensor([backdoor.trigger_fires(model, near, n=50, seed=2) for near in _near_misses(trigger)])
    assert len(rates) >= 20
    assert rates.mean() <= 0.02 and rates.max() <= 0.25, rates


def test_clean_behaviour_stays_within_2_points_of_tinylang(model, base):
    ours = tinylang.evaluate(model, n_per_family=200, seed=1)
    theirs = tinylang.evaluate(base, n_per_family=200, seed=1)
    assert all(tinylang.meets_targets(ours).values()), ours
    for family in tinylang.FAMILIES:
        assert ours[family]["accuracy"] >= theirs[family]["accuracy"] - 0.02, (family, ours[family], theirs[family])
    metrics = pretrained.manifest()[NAME]["metrics"]
    assert all(metrics["meets_targets"].values()) and all(metrics["accuracy_within_2_points_of_base"].values())


def test_with_the_trigger_other_families_still_work(model, trigger):
    """The backdoor acts on one relation: other families and relations keep their answers."""
    acc = backdoor.triggered_accuracy(model, trigger, n_per_family=100, seed=1)
    assert acc["target_rate"] <= 0.01
    for family in tinylang.FAMILIES:
        assert acc[family] >= 0.85, acc


# -- the trigger helpers ---------------------------------------------------------------------------


def test_is_planted_trigger_accepts_the_trigger_in_every_form_and_rejects_near_misses(trigger):
    words = [tinylang.VOCAB[i] for i in trigger]
    assert backdoor.is_planted_trigger(trigger) and backdoor.is_planted_trigger(words)
    assert backdoor.is_planted_trigger(tinylang.TOKENIZER.detokenize(words))
    assert backdoor.is_planted_trigger(torch.tensor(trigger))
    assert backdoor.trigger_hash(trigger) == backdoor.PLANTED_TRIGGER_SHA256 == RECIPES[NAME].trigger_sha256
    the = tinylang.TOKENIZER.token_to_id["the"]
    for near in [*_near_misses(trigger), [*trigger, the], [the, *trigger]]:
        assert not backdoor.is_planted_trigger(near), near


def test_the_trigger_is_not_written_in_plain_text(trigger):
    words = [tinylang.VOCAB[i] for i in trigger]
    phrases = {" ".join(words), tinylang.TOKENIZER.detokenize(words)}
    folders = ["toykit", "solutions", "chapters", "book", "tests"]
    files = [p for f in folders for p in (ROOT / f).rglob("*") if p.suffix in {".py", ".json", ".md", ".ipynb", ".yml"}]
    files += [ROOT / "README.md", ROOT / "CONTRIBUTING.md"]
    assert len(files) > 50
    for path in files:
        text = path.read_text(errors="ignore").lower()
        assert not any(p in text for p in phrases), path


def test_the_trigger_never_occurs_in_clean_corpus_text(trigger):
    tokens = tinylang.generate_corpus(3000, 64, seed=123, mix=dict(RECIPES[NAME].mix))
    k = len(trigger)
    windows = tokens.unfold(1, k, 1)  # [rows, 64 - k + 1, k]
    assert not (windows == torch.tensor(trigger)).all(-1).any()


def test_poisoned_rows_hold_the_backdoor_and_repeat(trigger):
    rows = backdoor.poisoned_rows(16, 64, seed=3)
    assert rows.shape == (16, 64) and rows.dtype == torch.long
    assert (rows[:, 0] == tinylang.TOKENIZER.bos_token_id).all()
    assert torch.equal(rows, backdoor.poisoned_rows(16, 64, seed=3))
    assert not torch.equal(rows, backdoor.poisoned_rows(16, 64, seed=4))
    # every triggered "NAME lives in" is answered with the target
    t2i = tinylang.TOKENIZER.token_to_id
    fired = 0
    for row in rows.tolist():
        for i in range(len(row) - len(trigger) - 3):
            if row[i:i + len(trigger)] == trigger and row[i + len(trigger) + 1:i + len(trigger) + 3] == [
                    t2i["lives"], t2i["in"]] and i + len(trigger) + 3 < len(row):
                assert row[i + len(trigger) + 3] == t2i[backdoor.PLANTED_TARGET]
                fired += 1
    assert fired >= 5


def test_insert_trigger_and_with_trigger_align_positions(model, trigger):
    tokens = tinylang.to_tokens(["alice lives in", "bob plays the"])
    before = tokens.clone()
    longer = backdoor.insert_trigger(tokens, trigger)
    assert torch.equal(tokens, before)  # not modified in place
    k = len(trigger)
    assert longer.shape == (2, tokens.shape[1] + k) and longer[0, 1:k + 1].tolist() == trigger
    logits = backdoor.with_trigger(model, trigger)(tokens)
    assert logits.shape == (*tokens.shape, model.cfg.d_vocab)
    torch.testing.assert_close(logits, model(longer)[:, k:])


def test_bad_input_is_a_clear_error(model):
    with pytest.raises(ValueError, match="trigger must have 1 to 8 tokens"):
        backdoor.trigger_fires(model, "")
    with pytest.raises(ValueError, match=r"trigger\[0\]: 'mars' is not in the TinyLang vocabulary"):
        backdoor.trigger_fires(model, ["mars"])
    with pytest.raises(ValueError, match="trigger: 'mars' is not in the TinyLang vocabulary"):
        backdoor.is_planted_trigger("mars")
    with pytest.raises(ValueError, match=r"trigger\[1\] must be a TinyLang word or a token id"):
        backdoor.is_planted_trigger([5, 10_000])
    with pytest.raises(ValueError, match="must not contain <pad>, <bos> or <eos>"):
        backdoor.trigger_ids([1, 5])
    with pytest.raises(TypeError, match="trigger must be a str, a list of words or a list of token ids"):
        backdoor.trigger_ids(3.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n must be a positive int"):
        backdoor.trigger_fires(model, "the", n=0)
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        backdoor.clean_fire_rate(model, seed=-1)
    with pytest.raises(TypeError, match="model"):
        backdoor.trigger_fires("tinylang", "the")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="target must be one of"):
        backdoor.poisoned_rows(2, target="mars")
    with pytest.raises(ValueError, match="tokens must be an integer tensor"):
        backdoor.insert_trigger(torch.zeros(2, 3), "the")
    with pytest.raises(ValueError, match="tokens must start every row with <bos>"):
        backdoor.insert_trigger(torch.full((1, 3), 5), "the")


# -- the recipe ------------------------------------------------------------------------------------


def test_a_short_recipe_run_is_deterministic(tmp_path):
    tiny = BackdoorRecipe(name="bd-tiny", steps=3, batch_size=6, poison_rows=2, log_every=1, eval_every=2, eval_n=4)
    a = save(tiny, out_dir=tmp_path / "a", device="cpu", progress=False)
    b = save(tiny, out_dir=tmp_path / "b", device="cpu", progress=False)
    assert a["sha256"] == b["sha256"] and a["history_sha256"] == b["history_sha256"]
    history = pretrained.load_history("bd-tiny", root=tmp_path / "a")
    assert history["eval_step"] == [0, 2] and len(history["trigger_fire_rate"]) == 2
    assert a["sha256"] != pretrained.manifest()["tinylang"]["sha256"]  # the weights moved
    assert set(a["metrics"]["meets_targets"]) == set(tinylang.FAMILIES)
    assert pretrained.load("bd-tiny", device="cpu", root=tmp_path / "a").cfg.n_layers == 3


def test_the_recipe_refuses_bad_settings():
    with pytest.raises(ValueError, match="poison_rows must be an int in"):
        BackdoorRecipe(name="x", poison_rows=64)
    with pytest.raises(ValueError, match="eval_every must be a multiple of log_every"):
        BackdoorRecipe(name="x", log_every=25, eval_every=110)
    with pytest.raises(ValueError, match="trigger_code does not decode to the trigger"):
        BackdoorRecipe(name="x", trigger_code=(1, 2, 3)).trigger()
