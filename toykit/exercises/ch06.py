"""Checks for chapter 06, Activation patching and a circuit in TinyLang.

Each ``check_<name>(fn)`` runs your ``fn`` and toykit's reference on seeded cases, prints one
line when they agree, and otherwise raises CheckFailure with a hint chosen by recognising the
usual mistakes. References: ``toykit.patching`` (logit_diff, ablation_hooks, path_patch,
attribution_patch) and ``toykit.metrics.normalize_metric``. Exercises that stand for a library
function have its signature, so that the library's version can replace yours.

Signatures the checks expect (z is a head-output activation [batch, pos, n_heads, d_head]):

- ``ioi_logit_diff(logits, answer_ids, wrong_ids, *, pos=-1, per_prompt=False)``, the signature of
  ``toykit.patching.logit_diff`` (pos an int tensor [batch] here).
- ``normalized_patching_metric(value, *, baseline, target) -> same type as value``, the signature
  of ``toykit.metrics.normalize_metric``.
- ``patch_residual_hook(resid, hook, pos, clean_cache) -> resid'``.
- ``patch_head_hook(z, hook, head, clean_cache) -> z'``.
- ``mean_ablate_head(z, head, reference_z) -> z'``.
- ``resample_ablate_head(z, head, reference_z, draws) -> z'``.
- ``freeze_heads_hook(z, hook, clean_z, corrupted_z, senders) -> z'`` (path patching, step 1).
- ``attribution_per_head(clean_z, corrupted_z, grad_z) -> [n_heads]``.
- ``fraction_recovered(circuit_ld, *, baseline, target) -> float`` (faithfulness): normalize_metric
  on the batch means.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from toykit.exercises.checking import Case, ExerciseTable, Mistake, rng, run_check
from toykit.hooks import HookPoint
from toykit.metrics import normalize_metric
from toykit.patching import logit_diff

# exercise id -> its check and toykit's reference (filled by @EXERCISES.check below)
EXERCISES = ExerciseTable()

__all__ = [
    "check_attribution_per_head",
    "check_fraction_recovered",
    "check_freeze_heads_hook",
    "check_ioi_logit_diff",
    "check_mean_ablate_head",
    "check_normalized_patching_metric",
    "check_patch_head_hook",
    "check_patch_residual_hook",
    "check_resample_ablate_head",
]


def _with_head_value(z: torch.Tensor, head: int, value: torch.Tensor | float) -> torch.Tensor:
    """A copy of z [batch, pos, n_heads, d_head] whose head ``head`` holds ``value``."""
    out = z.clone()
    out[:, :, head] = value
    return out


def _z(seed: int, batch: int, pos: int, heads: int, d_head: int) -> torch.Tensor:
    return torch.randn(batch, pos, heads, d_head, generator=rng(seed))


# -- ioi_logit_diff ----------------------------------------------------------------------------------


@EXERCISES.check(logit_diff)
def check_ioi_logit_diff(ioi_logit_diff: Callable[..., torch.Tensor]) -> None:
    """Check ``ioi_logit_diff(logits, answer_ids, wrong_ids, *, pos=-1, per_prompt=False)``, the
    signature of ``toykit.patching.logit_diff``: logits [batch, pos, d_vocab]; answer_ids (the
    indirect objects), wrong_ids (the subjects) and pos [batch]; at each row's position pos[b],
    the logit of the indirect object minus that of the subject: [batch] with per_prompt, else
    their mean."""

    def case(name: str, seed: int, batch: int, n_pos: int, d_vocab: int, per_prompt: bool | None) -> Case:
        g = rng(seed)
        io = torch.randint(0, d_vocab, (batch,), generator=g)
        s = (io + torch.randint(1, d_vocab, (batch,), generator=g)) % d_vocab
        pos = torch.randint(0, n_pos - 1, (batch,), generator=g)  # never the last: prompts are padded
        kwargs = {"pos": pos} if per_prompt is None else {"pos": pos, "per_prompt": per_prompt}
        return Case(name, (torch.randn(batch, n_pos, d_vocab, generator=g) * 3, io, s), kwargs)

    def last(lg, a, b, pos=-1, per_prompt=False):
        return logit_diff(lg, a, b, pos=-1, per_prompt=per_prompt)

    def every_row(lg, a, b, pos=-1, per_prompt=False):
        picked = lg[:, pos]  # [batch, batch, d_vocab]: every row at every row's position
        diff = (picked.gather(-1, a[None, :, None].expand(lg.shape[0], -1, 1))
                - picked.gather(-1, b[None, :, None].expand(lg.shape[0], -1, 1)))[..., 0]
        return diff if per_prompt else diff.mean()

    mistakes = [
        Mistake("the sign is flipped: indirect object (the right answer, answer_ids) minus subject (wrong_ids)",
                lambda lg, a, b, pos=-1, per_prompt=False: logit_diff(lg, b, a, pos=pos, per_prompt=per_prompt)),
        Mistake("take each row's logits at pos[b], not at the last position: prompts of different lengths are "
                "padded, so the last position is often padding", last),
        Mistake("use logits, not probabilities",
                lambda lg, a, b, pos=-1, per_prompt=False: logit_diff(lg.softmax(-1), a, b, pos=pos,
                                                                      per_prompt=per_prompt)),
        Mistake("with per_prompt=True return one value per prompt, [batch]",
                lambda lg, a, b, pos=-1, per_prompt=False: logit_diff(lg, a, b, pos=pos)),
        Mistake("with per_prompt=False (the default) return the mean over the batch, a single value",
                lambda lg, a, b, pos=-1, per_prompt=False: logit_diff(lg, a, b, pos=pos, per_prompt=True)),
        Mistake("logits[:, pos] picks every row's position for every row ([batch, batch, ...]); index rows and "
                "positions together, so that row b is read at pos[b] only", every_row),
    ]
    cases = [case("random", 0, 6, 8, 20, True), case("batch of one", 1, 1, 5, 9, True),
             case("long", 2, 10, 19, 50, True), case("the batch mean (default)", 3, 6, 8, 20, None),
             case("per_prompt=False", 4, 7, 9, 30, False)]

    run_check("ioi_logit_diff", ioi_logit_diff, logit_diff, cases, mistakes,
              hint="read each prompt at its own answer position pos[b], then take the indirect object's logit minus "
                   "the subject's: one value per prompt with per_prompt=True, their mean otherwise")


# -- normalized_patching_metric ----------------------------------------------------------------------


@EXERCISES.check(normalize_metric)
def check_normalized_patching_metric(normalized_patching_metric: Callable[..., torch.Tensor]) -> None:
    """Check ``normalized_patching_metric(value, *, baseline, target)``, the signature of
    ``toykit.metrics.normalize_metric``: 0 when value equals the baseline (for denoising, the
    corrupted run's metric), 1 when it equals the target (the clean run's); linear in between
    (value may be a tensor of many patched results)."""

    def case(name: str, seed: int, shape: tuple, baseline: float, target: float) -> Case:
        return Case(name, (torch.randn(shape, generator=rng(seed)) * 3 + 1,), {"baseline": baseline, "target": target})

    cases = [case("grid", 0, (3, 15), -0.7, 9.6), case("negative target", 1, (4,), 3.0, -2.0),
             case("scalar", 2, (), 0.5, 5.0),
             Case("the end points", (torch.tensor([9.6, -0.7]),), {"baseline": -0.7, "target": 9.6})]
    mistakes = [
        Mistake("0 should mean 'at the baseline' and 1 'at the target': you have them the other way round",
                lambda v, *, baseline, target: (v - target) / (baseline - target)),
        Mistake("subtract the baseline first: (value - baseline) / (target - baseline)",
                lambda v, *, baseline, target: v / (target - baseline)),
        Mistake("divide by (target - baseline), the range between the two runs, not by the target alone",
                lambda v, *, baseline, target: (v - baseline) / target),
        Mistake("mind the brackets: (value - baseline) / (target - baseline)",
                lambda v, *, baseline, target: v - baseline / (target - baseline)),
    ]

    run_check("normalized_patching_metric", normalized_patching_metric, normalize_metric, cases, mistakes,
              hint="the metric is a linear rescaling: the baseline maps to 0 and the target to 1")


# -- patch_residual_hook -----------------------------------------------------------------------------


def _patch_residual_hook(resid: torch.Tensor, hook: HookPoint, pos: int, clean_cache: dict) -> torch.Tensor:
    """The reference: resid [batch, pos, d_model] with position ``pos`` from the clean cache."""
    out = resid.clone()
    out[:, pos] = clean_cache[hook.name][:, pos]
    return out


@EXERCISES.check(_patch_residual_hook)
def check_patch_residual_hook(patch_residual_hook: Callable[..., torch.Tensor]) -> None:
    """Check ``patch_residual_hook(resid, hook, pos, clean_cache) -> resid'``: resid [batch, pos,
    d_model] from the corrupted run; return it with position ``pos`` replaced by the clean run's
    activation at the same hook (``clean_cache[hook.name]``), every other position unchanged."""

    def case(name: str, seed: int, hook_name: str, batch: int, n_pos: int, d: int, pos: int) -> Case:
        g = rng(seed)
        other = "blocks.0.hook_resid_pre" if hook_name != "blocks.0.hook_resid_pre" else "blocks.1.hook_resid_pre"
        cache = {hook_name: torch.randn(batch, n_pos, d, generator=g), other: torch.randn(batch, n_pos, d, generator=g)}
        return Case(name, (torch.randn(batch, n_pos, d, generator=g), HookPoint(name=hook_name), pos, cache))

    def all_positions(resid, hook, pos, clean_cache):
        return clean_cache[hook.name].clone()

    def batch_axis(resid, hook, pos, clean_cache):
        out = resid.clone()
        out[pos] = clean_cache[hook.name][pos]
        return out

    def wrong_layer(resid, hook, pos, clean_cache):
        out = resid.clone()
        key = "blocks.0.hook_resid_pre" if hook.name != "blocks.0.hook_resid_pre" else "blocks.1.hook_resid_pre"
        out[:, pos] = clean_cache[key][:, pos]
        return out

    cases = [case("layer 1", 0, "blocks.1.hook_resid_pre", 4, 6, 8, 2), case("layer 0, last pos", 1,
             "blocks.0.hook_resid_pre", 3, 5, 4, 4), case("first pos", 2, "blocks.2.hook_resid_mid", 5, 7, 6, 0)]
    mistakes = [
        Mistake("patch only position pos; every other position keeps its corrupted value",
                all_positions),
        Mistake("positions are axis 1 of [batch, pos, d_model]; indexing resid[pos] selects a prompt (axis 0)",
                batch_axis),
        Mistake("take this hook's own clean activation: look it up in the cache by the hook's name, not a fixed "
                "layer's", wrong_layer),
    ]
    run_check("patch_residual_hook", patch_residual_hook, _patch_residual_hook, cases, mistakes,
              hint="return a new tensor: resid everywhere except position pos, which takes this hook's clean "
                   "activation (never write into resid or the cache)")


# -- patch_head_hook ---------------------------------------------------------------------------------


def _patch_head_hook(z: torch.Tensor, hook: HookPoint, head: int, clean_cache: dict) -> torch.Tensor:
    """The reference: z [batch, pos, n_heads, d_head] with head ``head`` from the clean cache."""
    out = z.clone()
    out[:, :, head] = clean_cache[hook.name][:, :, head]
    return out


@EXERCISES.check(_patch_head_hook)
def check_patch_head_hook(patch_head_hook: Callable[..., torch.Tensor]) -> None:
    """Check ``patch_head_hook(z, hook, head, clean_cache) -> z'``: z [batch, pos, n_heads, d_head];
    replace head ``head``'s output at every position by the clean run's (``clean_cache[hook.name]``)."""

    def case(name: str, seed: int, layer: int, shape: tuple, head: int) -> Case:
        name_ = f"blocks.{layer}.attn.hook_z"
        cache = {name_: _z(seed + 100, *shape)}
        return Case(name, (_z(seed, *shape), HookPoint(name=name_), head, cache))

    def pos_axis(z, hook, head, clean_cache):
        out = z.clone()
        out[:, head] = clean_cache[hook.name][:, head]
        return out

    def others(z, hook, head, clean_cache):
        out = clean_cache[hook.name].clone()
        out[:, :, head] = z[:, :, head]
        return out

    def whole(z, hook, head, clean_cache):
        return clean_cache[hook.name].clone()

    cases = [case("head 1", 0, 0, (4, 6, 4, 5), 1), case("last head", 1, 2, (3, 5, 4, 3), 3),
             case("head 0", 2, 1, (2, 7, 3, 4), 0)]
    mistakes = [
        Mistake("z is [batch, pos, head, d_head]: the head axis is 2, so z[:, :, head]; z[:, head] is a position",
                pos_axis),
        Mistake("copy the clean value into the chosen head only; you patched every head except it", others),
        Mistake("patch one head, not the whole attention layer", whole),
    ]
    run_check("patch_head_hook", patch_head_hook, _patch_head_hook, cases, mistakes,
              hint="return a new tensor: z everywhere except head `head`, which takes this hook's clean value at "
                   "every position (never write into z or the cache)")


# -- mean_ablate_head --------------------------------------------------------------------------------


def _mean_ablate_head(z: torch.Tensor, head: int, reference_z: torch.Tensor) -> torch.Tensor:
    """The reference: z with the head's per-position mean over the reference prompts."""
    return _with_head_value(z, head, reference_z[:, :, head].mean(0))


@EXERCISES.check(_mean_ablate_head)
def check_mean_ablate_head(mean_ablate_head: Callable[..., torch.Tensor]) -> None:
    """Check ``mean_ablate_head(z, head, reference_z) -> z'``: z [batch, pos, n_heads, d_head],
    reference_z [n_ref, pos, n_heads, d_head]; set the head's output at each position to its mean
    over the reference prompts at that position; other heads unchanged."""

    def case(name: str, seed: int, batch: int, n_ref: int, pos: int, heads: int, d: int, head: int) -> Case:
        ref = _z(seed + 50, n_ref, pos, heads, d) + torch.arange(pos).float()[None, :, None, None]
        return Case(name, (_z(seed, batch, pos, heads, d), head, ref))

    mistakes = [
        Mistake("you also averaged over positions: average over the reference prompts only (dim 0), keeping "
                "one mean per position",
                lambda z, h, r: _with_head_value(z, h, r[:, :, h].mean((0, 1)))),
        Mistake("take the mean of the *reference* prompts, not of the batch being ablated",
                lambda z, h, r: _with_head_value(z, h, z[:, :, h].mean(0))),
        Mistake("mean ablation replaces the head by its average, not by zero",
                lambda z, h, r: _with_head_value(z, h, 0.0)),
        Mistake("ablate only the chosen head; the other heads keep their own values",
                lambda z, h, r: r.mean(0, keepdim=True).expand_as(z)),
    ]
    cases = [case("random", 0, 4, 10, 5, 4, 3, 2), case("one prompt", 1, 1, 6, 4, 3, 2, 0),
             case("many references", 2, 3, 30, 6, 4, 5, 3)]

    run_check("mean_ablate_head", mean_ablate_head, _mean_ablate_head, cases, mistakes,
              hint="return a new z whose chosen head holds, at each position, that head's mean over the reference "
                   "prompts (a [pos, d_head] mean, the same for every prompt of the batch)")


# -- resample_ablate_head ----------------------------------------------------------------------------


def _resample_ablate_head(z: torch.Tensor, head: int, reference_z: torch.Tensor, draws: torch.Tensor
                          ) -> torch.Tensor:
    """The reference: prompt b's head takes reference prompt draws[b]'s value."""
    return _with_head_value(z, head, reference_z[draws, :, head])


@EXERCISES.check(_resample_ablate_head)
def check_resample_ablate_head(resample_ablate_head: Callable[..., torch.Tensor]) -> None:
    """Check ``resample_ablate_head(z, head, reference_z, draws) -> z'``: draws [batch] indexes
    reference prompts; prompt b's head output becomes reference prompt draws[b]'s (every position)."""

    def case(name: str, seed: int, batch: int, n_ref: int, pos: int, heads: int, d: int, head: int) -> Case:
        draws = torch.randint(0, n_ref, (batch,), generator=rng(seed + 7))
        return Case(name, (_z(seed, batch, pos, heads, d), head, _z(seed + 50, n_ref, pos, heads, d), draws))

    mistakes = [
        Mistake("use the random draws: prompt b takes reference prompt draws[b], not reference prompt b",
                lambda z, h, r, d: _with_head_value(z, h, r[: z.shape[0], :, h])),
        Mistake("resample from the reference prompts, not from the batch itself",
                lambda z, h, r, d: _with_head_value(z, h, z[d.clamp(max=z.shape[0] - 1), :, h])),
        Mistake("resampling copies one whole reference prompt; averaging the draws is mean ablation",
                lambda z, h, r, d: _with_head_value(z, h, r[d, :, h].mean(0))),
        Mistake("replace only the chosen head; the other heads keep their own values",
                lambda z, h, r, d: r[d].clone()),
    ]
    cases = [case("random", 0, 5, 12, 4, 4, 3, 1), case("one prompt", 1, 1, 3, 5, 3, 2, 2),
             case("more prompts than references", 2, 9, 4, 3, 4, 2, 0)]

    run_check("resample_ablate_head", resample_ablate_head, _resample_ablate_head, cases, mistakes,
              hint="return a new z whose chosen head, for prompt b, holds reference prompt draws[b]'s value of that "
                   "head at every position")


# -- freeze_heads_hook (path patching, step 1) -------------------------------------------------------


def _layer_of(hook: HookPoint) -> int:
    return int(str(hook.name).split(".")[1])


def _freeze_heads_hook(z: torch.Tensor, hook: HookPoint, clean_z: dict, corrupted_z: dict, senders: list
                       ) -> torch.Tensor:
    """The reference: this layer's clean z, with the senders in this layer corrupted."""
    out = clean_z[hook.name].clone()
    for l, h in senders:
        if l == _layer_of(hook):
            out[:, :, h] = corrupted_z[hook.name][:, :, h]
    return out


@EXERCISES.check(_freeze_heads_hook)
def check_freeze_heads_hook(freeze_heads_hook: Callable[..., torch.Tensor]) -> None:
    """Check ``freeze_heads_hook(z, hook, clean_z, corrupted_z, senders) -> z'``: the first step of
    path patching, as a hook on ``blocks.{layer}.attn.hook_z``. clean_z, corrupted_z: {hook name:
    [batch, pos, n_heads, d_head]}; senders: a list of (layer, head). Every head of this layer
    takes its clean value, except the senders in this layer, which take their corrupted value."""

    def case(name: str, seed: int, layer: int, senders: list, shape: tuple = (3, 5, 4, 3)) -> Case:
        names = [f"blocks.{l}.attn.hook_z" for l in range(3)]
        clean = {n: _z(seed + 10 + i, *shape) for i, n in enumerate(names)}
        corr = {n: _z(seed + 20 + i, *shape) for i, n in enumerate(names)}
        return Case(name, (_z(seed, *shape), HookPoint(name=names[layer]), clean, corr, senders))

    def swapped(z, hook, clean_z, corrupted_z, senders):
        return _freeze_heads_hook(z, hook, corrupted_z, clean_z, senders)

    def any_layer(z, hook, clean_z, corrupted_z, senders):
        out = clean_z[hook.name].clone()
        for _, h in senders:
            out[:, :, h] = corrupted_z[hook.name][:, :, h]
        return out

    def unfrozen(z, hook, clean_z, corrupted_z, senders):
        out = z.clone()
        for l, h in senders:
            if l == _layer_of(hook):
                out[:, :, h] = corrupted_z[hook.name][:, :, h]
        return out

    cases = [case("sender in this layer", 0, 0, [(0, 1)]), case("sender elsewhere", 1, 1, [(0, 2)]),
             case("two senders", 2, 1, [(1, 0), (0, 3), (1, 2)]), case("no sender here", 3, 2, [(1, 1)])]
    mistakes = [
        Mistake("senders take the *corrupted* value, every other head the *clean* one; you swapped them", swapped),
        Mistake("a sender (layer, head) is patched only in its own layer: compare the sender's layer with the "
                "layer in the hook's name", any_layer),
        Mistake("freeze the non-sender heads to their clean values (you started from z, the current run's), "
                "so that only the senders' effect reaches later layers", unfrozen),
    ]
    run_check("freeze_heads_hook", freeze_heads_hook, _freeze_heads_hook, cases, mistakes,
              hint="every head of this layer takes its clean value, except the senders that live in this layer, "
                   "which take their corrupted value; build a new tensor (never write into z or the caches)")


# -- attribution_per_head ----------------------------------------------------------------------------


def _attribution_per_head(clean_z: torch.Tensor, corrupted_z: torch.Tensor, grad_z: torch.Tensor) -> torch.Tensor:
    """The reference: [n_heads], (clean - corrupted) · grad summed over batch, positions, d_head."""
    return ((clean_z - corrupted_z) * grad_z).sum((0, 1, 3))


@EXERCISES.check(_attribution_per_head)
def check_attribution_per_head(attribution_per_head: Callable[..., torch.Tensor]) -> None:
    """Check ``attribution_per_head(clean_z, corrupted_z, grad_z) -> [n_heads]``: all three [batch,
    pos, n_heads, d_head], grad_z = ∂metric/∂z on the corrupted run. The first-order estimate of
    patching each head's clean output into the corrupted run: (clean - corrupted) · grad, summed
    over batch, positions and d_head."""

    def case(name: str, seed: int, shape: tuple) -> Case:
        return Case(name, (_z(seed, *shape) + 0.5, _z(seed + 1, *shape), _z(seed + 2, *shape)))

    mistakes = [
        Mistake("we patch *clean* into the corrupted run: the change is (clean_z - corrupted_z), not the reverse",
                lambda c, r, g: ((r - c) * g).sum((0, 1, 3))),
        Mistake("multiply by the *change* of the activation (clean_z - corrupted_z), not by clean_z alone",
                lambda c, r, g: (c * g).sum((0, 1, 3))),
        Mistake("sum the products, not their absolute values: effects of opposite sign cancel",
                lambda c, r, g: ((c - r) * g).abs().sum((0, 1, 3))),
        Mistake("sum over batch, positions and d_head (dims 0, 1, 3), keeping the head axis (2)",
                lambda c, r, g: ((c - r) * g).sum((0, 1, 2))),
    ]
    cases = [case("random", 0, (4, 6, 4, 5)), case("one prompt", 1, (1, 3, 3, 2)), case("square", 2, (4, 4, 4, 4))]

    run_check("attribution_per_head", attribution_per_head, _attribution_per_head, cases, mistakes,
              hint="a first-order estimate: the change of the activation times the gradient, summed over every "
                   "axis except the head axis", atol=1e-4)


# -- fraction_recovered (faithfulness) ---------------------------------------------------------------


def _fraction_recovered(circuit_ld: torch.Tensor, *, baseline: torch.Tensor, target: torch.Tensor) -> float:
    """The reference: normalize_metric on the batch means."""
    return float(normalize_metric(circuit_ld.mean(), baseline=baseline.mean(), target=target.mean()))


@EXERCISES.check(_fraction_recovered)
def check_fraction_recovered(fraction_recovered: Callable[..., float]) -> None:
    """Check ``fraction_recovered(circuit_ld, *, baseline, target) -> float``: per-prompt logit
    differences [batch] of the circuit (everything else ablated), of a baseline run and of the
    target (the full model); ``normalize_metric`` on the batch means: (mean circuit - mean
    baseline) / (mean target - mean baseline)."""

    def case(name: str, seed: int, batch: int, zero_baseline: bool = False) -> Case:
        g = rng(seed)
        model = torch.rand(batch, generator=g) * 8 + 2
        circuit = model * (0.5 + torch.rand(batch, generator=g)) - 0.3
        baseline = torch.randn(batch, generator=g) * 0.5 + 0.4
        return Case(name, (circuit,), {"baseline": torch.zeros(batch) if zero_baseline else baseline,
                                       "target": model})

    mistakes = [
        Mistake("average first, then divide: a ratio of means; a mean of per-prompt ratios is dominated by "
                "prompts where the model's logit difference is small",
                lambda c, *, baseline, target: ((c - baseline) / (target - baseline)).mean()),
        Mistake("measure from the baseline: subtract mean(baseline) from both the circuit's and the target's mean",
                lambda c, *, baseline, target: c.mean() / target.mean()),
        Mistake("0 should mean 'as the baseline' and 1 'as the target': you have swapped baseline and target",
                lambda c, *, baseline, target: (c.mean() - target.mean()) / (baseline.mean() - target.mean())),
        Mistake("(mean circuit - mean baseline) / (mean target - mean baseline): you have it upside down",
                lambda c, *, baseline, target: (target.mean() - baseline.mean()) / (c.mean() - baseline.mean())),
    ]
    cases = [case("random", 0, 20), case("small batch", 1, 3), case("big batch", 2, 200),
             case("baseline 0 (Wang et al.'s F(C)/F(M))", 3, 10, zero_baseline=True)]

    run_check("fraction_recovered", fraction_recovered, _fraction_recovered, cases, mistakes,
              hint="how far the circuit's mean logit difference gets from the baseline's mean toward the target's, "
                   "as a ratio of means", atol=1e-4)
