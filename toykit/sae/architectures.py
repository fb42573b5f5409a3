"""SAE architectures: an overcomplete, sparse code for a model's activations.

An SAE rewrites an activation x ∈ ℝ^d_in as a sparse, non-negative combination of d_sae ≫ d_in
learned directions (the rows of W_dec), plus a bias:

    f  = σ((x − b_dec) W_enc + b_enc)        feature activations ("latents"), [..., d_sae]
    x̂  = f W_dec + b_dec                      reconstruction, [..., d_in]

Names and shapes follow SAELens, so what you learn carries over: W_enc [d_in, d_sae],
b_enc [d_sae], W_dec [d_sae, d_in], b_dec [d_in], and the hook points ``hook_sae_input``,
``hook_sae_acts_pre`` (before σ), ``hook_sae_acts_post`` (f), ``hook_sae_recons`` (x̂),
``hook_sae_output`` (what ``forward`` returns) and ``hook_sae_error`` (x − x̂, only with
``sae.use_error_term = True``, when forward returns x̂ + (x − x̂) = x so that splicing the SAE
into a model changes nothing until a hook edits the latents; as in SAELens).

Three architectures differ in σ and in how sparsity is paid for:

- ``StandardSAE`` (Bricken et al. 2023; Anthropic's April 2024 update): σ = ReLU and an L1
  penalty Σ_i f_i ‖W_dec,i‖, weighted by decoder row norms so that shrinking f while growing
  W_dec cannot dodge it.
- ``TopKSAE`` (Gao et al. 2024): σ keeps the k largest pre-activations (after a ReLU), so
  L0 ≤ k by construction and no sparsity penalty is needed. An auxiliary loss (AuxK) lets
  dead latents model the leftover error, which brings them back to life.
- ``JumpReLUSAE`` (Rajamanoharan et al. 2024): σ(z) = z · H(z − θ) with a learned threshold θ
  per latent, and an L0 penalty λ Σ_i H(z_i − θ_i). The step H has zero gradient almost
  everywhere, so θ is trained with a straight-through estimator: a pseudo-derivative
  −(θ/ε) K((z − θ)/ε) for JumpReLU and −(1/ε) K((z − θ)/ε) for the step, where K is the
  rectangle kernel of width 1 and ε the bandwidth.

``make_sae(d_in=..., d_sae=..., architecture=...)`` builds one; ``sae.loss(x, ...)`` returns the
loss with its parts (``SAELoss``). Training is in toykit.sae.training, metrics in
toykit.sae.metrics, splicing an SAE into a transformer in toykit.sae.splicing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from toykit.hooks import HookedRootModule, HookPoint
from toykit.runtime import make_generator, resolve_device
from toykit.validation import check_positive_int, check_tensor

__all__ = [
    "ARCHITECTURES",
    "SAE",
    "JumpReLUSAE",
    "SAEConfig",
    "SAELoss",
    "StandardSAE",
    "TopKSAE",
    "check_sae",
    "jumprelu",
    "jumprelu_threshold_grad",
    "make_sae",
    "reconstruction_loss",
    "step_threshold_grad",
    "threshold_step",
    "topk_activation",
    "weighted_l1_penalty",
]

ARCHITECTURES = ("standard", "topk", "jumprelu")


@dataclass(kw_only=True)
class SAEConfig:
    """The shape and architecture of an SAE (the training settings live in train_sae).

    d_in: width of the activations; d_sae: number of latents (the dictionary size).
    architecture: "standard", "topk" or "jumprelu".
    k: TopK only, latents kept per input. aux_k: TopK only, dead latents the AuxK loss may use
        (default d_in // 2, as in Gao et al.).
    jumprelu_init_threshold, jumprelu_bandwidth: JumpReLU only, the starting θ and the width ε
        of the straight-through estimator's kernel (in units of the normalised activations).
    decoder_init_norm: the length of every decoder row at initialisation (W_enc starts as
        W_decᵀ). Small rows (0.1) suit the standard SAE; TopK and JumpReLU are trained with
        unit rows anyway.
    seed: the initialisation seed (weights are drawn on the CPU, so a seed gives the same start
        on every device). device: None picks toykit.get_device(). dtype: parameter dtype.
    """

    d_in: int
    d_sae: int
    architecture: str = "standard"
    k: int | None = None
    aux_k: int | None = None
    jumprelu_init_threshold: float = 0.001
    jumprelu_bandwidth: float = 0.001
    decoder_init_norm: float = 0.1
    seed: int = 0
    device: str | torch.device | None = None
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        check_positive_int("d_in", self.d_in)
        check_positive_int("d_sae", self.d_sae)
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.architecture == "topk":
            if self.k is None:
                raise ValueError("architecture='topk' needs k, the number of latents kept per input")
            check_positive_int("k", self.k)
            if self.k > self.d_sae:
                raise ValueError(f"k={self.k} cannot exceed d_sae={self.d_sae}")
            if self.aux_k is None:
                self.aux_k = max(1, self.d_in // 2)
            check_positive_int("aux_k", self.aux_k)
        elif self.k is not None:
            raise ValueError(f"k is only used by architecture='topk', not {self.architecture!r}")
        for name in ("jumprelu_init_threshold", "jumprelu_bandwidth", "decoder_init_norm"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        if not (isinstance(self.dtype, torch.dtype) and self.dtype.is_floating_point):
            raise ValueError(f"dtype must be a floating-point torch.dtype, got {self.dtype!r}")


@dataclass
class SAELoss:
    """What ``SAE.loss`` returns: the total and its parts (scalars), and the forward pass.

    loss = mse_loss + coefficient · sparsity_loss + aux_coefficient · aux_loss, where
    mse_loss is the squared error per input ‖x − x̂‖², averaged over the batch (SAELens's
    mse_loss); sparsity_loss the architecture's penalty before its coefficient (weighted L1,
    L0, or 0 for TopK); aux_loss the AuxK loss (TopK with dead latents; otherwise 0), already
    scaled by min(n_dead / aux_k, 1).
    feature_acts: [batch, d_sae]; sae_out: [batch, d_in].
    """

    loss: torch.Tensor
    mse_loss: torch.Tensor
    sparsity_loss: torch.Tensor
    aux_loss: torch.Tensor
    feature_acts: torch.Tensor
    sae_out: torch.Tensor


# -- the pieces, as plain functions --------------------------------------------------------------


def reconstruction_loss(x: torch.Tensor, sae_out: torch.Tensor) -> torch.Tensor:
    """x, sae_out: [batch, d_in] -> scalar: ‖x − x̂‖² per input, averaged over the batch."""
    return (sae_out - x).pow(2).sum(dim=-1).mean()


def weighted_l1_penalty(feature_acts: torch.Tensor, W_dec: torch.Tensor) -> torch.Tensor:
    """feature_acts: [batch, d_sae], W_dec: [d_sae, d_in] -> scalar: Σ_i f_i ‖W_dec,i‖,
    averaged over the batch."""
    # Summing over the batch first turns a [batch, d_sae] product into a [d_sae] one.
    return feature_acts.sum(dim=0) @ W_dec.norm(dim=1) / feature_acts.shape[0]


def topk_activation(acts_pre: torch.Tensor, k: int) -> torch.Tensor:
    """acts_pre: [..., d_sae] -> [..., d_sae]: ReLU of the k largest entries of each row, the
    rest set to 0. Gradients flow to the kept entries only."""
    check_tensor("acts_pre", acts_pre, dtype="float")
    check_positive_int("k", k)
    if k > acts_pre.shape[-1]:
        raise ValueError(f"k={k} cannot exceed the number of latents, {acts_pre.shape[-1]}")
    values, indices = acts_pre.topk(k, dim=-1, sorted=False)
    return torch.zeros_like(acts_pre).scatter(-1, indices, F.relu(values))


def _rectangle(u: torch.Tensor) -> torch.Tensor:
    """The kernel of the straight-through estimators: 1 on (−1/2, 1/2), 0 elsewhere."""
    return (u.abs() < 0.5).to(u.dtype)


def jumprelu_threshold_grad(acts_pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float,
                            grad_output: torch.Tensor) -> torch.Tensor:
    """The straight-through gradient of Σ grad_output · JumpReLU(z) with respect to θ.

    acts_pre (z), grad_output: [..., d_sae]; threshold (θ): [d_sae] -> [d_sae].
    ∂JumpReLU(z)/∂θ is taken to be −(θ/ε) K((z − θ)/ε), K the rectangle kernel of width 1;
    the result sums it, times grad_output, over every leading axis.
    """
    pseudo = -(threshold / bandwidth) * _rectangle((acts_pre - threshold) / bandwidth)
    return (pseudo * grad_output).reshape(-1, acts_pre.shape[-1]).sum(dim=0)


def step_threshold_grad(acts_pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float,
                        grad_output: torch.Tensor) -> torch.Tensor:
    """As jumprelu_threshold_grad, for the step H(z − θ): pseudo-derivative −(1/ε) K((z − θ)/ε)."""
    pseudo = -_rectangle((acts_pre - threshold) / bandwidth) / bandwidth
    return (pseudo * grad_output).reshape(-1, acts_pre.shape[-1]).sum(dim=0)


class _JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, acts_pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
        ctx.save_for_backward(acts_pre, threshold)
        ctx.bandwidth = bandwidth
        return acts_pre * (acts_pre > threshold)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        acts_pre, threshold = ctx.saved_tensors
        grad_pre = grad_output * (acts_pre > threshold)  # the ordinary derivative of z · H(z − θ) in z
        grad_threshold = jumprelu_threshold_grad(acts_pre, threshold, ctx.bandwidth, grad_output)
        return grad_pre, grad_threshold, None


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, acts_pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
        ctx.save_for_backward(acts_pre, threshold)
        ctx.bandwidth = bandwidth
        return (acts_pre > threshold).to(acts_pre.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        acts_pre, threshold = ctx.saved_tensors
        # No gradient to z: the L0 penalty should move thresholds, not push pre-activations down.
        return None, step_threshold_grad(acts_pre, threshold, ctx.bandwidth, grad_output), None


def _check_threshold(acts_pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> None:
    check_tensor("acts_pre", acts_pre, dtype="float")
    check_tensor("threshold", threshold, [acts_pre.shape[-1]], dtype="float")
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)) or not bandwidth > 0:
        raise ValueError(f"bandwidth must be a positive number, got {bandwidth!r}")


def jumprelu(acts_pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float = 0.001) -> torch.Tensor:
    """JumpReLU(z) = z · H(z − θ): acts_pre [..., d_sae], threshold [d_sae] -> [..., d_sae].

    Differentiable in θ through the straight-through estimator (see jumprelu_threshold_grad).
    """
    _check_threshold(acts_pre, threshold, bandwidth)
    return _JumpReLU.apply(acts_pre, threshold, float(bandwidth))


def threshold_step(acts_pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float = 0.001) -> torch.Tensor:
    """H(z − θ), 1.0 where a latent fires: [..., d_sae]. Its sum over latents is the L0 norm,
    differentiable in θ through the straight-through estimator (see step_threshold_grad)."""
    _check_threshold(acts_pre, threshold, bandwidth)
    return _Step.apply(acts_pre, threshold, float(bandwidth))


# -- the modules -----------------------------------------------------------------------------------


class SAE(HookedRootModule):
    """The parts every architecture shares; build one with make_sae or a subclass.

    Parameters: W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in], b_dec [d_in].
    At initialisation the rows of W_dec point in random directions with length
    cfg.decoder_init_norm, W_enc = W_decᵀ, and both biases are 0.
    Inputs may have any leading axes: x [..., d_in] -> f [..., d_sae] -> x̂ [..., d_in].
    """

    architecture = "standard"

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__()
        if not isinstance(cfg, SAEConfig):
            raise TypeError(f"cfg must be an SAEConfig, got {type(cfg).__name__}")
        if cfg.architecture != self.architecture:
            raise ValueError(f"{type(self).__name__} needs architecture={self.architecture!r}, "
                             f"got {cfg.architecture!r}; make_sae(cfg) picks the right class")
        self.cfg = cfg
        device = resolve_device(cfg.device)
        generator = make_generator(cfg.seed)
        W_dec = torch.randn(cfg.d_sae, cfg.d_in, generator=generator, dtype=torch.float64)
        W_dec = W_dec * (cfg.decoder_init_norm / W_dec.norm(dim=1, keepdim=True))
        W_dec = W_dec.to(device=device, dtype=cfg.dtype)
        self.W_enc = nn.Parameter(W_dec.T.clone())
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, device=device, dtype=cfg.dtype))
        self.W_dec = nn.Parameter(W_dec)
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, device=device, dtype=cfg.dtype))
        self.hook_sae_input = HookPoint()
        self.hook_sae_acts_pre = HookPoint()
        self.hook_sae_acts_post = HookPoint()
        self.hook_sae_recons = HookPoint()
        self.hook_sae_error = HookPoint()  # fires only with use_error_term
        self.hook_sae_output = HookPoint()
        self.use_error_term = False
        self._init_extra(device)
        self.setup()

    def _init_extra(self, device: torch.device) -> None:
        """Architecture-specific parameters (JumpReLU's threshold)."""

    @property
    def device(self) -> torch.device:
        return self.W_dec.device

    @property
    def d_in(self) -> int:
        return self.cfg.d_in

    @property
    def d_sae(self) -> int:
        return self.cfg.d_sae

    # -- forward ---------------------------------------------------------------------------

    def _check_input(self, x: torch.Tensor) -> None:
        check_tensor("x", x, dtype="float")
        if x.ndim == 0 or x.shape[-1] != self.cfg.d_in:
            raise ValueError(f"x must have shape [..., d_in={self.cfg.d_in}], got {list(x.shape)}")

    def encode_pre(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., d_in] -> pre-activations (x − b_dec) W_enc + b_enc: [..., d_sae]."""
        self._check_input(x)
        x = self.hook_sae_input(x)
        return self.hook_sae_acts_pre((x - self.b_dec) @ self.W_enc + self.b_enc)

    def activation(self, acts_pre: torch.Tensor) -> torch.Tensor:
        """σ: pre-activations [..., d_sae] -> feature activations [..., d_sae]."""
        return F.relu(acts_pre)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., d_in] -> feature activations f: [..., d_sae]."""
        return self.hook_sae_acts_post(self.activation(self.encode_pre(x)))

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        """f: [..., d_sae] -> x̂ = f W_dec + b_dec: [..., d_in]."""
        check_tensor("feature_acts", feature_acts, dtype="float")
        if feature_acts.ndim == 0 or feature_acts.shape[-1] != self.cfg.d_sae:
            raise ValueError(f"feature_acts must have shape [..., d_sae={self.cfg.d_sae}], "
                             f"got {list(feature_acts.shape)}")
        return self.hook_sae_recons(feature_acts @ self.W_dec + self.b_dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., d_in] -> reconstruction x̂: [..., d_in], through hook_sae_output.

        With ``use_error_term`` (SAELens's switch) it returns x̂ + error, where error = x − x̂
        (through hook_sae_error) is computed again without hooks and without gradient. The
        output is then x itself unless a hook edits the latents, and the edit is what changes.
        """
        sae_out = self.decode(self.encode(x))
        if self.use_error_term:
            with torch.no_grad():  # the true error, whatever hooks did to the latents
                acts = self.activation((x - self.b_dec) @ self.W_enc + self.b_enc)
                error = self.hook_sae_error(x - (acts @ self.W_dec + self.b_dec))
            sae_out = sae_out + error
        return self.hook_sae_output(sae_out)

    # -- loss ------------------------------------------------------------------------------

    def sparsity_loss(self, feature_acts: torch.Tensor, acts_pre: torch.Tensor) -> torch.Tensor:
        """The penalty that buys sparsity, before its coefficient (per input, batch mean)."""
        return weighted_l1_penalty(feature_acts, self.W_dec)

    def aux_loss(self, x: torch.Tensor, acts_pre: torch.Tensor, sae_out: torch.Tensor,
                 dead_mask: torch.Tensor | None) -> torch.Tensor:
        """An auxiliary loss for dead latents (TopK's AuxK); 0 for the other architectures."""
        return x.new_zeros(())

    def loss(self, x: torch.Tensor, sparsity_coefficient: float = 0.0, dead_mask: torch.Tensor | None = None,
             aux_coefficient: float = 1 / 32) -> SAELoss:
        """The training loss on a batch x: [batch, d_in], with its parts (see SAELoss).

        sparsity_coefficient: the L1 coefficient (standard) or L0 coefficient (JumpReLU);
            TopK has no sparsity penalty and ignores it.
        dead_mask: [d_sae] bool, the latents currently counted as dead (TopK's AuxK uses them).
        aux_coefficient: the weight of the AuxK loss (Gao et al. use 1/32).
        """
        check_tensor("x", x, ["batch", self.cfg.d_in], dtype="float")
        for name, value in [("sparsity_coefficient", sparsity_coefficient), ("aux_coefficient", aux_coefficient)]:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if dead_mask is not None:
            check_tensor("dead_mask", dead_mask, [self.cfg.d_sae], dtype="bool")
        acts_pre = self.encode_pre(x)
        feature_acts = self.hook_sae_acts_post(self.activation(acts_pre))
        sae_out = self.decode(feature_acts)
        mse_loss = reconstruction_loss(x, sae_out)
        sparsity = self.sparsity_loss(feature_acts, acts_pre)
        aux = self.aux_loss(x, acts_pre, sae_out, dead_mask)
        total = mse_loss + sparsity_coefficient * sparsity + aux_coefficient * aux
        return SAELoss(total, mse_loss, sparsity, aux, feature_acts, sae_out)

    # -- weight surgery ----------------------------------------------------------------------

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        """Scale every decoder row to unit length (in place)."""
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def fold_activation_norm_scaling_factor(self, scale: float) -> None:
        """Make an SAE trained on scale · x work on x itself (in place).

        (s x − b_dec) W_enc = (x − b_dec/s)(s W_enc), and x̂ = (f W_dec + b_dec)/s, so W_enc is
        multiplied by s and W_dec and b_dec are divided by it; f does not change.
        """
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        self.W_enc.mul_(scale)
        self.W_dec.div_(scale)
        self.b_dec.div_(scale)

    def extra_repr(self) -> str:
        return f"architecture={self.architecture!r}, d_in={self.cfg.d_in}, d_sae={self.cfg.d_sae}"


class StandardSAE(SAE):
    """ReLU latents and an L1 penalty weighted by decoder row norms: Σ_i f_i ‖W_dec,i‖."""

    architecture = "standard"


class TopKSAE(SAE):
    """Keep the cfg.k largest pre-activations of each input (after a ReLU); no sparsity penalty.

    The AuxK loss: with e = x − x̂ the error the live latents leave, reconstruct e from the
    aux_k largest pre-activations among the *dead* latents alone, ê = TopK(z_dead) W_dec, and
    add ‖e − ê‖² (batch mean), scaled by min(n_dead / aux_k, 1). Dead latents that can explain
    the error get gradient again.

    TopK here, as in the main activation, includes a ReLU: a dead latent with a negative
    pre-activation contributes 0 to ê. This follows Gao et al. 2024's reference code (OpenAI's
    sparse_autoencoder, train.py, applies torch.relu to the AuxK values as to the TopK ones).
    SAELens 6.54 omits that ReLU, so when fewer than aux_k latents are dead (and some of the
    chosen ones are negative) its AuxK loss differs from this one; the main loss, encode,
    decode and forward agree exactly (toykit.interop converts between the two).
    """

    architecture = "topk"

    def activation(self, acts_pre: torch.Tensor) -> torch.Tensor:
        assert self.cfg.k is not None  # SAEConfig requires k for architecture "topk"
        return topk_activation(acts_pre, self.cfg.k)

    def sparsity_loss(self, feature_acts: torch.Tensor, acts_pre: torch.Tensor) -> torch.Tensor:
        return feature_acts.new_zeros(())

    def aux_loss(self, x: torch.Tensor, acts_pre: torch.Tensor, sae_out: torch.Tensor,
                 dead_mask: torch.Tensor | None) -> torch.Tensor:
        n_dead = 0 if dead_mask is None else int(dead_mask.sum())
        if dead_mask is None or n_dead == 0:
            return x.new_zeros(())
        assert self.cfg.aux_k is not None  # SAEConfig sets it for architecture "topk"
        k_aux = min(self.cfg.aux_k, n_dead)
        dead_pre = acts_pre.masked_fill(~dead_mask, -math.inf)
        values, indices = dead_pre.topk(k_aux, dim=-1, sorted=False)
        aux_acts = torch.zeros_like(acts_pre).scatter(-1, indices, F.relu(values))
        error = (x - sae_out).detach()
        scale = min(n_dead / self.cfg.aux_k, 1.0)
        return scale * reconstruction_loss(error, aux_acts @ self.W_dec)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", k={self.cfg.k}"


class JumpReLUSAE(SAE):
    """JumpReLU latents z · H(z − θ) with a learned threshold θ per latent, and an L0 penalty.

    θ is stored as ``log_threshold`` [d_sae] (so it stays positive); ``threshold`` is exp of it.
    """

    architecture = "jumprelu"

    def _init_extra(self, device: torch.device) -> None:
        start = math.log(self.cfg.jumprelu_init_threshold)
        self.log_threshold = nn.Parameter(torch.full((self.cfg.d_sae,), start, device=device, dtype=self.cfg.dtype))

    @property
    def threshold(self) -> torch.Tensor:
        """θ: [d_sae]."""
        return self.log_threshold.exp()

    def activation(self, acts_pre: torch.Tensor) -> torch.Tensor:
        return jumprelu(acts_pre, self.threshold, self.cfg.jumprelu_bandwidth)

    def sparsity_loss(self, feature_acts: torch.Tensor, acts_pre: torch.Tensor) -> torch.Tensor:
        return threshold_step(acts_pre, self.threshold, self.cfg.jumprelu_bandwidth).sum(dim=-1).mean()


_CLASSES: dict[str, type[SAE]] = {"standard": StandardSAE, "topk": TopKSAE, "jumprelu": JumpReLUSAE}


def check_sae(sae: object) -> SAE:
    """Return ``sae`` if it is an SAE of this package; raise a TypeError naming it otherwise."""
    if not isinstance(sae, SAE):
        raise TypeError(f"sae must be an SAE from toykit.sae (make_sae), got {type(sae).__name__}")
    return sae


def make_sae(cfg: SAEConfig | None = None, **kwargs) -> SAE:
    """Build the SAE a config describes: ``make_sae(d_in=2, d_sae=8)``,
    ``make_sae(d_in=64, d_sae=512, architecture="topk", k=8)`` or ``make_sae(cfg)``."""
    if cfg is None:
        cfg = SAEConfig(**kwargs)
    elif kwargs:
        raise TypeError("make_sae takes either a config or keyword arguments, not both")
    if not isinstance(cfg, SAEConfig):
        raise TypeError(f"cfg must be an SAEConfig, got {type(cfg).__name__}")
    return _CLASSES[cfg.architecture](cfg)
