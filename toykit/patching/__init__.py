"""Activation patching: which activations carry what decides a behaviour?

Run the model on **corrupted** prompts (which differ from the **clean** ones in a single
detail, e.g. IOI's names) and copy in an activation from the clean run. If a metric (say the
logit difference of the right over the wrong name) moves back toward its clean value, that
activation carries the information. This is *denoising*, TransformerLens's convention; swap
the two prompt sets for *noising* (corrupt one activation of the clean run and watch the
metric drop). Patching shows what an activation *does*; a probe only shows what it holds.

Conventions in this package:

- Prompts are token tensors [batch, pos]; clean and corrupted must have the same shape and
  be aligned position by position (pair prompts of the same template).
- ``clean`` (or ``corrupted``, for path patching) may be an ActivationCache of that run or its
  tokens; with tokens, just the activations needed are cached here.
- A **metric** is ``metric(logits [batch, pos, d_vocab]) -> scalar`` (a float or a 1-element
  tensor), usually averaged over the batch: see ``logit_diff_metric`` and ``kl_divergence``.
- A **patch** is ``(hook_name, index)``: ``index`` is a tuple applied after the batch axis
  (``(3,)`` = position 3 of a [b, p, d_model] activation; ``(slice(None), 1)`` = head 1 of
  hook_z at every position), or None for the whole activation. Every example gets its own
  clean activation.
- Sweeps return a ``PatchingResult``: ``values`` with named ``dims`` and ``coords`` (the label
  of every index along each dim), plus the unpatched ``baseline``; ``result.top(5)`` lists
  the biggest entries with their coordinates.
- Sweeps are batched: the corrupted batch is repeated once per patch (up to ``max_batch``
  sequences per forward pass; None = about ``TOKENS_PER_PASS`` tokens), so a layer x position
  sweep costs a few forward passes. A patch inside block l starts from the unpatched
  residual stream at block l, so the blocks before it are not recomputed.
- All hooks are attached with ``model.hooks(...)`` and removed on exit, even after errors.

TransformerLens users: ``patch_blocks(act_name="resid_pre")`` is ``get_act_patch_resid_pre``;
``patch_heads("z")`` and ``patch_heads("z", by_pos=True)`` are
``get_act_patch_attn_head_out_all_pos`` / ``_by_pos``; ``patch_heads(["z", "q", "k", "v",
"pattern"])`` is ``get_act_patch_attn_head_all_pos_every``.

Also here: path patching (Wang et al. 2022; Goldowsky-Dill et al. 2023), ablations (zero,
mean, resample) and attribution patching (Nanda 2023; Syed et al. 2023).

Import everything from ``toykit.patching``; the code lives in one module per concern:
``metrics`` (logit_diff, logit_diff_metric, kl_divergence), ``result`` (PatchingResult),
``engine`` (activation_patch, patch_sweep), ``sweeps`` (patch_blocks, patch_heads), ``path``
(path_patch, path_patch_heads), ``ablations`` (all_heads, ablation_hooks, run_with_ablation)
and ``attribution`` (attribution_patch, attribution_patch_blocks, attribution_patch_heads);
``inputs`` checks the arguments they share.
"""

# Inside this package a leading underscore means "used only in its own module"; a helper that
# other submodules use has no underscore and lives in the submodule that owns its concept
# (e.g. ``inputs.as_patches``, ``sweeps.block_cells``). Code outside the package imports
# only the names below. ("X as X" re-exports names that are not in __all__ but were importable
# from toykit.patching before it became a package: sweep activation names, the pass size, types.)

from toykit.metrics import normalize_metric
from toykit.patching.ablations import ablation_hooks, all_heads, run_with_ablation
from toykit.patching.attribution import attribution_patch, attribution_patch_blocks, attribution_patch_heads
from toykit.patching.engine import TOKENS_PER_PASS as TOKENS_PER_PASS
from toykit.patching.engine import activation_patch, patch_sweep
from toykit.patching.inputs import Head as Head
from toykit.patching.inputs import Index as Index
from toykit.patching.inputs import Patch as Patch
from toykit.patching.metrics import Metric as Metric
from toykit.patching.metrics import kl_divergence, logit_diff, logit_diff_metric
from toykit.patching.path import path_patch, path_patch_heads
from toykit.patching.result import PatchingResult
from toykit.patching.sweeps import BLOCK_ACTS as BLOCK_ACTS
from toykit.patching.sweeps import HEAD_ACTS as HEAD_ACTS
from toykit.patching.sweeps import patch_blocks, patch_heads

__all__ = [
    "PatchingResult",
    "ablation_hooks",
    "activation_patch",
    "all_heads",
    "attribution_patch",
    "attribution_patch_blocks",
    "attribution_patch_heads",
    "kl_divergence",
    "logit_diff",
    "logit_diff_metric",
    "normalize_metric",
    "patch_blocks",
    "patch_heads",
    "patch_sweep",
    "path_patch",
    "path_patch_heads",
    "run_with_ablation",
]
