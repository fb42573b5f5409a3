"""Checks for chapter 02, Sparse autoencoders.

Each ``check_<name>(fn)`` runs your ``fn`` and toykit's reference (toykit.sae.architectures,
toykit.sae.metrics, toykit.sae.training) on seeded cases, prints one line when they agree, and
otherwise raises CheckFailure with a hint chosen by recognising the usual mistakes.

Signatures the checks expect (shapes: W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in],
b_dec [d_in]):

- ``sae_forward(x, W_enc, b_enc, W_dec, b_dec) -> (feature_acts, sae_out)``: the standard
  (ReLU) SAE, x [..., d_in].
- ``sae_loss(x, feature_acts, sae_out, W_dec, l1_coefficient) -> (loss, mse_loss, l1_loss)``.
- ``topk_activation(acts_pre, k) -> feature_acts``.
- ``jumprelu(acts_pre, threshold) -> feature_acts``.
- ``jumprelu_threshold_grad(acts_pre, threshold, bandwidth, grad_output) -> [d_sae]``.
- ``explained_variance(x, x_hat) -> scalar``.
- ``mmcs(W_dec, true_features) -> scalar``.
- ``reinitialise_latents(W_enc, b_enc, W_dec, b_dec, dead, inputs) -> (W_enc, b_enc, W_dec)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from toykit.exercises.checking import Case, ExerciseTable, Mistake, rng, run_check
from toykit.sae import architectures as ref
from toykit.sae import metrics
from toykit.sae.training import reinitialise_latents as ref_reinitialise

# exercise id -> its check and toykit's reference (filled by @EXERCISES.check below)
EXERCISES = ExerciseTable()

__all__ = [
    "check_explained_variance",
    "check_jumprelu",
    "check_jumprelu_threshold_grad",
    "check_mmcs",
    "check_reinitialise_latents",
    "check_sae_forward",
    "check_sae_loss",
    "check_topk_activation",
]


def _weights(seed: int, d_in: int, d_sae: int) -> tuple[torch.Tensor, ...]:
    g = rng(seed)
    W_enc = torch.randn(d_in, d_sae, generator=g) / d_in ** 0.5
    b_enc = torch.randn(d_sae, generator=g) * 0.3
    W_dec = torch.randn(d_sae, d_in, generator=g) * torch.rand(d_sae, 1, generator=g)  # unequal row norms
    b_dec = torch.randn(d_in, generator=g)
    return W_enc, b_enc, W_dec, b_dec


# -- sae_forward ---------------------------------------------------------------------------------


def _forward_reference(x, W_enc, b_enc, W_dec, b_dec):
    d_in, d_sae = W_enc.shape
    sae = ref.make_sae(d_in=d_in, d_sae=d_sae, device="cpu")
    with torch.no_grad():
        for name, value in [("W_enc", W_enc), ("b_enc", b_enc), ("W_dec", W_dec), ("b_dec", b_dec)]:
            getattr(sae, name).copy_(value)
        feature_acts = sae.encode(x)
        return feature_acts, sae.decode(feature_acts)


def _forward_cases() -> list[Case]:
    def case(name: str, seed: int, lead: tuple[int, ...], d_in: int, d_sae: int) -> Case:
        W_enc, b_enc, W_dec, b_dec = _weights(seed, d_in, d_sae)
        x = torch.randn(*lead, d_in, generator=rng(seed + 100)) + b_dec
        return Case(name, (x, W_enc, b_enc, W_dec, b_dec))

    return [
        case("batch of 8, d_in 5, d_sae 12", 0, (8,), 5, 12),
        case("square (d_in = d_sae = 6)", 1, (10,), 6, 6),
        case("batch of one", 2, (1,), 4, 9),
        case("activations with a position axis [3, 7, d_in]", 3, (3, 7), 5, 16),
    ]


@EXERCISES.check(_forward_reference)
def check_sae_forward(sae_forward: Callable[..., tuple]) -> None:
    """Check ``sae_forward(x, W_enc, b_enc, W_dec, b_dec) -> (feature_acts, sae_out)``:
    f = ReLU((x − b_dec) W_enc + b_enc), x̂ = f W_dec + b_dec, for x: [..., d_in]."""
    relu = F.relu
    mistakes = [
        Mistake("subtract b_dec from x before encoding: f = ReLU((x − b_dec) W_enc + b_enc)",
                lambda x, We, be, Wd, bd: (f := relu(x @ We + be), f @ Wd + bd)),
        Mistake("the feature activations need a ReLU: f = ReLU((x − b_dec) W_enc + b_enc)",
                lambda x, We, be, Wd, bd: (f := (x - bd) @ We + be, f @ Wd + bd)),
        Mistake("add b_dec back after decoding: x̂ = f W_dec + b_dec",
                lambda x, We, be, Wd, bd: (f := relu((x - bd) @ We + be), f @ Wd)),
        Mistake("b_enc goes inside the ReLU: f = ReLU((x − b_dec) W_enc + b_enc), not "
                "ReLU((x − b_dec) W_enc) + b_enc",
                lambda x, We, be, Wd, bd: (f := relu((x - bd) @ We) + be, f @ Wd + bd)),
        Mistake("the encoder is W_enc, not W_decᵀ: this SAE's weights are not tied",
                lambda x, We, be, Wd, bd: (f := relu((x - bd) @ Wd.T + be), f @ Wd + bd)),
        Mistake("W_enc is [d_in, d_sae] and W_dec is [d_sae, d_in]: multiply x @ W_enc and f @ W_dec, "
                "without transposing",
                lambda x, We, be, Wd, bd: (f := relu((x - bd) @ We.T + be), f @ Wd.T + bd)),
    ]
    run_check("sae_forward", sae_forward, _forward_reference, _forward_cases(), mistakes,
              hint="encode the input centred on b_dec with W_enc and b_enc through a ReLU, then decode the "
                   "feature activations with W_dec and add b_dec back; return both")


# -- sae_loss ------------------------------------------------------------------------------------


def _loss_reference(x, feature_acts, sae_out, W_dec, l1_coefficient):
    mse_loss = ref.reconstruction_loss(x, sae_out)
    l1_loss = ref.weighted_l1_penalty(feature_acts, W_dec)
    return mse_loss + l1_coefficient * l1_loss, mse_loss, l1_loss


def _loss_cases() -> list[Case]:
    def case(name: str, seed: int, batch: int, d_in: int, d_sae: int, coefficient: float) -> Case:
        W_enc, b_enc, W_dec, b_dec = _weights(seed, d_in, d_sae)
        x = torch.randn(batch, d_in, generator=rng(seed + 100))
        feature_acts, sae_out = _forward_reference(x, W_enc, b_enc, W_dec, b_dec)
        return Case(name, (x, feature_acts, sae_out, W_dec, coefficient))

    return [
        case("batch 8, d_in 5, d_sae 12, λ = 0.3", 0, 8, 5, 12, 0.3),
        case("square (d_in = d_sae = 6), λ = 2", 1, 16, 6, 6, 2.0),
        case("batch of one, λ = 0.05", 2, 1, 4, 10, 0.05),
        case("λ = 0: the loss is the MSE", 3, 5, 3, 7, 0.0),
    ]


@EXERCISES.check(_loss_reference)
def check_sae_loss(sae_loss: Callable[..., tuple]) -> None:
    """Check ``sae_loss(x, feature_acts, sae_out, W_dec, l1_coefficient) -> (loss, mse_loss,
    l1_loss)``: mse_loss = batch mean of ‖x − x̂‖², l1_loss = batch mean of Σ_i f_i ‖W_dec,i‖,
    loss = mse_loss + l1_coefficient · l1_loss. The loss must be a tensor that carries gradients back
    to feature_acts, sae_out and W_dec (training calls loss.backward())."""

    def parts(mse_loss, l1_loss, c):
        return mse_loss + c * l1_loss, mse_loss, l1_loss

    def sq(x, xh):
        return (x - xh).pow(2)

    mistakes = [
        Mistake("mse_loss sums the squared error over d_in and averages over the batch: "
                "(x − x̂)².sum(-1).mean(), not the mean over every element (F.mse_loss)",
                lambda x, f, xh, Wd, c: parts(sq(x, xh).mean(), ref.weighted_l1_penalty(f, Wd), c)),
        Mistake("weight each latent's activation by the norm of its decoder row: Σ_i f_i ‖W_dec,i‖, "
                "so the SAE cannot shrink f and grow W_dec to dodge the penalty",
                lambda x, f, xh, Wd, c: parts(sq(x, xh).sum(-1).mean(), f.sum(-1).mean(), c)),
        Mistake("the decoder row norms are over d_in, one per latent: W_dec.norm(dim=1), shape [d_sae]",
                lambda x, f, xh, Wd, c: parts(sq(x, xh).sum(-1).mean(), (f * Wd.norm(dim=0)).sum(-1).mean(), c)),
        Mistake("use the decoder row norms ‖W_dec,i‖, not their squares",
                lambda x, f, xh, Wd, c: parts(sq(x, xh).sum(-1).mean(), (f * Wd.pow(2).sum(1)).sum(-1).mean(), c)),
        Mistake("return l1_loss before multiplying by l1_coefficient; only the total uses the coefficient",
                lambda x, f, xh, Wd, c: (sq(x, xh).sum(-1).mean() + c * ref.weighted_l1_penalty(f, Wd),
                                         sq(x, xh).sum(-1).mean(), c * ref.weighted_l1_penalty(f, Wd))),
        Mistake("average over the batch instead of summing over it, so the loss does not grow with the "
                "batch size",
                lambda x, f, xh, Wd, c: parts(sq(x, xh).sum(), (f * Wd.norm(dim=1)).sum(), c)),
    ]
    run_check("sae_loss", sae_loss, _loss_reference, _loss_cases(), mistakes, grad_args=(1, 2, 3),
              hint="per input, the squared error summed over d_in and the decoder-norm-weighted sum of the "
                   "activations; average each over the batch; the total adds the penalty times its coefficient")


# -- topk_activation -----------------------------------------------------------------------------


def _topk_cases() -> list[Case]:
    g = rng(0)
    mostly_negative = torch.randn(6, 10, generator=g) - 1.0  # some kept values are negative
    return [
        Case("random, k = 3", (torch.randn(8, 12, generator=g), 3)),
        Case("mostly negative pre-activations, k = 4", (mostly_negative, 4)),
        Case("k = 1", (torch.randn(5, 7, generator=g), 1)),
        Case("k = d_sae", (torch.randn(4, 6, generator=g), 6)),
        Case("a position axis [2, 5, 9], k = 2", (torch.randn(2, 5, 9, generator=g), 2)),
    ]


def _keep(acts_pre: torch.Tensor, scores: torch.Tensor, k: int, dim: int = -1) -> torch.Tensor:
    idx = scores.topk(k, dim=dim).indices
    return torch.zeros_like(acts_pre).scatter(dim, idx, acts_pre.gather(dim, idx))


@EXERCISES.check(ref.topk_activation)
def check_topk_activation(topk_activation: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """Check ``topk_activation(acts_pre, k) -> feature_acts``: in each row (last axis), keep the
    k largest pre-activations, apply a ReLU to them, and set the rest to 0."""
    mistakes = [
        Mistake("apply a ReLU to the kept values: a negative pre-activation must not become a negative "
                "feature activation, even if it is among the k largest",
                lambda z, k: _keep(z, z, k)),
        Mistake("keep the k *largest* values, not the k largest in absolute value",
                lambda z, k: F.relu(_keep(z, z.abs(), k))),
        Mistake("choose the top k along the last axis (latents), separately for every input",
                lambda z, k: F.relu(_keep(z, z, min(k, z.shape[0]), dim=0))),
        Mistake("set every latent outside the top k to 0; you kept all of them",
                lambda z, k: F.relu(z)),
        Mistake("keep the k largest values (topk(..., largest=True)), not the k smallest",
                lambda z, k: F.relu(_keep(z, -z, k))),
    ]
    run_check("topk_activation", topk_activation, ref.topk_activation, _topk_cases(), mistakes,
              hint="in each row, the k largest pre-activations keep their place (after a ReLU) and every "
                   "other latent becomes 0")


# -- jumprelu ------------------------------------------------------------------------------------


def _jumprelu_cases() -> list[Case]:
    g = rng(1)
    return [
        Case("random", (torch.randn(8, 6, generator=g), torch.rand(6, generator=g) * 0.8 + 0.1)),
        Case("a position axis [3, 4, 5]", (torch.randn(3, 4, 5, generator=g), torch.rand(5, generator=g) + 0.2)),
        Case("thresholds from 0.01 to 2", (torch.randn(20, 7, generator=g) * 2,
                                           torch.tensor([0.01, 0.1, 0.3, 0.5, 1.0, 1.5, 2.0]))),
        Case("values exactly at the threshold", (torch.tensor([[0.5, 0.25, 1.0], [0.7, 0.25, 0.9]]),
                                                 torch.tensor([0.5, 0.25, 1.0]))),
    ]


@EXERCISES.check(ref.jumprelu)
def check_jumprelu(jumprelu: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check ``jumprelu(acts_pre, threshold) -> feature_acts``: z · H(z − θ), i.e. z where z > θ
    (θ: one threshold per latent, [d_sae]) and 0 elsewhere. The comparison is strict, as in
    SAELens: a value exactly at its threshold gives 0."""
    mistakes = [
        Mistake("JumpReLU keeps z itself above the threshold, z · H(z − θ); ReLU(z − θ) shifts every "
                "value down by θ (that is the shrinkage JumpReLU avoids)",
                lambda z, t: F.relu(z - t)),
        Mistake("multiply the step by z: JumpReLU(z) = z · H(z − θ), not H(z − θ)",
                lambda z, t: (z > t).to(z.dtype)),
        Mistake("the cut-off is the threshold θ, not 0: a value between 0 and θ must become 0",
                lambda z, t: F.relu(z)),
        Mistake("above the threshold the output is z, not θ",
                lambda z, t: t * (z > t)),
        Mistake("a value exactly at its threshold is switched off: H(z − θ) is 1 only for z > θ, "
                "strictly (you used >=)", lambda z, t: z * (z >= t)),
    ]
    run_check("jumprelu", jumprelu, lambda z, t: ref.jumprelu(z, t).detach(), _jumprelu_cases(), mistakes,
              hint="keep z itself where it lies strictly above its latent's threshold, and 0 everywhere else")


# -- jumprelu_threshold_grad ---------------------------------------------------------------------


def _grad_cases() -> list[Case]:
    def case(name: str, seed: int, lead: tuple[int, ...], d_sae: int, bandwidth: float) -> Case:
        g = rng(seed)
        threshold = torch.rand(d_sae, generator=g) * 0.5 + 0.2
        # Pre-activations within a few bandwidths of the threshold, so the kernel sees many of them.
        z = threshold + (torch.rand(*lead, d_sae, generator=g) - 0.5) * 3 * bandwidth
        grad_output = torch.randn(*lead, d_sae, generator=g)
        return Case(name, (z, threshold, bandwidth, grad_output))

    return [
        case("batch 64, 5 latents, ε = 0.1", 0, (64,), 5, 0.1),
        case("batch 32, 8 latents, ε = 0.02", 1, (32,), 8, 0.02),
        case("a position axis [4, 8, 3], ε = 0.05", 2, (4, 8), 3, 0.05),
    ]


@EXERCISES.check(ref.jumprelu_threshold_grad)
def check_jumprelu_threshold_grad(jumprelu_threshold_grad: Callable[..., torch.Tensor]) -> None:
    """Check ``jumprelu_threshold_grad(acts_pre, threshold, bandwidth, grad_output) -> [d_sae]``:
    Σ over every input of grad_output · (−θ/ε) · K((z − θ)/ε), K(u) = 1 if |u| < 1/2 else 0."""

    def kernel(z, t, e):
        return ((z - t) / e).abs() < 0.5

    def total(values, d_sae):
        return values.reshape(-1, d_sae).sum(0)

    mistakes = [
        Mistake("the pseudo-derivative of JumpReLU has a factor θ: −(θ/ε) K((z − θ)/ε); without it you "
                "have the step function's",
                lambda z, t, e, g: total(-(1 / e) * kernel(z, t, e) * g, z.shape[-1])),
        Mistake("divide by the bandwidth ε: the pseudo-derivative is −(θ/ε) K((z − θ)/ε)",
                lambda z, t, e, g: total(-t * kernel(z, t, e) * g, z.shape[-1])),
        Mistake("the rectangle kernel has width 1: K(u) = 1 for |u| < 1/2, so z counts when it is within "
                "ε/2 of θ, not within ε",
                lambda z, t, e, g: total(-(t / e) * (((z - t) / e).abs() < 1) * g, z.shape[-1])),
        Mistake("the sign: raising θ switches latents off, which lowers the output, so the "
                "pseudo-derivative is negative, −(θ/ε) K(...)",
                lambda z, t, e, g: total((t / e) * kernel(z, t, e) * g, z.shape[-1])),
        Mistake("sum over the batch (every leading axis), don't average: the gradient of a sum is the "
                "sum of the gradients",
                lambda z, t, e, g: (-(t / e) * kernel(z, t, e) * g).reshape(-1, z.shape[-1]).mean(0)),
        Mistake("the kernel's argument is (z − θ)/ε: compare |z − θ| with ε/2",
                lambda z, t, e, g: total(-(t / e) * ((z - t).abs() < 0.5) * g, z.shape[-1])),
    ]
    run_check("jumprelu_threshold_grad", jumprelu_threshold_grad, ref.jumprelu_threshold_grad, _grad_cases(),
              mistakes, hint="each input near the threshold (inside the kernel's window) contributes "
                             "grad_output times the pseudo-derivative −θ/ε; add the contributions of every "
                             "input, one total per latent")


# -- explained_variance --------------------------------------------------------------------------


def _ev_cases() -> list[Case]:
    def case(name: str, seed: int, n: int, d: int, offset: float, noise: float) -> Case:
        g = rng(seed)
        x = torch.randn(n, d, generator=g) * torch.rand(d, generator=g) * 2 + offset
        return Case(name, (x, x + noise * torch.randn(n, d, generator=g)))

    return [
        case("good reconstruction, data far from the origin", 0, 50, 6, 3.0, 0.3),
        case("poor reconstruction", 1, 40, 4, 1.0, 1.0),
        case("two inputs", 2, 2, 5, 0.5, 0.2),
        Case("reconstruction = the data's mean (0 explained)", (torch.arange(12.0).view(4, 3),
                                                               torch.full((4, 3), 4.5) + torch.tensor([0.0, 1, 2]))),
    ]


@EXERCISES.check(metrics.explained_variance)
def check_explained_variance(explained_variance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check ``explained_variance(x, x_hat) -> scalar``: 1 − Σ‖x − x̂‖² / Σ‖x − mean(x)‖², where
    x, x_hat: [batch, d] and mean(x) is the mean over the batch, a vector [d]."""
    mistakes = [
        Mistake("the variance is about the mean: subtract the mean input, x − x.mean(dim=0), in the "
                "denominator (Σ‖x‖² counts the data's offset from the origin as variance)",
                lambda x, xh: 1 - (x - xh).pow(2).sum() / x.pow(2).sum()),
        Mistake("the mean is over the batch (dim=0), one mean vector [d], not over the features of each input",
                lambda x, xh: 1 - (x - xh).pow(2).sum() / (x - x.mean(dim=1, keepdim=True)).pow(2).sum()),
        Mistake("add up the squared errors and the variances over all dimensions first, then take one "
                "ratio; averaging a ratio per dimension weights small dimensions too much",
                lambda x, xh: (1 - (x - xh).pow(2).sum(0) / (x - x.mean(0)).pow(2).sum(0)).mean()),
        Mistake("this is the fraction of variance *unexplained*; return 1 minus it",
                lambda x, xh: (x - xh).pow(2).sum() / (x - x.mean(0)).pow(2).sum()),
        Mistake("torch.var divides by n − 1 by default: compare sums with sums (or use "
                "correction=0), so both sides are over the same n",
                lambda x, xh: 1 - (x - xh).pow(2).sum(-1).mean() / x.var(dim=0).sum()),
    ]
    run_check("explained_variance", explained_variance, metrics.explained_variance, _ev_cases(), mistakes,
              hint="one minus the ratio of two totals: the squared reconstruction error, and the squared "
                   "deviation of the data from its mean input")


# -- mmcs ----------------------------------------------------------------------------------------


def _mmcs_cases() -> list[Case]:
    def case(name: str, seed: int, d_sae: int, n_true: int, d: int) -> Case:
        g = rng(seed)
        true = F.normalize(torch.randn(n_true, d, generator=g), dim=1)
        W_dec = torch.randn(d_sae, d, generator=g) * (torch.rand(d_sae, 1, generator=g) + 0.5)
        W_dec[: min(d_sae, n_true) // 2] = -2 * true[: min(d_sae, n_true) // 2]  # some found, sign-flipped
        return Case(name, (W_dec, true))

    def unequal(c: Case, seed: int) -> Case:
        # The docstring promises nothing about true_features' lengths: rescale them unequally.
        W_dec, true = c.args
        return Case(c.name + ", true features of unequal length",
                    (W_dec, true * (0.2 + 3 * torch.rand(true.shape[0], 1, generator=rng(seed)))))

    return [
        unequal(case("12 latents, 8 true features in 5 dims", 0, 12, 8, 5), 10),
        case("fewer latents than true features", 1, 4, 9, 6),
        unequal(case("square (d_sae = n_true = d = 6)", 2, 6, 6, 6), 11),
        Case("a perfect dictionary, shuffled and rescaled",
             (torch.eye(4)[[2, 0, 3, 1]] * torch.tensor([[3.0], [0.5], [1.0], [2.0]]), torch.eye(4))),
    ]


@EXERCISES.check(metrics.mmcs)
def check_mmcs(mmcs: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check ``mmcs(W_dec, true_features) -> scalar``: W_dec [d_sae, d], true_features [n_true, d]
    (rows of any length, not necessarily unit vectors); the mean over true features of the largest
    |cos| with any decoder row."""

    def cos(W, T):
        return F.normalize(T, dim=1) @ F.normalize(W, dim=1).T  # [n_true, d_sae]

    mistakes = [
        Mistake("take the absolute value of the cosine: a latent pointing exactly against a feature "
                "(cos = −1) has found it too",
                lambda W, T: cos(W, T).max(dim=1).values.mean()),
        Mistake("normalise both sets of vectors: a cosine similarity is a dot product of unit vectors",
                lambda W, T: (T @ W.T).abs().max(dim=1).values.mean()),
        Mistake("normalise the true features too: they are not necessarily unit vectors, and a cosine "
                "divides by both lengths",
                lambda W, T: (T @ F.normalize(W, dim=1).T).abs().max(dim=1).values.mean()),
        Mistake("normalise the decoder rows too: their lengths differ, and a cosine divides by both lengths",
                lambda W, T: (F.normalize(T, dim=1) @ W.T).abs().max(dim=1).values.mean()),
        Mistake("the max is over decoder rows and the mean over true features (for each true feature, its "
                "best latent), not the other way round",
                lambda W, T: cos(W, T).abs().max(dim=0).values.mean()),
        Mistake("the dictionary directions are the *rows* of W_dec [d_sae, d]; W_dec.T's rows are not latents",
                lambda W, T: (F.normalize(T, dim=1) @ F.normalize(W.T, dim=1).T).abs().max(dim=1).values.mean()),
        Mistake("take the best match per true feature (max) before averaging, not the mean of all cosines",
                lambda W, T: cos(W, T).abs().mean()),
    ]
    run_check("mmcs", mmcs, metrics.mmcs, _mmcs_cases(), mistakes,
              hint="for each true feature, its best |cosine similarity| with any decoder row; then the "
                   "average over the true features")


# -- reinitialise_latents ------------------------------------------------------------------------


def _reinit_cases() -> list[Case]:
    def case(name: str, seed: int, d_in: int, d_sae: int, dead_idx: list[int]) -> Case:
        W_enc, b_enc, W_dec, b_dec = _weights(seed, d_in, d_sae)
        dead = torch.zeros(d_sae, dtype=torch.bool)
        dead[dead_idx] = True
        inputs = torch.randn(len(dead_idx), d_in, generator=rng(seed + 50)) * 3
        return Case(name, (W_enc, b_enc, W_dec, b_dec, dead, inputs))

    return [
        case("3 of 10 latents dead", 0, 4, 10, [1, 5, 8]),
        case("one dead latent", 1, 6, 6, [0]),
        case("half dead", 2, 5, 16, list(range(0, 16, 2))),
    ]


@EXERCISES.check(ref_reinitialise)
def check_reinitialise_latents(reinitialise_latents: Callable[..., tuple]) -> None:
    """Check ``reinitialise_latents(W_enc, b_enc, W_dec, b_dec, dead, inputs) -> (W_enc, b_enc,
    W_dec)``: for each dead latent, in order, u = (input − b_dec)/‖input − b_dec‖; its decoder
    row becomes u, its encoder column u · 0.2 · (mean norm of the *live* latents' encoder
    columns), and its encoder bias 0. Live latents are unchanged, and so are the arguments:
    return new tensors."""

    def make(We, be, Wd, bd, dead, inputs, *, centre=True, unit=True, live_only=True, factor=0.2,
             reset_bias=True, encoder=True):
        u = inputs - bd if centre else inputs
        if unit:
            u = F.normalize(u, dim=1)
        columns = We[:, ~dead] if live_only else We
        scale = factor * columns.norm(dim=0).mean()
        We, be, Wd = We.clone(), be.clone(), Wd.clone()
        Wd[dead] = u
        if encoder:
            We[:, dead] = u.T * scale
        if reset_bias:
            be[dead] = 0.0
        return We, be, Wd

    mistakes = [
        Mistake("subtract b_dec from the input first: the encoder sees x − b_dec, so that is the "
                "direction to point at",
                lambda *a: make(*a, centre=False)),
        Mistake("normalise the direction to unit length: u = (x − b_dec) / ‖x − b_dec‖",
                lambda *a: make(*a, unit=False)),
        Mistake("average the encoder column norms over the *live* latents only (W_enc[:, ~dead]); dead "
                "latents' columns say nothing about a useful scale",
                lambda *a: make(*a, live_only=False)),
        Mistake("scale the new encoder columns by 0.2 times the mean live norm, not by the mean live norm",
                lambda *a: make(*a, factor=1.0)),
        Mistake("also reset the dead latents' encoder bias b_enc to 0: a large negative bias would keep "
                "them switched off",
                lambda *a: make(*a, reset_bias=False)),
        Mistake("set the encoder columns W_enc[:, dead] too, not only the decoder rows",
                lambda *a: make(*a, encoder=False)),
    ]
    run_check("reinitialise_latents", reinitialise_latents, ref_reinitialise, _reinit_cases(), mistakes,
              hint="each dead latent points at its input as the encoder sees it (centred, unit length): "
                   "decoder row, encoder column at a fifth of the live columns' typical norm, and no bias; "
                   "return new tensors and leave the live latents (and the arguments) alone")
