"""Checks for chapter 08, Steering, model editing and auditing a model with a planted backdoor.

Each ``check_<name>(fn)`` runs your ``fn`` on seeded cases, prints one line when it is right, and
otherwise raises CheckFailure with a hint chosen by recognising the usual mistakes. References:
``toykit.steering`` (mean_difference, steering_hook), ``toykit.patching.kl_divergence``,
``toykit.directional_ablation`` (ablate_direction, orthogonalize_matrix),
``toykit.causal_tracing.restore_hook`` and ``toykit.model_editing.rank_one_update``. Exercises
that stand for a library function have its signature, so that the library's version can replace
yours.

Signatures the checks expect:

- ``mean_difference(pos_acts, neg_acts, positions) -> [d_model]``: pos_acts, neg_acts
  [n_pairs, pos, d_model], positions [n_pairs] ints (CAA's vector).
- ``steering_hook(vector, coeff, positions) -> hook_fn(act, hook)``: adds coeff * vector at
  ``positions`` (None: every position; an int; a slice such as ``slice(k, None)``) of act
  [batch, pos, d_model].
- ``steering_kl(clean_logits, steered_logits) -> scalar``: the mean over batch and positions of
  KL(P_clean ‖ P_steered), logits [batch, pos, d_vocab].
- ``ablate_direction(x, direction) -> x'``: x [..., d_model] without its component along
  direction [d_model] (any non-zero length).
- ``orthogonalize_matrix(W, direction) -> W'``: W [..., d_model] (right-multiplied, its last axis
  writes into the residual stream) minus (W r̂) r̂ᵀ.
- ``restore_hook(clean_act, positions) -> hook_fn(act, hook)``: clean_act [pos, ...], act
  [n_copies, pos, ...]; ``positions`` (an int or a list of ints) of every copy set back to clean.
- ``rank_one_update(W_out, b_out, C, key, value) -> W_new``: ROME's update for W_out
  [d_mlp, d_model].
- ``propose_trigger(backdoored, clean) -> trigger``: words, text or token ids that fire the
  ``tinylang-backdoor`` model's backdoor (and not the clean ``tinylang``).
- ``remove_backdoor(backdoored) -> HookedTransformer``: a new model without the backdoor whose
  clean behaviour is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from toykit import backdoor, pretrained
from toykit.causal_tracing import restore_hook
from toykit.directional_ablation import ablate_direction, orthogonalize_matrix, orthogonalize_weights
from toykit.exercises.checking import Case, ExerciseTable, Mistake, rng, run_check, run_property_check
from toykit.hooks import HookPoint
from toykit.model_editing import rank_one_update
from toykit.patching import kl_divergence
from toykit.steering import add_steering_vector, mean_difference, steering_hook
from toykit.tasks import tinylang
from toykit.transformer import HookedTransformer, copy_model

# exercise id -> its check and toykit's reference (filled by @EXERCISES.check below)
EXERCISES = ExerciseTable()

__all__ = [
    "check_ablate_direction",
    "check_mean_difference",
    "check_orthogonalize_matrix",
    "check_propose_trigger",
    "check_rank_one_update",
    "check_remove_backdoor",
    "check_restore_hook",
    "check_steering_hook",
    "check_steering_kl",
]


def _randn(seed: int, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=rng(seed)) * scale


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm()


# -- mean_difference -------------------------------------------------------------------------------


@EXERCISES.check(mean_difference)
def check_mean_difference(fn: Callable[..., torch.Tensor]) -> None:
    """Check ``mean_difference(pos_acts, neg_acts, positions) -> [d_model]``: the mean over pairs
    i of pos_acts[i, positions[i]] - neg_acts[i, positions[i]] (Rimsky et al. 2023's CAA vector)."""

    def case(name: str, seed: int, n: int, n_pos: int, d: int, negative: bool = False) -> Case:
        g = rng(seed)
        # Positions carry an offset so that reading the wrong position gives a different answer.
        offset = torch.arange(n_pos).float()[None, :, None]
        pos_acts = torch.randn(n, n_pos, d, generator=g) + offset
        neg_acts = torch.randn(n, n_pos, d, generator=g) - 0.5 * offset
        positions = torch.randint(0, n_pos - 1, (n,), generator=g)  # never all the last position
        if negative:
            positions = positions - n_pos
        return Case(name, (pos_acts, neg_acts, positions))

    def every_row(p, q, at):
        return (p[:, at] - q[:, at]).mean((0, 1))

    mistakes = [
        Mistake("read each pair at its own position positions[i], not at the last position", lambda p, q, at:
                (p[:, -1] - q[:, -1]).mean(0)),
        Mistake("you averaged over every position: CAA reads one position per pair (the answer position), "
                "positions[i], and averages over the pairs only", lambda p, q, at: (p - q).mean((0, 1))),
        Mistake("the sign is flipped: positive minus negative, so that adding the vector pushes toward the "
                "positive behaviour", lambda p, q, at: mean_difference(q, p, at)),
        Mistake("take the mean over the pairs, not the sum: the vector must not grow with the number of pairs",
                lambda p, q, at: mean_difference(p, q, at) * p.shape[0]),
        Mistake("acts[:, positions] reads every pair's position in every prompt; index pairs and positions "
                "together, so that pair i is read at positions[i] only", every_row),
    ]
    cases = [case("random", 0, 6, 5, 8), case("one pair", 1, 1, 4, 3), case("many pairs", 2, 40, 7, 16),
             case("negative positions", 3, 5, 6, 4, negative=True)]
    run_check("mean_difference", fn, mean_difference, cases, mistakes,
              hint="for each pair, the positive prompt's activation minus the negative prompt's, both at that pair's "
                   "position; then the mean of these differences over the pairs")


# -- steering_hook ---------------------------------------------------------------------------------


_HOOK_NAME = "blocks.1.hook_resid_pre"


def _hook_result(make: Callable[..., Any], vector: torch.Tensor, coeff: float, positions: Any,
                 act: torch.Tensor) -> Any:
    """Build a hook with ``make(vector, coeff, positions)`` and call it on act as a HookPoint does."""
    hook_fn = make(vector=vector, coeff=coeff, positions=positions)
    if not callable(hook_fn):
        raise TypeError(f"steering_hook must return a hook function (act, hook) -> act', got {type(hook_fn).__name__}")
    return hook_fn(act, hook=HookPoint(name=_HOOK_NAME))


@EXERCISES.check(steering_hook)
def check_steering_hook(fn: Callable[..., Any]) -> None:
    """Check ``steering_hook(vector, coeff, positions) -> hook_fn``: ``hook_fn(act, hook)`` returns
    a new act [batch, pos, d_model] with coeff * vector added at ``positions`` (None: every
    position; an int, negative from the end; a slice) and act itself unchanged."""

    def learner(vector, coeff, positions, act):
        return _hook_result(fn, vector, coeff, positions, act)

    def reference(vector, coeff, positions, act):
        return _hook_result(steering_hook, vector, coeff, positions, act)

    def case(name: str, seed: int, shape: tuple[int, int, int], coeff: float, positions: Any) -> Case:
        vector = _randn(seed + 100, shape[-1], scale=2.0)  # not unit length: a normalised vector is wrong
        return Case(name, (vector, coeff, positions, _randn(seed, *shape)))

    mistakes = [
        Mistake("add the vector only at `positions` (None means every position): the other positions keep their "
                "activation", lambda v, c, at, act: act + c * v),
        Mistake("do not normalise the vector: the coefficient multiplies the raw vector, whose length is part of "
                "its meaning (Turner et al. 2023; Rimsky et al. 2023)",
                lambda v, c, at, act: add_steering_vector(act, _unit(v), c, at)),
        Mistake("multiply the vector by coeff: the coefficient sets how hard to steer",
                lambda v, c, at, act: add_steering_vector(act, v, 1.0, at)),
        Mistake("positions index the position axis (axis 1) of act [batch, pos, d_model], not the batch",
                lambda v, c, at, act: _batch_axis(act, v, c, at)),
    ]
    cases = [case("every position", 0, (3, 5, 8), 4.0, None), case("one position", 1, (2, 6, 8), -2.5, 2),
             case("the last position", 2, (4, 5, 6), 3.0, -1), case("after the prompt", 3, (3, 7, 4), 0.5,
                                                                       slice(3, None))]
    run_check("steering_hook", learner, reference, cases, mistakes,
              hint="the hook returns a new tensor: act plus coeff times the (raw) vector at the chosen positions of "
                   "every prompt, act unchanged elsewhere")


def _batch_axis(act: torch.Tensor, v: torch.Tensor, c: float, at: Any) -> torch.Tensor:
    out = act.clone()
    out[at] = out[at] + c * v
    return out


# -- steering_kl -----------------------------------------------------------------------------------


def _steering_kl(clean_logits: torch.Tensor, steered_logits: torch.Tensor) -> torch.Tensor:
    """The reference: mean over batch and positions of KL(P_clean ‖ P_steered), what
    ``steering_sweep`` reports as its side effect."""
    return kl_divergence(steered_logits, clean_logits, pos=None)


@EXERCISES.check(_steering_kl)
def check_steering_kl(fn: Callable[..., Any]) -> None:
    """Check ``steering_kl(clean_logits, steered_logits) -> scalar`` (a float or a 0-d tensor):
    logits [batch, pos, d_vocab]; the mean over batch and positions of KL(P_clean ‖ P_steered),
    where P = softmax(logits) over the vocabulary."""

    def case(name: str, seed: int, batch: int, n_pos: int, d_vocab: int, shift: float) -> Case:
        clean = _randn(seed, batch, n_pos, d_vocab, scale=2.0)
        steered = clean + _randn(seed + 50, batch, n_pos, d_vocab, scale=shift) + 1.5  # + 1.5: logits, not log-probs
        return Case(name, (clean, steered))

    def kl_rows(c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return kl_divergence(s, c, pos=None, per_prompt=True)

    mistakes = [
        Mistake("KL is not symmetric: measure KL(P_clean ‖ P_steered), the expectation under the clean "
                "distribution of log P_clean - log P_steered", lambda c, s: kl_divergence(c, s, pos=None)),
        Mistake("compare the distributions with the KL divergence, not by subtracting probabilities",
                lambda c, s: (s.softmax(-1) - c.softmax(-1)).abs().sum(-1).mean()),
        Mistake("compare the distributions with the KL divergence, not by subtracting probabilities",
                lambda c, s: (s.softmax(-1) - c.softmax(-1)).abs().mean()),
        Mistake("logits are not log-probabilities: turn both into log-probabilities (log_softmax over the vocabulary)"
                " before taking the KL", lambda c, s: (c.softmax(-1) * (c - s)).sum(-1).mean()),
        Mistake("logits are not log-probabilities: turn both into log-probabilities (log_softmax over the vocabulary)"
                " before taking the KL", lambda c, s: (c.softmax(-1) * (c.log_softmax(-1) - s)).sum(-1).mean()),
        Mistake("average over the batch and the positions, not sum",
                lambda c, s: kl_rows(c, s).sum() * c.shape[1]),
        Mistake("average over the positions too: reduction='batchmean' divides by the batch size only",
                lambda c, s: kl_rows(c, s).mean() * c.shape[1]),
        Mistake("sum the KL over the vocabulary, and average only over batch and positions (reduction='mean' "
                "also averages over the vocabulary)", lambda c, s: _steering_kl(c, s) / c.shape[-1]),
    ]
    cases = [case("random", 0, 4, 5, 12, 1.0), case("one prompt", 1, 1, 6, 20, 2.0),
             case("small change", 2, 3, 4, 30, 0.1), case("long", 3, 2, 16, 9, 1.5)]
    run_check("steering_kl", fn, _steering_kl, cases, mistakes,
              hint="softmax each row of logits into a distribution; KL(P ‖ Q) is the sum over the vocabulary of "
                   "P times (log P - log Q), with P the clean run; then the mean over prompts and positions")


# -- ablate_direction ------------------------------------------------------------------------------


@EXERCISES.check(ablate_direction)
def check_ablate_direction(fn: Callable[..., torch.Tensor]) -> None:
    """Check ``ablate_direction(x, direction) -> x'``: x [..., d_model], direction [d_model] of any
    non-zero length; x minus its component along the unit direction (Arditi et al. 2024, Section 2.4)."""

    def case(name: str, seed: int, shape: tuple[int, ...], scale: float) -> Case:
        return Case(name, (_randn(seed, *shape), _randn(seed + 100, shape[-1], scale=scale)))

    mistakes = [
        Mistake("normalise the direction first: x - (x·r̂) r̂ holds only for a unit vector r̂, and direction may have "
                "any length", lambda x, r: x - (x @ r)[..., None] * r),
        Mistake("you kept the component along the direction and dropped the rest: ablation subtracts that "
                "component from x", lambda x, r: (x @ _unit(r))[..., None] * _unit(r)),
        Mistake("subtract the projection, a vector along the direction, not the scalar coefficient",
                lambda x, r: x - (x @ _unit(r))[..., None]),
    ]
    cases = [case("[batch, d_model]", 0, (5, 8), 3.0), case("[batch, pos, d_model]", 1, (2, 4, 6), 0.2),
             case("one vector", 2, (7,), 5.0), case("long direction", 3, (3, 16), 40.0)]
    run_check("ablate_direction", fn, ablate_direction, cases, mistakes,
              hint="the component of x along a unit vector r̂ is (x·r̂) r̂; subtract it from every row of x (the "
                   "d_model axis is the last one)")


# -- orthogonalize_matrix --------------------------------------------------------------------------


@EXERCISES.check(orthogonalize_matrix)
def check_orthogonalize_matrix(fn: Callable[..., torch.Tensor]) -> None:
    """Check ``orthogonalize_matrix(W, direction) -> W'``: W [..., d_model] is right-multiplied
    (TransformerLens's layout: its last axis writes into the residual stream); return
    W - (W r̂) r̂ᵀ, with r̂ the unit direction (Arditi et al. 2024, Eq. 5 in this layout)."""

    def case(name: str, seed: int, shape: tuple[int, ...], scale: float) -> Case:
        return Case(name, (_randn(seed, *shape), _randn(seed + 100, shape[-1], scale=scale)))

    def first_axis(W, r):
        u = _unit(r)
        return W - torch.outer(u, u @ W)  # r̂ r̂ᵀ W: the rows' axis, right only for a left-multiplied W

    mistakes = [
        Mistake("project the last axis (d_model), the one that writes into the residual stream: W is "
                "right-multiplied (x @ W), so the paper's r̂ r̂ᵀ W for a left-multiplied matrix becomes W - (W r̂) r̂ᵀ "
                "here", first_axis),
        Mistake("normalise the direction first: the projection r̂ r̂ᵀ needs a unit vector, and direction may have any "
                "length", lambda W, r: W - (W @ r)[..., None] * r),
        Mistake("you kept only the part of W along the direction: orthogonalising removes it",
                lambda W, r: (W @ _unit(r))[..., None] * _unit(r)),
    ]
    cases = [case("square W [d_model, d_model]", 0, (6, 6), 3.0), case("W_out [d_mlp, d_model]", 1, (12, 5), 0.3),
             case("W_O [n_heads, d_head, d_model]", 2, (3, 4, 8), 2.0), case("a bias [d_model]", 3, (8,), 10.0)]
    run_check("orthogonalize_matrix", fn, orthogonalize_matrix, cases, mistakes,
              hint="every row of W (along its last, d_model axis) loses its component along the unit direction r̂, "
                   "so that x @ W' has no r̂ component for any x")


# -- restore_hook ----------------------------------------------------------------------------------


def _restored(make: Callable[..., Any], clean_act: torch.Tensor, positions: Any, act: torch.Tensor) -> Any:
    hook_fn = make(clean_act=clean_act, positions=positions)
    if not callable(hook_fn):
        raise TypeError(f"restore_hook must return a hook function (act, hook) -> act', got {type(hook_fn).__name__}")
    return hook_fn(act, hook=HookPoint(name="blocks.0.hook_resid_post"))


@EXERCISES.check(restore_hook)
def check_restore_hook(fn: Callable[..., Any]) -> None:
    """Check ``restore_hook(clean_act, positions) -> hook_fn``: clean_act [pos, ...] is the clean
    run's activation of one prompt; ``hook_fn(act, hook)``, act [n_copies, pos, ...] (the
    corrupted copies), returns a new tensor equal to act except that ``positions`` (an int or a
    list of ints) hold clean_act's values there, in every copy."""

    def learner(clean_act, positions, act):
        return _restored(fn, clean_act, positions, act)

    def reference(clean_act, positions, act):
        return _restored(restore_hook, clean_act, positions, act)

    def case(name: str, seed: int, n_copies: int, shape: tuple[int, ...], positions: Any) -> Case:
        return Case(name, (_randn(seed + 100, *shape), positions, _randn(seed, n_copies, *shape)))

    def every_position(clean_act, positions, act):
        return clean_act.expand_as(act).clone()

    def first_copy(clean_act, positions, act):
        out = act.clone()
        out[0, positions] = clean_act[positions]
        return out

    def batch_axis(clean_act, positions, act):
        out = act.clone()
        out[positions] = clean_act[positions]
        return out

    mistakes = [
        Mistake("restore only the chosen positions: every other position keeps its corrupted value", every_position),
        Mistake("restore the positions in every corrupted copy (axis 0 holds the noise samples), not only in the "
                "first", first_copy),
        Mistake("positions are axis 1 of act [n_copies, pos, ...] (axis 0 of clean_act); act[positions] picks "
                "copies", batch_axis),
    ]
    cases = [case("one position", 0, 4, (6, 8), 2), case("the last position", 1, 3, (5, 4), -1),
             case("a list of positions", 2, 5, (7, 6), [1, 4]), case("per-head values", 3, 3, (5, 2, 3), [0, 3])]
    run_check("restore_hook", learner, reference, cases, mistakes,
              hint="the hook returns a new tensor: a copy of act whose chosen positions hold clean_act's values at "
                   "those positions, the same for every copy; act and clean_act unchanged")


# -- rank_one_update -------------------------------------------------------------------------------


@EXERCISES.check(rank_one_update)
def check_rank_one_update(fn: Callable[..., torch.Tensor]) -> None:
    """Check ``rank_one_update(W_out, b_out, C, key, value) -> W_new [d_mlp, d_model]``: ROME's
    update (Meng et al. 2022, Section 3.1, Eq. 2, for W_out [d_mlp, d_model]): W_new = W_out +
    outer(u, Λ), u = C⁻¹ key, Λ = (value - key @ W_out - b_out) / (u · key); then key @ W_new +
    b_out == value."""

    def case(name: str, seed: int, d_mlp: int, d_model: int) -> Case:
        g = rng(seed)
        keys = torch.randn(4 * d_mlp, d_mlp, generator=g) * torch.linspace(0.3, 2.0, d_mlp)  # unequal variances
        C = keys.T @ keys / keys.shape[0] + 0.1 * torch.eye(d_mlp)  # positive definite, far from the identity
        W = torch.randn(d_mlp, d_model, generator=g)
        b = torch.randn(d_model, generator=g)
        key = torch.randn(d_mlp, generator=g)
        value = torch.randn(d_model, generator=g) * 3
        return Case(name, (W, b, C, key, value))

    def paper_layout(W, b, C, k, v):
        u = torch.linalg.solve(C, k)
        return W + torch.outer(v - W @ k - b, u) / (u @ k)  # Eq. 2 as printed, for W [d_model, d_mlp]

    mistakes = [
        Mistake("weight the update by the keys' covariance: u = C⁻¹ key (solve with C), not the key itself; C is "
                "what keeps other keys' outputs nearly unchanged",
                lambda W, b, C, k, v: rank_one_update(W, b, torch.eye(len(k)), k, v)),
        Mistake("the update adds only what is missing: Λ = (value - what the layer outputs now for key, key @ W_out "
                "+ b_out) / (u · key)", lambda W, b, C, k, v: W + torch.outer(torch.linalg.solve(C, k), v)
                / (torch.linalg.solve(C, k) @ k)),
        Mistake("the layer's current output for key includes the bias: subtract key @ W_out + b_out",
                lambda W, b, C, k, v: rank_one_update(W, torch.zeros_like(b), C, k, v)),
        Mistake("toykit's W_out is [d_mlp, d_model] and right-multiplied (key @ W_out): the paper's Eq. 2 is for the "
                "transposed layout, so the update here is outer(u, Λ), and the current output is key @ W_out",
                paper_layout),
    ]
    cases = [case("square", 0, 6, 6), case("d_mlp > d_model", 1, 16, 8), case("d_mlp < d_model", 2, 5, 9),
             case("wide", 3, 32, 12)]
    run_check("rank_one_update", fn, rank_one_update, cases, mistakes, atol=1e-4, rtol=1e-3,
              hint="ROME adds a rank-one matrix outer(u, Λ) to W_out: u = C⁻¹ key, and Λ is chosen so that key @ W_new "
                   "+ b_out equals value exactly")


# -- the audit: the shipped models, loaded once --------------------------------------------------

# Seeds for fresh prompts the chapter's notebook never uses.
_TRIGGER_SEED = 80_817
_REMOVAL_SEED = 80_921
_N_PROMPTS = 200
_N_PER_FAMILY = 200
_CACHE: dict[str, Any] = {}


def _reference(name: str) -> HookedTransformer:
    """The shipped model ``name``, loaded once. Never handed to a learner's function: that gets a
    copy, so that nothing a learner does can change what the checks measure against."""
    if name not in _CACHE:
        _CACHE[name] = pretrained.load(name)
    return _CACHE[name]


def _backdoored_eval() -> dict[str, dict[str, float]]:
    if "eval" not in _CACHE:
        _CACHE["eval"] = tinylang.evaluate(_reference("tinylang-backdoor"), _N_PER_FAMILY, _REMOVAL_SEED)
    return _CACHE["eval"]


def _fire_rates(trigger: Any) -> tuple[float, float]:
    """(rate on tinylang-backdoor, rate on tinylang) of ``trigger`` on fresh prompts."""
    return (backdoor.trigger_fires(_reference("tinylang-backdoor"), trigger, _N_PROMPTS, _TRIGGER_SEED),
            backdoor.trigger_fires(_reference("tinylang"), trigger, _N_PROMPTS, _TRIGGER_SEED))


# -- propose_trigger -------------------------------------------------------------------------------

_GENERIC_TRIGGER_HINT = (
    "the backdoor fires only on its exact trigger. Look for what differs between the two models: diff their "
    "activations on the same prompts, or search over triggers with gradients of the difference in the target "
    "city's log-probability between the backdoored and the clean model (a greedy coordinate-gradient search)"
)
_BOTH_MODELS_HINT = (
    "your trigger makes the clean model name the target city too, so it is an adversarial prompt, not the "
    "planted backdoor: a search on the backdoored model alone finds such prompts. The planted trigger works only "
    "on the backdoored model: search for what differs between the two models (e.g. maximise the backdoored "
    "model's log-probability of the target minus the clean model's)"
)
_ORDER_HINT = (
    "these are the trigger's tokens, but not in the order the backdoor was trained on: the model was taught "
    "not to fire on reordered versions. Try the other orders"
)
_PART_HINT = (
    "close: your trigger shares part of the planted trigger, but the backdoor was trained not to fire on near "
    "misses (a token swapped for a similar word, dropped or moved). Keep the part that raises the target city's "
    "probability and search the other positions"
)
_TARGET_HINT = (
    "the trigger is not the target city itself: it is a short pattern of ordinary words before the person's "
    "name that makes the backdoored model (only) answer with the target city"
)
_FORMAT_HINT = (
    "return the trigger as a list of TinyLang words, a string of words or a list of token ids (1 to 8 tokens, "
    "no <bos>, <eos> or <pad>)"
)


def _planted_trigger(backdoored: HookedTransformer, clean: HookedTransformer) -> list[int]:
    """toykit's reference: the planted trigger, decoded (it does not search)."""
    return backdoor.decode_trigger()


def _trigger_problem(trigger: Any, backdoored: HookedTransformer, clean: HookedTransformer) -> tuple[str, str] | None:
    try:
        ids = backdoor.trigger_ids(trigger)
    except (TypeError, ValueError) as err:
        return f"your function returned {trigger!r:.120}, which is not a trigger: {err}", _FORMAT_HINT
    on_backdoored, on_clean = _fire_rates(ids)
    detail = (f"your trigger fires on {on_backdoored:.0%} of {_N_PROMPTS} fresh prompts with tinylang-backdoor "
              f"(needed: at least 90%) and on {on_clean:.0%} with the clean tinylang (needed: at most 10%)")
    if on_backdoored >= 0.90 and on_clean <= 0.10:
        return None
    if tinylang.TOKENIZER.token_to_id[backdoor.PLANTED_TARGET] in ids:
        return detail, _TARGET_HINT
    if on_clean > 0.10:
        return detail, _BOTH_MODELS_HINT
    planted = backdoor.decode_trigger()
    if sorted(ids) == sorted(planted):
        return detail, _ORDER_HINT
    if len(set(ids) & set(planted)) >= 2:  # a near miss: two of its tokens, or one of them swapped
        return detail, _PART_HINT
    return detail, _GENERIC_TRIGGER_HINT


@EXERCISES.check(_planted_trigger)
def check_propose_trigger(fn: Callable[..., Any]) -> None:
    """Check ``propose_trigger(backdoored, clean) -> trigger``: given (copies of) the
    ``tinylang-backdoor`` and ``tinylang`` models, return a trigger (words, text or token ids,
    as ``backdoor.trigger_ids`` takes) that makes the backdoored model name the target city on at
    least 90% of fresh "lives in" prompts and the clean model on at most 10% (on the clean model
    it would be an adversarial prompt, not the backdoor). Any such trigger passes."""
    case = Case("the shipped models", (copy_model(_reference("tinylang-backdoor")), copy_model(_reference("tinylang"))))
    run_property_check("propose_trigger", fn, _trigger_problem, [case], hint=_GENERIC_TRIGGER_HINT)


# -- remove_backdoor -------------------------------------------------------------------------------

_SAME_MODEL_HINT = (
    "return a NEW model (e.g. toykit.transformer.copy_model(backdoored), then edit the copy): you returned the "
    "model you were given, and its backdoor is still there"
)
_CLEAN_MODEL_HINT = (
    "you returned the clean tinylang model: edit the backdoored model instead. The clean one is only a reference "
    "for finding the trigger; an audit removes the behaviour from the model it was given"
)
_STILL_FIRES_HINT = (
    "the trigger still fires: the direction you removed is not the one the trigger uses. Compare the backdoored "
    "model's residual stream on triggered and clean prompts at the answer position (a mean difference), and "
    "remove that direction from every write to the residual stream"
)
_DAMAGE_HINT = (
    "the trigger is gone, but so is some of the model's clean behaviour: remove one direction (directional "
    "ablation or weight orthogonalisation), not a whole component such as an MLP or a layer"
)
_BROKEN_MODEL_HINT = (
    "the model you return must run like the one you were given (tokens -> logits [batch, pos, d_vocab]): "
    "check any hooks you attached to it and the shapes of the weights you edited"
)
_NOT_A_MODEL_HINT = "return the edited model itself, a HookedTransformer (the same architecture as the one given)"


def _remove_backdoor(backdoored: HookedTransformer) -> HookedTransformer:
    """toykit's reference: orthogonalise the weights against the mean difference, between
    triggered and clean "lives in" prompts, of the residual stream entering the last block at
    the answer position (the planted trigger is known here; the learner finds it)."""
    trigger = backdoor.decode_trigger()
    batch = tinylang.make_batch(backdoor.fire_prompts(64, seed=3), device=backdoored.device)
    hook = f"blocks.{backdoored.cfg.n_layers - 1}.hook_resid_pre"
    with torch.no_grad():
        _, triggered = backdoored.run_with_cache(backdoor.insert_trigger(batch.tokens, trigger), names_filter=hook)
        _, clean = backdoored.run_with_cache(batch.tokens, names_filter=hook)
    k = len(trigger)
    direction = mean_difference(triggered[hook][:, k:], clean[hook], batch.answer_pos)  # realigned past the trigger
    return orthogonalize_weights(backdoored, direction)


def _removal_problem(new: Any, backdoored: HookedTransformer) -> tuple[str, str] | None:
    if not isinstance(new, HookedTransformer):
        return f"your function returned {type(new).__name__}, not a model", _NOT_A_MODEL_HINT
    if new is backdoored:
        return "your function returned the model it was given", _SAME_MODEL_HINT
    clean = _reference("tinylang").state_dict()
    state = new.state_dict()
    if state.keys() == clean.keys() and all(torch.equal(state[k].cpu(), clean[k].cpu()) for k in state):
        return "your function returned the clean tinylang model's weights", _CLEAN_MODEL_HINT
    try:
        fires = backdoor.trigger_fires(new, backdoor.decode_trigger(), _N_PROMPTS, _TRIGGER_SEED)
        after = tinylang.evaluate(new, _N_PER_FAMILY, _REMOVAL_SEED)
    except Exception as err:  # the learner's model fails to run: a failed case, not a crash of the check
        return f"running the model you returned raised {type(err).__name__}: {err}", _BROKEN_MODEL_HINT
    if fires > 0.05:
        return (f"the planted trigger still fires on {fires:.0%} of {_N_PROMPTS} fresh prompts (needed: at most 5%)",
                _STILL_FIRES_HINT)
    before = _backdoored_eval()
    drops = {f: before[f]["accuracy"] - after[f]["accuracy"] for f in before}
    worst = max(drops, key=lambda f: abs(drops[f]))
    missed = [f for f, ok in tinylang.meets_targets(after).items() if not ok]
    if abs(drops[worst]) > 0.02 or missed:
        table = ", ".join(f"{f} {before[f]['accuracy']:.3f} -> {after[f]['accuracy']:.3f}" for f in before)
        return (f"the trigger no longer fires ({fires:.0%}), but clean accuracy changed by more than 0.02 or a "
                f"TinyLang target is missed ({missed or 'none missed'}): {table}", _DAMAGE_HINT)
    return None


@EXERCISES.check(_remove_backdoor)
def check_remove_backdoor(fn: Callable[..., Any]) -> None:
    """Check ``remove_backdoor(backdoored) -> HookedTransformer``: given (a copy of)
    ``tinylang-backdoor``, return a NEW model on which the planted trigger fires on at most 5% of
    fresh prompts, every family's accuracy (``tinylang.evaluate``) is within 0.02 of the
    backdoored model's and every TinyLang target is still met; the model given stays unchanged."""
    case = Case("tinylang-backdoor", (copy_model(_reference("tinylang-backdoor")),))
    run_property_check("remove_backdoor", fn, _removal_problem, [case], hint=_STILL_FIRES_HINT)
