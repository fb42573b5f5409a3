"""The logit lens: read the residual stream as if the model stopped there.

nostalgebraist (2020) noticed that applying the final LayerNorm and the unembedding to the
residual stream *between* blocks already gives sensible next-token predictions, which sharpen
layer by layer. Here every entry of ``ActivationCache.accumulated_resid`` (the input of each
block, then the final residual stream) goes through ``ln_final`` (with its own scale,
recomputed for that residual, as if it were the last one) and ``W_U, b_U``. The last entry
is therefore exactly the model's logits.

This differs from ``cache.accumulated_resid(apply_ln=True)``, which divides every layer by the
*final* layer's cached scale (right for direct logit attribution, where components must add
up; here each layer is read on its own).

The lens is a probe with fixed weights: it shows when the answer becomes readable in the
unembedding basis, not when the model "knows" it. Early layers often hold information the
unembedding cannot read (a learned "tuned lens" would; not implemented here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from toykit.activations import select_positions
from toykit.cache import ActivationCache
from toykit.hooks import check_model
from toykit.transformer import HookedTransformer
from toykit.validation import check_tensor

__all__ = ["apply_final_norm", "logit_lens", "logit_lens_answer"]


def _model_of(cache: ActivationCache) -> HookedTransformer:
    if not isinstance(cache, ActivationCache):
        raise TypeError(f"cache must be an ActivationCache (from model.run_with_cache), got {type(cache).__name__}")
    return check_model(cache.model, HookedTransformer)  # the lens needs ln_final and the unembedding


def apply_final_norm(model, resid: torch.Tensor) -> torch.Tensor:
    """The model's final LayerNorm (weights included) applied to resid [..., d_model], with
    the scale computed from resid itself. Uses no hook points, so hooks do not fire."""
    check_tensor("resid", resid, dtype="float")
    if resid.ndim == 0 or resid.shape[-1] != model.cfg.d_model:
        raise ValueError(f"resid must have shape [..., d_model={model.cfg.d_model}], got {list(resid.shape)}")
    if model.cfg.normalization_type is None:
        return resid
    ln = model.ln_final
    return F.layer_norm(resid, resid.shape[-1:], getattr(ln, "w", None), getattr(ln, "b", None), model.cfg.eps)


@torch.no_grad()
def logit_lens(
    cache: ActivationCache,
    pos: int | torch.Tensor | None = None,
    incl_mid: bool = False,
) -> tuple[torch.Tensor, list[str]]:
    """Logits read off the residual stream before every block and after the last.

    cache: from ``model.run_with_cache(tokens)`` (it needs the hook_resid_* activations).
    pos: None (every position), an int, or an int tensor [batch] (one position per prompt,
        e.g. a TinyLang ``Batch.answer_pos``).
    incl_mid: also read resid_mid of every block (between attention and MLP).
    Returns (logits [n_components, batch, (pos,) d_vocab], labels "0_pre", ..., "final_post").
    The "final_post" entry equals the model's logits.
    """
    model = _model_of(cache)
    if isinstance(pos, torch.Tensor):
        resid, labels = cache.accumulated_resid(incl_mid=incl_mid, return_labels=True)
        resid = select_positions(resid, pos, dim=2)
    else:
        if pos is not None and (not isinstance(pos, int) or isinstance(pos, bool)):
            raise TypeError(f"pos must be None, an int or an int tensor [batch], got {type(pos).__name__}")
        resid, labels = cache.accumulated_resid(incl_mid=incl_mid, pos_slice=pos, return_labels=True)
    return model.unembed(apply_final_norm(model, resid)), labels


@torch.no_grad()
def logit_lens_answer(
    cache: ActivationCache,
    answer_ids: torch.Tensor,
    pos: int | torch.Tensor = -1,
    wrong_ids: torch.Tensor | None = None,
    incl_mid: bool = False,
) -> dict[str, torch.Tensor | list[str]]:
    """How the logit lens rates the right answer, layer by layer.

    answer_ids: [batch] the correct next token of each prompt; wrong_ids: [batch] an
        alternative (e.g. IOI's subject) for a logit difference.
    pos: the position predicting the answer: an int or an int tensor [batch].
    Returns {"labels": [...], "logit": [n_components, batch] the answer's logit,
    "prob": its probability, "rank": its rank (0 = top), and, with wrong_ids, "logit_diff":
    answer logit minus wrong logit}, all on the CPU.
    """
    logits, labels = logit_lens(cache, pos=pos, incl_mid=incl_mid)  # [n, batch, d_vocab]
    batch = logits.shape[1]
    answer_ids = _ids("answer_ids", answer_ids, batch, logits.shape[-1]).to(logits.device)
    index = answer_ids[None, :, None].expand(logits.shape[0], batch, 1)
    answer_logit = logits.gather(-1, index)[..., 0]
    out: dict[str, torch.Tensor | list[str]] = {
        "labels": labels,
        "logit": answer_logit.cpu(),
        "prob": logits.softmax(-1).gather(-1, index)[..., 0].cpu(),
        "rank": (logits > answer_logit[..., None]).sum(-1).cpu(),
    }
    if wrong_ids is not None:
        wrong_ids = _ids("wrong_ids", wrong_ids, batch, logits.shape[-1]).to(logits.device)
        wrong = logits.gather(-1, wrong_ids[None, :, None].expand(logits.shape[0], batch, 1))[..., 0]
        out["logit_diff"] = (answer_logit - wrong).cpu()
    return out


def _ids(name: str, ids: torch.Tensor, batch: int, d_vocab: int) -> torch.Tensor:
    check_tensor(name, ids, [batch], dtype="int")
    if ids.numel() and (ids.min() < 0 or ids.max() >= d_vocab):
        raise ValueError(f"{name} must lie in [0, d_vocab={d_vocab})")
    return ids.long()
