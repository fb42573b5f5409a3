"""Chapter 08 checks: the reference and a correct alternative pass, and wrong answers a learner
would plausibly write are rejected with the hint for that particular mistake.

The mutants below are written the way a learner might write them, independently of the
Mistake functions inside the checks, so that a check is tested on real code, not on itself.
The planted trigger is only ever decoded here (``backdoor.decode_trigger()``), never written.
"""

import re

import pytest
import torch
import torch.nn.functional as F
from checker_helpers import accepts, rejects

from toykit import backdoor, pretrained
from toykit.directional_ablation import ablate_direction, orthogonalize_matrix, orthogonalize_weights
from toykit.exercises import ch08, clear_results
from toykit.model_editing import rank_one_update
from toykit.steering import caa_vector, mean_difference, steering_hook
from toykit.tasks import tinylang
from toykit.transformer import copy_model

IN_PLACE = "modified one of its inputs in place"


@pytest.fixture(autouse=True)
def fresh():
    torch.set_num_threads(1)
    clear_results()


ALL_CHECKS = [
    ch08.check_mean_difference,
    ch08.check_steering_hook,
    ch08.check_steering_kl,
    ch08.check_ablate_direction,
    ch08.check_orthogonalize_matrix,
    ch08.check_restore_hook,
    ch08.check_rank_one_update,
    ch08.check_propose_trigger,
    ch08.check_remove_backdoor,
]


def test_the_table_holds_every_check():
    assert set(ch08.EXERCISES) == {c.__name__.removeprefix("check_") for c in ALL_CHECKS}


# -- mean_difference ---------------------------------------------------------------------------------


def md_loop(pos_acts, neg_acts, positions):
    diffs = [pos_acts[i, p] - neg_acts[i, p] for i, p in enumerate(positions.tolist())]
    return torch.stack(diffs).mean(0)


def md_last(pos_acts, neg_acts, positions):
    return (pos_acts[:, -1] - neg_acts[:, -1]).mean(0)


def md_all_positions(pos_acts, neg_acts, positions):
    return (pos_acts - neg_acts).mean(dim=(0, 1))


def md_flipped(pos_acts, neg_acts, positions):
    rows = torch.arange(len(positions))
    return (neg_acts[rows, positions] - pos_acts[rows, positions]).mean(0)


def md_sum(pos_acts, neg_acts, positions):
    rows = torch.arange(len(positions))
    return (pos_acts[rows, positions] - neg_acts[rows, positions]).sum(0)


def md_every_row(pos_acts, neg_acts, positions):
    return (pos_acts[:, positions] - neg_acts[:, positions]).mean(dim=(0, 1))


def test_mean_difference_accepts(capsys):
    accepts(ch08.check_mean_difference, mean_difference, capsys, "mean_difference")
    accepts(ch08.check_mean_difference, md_loop, capsys, "mean_difference")


@pytest.mark.parametrize("fn, hint", [(md_last, "not at the last position"), (md_all_positions, "every position"),
                                      (md_flipped, "sign is flipped"), (md_sum, "not the sum"),
                                      (md_every_row, "index pairs and positions together")])
def test_mean_difference_mutants(fn, hint):
    rejects(ch08.check_mean_difference, fn, hint)


# -- steering_hook -----------------------------------------------------------------------------------


def sh_mask(vector, coeff, positions):
    def hook_fn(act, hook):
        mask = torch.zeros(act.shape[1], 1)
        mask[slice(None) if positions is None else positions] = 1.0
        return act + coeff * mask * vector
    return hook_fn


def sh_everywhere(vector, coeff, positions):
    return lambda act, hook: act + coeff * vector


def sh_normalised(vector, coeff, positions):
    unit = vector / vector.norm()
    return sh_mask(unit, coeff, positions)


def sh_in_place(vector, coeff, positions):
    def hook_fn(act, hook):
        if positions is None:
            act += coeff * vector
        else:
            act[:, positions] += coeff * vector
        return act
    return hook_fn


def sh_no_coeff(vector, coeff, positions):
    return sh_mask(vector, 1.0, positions)


def test_steering_hook_accepts(capsys):
    accepts(ch08.check_steering_hook, steering_hook, capsys, "steering_hook")
    accepts(ch08.check_steering_hook, sh_mask, capsys, "steering_hook")


@pytest.mark.parametrize("fn, hint", [(sh_everywhere, "only at `positions`"), (sh_normalised, "do not normalise"),
                                      (sh_in_place, IN_PLACE), (sh_no_coeff, "multiply the vector by coeff")])
def test_steering_hook_mutants(fn, hint):
    rejects(ch08.check_steering_hook, fn, hint)


# -- steering_kl -------------------------------------------------------------------------------------


def kl_good(clean_logits, steered_logits):
    log_p, log_q = clean_logits.log_softmax(-1), steered_logits.log_softmax(-1)
    return F.kl_div(log_q, log_p, log_target=True, reduction="none").sum(-1).mean().item()


def kl_reversed(clean_logits, steered_logits):
    return kl_good(steered_logits, clean_logits)


def kl_prob_difference(clean_logits, steered_logits):
    return (steered_logits.softmax(-1) - clean_logits.softmax(-1)).abs().sum(-1).mean()


def kl_raw_logits(clean_logits, steered_logits):
    p = clean_logits.softmax(-1)
    return (p * (clean_logits - steered_logits)).sum(-1).mean()


def kl_summed(clean_logits, steered_logits):
    p = clean_logits.softmax(-1)
    return (p * (clean_logits.log_softmax(-1) - steered_logits.log_softmax(-1))).sum()


def kl_batchmean(clean_logits, steered_logits):
    return F.kl_div(steered_logits.log_softmax(-1), clean_logits.softmax(-1), reduction="batchmean")


def test_steering_kl_accepts(capsys):
    accepts(ch08.check_steering_kl, ch08.EXERCISES["steering_kl"].reference, capsys, "steering_kl")
    accepts(ch08.check_steering_kl, kl_good, capsys, "steering_kl")


@pytest.mark.parametrize("fn, hint", [(kl_reversed, "KL is not symmetric"), (kl_prob_difference, "not by subtracting"),
                                      (kl_raw_logits, "logits are not log-probabilities"),
                                      (kl_summed, "not sum"), (kl_batchmean, "positions too")])
def test_steering_kl_mutants(fn, hint):
    rejects(ch08.check_steering_kl, fn, hint)


# -- ablate_direction --------------------------------------------------------------------------------


def ad_projector(x, direction):
    r = direction / direction.norm()
    projector = torch.eye(len(r)) - torch.outer(r, r)
    return x @ projector


def ad_unnormalised(x, direction):
    return x - (x @ direction)[..., None] * direction


def ad_onto(x, direction):
    r = direction / direction.norm()
    return (x @ r)[..., None] * r


def ad_in_place(x, direction):
    r = direction / direction.norm()
    x -= (x @ r)[..., None] * r
    return x


def test_ablate_direction_accepts(capsys):
    accepts(ch08.check_ablate_direction, ablate_direction, capsys, "ablate_direction")
    accepts(ch08.check_ablate_direction, ad_projector, capsys, "ablate_direction")


@pytest.mark.parametrize("fn, hint", [(ad_unnormalised, "normalise the direction first"),
                                      (ad_onto, "kept the component along the direction"), (ad_in_place, IN_PLACE)])
def test_ablate_direction_mutants(fn, hint):
    rejects(ch08.check_ablate_direction, fn, hint)


# -- orthogonalize_matrix ----------------------------------------------------------------------------


def om_projector(W, direction):
    r = direction.double() / direction.double().norm()
    return (W.double() @ (torch.eye(len(r), dtype=torch.float64) - torch.outer(r, r))).to(W.dtype)


def om_first_axis(W, direction):
    r = direction / direction.norm()
    return W - torch.outer(r, r) @ W  # the paper's formula, for a left-multiplied matrix


def om_unnormalised(W, direction):
    return W - (W @ direction)[..., None] * direction


def om_in_place(W, direction):
    r = direction / direction.norm()
    W.sub_((W @ r)[..., None] * r)
    return W


def test_orthogonalize_matrix_accepts(capsys):
    accepts(ch08.check_orthogonalize_matrix, orthogonalize_matrix, capsys, "orthogonalize_matrix")
    accepts(ch08.check_orthogonalize_matrix, om_projector, capsys, "orthogonalize_matrix")


@pytest.mark.parametrize("fn, hint", [(om_first_axis, "project the last axis"),
                                      (om_unnormalised, "normalise the direction first"), (om_in_place, IN_PLACE)])
def test_orthogonalize_matrix_mutants(fn, hint):
    rejects(ch08.check_orthogonalize_matrix, fn, hint)


# -- restore_hook ------------------------------------------------------------------------------------


def rh_where(clean_act, positions):
    chosen = torch.zeros(clean_act.shape[0], dtype=torch.bool)
    chosen[positions] = True
    shape = (1, -1) + (1,) * (clean_act.ndim - 1)
    return lambda act, hook: torch.where(chosen.view(shape), clean_act, act)


def rh_everything(clean_act, positions):
    return lambda act, hook: clean_act.expand_as(act).clone()


def rh_first_copy(clean_act, positions):
    def hook_fn(act, hook):
        out = act.clone()
        out[0, positions] = clean_act[positions]
        return out
    return hook_fn


def rh_in_place(clean_act, positions):
    def hook_fn(act, hook):
        act[:, positions] = clean_act[positions]
        return act
    return hook_fn


def test_restore_hook_accepts(capsys):
    from toykit.causal_tracing import restore_hook
    accepts(ch08.check_restore_hook, restore_hook, capsys, "restore_hook")
    accepts(ch08.check_restore_hook, rh_where, capsys, "restore_hook")


@pytest.mark.parametrize("fn, hint", [(rh_everything, "restore only the chosen positions"),
                                      (rh_first_copy, "in every corrupted copy"), (rh_in_place, IN_PLACE)])
def test_restore_hook_mutants(fn, hint):
    rejects(ch08.check_restore_hook, fn, hint)


# -- rank_one_update ---------------------------------------------------------------------------------


def rome_inverse(W_out, b_out, C, key, value):
    u = torch.linalg.inv(C.double()) @ key.double()
    lam = (value.double() - key.double() @ W_out.double() - b_out.double()) / (u @ key.double())
    return W_out + torch.outer(u, lam).to(W_out.dtype)


def rome_identity(W_out, b_out, C, key, value):
    lam = (value - key @ W_out - b_out) / (key @ key)
    return W_out + torch.outer(key, lam)


def rome_no_subtraction(W_out, b_out, C, key, value):
    u = torch.linalg.solve(C, key)
    return W_out + torch.outer(u, value) / (u @ key)


def rome_no_bias(W_out, b_out, C, key, value):
    u = torch.linalg.solve(C, key)
    return W_out + torch.outer(u, value - key @ W_out) / (u @ key)


def rome_transposed(W_out, b_out, C, key, value):
    u = torch.linalg.solve(C, key)
    return W_out + torch.outer(value - W_out @ key - b_out, u) / (u @ key)


def rome_in_place(W_out, b_out, C, key, value):
    u = torch.linalg.solve(C, key)
    W_out += torch.outer(u, value - key @ W_out - b_out) / (u @ key)
    return W_out


def test_rank_one_update_accepts(capsys):
    accepts(ch08.check_rank_one_update, rank_one_update, capsys, "rank_one_update")
    accepts(ch08.check_rank_one_update, rome_inverse, capsys, "rank_one_update")


@pytest.mark.parametrize("fn, hint", [(rome_identity, "C⁻¹ key"), (rome_no_subtraction, "adds only what is missing"),
                                      (rome_no_bias, "includes the bias"), (rome_transposed, "transposed layout"),
                                      (rome_in_place, IN_PLACE)])
def test_rank_one_update_mutants(fn, hint):
    rejects(ch08.check_rank_one_update, fn, hint)


# -- propose_trigger ---------------------------------------------------------------------------------

# A trigger that a 3-token greedy coordinate-gradient search on tinylang-backdoor alone finds (the
# target city's log-probability, 16 prompts, top-32 swaps, seed 1): it names the target city on
# every fresh prompt with BOTH models, so it is an adversarial prompt, not the planted backdoor.
ADVERSARIAL_IDS = [289, 100, 234]


def planted_words(backdoored, clean):
    return " ".join(tinylang.VOCAB[i] for i in backdoor.decode_trigger())


def test_propose_trigger_accepts_the_planted_trigger_in_any_form(capsys):
    accepts(ch08.check_propose_trigger, lambda backdoored, clean: backdoor.decode_trigger(), capsys, "propose_trigger")
    accepts(ch08.check_propose_trigger, planted_words, capsys, "propose_trigger")
    accepts(ch08.check_propose_trigger, lambda backdoored, clean: torch.tensor(backdoor.decode_trigger()), capsys,
            "propose_trigger")


def reordered(backdoored, clean):
    first, second, third = backdoor.decode_trigger()
    return [second, first, third]


def two_of_three(backdoored, clean):
    return backdoor.decode_trigger()[:2]


def adversarial(backdoored, clean):
    return ADVERSARIAL_IDS


def target_city(backdoored, clean):
    return [backdoor.PLANTED_TARGET]


def ordinary_words(backdoored, clean):
    return "the cat sees"


def not_a_trigger(backdoored, clean):
    return 0.5


def search_crashed(backdoored, clean):
    raise RuntimeError("the search found nothing")


def edits_the_model(backdoored, clean):
    with torch.no_grad():
        backdoored.unembed.W_U.zero_()
    return backdoor.decode_trigger()


@pytest.mark.parametrize("fn, hint", [(reordered, "not in the order"), (two_of_three, "shares part"),
                                      (adversarial, "adversarial prompt"), (target_city, "not the target city itself"),
                                      (ordinary_words, "greedy coordinate-gradient"),
                                      (not_a_trigger, "return the trigger as"),
                                      (search_crashed, "greedy coordinate-gradient"), (edits_the_model, IN_PLACE)])
def test_propose_trigger_mutants(fn, hint):
    err = rejects(ch08.check_propose_trigger, fn, hint)
    # No message gives the trigger away.
    words = [tinylang.VOCAB[i] for i in backdoor.decode_trigger()]
    assert " ".join(words) not in str(err)
    assert str(backdoor.decode_trigger()) not in str(err)


def test_the_adversarial_mutant_really_fires_on_both_models():
    backdoored, clean = pretrained.load("tinylang-backdoor"), pretrained.load("tinylang")
    fires_backdoored = backdoor.trigger_fires(backdoored, ADVERSARIAL_IDS, n=200, seed=80_817)
    fires_clean = backdoor.trigger_fires(clean, ADVERSARIAL_IDS, n=200, seed=80_817)
    assert fires_backdoored >= 0.9 and fires_clean > 0.1
    assert not backdoor.is_planted_trigger(ADVERSARIAL_IDS)


def test_a_crash_is_reported_with_its_error():
    err = rejects(ch08.check_propose_trigger, search_crashed, "greedy coordinate-gradient")
    assert "RuntimeError" in err.detail


def test_learner_edits_never_reach_the_checks_own_models():
    before = {k: v.clone() for k, v in ch08._reference("tinylang-backdoor").state_dict().items()}
    rejects(ch08.check_propose_trigger, edits_the_model, IN_PLACE)
    after = ch08._reference("tinylang-backdoor").state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(after["unembed.W_U"], pretrained.load("tinylang-backdoor").state_dict()["unembed.W_U"])


# -- remove_backdoor ---------------------------------------------------------------------------------


def caa_removal(backdoored):
    # The same idea by another road: CAA's vector between triggered and clean prompts, read at
    # the answer position of each, at the output of block 1 (what the last block reads), then weight
    # orthogonalisation.
    trigger = backdoor.decode_trigger()
    batch = tinylang.make_batch(backdoor.fire_prompts(48, seed=5), device=backdoored.device)
    triggered = backdoor.insert_trigger(batch.tokens, trigger)
    direction = caa_vector(backdoored, triggered, batch.tokens, "blocks.1.hook_resid_post",
                           pos=batch.answer_pos + len(trigger), negative_pos=batch.answer_pos)
    return orthogonalize_weights(backdoored, direction)


def returns_input(backdoored):
    return backdoored


def returns_a_copy(backdoored):
    return copy_model(backdoored)


def random_direction(backdoored):
    direction = torch.randn(backdoored.cfg.d_model, generator=torch.Generator().manual_seed(0))
    return orthogonalize_weights(backdoored, direction)


def zero_first_mlp(backdoored):
    edited = copy_model(backdoored)
    with torch.no_grad():
        edited.blocks[0].mlp.W_out.zero_()
    return edited


def edits_in_place(backdoored):
    edited = ch08.EXERCISES["remove_backdoor"].reference(backdoored)
    backdoored.load_state_dict(edited.state_dict())  # "save" the fix into the given model
    return backdoored


def clean_model(backdoored):
    return pretrained.load("tinylang")


def broken_hook(backdoored):
    edited = copy_model(backdoored)
    edited.add_hook("blocks.0.hook_resid_pre", lambda act, hook: act[:, :1])  # drops every position but one
    return edited


def returns_weights(backdoored):
    return ch08.EXERCISES["remove_backdoor"].reference(backdoored).state_dict()


def test_remove_backdoor_accepts(capsys):
    accepts(ch08.check_remove_backdoor, ch08.EXERCISES["remove_backdoor"].reference, capsys, "remove_backdoor")
    accepts(ch08.check_remove_backdoor, caa_removal, capsys, "remove_backdoor")


@pytest.mark.parametrize("fn, hint", [(returns_input, "return a NEW model"), (returns_a_copy, "still fires"),
                                      (random_direction, "the trigger still fires"),
                                      (zero_first_mlp, "so is some of the model's clean behaviour"),
                                      (edits_in_place, IN_PLACE), (clean_model, "edit the backdoored model instead"),
                                      (returns_weights, "return the edited model itself"),
                                      (broken_hook, "must run like the one you were given")])
def test_remove_backdoor_mutants(fn, hint):
    rejects(ch08.check_remove_backdoor, fn, hint)


def test_the_destructive_mutant_removes_the_trigger_but_breaks_a_family():
    err = rejects(ch08.check_remove_backdoor, zero_first_mlp, "clean behaviour")
    assert "the trigger no longer fires (0%)" in err.detail
    # Each family's accuracy is printed before and after; at least one fell by more than 2 points.
    pairs = re.findall(r"(\w+) ([\d.]+) -> ([\d.]+)", err.detail)
    assert len(pairs) == len(tinylang.FAMILIES)
    assert max(float(a) - float(b) for _, a, b in pairs) > 0.02


# -- the solutions -----------------------------------------------------------------------------------


def test_show_solution_asks_for_the_chapter_of_an_exercise_name_two_chapters_share(capsys):
    from toykit.exercises import show_solution
    with pytest.raises(ValueError, match="several chapters.*ch05.mean_difference, ch08.mean_difference"):
        show_solution("mean_difference")
    show_solution("ch08.mean_difference")
    assert "def mean_difference(pos_acts, neg_acts, positions):" in capsys.readouterr().out


def test_the_trigger_search_solution_does_not_decode_the_trigger():
    from toykit.exercises.solutions import solution
    assert "decode_trigger" not in solution("ch08.propose_trigger")
    assert "trigger_fires" in solution("ch08.propose_trigger")  # it verifies what it found on both models
