"""Steering: push a model's residual stream along a direction and see what it does.

A probe shows that a direction *holds* information; adding that direction to the residual
stream and watching the output change shows that the model *uses* it (Chapter 05). Chapter 08
builds steering vectors from prompts, with no training at all:

- **Activation addition** (ActAdd; Turner et al. 2023, "Activation Addition: Steering Language
  Models Without Optimization", Algorithm 1): run one contrast pair of prompts (say "love" and
  "hate"), take the difference of their residual streams at one hook, position by position,
  and add c times that difference to the residual stream of another prompt, starting at an
  alignment position a. ``actadd_vector`` returns the difference [pos, d_model]; take one row
  (``vector[-1]``) for a single [d_model] vector.
- **Contrastive activation addition** (CAA; Rimsky et al. 2023/2024, "Steering Llama 2 via
  Contrastive Activation Addition", Figure 1): the mean, over many contrast pairs, of the
  difference at the answer position (in the paper, the token of the answer letter). It is
  added with a multiplier at every position after the prompt (``positions=slice(k, None)``).
  ``mean_difference`` computes it from activations you already have; ``caa_vector`` runs the
  model on the prompts and returns it, [d_model].

The coefficient multiplies the raw vector, as in both papers: neither normalises it, so its
length is part of its meaning (``steer_resid``, Chapter 05's exercise, instead adds alpha times
the *unit* vector). ``steering_hook`` turns a vector into a TransformerLens-style hook for
``model.hooks(...)`` or ``run_with_hooks``, on any ``blocks.{l}.hook_resid_pre`` /
``hook_resid_mid`` / ``hook_resid_post``. ``steering_sweep`` measures, for each coefficient,
how often steering works and what it costs: the KL divergence from the unsteered model on
unrelated prompts, and the loss on held-out text. ``intervention_sweep`` measures the same for
any hook built from a strength, e.g. an SAE latent clamped to a value
(``toykit.sae.clamp_latent_hook``; Templeton et al. 2024, "Scaling Monosemanticity", feature
steering).

Methods differ in how far one unit of strength moves the model, so their coefficients cannot be
compared. ``match_kl`` compares them at the same cost instead: for each method, the strength at
which its KL on unrelated prompts reaches a target, and its success rate there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch

from toykit.activations import collect_activations
from toykit.hooks import check_model
from toykit.patching import kl_divergence, logit_diff
from toykit.transformer import HookedTransformer
from toykit.transformer_inputs import check_tokens
from toykit.validation import check_tensor

__all__ = [
    "RESID_HOOKS",
    "MatchedKL",
    "SteeringSweep",
    "actadd_vector",
    "add_steering_vector",
    "caa_vector",
    "intervention_sweep",
    "mean_difference",
    "match_kl",
    "position_mask",
    "steer_resid",
    "steering_hook",
    "steering_sweep",
]

#: The residual-stream hooks a steering vector may be added at (``blocks.{l}.<one of these>``).
RESID_HOOKS = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post")

#: Where to add a [d_model] vector: None (every position), an int (that position in every
#: prompt, negative counts from the end), a slice (those positions, e.g. ``slice(k, None)``
#: for every position from k on) or an int tensor [batch] (one position per prompt).
Positions = int | slice | torch.Tensor | None
HookFn = Callable[[torch.Tensor, Any], torch.Tensor]


def steer_resid(resid: torch.Tensor, direction: torch.Tensor, alpha: float, pos: torch.Tensor) -> torch.Tensor:
    """Add alpha times the *unit* vector along direction at one position per prompt.

    resid: [batch, pos, d_model]; direction: [d_model] or [batch, d_model] (one per prompt);
    pos: [batch] int, the position to steer in each row. Returns a new tensor.
    """
    dims = check_tensor("resid", resid, ["batch", "pos", "d_model"], dtype="float")
    check_tensor("pos", pos, ["batch"], dtype="int", dims=dims)
    check_tensor("direction", direction, dtype="float")
    unit = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    out = resid.clone()
    rows = torch.arange(resid.shape[0], device=resid.device)
    out[rows, pos.to(resid.device)] += alpha * unit.to(resid)
    return out


# -- adding a vector ------------------------------------------------------------------------------


def _check_coeff(coeff: object) -> float:
    if isinstance(coeff, torch.Tensor) and coeff.numel() == 1 and coeff.is_floating_point():
        coeff = coeff.item()
    if not isinstance(coeff, (int, float)) or isinstance(coeff, bool) or coeff != coeff:
        raise TypeError(f"coeff must be a number (not NaN), got {coeff!r}")
    return float(coeff)


def _check_vector(vector: object, d_model: int | None = None) -> torch.Tensor:
    """A [d_model] steering vector or an ActAdd block [n, d_model], finite floats."""
    check_tensor("vector", vector, dtype="float")
    vector = cast(torch.Tensor, vector)  # check_tensor raised for anything else
    if vector.ndim not in (1, 2) or vector.shape[-1] == 0 or vector.shape[0] == 0:
        raise ValueError(f"vector must have shape [d_model] or [n_pos, d_model], got {list(vector.shape)}")
    if d_model is not None and vector.shape[-1] != d_model:
        raise ValueError(f"vector must have d_model={d_model} entries on its last axis, got {list(vector.shape)}")
    if not torch.isfinite(vector).all():
        raise ValueError("vector must have finite entries (no NaN or inf)")
    return vector


def _check_positions(positions: object, block: bool) -> None:
    if block:  # an ActAdd block: positions is the alignment position a
        if positions is not None and (not isinstance(positions, int) or isinstance(positions, bool) or positions < 0):
            raise ValueError("with a vector of shape [n_pos, d_model] (an ActAdd block), positions must be None or "
                             f"the int position >= 0 where the block starts, got {positions!r}")
        return
    if positions is None or isinstance(positions, slice):
        return
    if isinstance(positions, int) and not isinstance(positions, bool):
        return
    if isinstance(positions, torch.Tensor):
        check_tensor("positions", positions, ["batch"], dtype="int")
        return
    raise TypeError(f"positions must be None, an int, a slice or an int tensor [batch], got {type(positions).__name__}")


def add_steering_vector(resid: torch.Tensor, vector: torch.Tensor, coeff: float = 1.0,
                        positions: Positions = None) -> torch.Tensor:
    """resid plus coeff * vector at the chosen positions; a new tensor (resid is not modified).

    resid: [batch, pos, d_model].
    vector: [d_model], added at ``positions``: None (every position), an int (that position in
        every prompt; negative counts from the end), a slice (e.g. ``slice(k, None)``: every
        position from k on, CAA's "after the prompt") or an int tensor [batch] (one position
        per prompt, e.g. a TinyLang ``Batch.answer_pos``).
        Or vector: [n_pos, d_model], an ActAdd block (``actadd_vector``): row i is added at
        position a + i, where a = positions (None means 0), as in Turner et al.'s Algorithm 1.
    coeff: the multiplier (the papers' c); the vector is not normalised.

    >>> resid = torch.zeros(1, 3, 2)
    >>> add_steering_vector(resid, torch.tensor([1.0, 0.0]), 2.0, positions=-1)[0]
    tensor([[0., 0.],
            [0., 0.],
            [2., 0.]])
    """
    dims = check_tensor("resid", resid, ["batch", "pos", "d_model"], dtype="float")
    vector = _check_vector(vector, dims["d_model"])
    coeff = _check_coeff(coeff)
    block = vector.ndim == 2
    _check_positions(positions, block)
    n_pos = dims["pos"]
    delta = coeff * vector.to(resid)
    if block:
        start = 0 if positions is None else cast(int, positions)
        if start + vector.shape[0] > n_pos:
            raise ValueError(f"the ActAdd block has {vector.shape[0]} positions starting at {start}, but resid has "
                             f"only {n_pos}: steer longer prompts or use fewer rows of the vector")
        pad = torch.zeros(n_pos, dims["d_model"], dtype=resid.dtype, device=resid.device)
        pad[start:start + vector.shape[0]] = delta
        return resid + pad
    if positions is None:
        return resid + delta
    return resid + position_mask(positions, dims["batch"], n_pos, like=resid) * delta


def position_mask(positions: Positions, batch: int, n_pos: int, like: torch.Tensor | None = None) -> torch.Tensor:
    """[batch, n_pos, 1]: 1 at the positions an intervention touches, 0 elsewhere.

    positions: None (every position), an int (that position in every prompt; negative counts
        from the end), a slice (e.g. ``slice(k, None)``) or an int tensor [batch] (one position
        per prompt). like: a tensor whose dtype and device the mask takes (default float32, CPU).
    Multiply an edit [batch, n_pos, d] by it to apply the edit only there.

    >>> position_mask(-1, 2, 3)[..., 0]
    tensor([[0., 0., 1.],
            [0., 0., 1.]])
    """
    _check_positions(positions, block=False)
    dtype = like.dtype if like is not None else torch.float32
    device = like.device if like is not None else None
    mask = torch.zeros(batch, n_pos, 1, dtype=dtype, device=device)
    if positions is None:
        return mask + 1
    if isinstance(positions, int):
        if not -n_pos <= positions < n_pos:
            raise ValueError(f"positions={positions} is out of range for {n_pos} positions")
        positions = slice(positions % n_pos, positions % n_pos + 1)
    if isinstance(positions, slice):
        mask[:, positions] = 1
        return mask
    pos = positions
    check_tensor("positions", pos, [batch], dtype="int")
    if pos.numel() and (pos.min() < -n_pos or pos.max() >= n_pos):
        raise ValueError(f"positions must lie in [-{n_pos}, {n_pos}), got values from {pos.min().item()} "
                         f"to {pos.max().item()}")
    mask[torch.arange(batch, device=mask.device), pos.to(mask.device) % n_pos] = 1
    return mask


def steering_hook(vector: torch.Tensor, coeff: float = 1.0, positions: Positions = None) -> HookFn:
    """A hook ``(act [batch, pos, d_model], hook) -> new act`` that adds coeff * vector.

    Arguments as in ``add_steering_vector`` (checked now, so a mistake fails before any run).
    Use it on a residual-stream hook point::

        with model.hooks(fwd_hooks=[("blocks.1.hook_resid_pre", steering_hook(v, 4.0))]):
            logits = model(tokens)

    The hook never modifies act in place.
    """
    vector = _check_vector(vector).detach().clone()
    coeff = _check_coeff(coeff)
    _check_positions(positions, vector.ndim == 2)

    def hook_fn(act: torch.Tensor, hook: Any = None) -> torch.Tensor:
        return add_steering_vector(act, vector, coeff, positions)

    return hook_fn


# -- vectors from prompts -------------------------------------------------------------------------


def _check_resid_hook(model: HookedTransformer, hook_name: object) -> str:
    if not isinstance(hook_name, str):
        raise TypeError(f"hook_name must be a string such as 'blocks.1.hook_resid_pre', got {hook_name!r}")
    parts = hook_name.split(".")
    if len(parts) != 3 or parts[0] != "blocks" or parts[2] not in RESID_HOOKS:
        raise ValueError(f"hook_name must be blocks.{{layer}}.hook_resid_pre, hook_resid_mid or hook_resid_post, "
                         f"got {hook_name!r}")
    if hook_name not in model.hook_dict:  # a layer out of range, or resid_mid of an attn_only model
        raise ValueError(f"hook_name: {model.unknown_hook_message(hook_name)}")
    return hook_name


def mean_difference(pos_acts: torch.Tensor, neg_acts: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """CAA's vector from activations: the mean over pairs of pos_acts[i, p_i] - neg_acts[i, p_i].

    pos_acts, neg_acts: [n_pairs, pos, d_model], the residual stream at one hook of the positive
        and the negative prompt of each contrast pair.
    positions: [n_pairs] ints, the position p_i read in both prompts of pair i (the answer
        position; negative counts from the end).
    Returns [d_model] (Rimsky et al. 2023, Figure 1: the mean activation difference at the
    answer position). No input is modified.

    >>> pos_acts = torch.tensor([[[1.0, 0.0], [3.0, 1.0]], [[0.0, 2.0], [5.0, 5.0]]])
    >>> mean_difference(pos_acts, torch.zeros(2, 2, 2), torch.tensor([1, 0]))
    tensor([1.5000, 1.5000])
    """
    dims = check_tensor("pos_acts", pos_acts, ["n_pairs", "pos", "d_model"], dtype="float")
    check_tensor("neg_acts", neg_acts, ["n_pairs", "pos", "d_model"], dtype="float", dims=dims)
    check_tensor("positions", positions, ["n_pairs"], dtype="int", dims=dims)
    if dims["n_pairs"] == 0:
        raise ValueError("pos_acts and neg_acts must hold at least one pair, got n_pairs=0")
    n_pos = dims["pos"]
    if positions.min() < -n_pos or positions.max() >= n_pos:
        raise ValueError(f"positions must lie in [-{n_pos}, {n_pos}), got values from {positions.min().item()} "
                         f"to {positions.max().item()}")
    rows = torch.arange(dims["n_pairs"], device=pos_acts.device)
    at = positions.to(pos_acts.device)
    return (pos_acts[rows, at] - neg_acts.to(pos_acts.device)[rows, at]).mean(0)


@torch.no_grad()
def actadd_vector(model: HookedTransformer, positive: torch.Tensor, negative: torch.Tensor,
                  hook_name: str) -> torch.Tensor:
    """ActAdd's steering vector: the residual stream of positive minus that of negative, per position.

    positive, negative: [pos] (or [1, pos]) token ids of one contrast pair, of the same length
        (the authors' code pads the shorter prompt on the right with a space token; pad yours
        with a neutral token).
    hook_name: blocks.{l}.hook_resid_pre / hook_resid_mid / hook_resid_post.
    Returns [pos, d_model] (Turner et al. 2023, Algorithm 1: h₊ - h₋ at the injection layer),
    on the model's device. Add it with ``steering_hook(vector, c, positions=a)`` (the whole
    block, from alignment position a) or take one row, e.g. ``vector[-1]`` [d_model].
    """
    check_model(model, HookedTransformer)
    _check_resid_hook(model, hook_name)
    rows = []
    for name, tokens in (("positive", positive), ("negative", negative)):
        if isinstance(tokens, torch.Tensor) and tokens.ndim == 1:
            tokens = tokens[None]
        check_tensor(name, tokens, [1, None], dtype="int")
        rows.append(tokens)
    if rows[0].shape != rows[1].shape:
        raise ValueError(f"positive and negative must have the same length, got {rows[0].shape[1]} and "
                         f"{rows[1].shape[1]} tokens: pad the shorter prompt on the right with a neutral token")
    acts = collect_activations(model, torch.cat(rows), [hook_name], device=model.device)[hook_name]  # [2, pos, d]
    return acts[0] - acts[1]


@torch.no_grad()
def caa_vector(model: HookedTransformer, positive: torch.Tensor, negative: torch.Tensor, hook_name: str,
               pos: int | torch.Tensor = -1, negative_pos: int | torch.Tensor | None = None) -> torch.Tensor:
    """CAA's steering vector: the mean over contrast pairs of (positive - negative) at the answer position.

    positive, negative: [n_pairs, pos] token ids; pair i is (positive[i], negative[i]). The two
        may have different lengths.
    hook_name: blocks.{l}.hook_resid_pre / hook_resid_mid / hook_resid_post.
    pos: where to read the positive prompts: an int (-1 = the last token, where CAA's answer
        letter sits) or an int tensor [n_pairs] (one position per prompt, for padded prompts).
    negative_pos: the same for the negative prompts; None means pos.
    Returns [d_model] on the model's device (Rimsky et al., Figure 1: the mean activation
    difference over many pairs), ``mean_difference`` of the activations read there. It equals
    the difference of the two means (``toykit.probes.mean_difference`` of the stacked rows).
    """
    check_model(model, HookedTransformer)
    _check_resid_hook(model, hook_name)
    dims = check_tensor("positive", positive, ["n_pairs", None], dtype="int")
    check_tensor("negative", negative, ["n_pairs", None], dtype="int", dims=dims)
    negative_pos = pos if negative_pos is None else negative_pos
    h_pos = collect_activations(model, positive, [hook_name], pos=pos, device=model.device)[hook_name]
    h_neg = collect_activations(model, negative, [hook_name], pos=negative_pos, device=model.device)[hook_name]
    # Each prompt was read at its own position already: one position (0) per pair is left.
    at_zero = torch.zeros(dims["n_pairs"], dtype=torch.long, device=h_pos.device)
    return mean_difference(h_pos[:, None], h_neg[:, None], at_zero)


# -- a sweep over coefficients ----------------------------------------------------------------------


@dataclass
class SteeringSweep:
    """What steering did, one entry per coefficient.

    coeffs: [n_coeffs] the coefficients (for ``intervention_sweep``, the strengths), in the
        order given.
    success_rate: [n_coeffs] the fraction of steered prompts where steering worked.
    kl: [n_coeffs] mean KL(unsteered ‖ steered) of the next-token distributions on the
        unrelated prompts (the side effect; 0 at coefficient 0).
    loss: [n_coeffs] mean next-token loss (nats) on the held-out tokens, steered.
    clean_loss: that loss without steering.
    clean_success_rate: the success rate without steering (the baseline to beat).
    hook_name: where the vector was added.
    """

    coeffs: torch.Tensor
    success_rate: torch.Tensor
    kl: torch.Tensor
    loss: torch.Tensor
    clean_loss: float
    clean_success_rate: float
    hook_name: str

    def __repr__(self) -> str:
        rows = [f"  c={c:+.3g}: success {s:.3f}, KL {k:.4f}, loss {lo:.4f}"
                for c, s, k, lo in zip(self.coeffs.tolist(), self.success_rate.tolist(), self.kl.tolist(),
                                       self.loss.tolist())]
        return (f"SteeringSweep at {self.hook_name} (unsteered: success {self.clean_success_rate:.3f}, "
                f"loss {self.clean_loss:.4f})\n" + "\n".join(rows))


def _check_coeffs(coeffs: object, name: str = "coeffs") -> torch.Tensor:
    if isinstance(coeffs, torch.Tensor):
        values = coeffs
    elif isinstance(coeffs, Sequence) and not isinstance(coeffs, str) and all(
            isinstance(c, (int, float)) and not isinstance(c, bool) for c in coeffs):
        values = torch.tensor([float(c) for c in coeffs], dtype=torch.float64)
    else:
        raise TypeError(f"{name} must be a sequence of numbers or a 1-D tensor, got {coeffs!r}")
    check_tensor(name, values, ["n_coeffs"], dtype="float")
    if values.numel() == 0 or not torch.isfinite(values).all():
        raise ValueError(f"{name} must be a non-empty list of finite numbers, got {values.tolist()}")
    return values.detach().double().cpu()


def _success_fn(success: Callable[[torch.Tensor], Any] | None, target_ids: torch.Tensor | int | None,
                baseline_ids: torch.Tensor | int | None, answer_pos: int | torch.Tensor
                ) -> Callable[[torch.Tensor], torch.Tensor]:
    """logits [batch, pos, d_vocab] -> [batch] float, 1 where steering worked."""
    if success is not None:
        if target_ids is not None or baseline_ids is not None:
            raise ValueError("give either success or target_ids and baseline_ids, not both")
        if not callable(success):
            raise TypeError(f"success must be a function of the logits, got {type(success).__name__}")

        def user(logits: torch.Tensor) -> torch.Tensor:
            ok = success(logits)
            if not isinstance(ok, torch.Tensor) or ok.shape != logits.shape[:1]:
                raise ValueError(f"success must return a tensor [batch] = [{logits.shape[0]}] (True or 1 where "
                                 f"steering worked), got {getattr(ok, 'shape', type(ok).__name__)}")
            return ok.float()

        return user
    if target_ids is None or baseline_ids is None:
        raise ValueError("give success (a function of the steered logits) or both target_ids and baseline_ids")

    def target_beats_baseline(logits: torch.Tensor) -> torch.Tensor:
        return (logit_diff(logits, target_ids, baseline_ids, pos=answer_pos, per_prompt=True) > 0).float()

    return target_beats_baseline


@torch.no_grad()
def steering_sweep(
    model: HookedTransformer,
    vector: torch.Tensor,
    hook_name: str,
    coeffs: Sequence[float] | torch.Tensor,
    prompts: torch.Tensor,
    *,
    unrelated: torch.Tensor,
    heldout: torch.Tensor,
    success: Callable[[torch.Tensor], Any] | None = None,
    target_ids: torch.Tensor | int | None = None,
    baseline_ids: torch.Tensor | int | None = None,
    answer_pos: int | torch.Tensor = -1,
    positions: int | slice | None = None,
    kl_pos: int | torch.Tensor | None = None,
) -> SteeringSweep:
    """Steer with coeff * vector for each coefficient; measure success and side effects.

    vector: [d_model], or an ActAdd block [n_pos, d_model] (see ``add_steering_vector``).
    hook_name: blocks.{l}.hook_resid_pre / hook_resid_mid / hook_resid_post.
    coeffs: the coefficients to try (include 0 for the unsteered point).
    prompts: [n, pos] the prompts to steer. Success is either
        ``success(steered_logits [n, pos, d_vocab]) -> [n]`` (bool or 0/1), or, with
        target_ids and baseline_ids ([n] or one int each), "the target's logit beats the
        baseline's at answer_pos" (an int or an int tensor [n]; see ``patching.logit_diff``).
    unrelated: [m, pos'] prompts the steering should leave alone; the side effect is the mean
        ``patching.kl_divergence`` of the steered from the unsteered next-token distribution,
        at kl_pos (None: averaged over every position; an int or int tensor [m]: one).
    heldout: [k, pos''] text (e.g. TinyLang corpus rows) for the steered next-token loss.
        Padding counts as text in both side effects: pass unpadded rows (``generate_corpus``
        rows are), or read the KL at one position per prompt with kl_pos.
    positions: where to add the vector, the same for all three token sets: None (every
        position), an int or a slice; for an ActAdd block, the start position. (For one
        position per prompt, build ``steering_hook`` with a tensor yourself.)
    Returns a ``SteeringSweep``. The hook is attached only for each forward pass and removed
    afterwards even if the model or a metric raises. ``intervention_sweep`` does the same for
    any hook (an SAE latent clamped with ``toykit.sae.clamp_latent_hook``, say).
    """
    check_model(model, HookedTransformer)
    _check_resid_hook(model, hook_name)
    vector = _check_vector(vector, model.cfg.d_model)
    if isinstance(positions, torch.Tensor):
        raise TypeError("steering_sweep adds the vector at the same positions in prompts, unrelated and heldout, "
                        "so positions must be None, an int or a slice; for one position per prompt, use "
                        "steering_hook(vector, coeff, positions=tensor) directly")
    _check_positions(positions, vector.ndim == 2)
    values = _check_coeffs(coeffs)

    def make_hook(coeff: float) -> HookFn:
        return steering_hook(vector, coeff, positions)

    return intervention_sweep(model, make_hook, hook_name, values, prompts, unrelated=unrelated, heldout=heldout,
                              success=success, target_ids=target_ids, baseline_ids=baseline_ids,
                              answer_pos=answer_pos, kl_pos=kl_pos)


@torch.no_grad()
def intervention_sweep(
    model: HookedTransformer,
    make_hook: Callable[[float], HookFn],
    hook_name: str,
    strengths: Sequence[float] | torch.Tensor,
    prompts: torch.Tensor,
    *,
    unrelated: torch.Tensor,
    heldout: torch.Tensor,
    success: Callable[[torch.Tensor], Any] | None = None,
    target_ids: torch.Tensor | int | None = None,
    baseline_ids: torch.Tensor | int | None = None,
    answer_pos: int | torch.Tensor = -1,
    kl_pos: int | torch.Tensor | None = None,
) -> SteeringSweep:
    """``steering_sweep`` for any intervention: ``make_hook(strength)`` builds the hook to attach
    at hook_name, for each strength in turn.

    make_hook: strength (a float) -> a hook ``(act, hook) -> new act`` that must not modify act
        in place, e.g. ``lambda v: toykit.sae.clamp_latent_hook(sae, latent, v)`` (clamping an
        SAE latent to v) or ``lambda c: steering_hook(vector, c)`` (what steering_sweep does).
    hook_name: any hook point of the model.
    strengths: the strengths to try, in the order that goes from weak to strong (``match_kl``
        reads them in this order). They land in the result's ``coeffs``.
    The other arguments and the result are those of ``steering_sweep``. The unsteered baselines
    (``clean_loss``, ``clean_success_rate``, the KL reference) are the model with no hook, so
    an intervention that is not the identity at any strength (clamping to 0 ablates the latent)
    has a KL above 0 everywhere.
    """
    check_model(model, HookedTransformer, [hook_name])
    if not callable(make_hook):
        raise TypeError(f"make_hook must be a function strength -> hook, got {type(make_hook).__name__}")
    values = _check_coeffs(strengths, name="strengths")
    prompts = check_tokens(model, prompts, "prompts", nonempty=True)
    unrelated = check_tokens(model, unrelated, "unrelated", nonempty=True)
    heldout = check_tokens(model, heldout, "heldout", nonempty=True)
    if heldout.shape[1] < 2:
        raise ValueError(f"heldout needs at least 2 positions for a next-token loss, got {list(heldout.shape)}")
    succeeded = _success_fn(success, target_ids, baseline_ids, answer_pos)

    clean_prompt_logits = model(prompts)
    clean_unrelated_logits = model(unrelated)
    clean_loss = model(heldout, return_type="loss").item()
    clean_rate = succeeded(clean_prompt_logits).mean().item()
    rates, kls, losses = [], [], []
    for strength in values.tolist():
        hook = make_hook(strength)
        if not callable(hook):
            raise TypeError(f"make_hook({strength}) must return a hook function, got {type(hook).__name__}")
        with model.hooks(fwd_hooks=[(hook_name, hook)]):
            prompt_logits = model(prompts)
            unrelated_logits = model(unrelated)
            loss = model(heldout, return_type="loss").item()
        rates.append(succeeded(prompt_logits).mean().item())
        kls.append(kl_divergence(unrelated_logits, clean_unrelated_logits, pos=kl_pos).item())
        losses.append(loss)
    return SteeringSweep(
        coeffs=values,
        success_rate=torch.tensor(rates, dtype=torch.float64),
        kl=torch.tensor(kls, dtype=torch.float64),
        loss=torch.tensor(losses, dtype=torch.float64),
        clean_loss=clean_loss,
        clean_success_rate=clean_rate,
        hook_name=hook_name,
    )


# -- comparing methods at the same side effect ----------------------------------------------------


@dataclass
class MatchedKL:
    """Several interventions compared at the same side effect (one entry per method).

    target_kl: the KL on unrelated prompts that every method was brought to.
    methods: the methods' names, in the order given.
    strength: [n_methods] the strength (coefficient or clamp value) at which each method's KL
        reaches target_kl, linearly interpolated between the two swept strengths around it.
    success_rate, loss: [n_methods] the success rate and held-out loss there, interpolated the
        same way (an estimate: run the method at that strength to measure it).
    clean_success_rate: [n_methods] each sweep's unsteered success rate (the baseline).
    """

    target_kl: float
    methods: list[str]
    strength: torch.Tensor
    success_rate: torch.Tensor
    loss: torch.Tensor
    clean_success_rate: torch.Tensor

    def __repr__(self) -> str:
        width = max(len(m) for m in self.methods)
        rows = [f"  {m:<{width}}  strength {st:+.4g}  success {su:.3f} (unsteered {c:.3f})  loss {lo:.4f}"
                for m, st, su, c, lo in zip(self.methods, self.strength.tolist(), self.success_rate.tolist(),
                                            self.clean_success_rate.tolist(), self.loss.tolist())]
        return f"MatchedKL at KL = {self.target_kl:.4g}\n" + "\n".join(rows)


def _crossing(sweep: SteeringSweep, target_kl: float, method: str) -> tuple[float, float, float]:
    """(strength, success rate, loss) where sweep.kl first rises to target_kl, in sweep order."""
    kl = sweep.kl.tolist()
    if max(kl) < target_kl:
        raise ValueError(f"target_kl={target_kl:.4g} is above the KL that method {method!r} reaches in its sweep "
                         f"(at most {max(kl):.4g}): sweep stronger strengths")
    if min(kl) > target_kl:
        raise ValueError(f"target_kl={target_kl:.4g} is below the KL of every strength in method {method!r}'s "
                         f"sweep (at least {min(kl):.4g}): add weaker strengths")
    if kl[0] == target_kl:
        return sweep.coeffs[0].item(), sweep.success_rate[0].item(), sweep.loss[0].item()
    ups = [j for j in range(1, len(kl)) if kl[j - 1] < target_kl <= kl[j]]
    if not ups:
        raise ValueError(f"method {method!r}'s KL never rises to target_kl={target_kl:.4g} along its sweep (it "
                         f"only falls through it): order the strengths from weak to strong")
    j = ups[0]
    t = (target_kl - kl[j - 1]) / (kl[j] - kl[j - 1])

    def at(values: torch.Tensor) -> float:
        return values[j - 1].item() + t * (values[j].item() - values[j - 1].item())

    return at(sweep.coeffs), at(sweep.success_rate), at(sweep.loss)


def match_kl(sweeps: Mapping[str, SteeringSweep], target_kl: float) -> MatchedKL:
    """Compare interventions at the same side effect: each method's success where its KL reaches target_kl.

    sweeps: {method name: its ``SteeringSweep``} (from ``steering_sweep`` or
        ``intervention_sweep``), each swept from weak to strong on the same unrelated prompts.
    target_kl: the side effect to match, a KL in nats (> 0).
    For each method, walk its sweep in the order given and find the first pair of neighbouring
    strengths where the KL rises through target_kl (below it, then at or above it); the
    strength, the success rate and the loss are interpolated linearly between the two. The KL
    need not be monotone over the whole sweep: clamping a latent to 0 ablates it, which costs
    KL too, so a clamp sweep from 0 up may dip before it rises. The first rising crossing is the
    weakest strength that reaches the target.
    Raises a ValueError naming the method when target_kl lies outside its swept KL range, or
    when its KL only ever falls through the target (a sweep ordered from strong to weak).

    A method that succeeds more at the same KL steers more precisely: comparing the raw
    coefficients instead would compare vectors of different lengths.

    The success rate often jumps from 0 to 1 over a narrow range of strengths, and a coarse
    sweep then interpolates it badly (on TinyLang agreement, a sweep with steps of 8 gave 0.60
    for CAA at KL 0.2 where a run at that strength gave 0.95). Sweep finely around the jump, or
    re-run each method at its matched strength (``intervention_sweep(..., [strength], ...)``).
    """
    if not isinstance(sweeps, Mapping) or not sweeps:
        raise TypeError(f"sweeps must be a non-empty dict {{method name: SteeringSweep}}, got {sweeps!r}")
    for name, sweep in sweeps.items():
        if not isinstance(name, str) or not isinstance(sweep, SteeringSweep):
            raise TypeError(f"sweeps must map method names (str) to SteeringSweep results, got {name!r}: "
                            f"{type(sweep).__name__}")
    if isinstance(target_kl, bool) or not isinstance(target_kl, (int, float)) or not 0 < target_kl < math.inf:
        raise ValueError(f"target_kl must be a positive finite number (a KL in nats), got {target_kl!r}")
    rows = [_crossing(sweep, float(target_kl), name) for name, sweep in sweeps.items()]
    strength, success, loss = (torch.tensor(col, dtype=torch.float64) for col in zip(*rows))
    return MatchedKL(
        target_kl=float(target_kl),
        methods=list(sweeps),
        strength=strength,
        success_rate=success,
        loss=loss,
        clean_success_rate=torch.tensor([s.clean_success_rate for s in sweeps.values()], dtype=torch.float64),
    )
