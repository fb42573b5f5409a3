"""One-call bridges between toykit and the field's libraries: TransformerLens, SAELens and
Hugging Face transformers.

toykit's parameter names, shapes and hook names are those of TransformerLens and SAELens, so a
conversion copies tensors and checks that the two configurations describe the same maths:

    to_transformer_lens(model)     toykit HookedTransformer -> transformer_lens.HookedTransformer
    from_transformer_lens(tl)      and back (a clear error names any option toykit lacks)
    to_saelens(sae)                toykit StandardSAE / TopKSAE / JumpReLUSAE -> SAELens's
    from_saelens(sae)              and back; JumpReLU's log_threshold <-> SAELens's threshold
    from_hf_gpt2(hf_model)         a transformers GPT2LMHeadModel, any size -> toykit

The libraries stay optional: importing toykit never imports them, and a bridge whose library
is missing raises an ImportError that names the package to install. The converted model lives
on the same device, in the same dtype, and computes the same function (the interop test tier,
tests/interop/, checks every hook against TransformerLens on every shipped checkpoint).

What does not carry over: toykit's checkpoints hold weights only, while TransformerLens's state
dict also holds the buffers ``attn.mask`` and ``attn.IGNORE`` (they are recreated, not copied);
SAELens's training settings (its TopK SAE's AuxK coefficient is 1 where toykit's training
uses 1/32, and its AuxK applies no ReLU, see toykit.sae.TopKSAE) are not part of an SAE.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import warnings
from typing import Any

import torch

from toykit.hooks import check_model
from toykit.sae.architectures import SAE, JumpReLUSAE, SAEConfig, make_sae
from toykit.transformer import ACT_FNS, HOOK_SWITCHES, HookedTransformer, TransformerConfig

__all__ = ["from_hf_gpt2", "from_saelens", "from_transformer_lens", "to_saelens", "to_transformer_lens"]

# TransformerLens's buffers, which toykit's checkpoints leave out (toykit's mask is not persistent).
_TL_BUFFERS = ("attn.mask", "attn.IGNORE")
# Config fields that toykit maps one to one.
_SHARED_FIELDS = ("n_layers", "d_model", "n_ctx", "d_vocab", "n_heads", "d_head", "d_mlp", "act_fn",
                  "normalization_type", "attn_only", "positional_embedding_type", "eps", "dtype", *HOOK_SWITCHES)
# TransformerLens config fields that describe where a model came from or how it was initialised,
# not what it computes.
_TL_METADATA = {"device", "default_prepend_bos", "model_name", "original_architecture", "from_checkpoint",
                "checkpoint_index", "checkpoint_label_type", "checkpoint_value", "tokenizer_name", "init_mode",
                "n_devices", "seed", "initializer_range", "init_weights", "n_params", "tokenizer_prepends_bos",
                "trust_remote_code", "layer_norm_folding", "tie_word_embeddings", "decoder_start_token_id",
                "train_seq_length", "d_vocab_out", "attn_scale", "uses_rms_norm"}


def _require(module: str, package: str) -> Any:
    """Import an optional library, or say which package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"this bridge needs the {package!r} package: pip install {package}") from e


def _load_state(target: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Load a state dict, allowing only TransformerLens's attention buffers to differ."""
    missing, unexpected = target.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith(_TL_BUFFERS)]
    unexpected = [k for k in unexpected if not k.endswith(_TL_BUFFERS)]
    if missing or unexpected:
        raise ValueError(f"{where}: the state dicts do not match (missing {missing}, unexpected {unexpected})")


# -- TransformerLens ---------------------------------------------------------------------------


def to_transformer_lens(model: HookedTransformer) -> Any:
    """A ``transformer_lens.HookedTransformer`` with the same config and weights as ``model``.

    The hook switches (use_attn_result, use_attn_in, use_split_qkv_input, use_hook_mlp_in)
    carry over; the result has no tokenizer and sits on the model's device.
    """
    model = check_model(model, HookedTransformer)
    tl = _require("transformer_lens", "transformer-lens")
    fields = {name: getattr(model.cfg, name) for name in _SHARED_FIELDS}
    # seed=None: TransformerLens would otherwise reseed torch's global RNG.
    # initializer_range carries the init scale, so a model converted back has toykit's config
    cfg = tl.HookedTransformerConfig(**fields, d_vocab_out=model.cfg.d_vocab, device=str(model.device),
                                     seed=None, init_weights=False, initializer_range=model.cfg.init_range)
    with warnings.catch_warnings():  # TL 3.9 marks HookedTransformer deprecated; it is the class that matches
        warnings.simplefilter("ignore", DeprecationWarning)
        tl_model = tl.HookedTransformer(cfg, move_to_device=False).to(model.device)
    _load_state(tl_model, model.state_dict(), "to_transformer_lens")
    return tl_model


def _unsupported_tl_options(cfg: Any) -> list[str]:
    """The options of a TransformerLens config that change the maths in a way toykit lacks."""
    tl = _require("transformer_lens", "transformer-lens")
    problems = []
    if cfg.normalization_type not in ("LN", "LNPre", None):
        problems.append(f"normalization_type={cfg.normalization_type!r} (toykit has 'LN', 'LNPre' or None)")
    if cfg.act_fn not in ACT_FNS:
        problems.append(f"act_fn={cfg.act_fn!r} (toykit has {sorted(ACT_FNS)})")
    if cfg.positional_embedding_type != "standard":
        problems.append(f"positional_embedding_type={cfg.positional_embedding_type!r} (toykit has 'standard')")
    if cfg.d_vocab_out != cfg.d_vocab:
        problems.append(f"d_vocab_out={cfg.d_vocab_out} != d_vocab={cfg.d_vocab}")
    if not math.isclose(float(cfg.attn_scale), math.sqrt(cfg.d_head)) or not cfg.use_attn_scale:
        problems.append(f"attn_scale={cfg.attn_scale}, use_attn_scale={cfg.use_attn_scale} "
                        f"(toykit divides scores by sqrt(d_head) = {math.sqrt(cfg.d_head):g})")
    post_norm = importlib.import_module("transformer_lens.utilities.architectures").POST_NORM_ARCHITECTURES
    if cfg.original_architecture in post_norm:
        problems.append(f"original_architecture={cfg.original_architecture!r} (post-norm; toykit is pre-norm)")
    # Every other field must keep TransformerLens's default.
    default = tl.HookedTransformerConfig(
        n_layers=cfg.n_layers, d_model=cfg.d_model, n_ctx=cfg.n_ctx, d_head=cfg.d_head, n_heads=cfg.n_heads,
        d_mlp=cfg.d_mlp, d_vocab=cfg.d_vocab, act_fn=cfg.act_fn, seed=None)
    for field in dataclasses.fields(cfg):
        name = field.name
        if name in _SHARED_FIELDS or name in _TL_METADATA or name in ("use_attn_scale",):
            continue
        value, base = getattr(cfg, name), getattr(default, name)
        if value != base:
            problems.append(f"{name}={value!r} (toykit supports only TransformerLens's default, {base!r})")
    return problems


def from_transformer_lens(tl_model: Any) -> HookedTransformer:
    """A toykit HookedTransformer with the same config and weights as a TransformerLens
    ``HookedTransformer`` (on its device, in its dtype). Raises ValueError naming every option
    toykit does not support (rotary embeddings, RMSNorm, grouped-query attention, ...)."""
    tl = _require("transformer_lens", "transformer-lens")
    if not isinstance(tl_model, tl.HookedTransformer):
        raise TypeError(f"tl_model must be a transformer_lens.HookedTransformer, got {type(tl_model).__name__}")
    problems = _unsupported_tl_options(tl_model.cfg)
    if problems:
        raise ValueError("from_transformer_lens: toykit cannot represent this model: " + "; ".join(problems))
    fields = {name: getattr(tl_model.cfg, name) for name in _SHARED_FIELDS}
    fields["init_range"] = float(tl_model.cfg.initializer_range)  # TL fills in 0.8/sqrt(d_model) when unset
    device = next(tl_model.parameters()).device
    model = HookedTransformer(TransformerConfig(**fields, device=device))
    state = {k: v for k, v in tl_model.state_dict().items() if not k.endswith(_TL_BUFFERS)}
    _load_state(model, state, "from_transformer_lens")
    return model


# -- SAELens -----------------------------------------------------------------------------------

_SAELENS_CLASSES = {"standard": "StandardSAE", "topk": "TopKSAE", "jumprelu": "JumpReLUSAE"}


def to_saelens(sae: SAE) -> Any:
    """The same SAE as a SAELens inference SAE (StandardSAE, TopKSAE or JumpReLUSAE).

    Parameters W_enc, b_enc, W_dec, b_dec are copied; JumpReLU's θ = exp(log_threshold) becomes
    SAELens's ``threshold``. encode, decode and forward then agree exactly.
    """
    if not isinstance(sae, SAE):
        raise TypeError(f"sae must be a toykit SAE (make_sae), got {type(sae).__name__}")
    sl = _require("sae_lens", "sae-lens")
    arch = sae.architecture
    name = _SAELENS_CLASSES[arch]
    cfg_kwargs: dict[str, Any] = dict(d_in=sae.cfg.d_in, d_sae=sae.cfg.d_sae, dtype=str(sae.cfg.dtype).removeprefix(
        "torch."), device=str(sae.device), apply_b_dec_to_input=True, normalize_activations="none")
    if arch == "topk":
        cfg_kwargs["k"] = sae.cfg.k
    out = getattr(sl, name)(getattr(sl, f"{name}Config")(**cfg_kwargs))
    state = {k: v.detach().clone() for k, v in sae.state_dict().items() if k != "log_threshold"}
    if isinstance(sae, JumpReLUSAE):
        state["threshold"] = sae.threshold.detach().clone()
    _load_state(out, state, "to_saelens")
    return out


def from_saelens(sae: Any) -> SAE:
    """A toykit SAE from a SAELens standard, TopK or JumpReLU SAE (inference or training class).

    Raises ValueError for a setting toykit lacks: another architecture, activation
    normalisation, reshaped (hook_z) inputs, apply_b_dec_to_input=False, a TopK SAE with
    rescale_acts_by_decoder_norm, or a negative JumpReLU threshold (toykit stores log θ).
    """
    sl = _require("sae_lens", "sae-lens")
    if not isinstance(sae, sl.SAE):
        raise TypeError(f"sae must be a sae_lens SAE, got {type(sae).__name__}")
    cfg = sae.cfg
    arch = cfg.architecture()
    problems = []
    if arch not in _SAELENS_CLASSES:
        problems.append(f"architecture {arch!r} (toykit has {sorted(_SAELENS_CLASSES)})")
    if getattr(cfg, "normalize_activations", "none") != "none":
        problems.append(f"normalize_activations={cfg.normalize_activations!r} (toykit expects 'none'; "
                        "fold the scaling factor into the weights first)")
    if getattr(cfg, "reshape_activations", "none") != "none":
        problems.append(f"reshape_activations={cfg.reshape_activations!r} (toykit expects 'none')")
    if not getattr(cfg, "apply_b_dec_to_input", True):
        problems.append("apply_b_dec_to_input=False (toykit always subtracts b_dec before encoding)")
    if getattr(cfg, "rescale_acts_by_decoder_norm", False):
        problems.append("rescale_acts_by_decoder_norm=True (toykit's TopK does not rescale)")
    threshold = getattr(sae, "threshold", None) if arch == "jumprelu" else None
    if arch == "jumprelu" and threshold is None:
        problems.append("a JumpReLU SAE without a threshold")
    if threshold is not None and bool((threshold < 0).any()):
        problems.append("a negative JumpReLU threshold (toykit stores log_threshold, so θ >= 0)")
    if problems:
        raise ValueError("from_saelens: toykit cannot represent this SAE: " + "; ".join(problems))
    W_dec = sae.W_dec
    config = SAEConfig(d_in=cfg.d_in, d_sae=cfg.d_sae, architecture=arch, k=getattr(cfg, "k", None),
                       device=W_dec.device, dtype=W_dec.dtype)
    out = make_sae(config)
    state = {name: getattr(sae, name).detach().clone() for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
    if threshold is not None:  # arch == "jumprelu"
        state["log_threshold"] = threshold.detach().log()
    out.load_state_dict(state)
    return out


# -- Hugging Face GPT-2 ------------------------------------------------------------------------

_HF_ACT_FNS = {"gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}


@torch.no_grad()
def from_hf_gpt2(hf_model: Any) -> HookedTransformer:
    """A toykit HookedTransformer from a Hugging Face ``GPT2LMHeadModel`` of any size.

    GPT-2 stores q, k and v as one Conv1D (x @ W, W [d_model, 3 d_model]) and ties the
    unembedding to W_E; here they become W_Q, W_K, W_V [n_heads, d_model, d_head] and W_U.
    The model keeps GPT-2's LayerNorm weights (no folding) and has no tokenizer: encode text
    with the tokenizer that came with the weights. Same device and dtype as hf_model.
    """
    transformers = _require("transformers", "transformers")
    if not isinstance(hf_model, transformers.GPT2LMHeadModel):
        raise TypeError(f"hf_model must be a transformers.GPT2LMHeadModel, got {type(hf_model).__name__}")
    c = hf_model.config
    problems = []
    if c.activation_function not in _HF_ACT_FNS:
        problems.append(f"activation_function={c.activation_function!r} (toykit has {sorted(_HF_ACT_FNS)})")
    if not c.scale_attn_weights or c.scale_attn_by_inverse_layer_idx:
        problems.append("attention scores not scaled by exactly 1/sqrt(d_head) "
                        f"(scale_attn_weights={c.scale_attn_weights}, "
                        f"scale_attn_by_inverse_layer_idx={c.scale_attn_by_inverse_layer_idx})")
    if getattr(c, "add_cross_attention", False):
        problems.append("add_cross_attention=True")
    if problems:
        raise ValueError("from_hf_gpt2: toykit cannot represent this model: " + "; ".join(problems))
    gpt = hf_model.transformer
    d, h = c.n_embd, c.n_head
    e = d // h
    W_E = gpt.wte.weight
    cfg = TransformerConfig(n_layers=c.n_layer, d_model=d, n_ctx=c.n_positions, d_vocab=c.vocab_size, n_heads=h,
                            d_mlp=c.n_inner or 4 * d, act_fn=_HF_ACT_FNS[c.activation_function],
                            normalization_type="LN", eps=c.layer_norm_epsilon, device=W_E.device, dtype=W_E.dtype)
    state = {"embed.W_E": W_E, "pos_embed.W_pos": gpt.wpe.weight, "ln_final.w": gpt.ln_f.weight,
             "ln_final.b": gpt.ln_f.bias, "unembed.W_U": hf_model.lm_head.weight.T,
             "unembed.b_U": W_E.new_zeros(c.vocab_size)}
    for l, block in enumerate(gpt.h):
        p = f"blocks.{l}."
        W = block.attn.c_attn.weight.view(d, 3, h, e).permute(1, 2, 0, 3)  # [3, h, d, e]
        b = block.attn.c_attn.bias.view(3, h, e)
        state.update({
            p + "ln1.w": block.ln_1.weight, p + "ln1.b": block.ln_1.bias,
            p + "attn.W_Q": W[0], p + "attn.W_K": W[1], p + "attn.W_V": W[2],
            p + "attn.b_Q": b[0], p + "attn.b_K": b[1], p + "attn.b_V": b[2],
            p + "attn.W_O": block.attn.c_proj.weight.view(h, e, d), p + "attn.b_O": block.attn.c_proj.bias,
            p + "ln2.w": block.ln_2.weight, p + "ln2.b": block.ln_2.bias,
            p + "mlp.W_in": block.mlp.c_fc.weight, p + "mlp.b_in": block.mlp.c_fc.bias,
            p + "mlp.W_out": block.mlp.c_proj.weight, p + "mlp.b_out": block.mlp.c_proj.bias,
        })
    model = HookedTransformer(cfg)
    model.load_state_dict({k: v.detach().clone() for k, v in state.items()})
    return model
