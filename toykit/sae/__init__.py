"""Sparse autoencoders (SAEs): build, train, measure and splice them into a model.

One module per job:

- ``toykit.sae.architectures``: the SAE itself. ``SAEConfig``, the three architectures
  (``StandardSAE``, ``TopKSAE``, ``JumpReLUSAE``), ``make_sae``, and the pieces of their
  forward pass and loss as plain functions (``topk_activation``, ``jumprelu``, ...).
- ``toykit.sae.training``: ``train_sae``, and reviving dead latents by resampling.
- ``toykit.sae.metrics``: L0, MSE, explained variance, feature density, MMCS, loss recovered.
- ``toykit.sae.splicing``: hooks that put an SAE into a model, and the losses with it spliced in.

Every public name of the four is also importable from here, e.g.
``from toykit.sae import make_sae, train_sae``.
"""

from toykit.sae.architectures import (
    ARCHITECTURES,
    SAE,
    JumpReLUSAE,
    SAEConfig,
    SAELoss,
    StandardSAE,
    TopKSAE,
    check_sae,
    jumprelu,
    jumprelu_threshold_grad,
    make_sae,
    reconstruction_loss,
    step_threshold_grad,
    threshold_step,
    topk_activation,
    weighted_l1_penalty,
)
from toykit.sae.metrics import (
    cosine_similarity_matrix,
    dead_fraction,
    evaluate_sae,
    explained_variance,
    feature_density,
    l0,
    log_feature_density,
    loss_recovered,
    max_cosine_similarity,
    mmcs,
    mse,
)
from toykit.sae.splicing import (
    clamp_latent_hook,
    generate_with_clamped_latent,
    mean_ablation_hook,
    run_with_sae,
    sae_replacement_hook,
    spliced_losses,
    zero_ablation_hook,
)
from toykit.sae.training import activation_scale, reinitialise_latents, resample_dead_latents, train_sae

__all__ = [
    # architectures
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
    # metrics
    "cosine_similarity_matrix",
    "dead_fraction",
    "evaluate_sae",
    "explained_variance",
    "feature_density",
    "l0",
    "log_feature_density",
    "loss_recovered",
    "max_cosine_similarity",
    "mmcs",
    "mse",
    # splicing
    "clamp_latent_hook",
    "generate_with_clamped_latent",
    "mean_ablation_hook",
    "run_with_sae",
    "sae_replacement_hook",
    "spliced_losses",
    "zero_ablation_hook",
    # training
    "activation_scale",
    "reinitialise_latents",
    "resample_dead_latents",
    "train_sae",
]
