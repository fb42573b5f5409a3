"""Model diffing: what changed inside a model, found by running it and its edited copy side by side.

Two models with the same architecture (a model and its fine-tuned, edited or backdoored copy) are
run on the same prompts, and their activations are compared. Three views, from coarse to fine:

- ``activation_diff``: at every residual-stream, attention-output and MLP-output hook, the size of
  the difference relative to model A's activation, ‖a_B − a_A‖ / ‖a_A‖ (Frobenius norms over the
  prompts, and over positions unless asked per position). A change made inside one block leaves
  every hook before it exactly equal, so the first hook that moves locates the edit.
- ``latent_firing_diff``: an SAE trained on model A's activations at one hook, run on both
  models' activations there. A latent that fires much more often under B than under A is a
  feature that B computes and A does not. This is the first step of Bricken et al. 2024,
  "Stage-Wise Model Diffing" (transformer-circuits.pub), which starts from a dictionary trained
  on the base model; they then fine-tune that dictionary on the new model and track how each
  feature moves, which we do not do here.
- ``paired_activations`` and ``relative_decoder_norm``: a *crosscoder* (Lindsey et al. 2024,
  "Sparse Crosscoders for Cross-Layer Features and Model Diffing", section "Model Diffing") is
  an SAE trained on the concatenation [a_A ; a_B] of the two models' activations on the same
  token, so every latent has one decoder half per model. A latent used by both models has
  halves of similar norm; one that only B needs has a tiny A half. The relative decoder norm
  ‖d_B‖ / (‖d_A‖ + ‖d_B‖) is 0.5 for shared latents and near 1 (or 0) for latents exclusive
  to B (or A).

Choice for the crosscoder: we train toykit's TopK SAE on the concatenation
(``make_sae(d_in=2 * d_model, architecture="topk", k=...)`` and ``train_sae``). Lindsey et al.
use an L1 penalty weighted by the *sum* of the per-model decoder norms; Minder et al. 2025
("Robustly identifying concepts introduced during chat fine-tuning using crosscoders") show
that this L1 penalty invents "exclusive" latents (a shared concept whose decoder half shrinks to
zero in one model) and that a (Batch)TopK crosscoder, with no L1 at all, avoids most of them.
toykit's TopK keeps k latents per input rather than per batch.

Shapes: n = prompts, pos = positions, d = d_model, d_sae = latents.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from toykit.activations import collect_activations
from toykit.hooks import check_model
from toykit.sae import SAE, check_sae
from toykit.transformer import HookedTransformer
from toykit.transformer_inputs import check_tokens
from toykit.validation import check_bool, check_positive_int, check_tensor

__all__ = [
    "DIFF_HOOKS",
    "ActivationDiff",
    "LatentDiff",
    "activation_diff",
    "diff_hook_names",
    "latent_firing_diff",
    "paired_activations",
    "relative_decoder_norm",
]

#: The hooks ``activation_diff`` compares in each block, in the order the block computes them.
DIFF_HOOKS = ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post")

#: The config fields that fix every activation's shape: two models to diff must agree on them.
_SHAPE_FIELDS = ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "d_vocab", "n_ctx", "attn_only")


def diff_hook_names(model: HookedTransformer) -> list[str]:
    """Every ``blocks.{l}.<DIFF_HOOKS>`` hook the model has, block by block (an attn_only model
    has no hook_resid_mid or hook_mlp_out)."""
    check_model(model, HookedTransformer)
    return [f"blocks.{layer}.{hook}" for layer in range(model.cfg.n_layers) for hook in DIFF_HOOKS
            if f"blocks.{layer}.{hook}" in model.hook_dict]


def _check_pair(model_a: object, model_b: object) -> tuple[HookedTransformer, HookedTransformer]:
    check_model(model_a, HookedTransformer)
    check_model(model_b, HookedTransformer)
    assert isinstance(model_a, HookedTransformer) and isinstance(model_b, HookedTransformer)  # for mypy
    for name in _SHAPE_FIELDS:
        a, b = getattr(model_a.cfg, name), getattr(model_b.cfg, name)
        if a != b:
            raise ValueError(f"model_b must have the same architecture as model_a to be diffed, but cfg.{name} is "
                             f"{b!r} for model_b and {a!r} for model_a")
    return model_a, model_b


# -- activation differences ------------------------------------------------------------------------


@dataclass
class ActivationDiff:
    """How far model B's activations are from model A's, hook by hook.

    hook_names: the hooks compared, in the order the model computes them.
    diff_norm: ‖a_B − a_A‖, the Frobenius norm over prompts and positions: [n_hooks], or
        [n_hooks, pos] (over prompts only) when computed per position.
    norm_a: ‖a_A‖ over the same entries, the same shape.
    ``relative`` is diff_norm / norm_a (0 where both are 0).
    """

    hook_names: list[str]
    diff_norm: torch.Tensor
    norm_a: torch.Tensor

    @property
    def relative(self) -> torch.Tensor:
        """diff_norm / norm_a, the same shape; 0 where model A's activation is 0 and nothing changed."""
        return torch.where(self.diff_norm == 0, torch.zeros_like(self.diff_norm),
                           self.diff_norm / self.norm_a.clamp_min(1e-12))

    def _per_hook(self) -> torch.Tensor:
        """[n_hooks] relative difference (the largest over positions when per position)."""
        rel = self.relative
        return rel if rel.ndim == 1 else rel.amax(dim=1)

    def peak(self, hooks: tuple[str, ...] | None = None) -> str:
        """The hook with the largest relative difference, among those whose name ends with one
        of ``hooks`` (e.g. ``("hook_attn_out", "hook_mlp_out")``: the blocks' own outputs)."""
        keep = [i for i, name in enumerate(self.hook_names) if hooks is None or name.endswith(tuple(hooks))]
        if not keep:
            raise ValueError(f"hooks={hooks!r} matches none of the compared hooks")
        rel = self._per_hook()[keep]
        return self.hook_names[keep[int(rel.argmax())]]

    def first_changed(self, atol: float = 0.0) -> str | None:
        """The first hook (in the model's order) whose relative difference exceeds atol; None if
        the two models agree everywhere. With atol=0 this is exact: weights that are equal up to
        a block give bit-identical activations before it."""
        over = (self._per_hook() > atol).nonzero()
        return None if over.numel() == 0 else self.hook_names[int(over[0])]

    def __repr__(self) -> str:
        width = max(len(n) for n in self.hook_names)
        rows = [f"  {name:<{width}}  {rel:.4g}" for name, rel in zip(self.hook_names, self._per_hook().tolist())]
        return "ActivationDiff, relative ‖a_B − a_A‖ / ‖a_A‖:\n" + "\n".join(rows)


@torch.no_grad()
def activation_diff(model_a: HookedTransformer, model_b: HookedTransformer, tokens: torch.Tensor,
                    hook_names: list[str] | None = None, per_position: bool = False,
                    batch_size: int = 64) -> ActivationDiff:
    """Compare two models' activations on the same prompts, hook by hook.

    model_a, model_b: HookedTransformers with the same architecture (n_layers, d_model, ...).
    tokens: [n, pos] prompts, run through both models.
    hook_names: the hooks to compare (default ``diff_hook_names(model_a)``: every
        resid_pre / attn_out / resid_mid / mlp_out / resid_post).
    per_position: also keep the position axis: norms are then over prompts only, [n_hooks, pos].
    Returns an ``ActivationDiff``. The models and tokens are not modified; no hook is left behind.
    A model compared with itself gives exactly 0 everywhere.
    """
    model_a, model_b = _check_pair(model_a, model_b)
    tokens = check_tokens(model_a, tokens, nonempty=True).cpu()
    check_bool("per_position", per_position)
    check_positive_int("batch_size", batch_size)
    if hook_names is None:
        hook_names = diff_hook_names(model_a)
    if isinstance(hook_names, str) or not isinstance(hook_names, (list, tuple)) or not hook_names:
        raise TypeError(f"hook_names must be a non-empty list of hook names, got {hook_names!r}")
    names = list(hook_names)
    check_model(model_a, HookedTransformer, names)
    diff_sq = torch.zeros(len(names), tokens.shape[1], dtype=torch.float64)
    a_sq = torch.zeros_like(diff_sq)
    for chunk in tokens.split(batch_size):
        acts_a = collect_activations(model_a, chunk.to(model_a.device), names, batch_size=batch_size)
        acts_b = collect_activations(model_b, chunk.to(model_b.device), names, batch_size=batch_size)
        for i, name in enumerate(names):
            a, b = acts_a[name].double(), acts_b[name].double()
            if a.ndim < 3:
                raise ValueError(f"hook_names: {name} has no position axis ([batch, pos, ...] expected)")
            # Sum the squares over the batch and every axis after pos (d_model, heads, ...).
            diff_sq[i] += (b - a).pow(2).flatten(2).sum(dim=(0, 2))
            a_sq[i] += a.pow(2).flatten(2).sum(dim=(0, 2))
    if not per_position:
        diff_sq, a_sq = diff_sq.sum(dim=1), a_sq.sum(dim=1)
    return ActivationDiff(hook_names=names, diff_norm=diff_sq.sqrt(), norm_a=a_sq.sqrt())


# -- SAE latents that fire in one model and not the other ---------------------------------------------


def _rows(model: HookedTransformer, tokens: torch.Tensor, hook_name: str, pos: int | torch.Tensor | None,
          batch_size: int) -> torch.Tensor:
    """[n_inputs, d]: the activation at hook_name for every token pos selects, one row each (on the CPU)."""
    x = collect_activations(model, tokens.to(model.device), [hook_name], pos=pos, batch_size=batch_size)[hook_name]
    return x.reshape(-1, x.shape[-1])


@dataclass
class LatentDiff:
    """How often each SAE latent fires on model A's and on model B's activations at one hook.

    hook_name: where the activations were read. n_inputs: how many activations (tokens) each
    frequency counts. freq_a, freq_b: [d_sae] the fraction of those on which the latent is
    active (> 0), under A and under B.
    """

    hook_name: str
    n_inputs: int
    freq_a: torch.Tensor
    freq_b: torch.Tensor

    @property
    def difference(self) -> torch.Tensor:
        """[d_sae] freq_b − freq_a: > 0 for latents that fire more often under B."""
        return self.freq_b - self.freq_a

    @property
    def log_ratio(self) -> torch.Tensor:
        """[d_sae] log10((freq_b + ε) / (freq_a + ε)) with ε = 1 / n_inputs (one firing), so a
        latent that never fires under A gets a large but finite ratio."""
        eps = 1.0 / self.n_inputs
        return torch.log10((self.freq_b + eps) / (self.freq_a + eps))

    def top(self, k: int = 10, by: str = "difference", more_in: str = "b") -> torch.Tensor:
        """[k] the latents that fire most (by "difference" or "ratio") more often under model
        ``more_in`` ("a" or "b") than under the other, strongest first."""
        check_positive_int("k", k)
        if by not in ("difference", "ratio"):
            raise ValueError(f"by must be 'difference' or 'ratio', got {by!r}")
        if more_in not in ("a", "b"):
            raise ValueError(f"more_in must be 'a' or 'b', got {more_in!r}")
        score = self.difference if by == "difference" else self.log_ratio
        score = score if more_in == "b" else -score
        return score.argsort(descending=True, stable=True)[:k]

    def __repr__(self) -> str:
        rows = []
        for side in ("b", "a"):
            for i in self.top(min(5, self.freq_a.numel()), more_in=side).tolist():
                rows.append(f"  latent {i:>5}: freq_a {self.freq_a[i]:.4f}, freq_b {self.freq_b[i]:.4f}"
                            f"  (more in {side.upper()})")
        return f"LatentDiff at {self.hook_name} over {self.n_inputs} activations\n" + "\n".join(rows)


@torch.no_grad()
def latent_firing_diff(sae: SAE, model_a: HookedTransformer, model_b: HookedTransformer, tokens: torch.Tensor,
                       hook_name: str, pos: int | torch.Tensor | None = None, batch_size: int = 64) -> LatentDiff:
    """Firing frequency of every SAE latent under model A and under model B.

    sae: an SAE for the activations at hook_name (typically trained on model A's), d_in equal
        to their last axis.
    tokens: [n, pos] prompts, run through both models.
    pos: None (every position of every prompt counts), an int, or an int tensor [n] (one
        position per prompt, e.g. the answer position).
    Returns a ``LatentDiff``; ``.top(k, more_in="b")`` lists the latents B uses that A does not.
    """
    check_sae(sae)
    model_a, model_b = _check_pair(model_a, model_b)
    tokens = check_tokens(model_a, tokens, nonempty=True).cpu()
    check_model(model_a, HookedTransformer, [hook_name])
    check_positive_int("batch_size", batch_size)
    freqs = []
    n_inputs = 0
    for model in (model_a, model_b):
        x = _rows(model, tokens, hook_name, pos, batch_size)
        if x.shape[-1] != sae.d_in:
            raise ValueError(f"sae has d_in={sae.d_in}, but the activations at {hook_name} have "
                             f"{x.shape[-1]} entries on their last axis")
        fired = torch.zeros(sae.d_sae, dtype=torch.float64)
        for rows in x.split(4096):  # the latents of every token at once could be large
            fired += (sae.encode(rows.to(sae.device, sae.W_dec.dtype)) > 0).sum(dim=0).double().cpu()
        n_inputs = x.shape[0]
        freqs.append(fired / n_inputs)
    return LatentDiff(hook_name=hook_name, n_inputs=n_inputs, freq_a=freqs[0], freq_b=freqs[1])


# -- crosscoders ----------------------------------------------------------------------------------------


@torch.no_grad()
def paired_activations(model_a: HookedTransformer, model_b: HookedTransformer, tokens: torch.Tensor,
                       hook_name: str, pos: int | torch.Tensor | None = None, batch_size: int = 64) -> torch.Tensor:
    """[n_inputs, 2 d]: the two models' activations at hook_name on the same token, side by side.

    Row r is [a_A ; a_B] for one (prompt, position) (every position of every prompt, or the
    positions pos selects as in ``latent_firing_diff``). Train a crosscoder on it with
    ``train_sae(make_sae(d_in=2 * d, d_sae=..., architecture="topk", k=...), rows, steps)``,
    then read ``relative_decoder_norm`` (see the module docstring for why TopK).
    """
    model_a, model_b = _check_pair(model_a, model_b)
    tokens = check_tokens(model_a, tokens, nonempty=True).cpu()
    check_model(model_a, HookedTransformer, [hook_name])
    check_positive_int("batch_size", batch_size)
    return torch.cat([_rows(model, tokens, hook_name, pos, batch_size) for model in (model_a, model_b)], dim=1)


def relative_decoder_norm(crosscoder: SAE) -> torch.Tensor:
    """[d_sae]: ‖d_B‖ / (‖d_A‖ + ‖d_B‖) for every latent of an SAE trained on ``paired_activations``.

    The first half of each decoder row writes model A's activation, the second model B's
    (Lindsey et al. 2024, "Model Diffing"). 0.5: shared by both; near 1: used only by B; near 0:
    used only by A. A latent whose whole row is 0 gets 0.5.
    """
    check_sae(crosscoder)
    if crosscoder.d_in % 2:
        raise ValueError(f"crosscoder must read [a_A ; a_B] (d_in = 2 d_model, even), got d_in={crosscoder.d_in}")
    check_tensor("crosscoder.W_dec", crosscoder.W_dec, ["d_sae", "d_in"], dtype="float")
    half = crosscoder.d_in // 2
    norm_a = crosscoder.W_dec[:, :half].detach().norm(dim=1)
    norm_b = crosscoder.W_dec[:, half:].detach().norm(dim=1)
    total = norm_a + norm_b
    return torch.where(total > 0, norm_b / total.clamp_min(1e-12), torch.full_like(total, 0.5)).cpu()
