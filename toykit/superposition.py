"""Toy models of superposition (Elhage et al., 2022), many small models trained at once.

A toy model squeezes ``n_features`` sparse features into ``n_hidden < n_features``
dimensions and tries to read them back out:

    h  = W x                      W: [n_hidden, n_features]
    x' = ReLU(Wᵀ h + b)           (``linear=True`` drops the ReLU: x' = WᵀW x + b)

Each input feature is zero with probability ``1 - p`` (the *sparsity* S = 1 - p) and
otherwise uniform on [0, 1]. The loss weights each feature's squared error by its
*importance*. When features are dense the model keeps only the ``n_hidden`` most important
ones, each in its own orthogonal direction; as they get sparser it packs more features than
dimensions into the hidden space: *superposition*.

To compare settings cheaply, one ``ToyModel`` holds ``n_instances`` independent models in
one tensor (``W: [n_instances, n_hidden, n_features]``); instances may differ in feature
probability and importance and are trained together by one optimiser. Their losses are
summed, so each instance's gradient is exactly the gradient of its own loss.

Also here: batch generators (independent, correlated and anti-correlated features), the
importance-weighted loss, training, the measures of the paper (feature dimensionality,
dimensions per feature), a neuron-basis variant (``NeuronModel``) with a polysemanticity
measure, and the analytic two-features-in-one-dimension losses.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from toykit.hooks import HookedRootModule, HookPoint
from toykit.progress import tqdm
from toykit.runtime import cpu_thread_count, make_generator, resolve_device
from toykit.schedules import lr_factor
from toykit.validation import check_non_negative_int, check_positive_int, check_probability, check_tensor

__all__ = [
    "STICKY_FRACTIONS",
    "NeuronModel",
    "ToyModel",
    "antipodal_pair_losses",
    "dimensions_per_feature",
    "evaluate_loss",
    "feature_dimensionality",
    "generate_anticorrelated_batch",
    "generate_batch",
    "generate_correlated_batch",
    "importance_weighted_loss",
    "neuron_polysemanticity",
    "superposition_interference",
    "toy_forward",
    "train_toy_model",
]

#: The feature dimensionalities the paper finds features "sticking" to: a feature alone in a
#: direction (1), tetrahedron (3/4), triangle (2/3), antipodal pair (1/2), pentagon (2/5),
#: square antiprism (3/8).
STICKY_FRACTIONS: tuple[float, ...] = (1.0, 3 / 4, 2 / 3, 1 / 2, 2 / 5, 3 / 8)


# -- inputs ------------------------------------------------------------------------------------


def per_instance_feature(
    name: str, value: float | torch.Tensor, n_instances: int, n_features: int
) -> torch.Tensor:
    """Broadcast a scalar, a per-instance or a per-feature setting to [n_instances, n_features].

    Accepted: a number; a 1-D tensor of length n_instances (one value per instance); a 2-D
    tensor broadcastable to [n_instances, n_features], e.g. [1, n_features] for one value
    per feature shared by all instances. A 1-D tensor always means *per instance*, so that
    the meaning never depends on whether n_instances happens to equal n_features.
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number or a float tensor, got a bool")
    try:
        t = torch.as_tensor(value, dtype=torch.float32).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{name} must be a number or a float tensor, got {type(value).__name__}") from e
    if t.ndim == 0:
        return t.expand(n_instances, n_features).clone()
    if t.ndim == 1:
        if t.shape[0] != n_instances:
            raise ValueError(
                f"{name}: a 1-D tensor gives one value per instance, so it must have shape "
                f"[n_instances={n_instances}], got {list(t.shape)}; for one value per feature "
                f"pass shape [1, n_features={n_features}]"
            )
        return t[:, None].expand(n_instances, n_features).clone()
    if t.ndim == 2 and t.shape[0] in (1, n_instances) and t.shape[1] in (1, n_features):
        return t.expand(n_instances, n_features).clone()
    raise ValueError(
        f"{name} must be a number, shape [n_instances={n_instances}], or broadcastable to "
        f"[n_instances={n_instances}, n_features={n_features}], got shape {list(t.shape)}"
    )


def _rand(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=like.device, dtype=like.dtype)


def generate_batch(
    n_batch: int, feature_probability: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Independent sparse features.

    feature_probability: [n_instances, n_features], the chance each feature is present.
    Returns x: [n_batch, n_instances, n_features]. Each entry is present independently
    (across batch, instances and features) with its probability; a present feature is
    uniform on [0, 1], an absent one is exactly 0.
    generator: a torch.Generator on feature_probability's device, for reproducible batches.
    """
    check_positive_int("n_batch", n_batch)
    check_tensor("feature_probability", feature_probability, ["n_instances", "n_features"],
                 dtype="float")
    check_probability("feature_probability", feature_probability)
    return _independent(n_batch, feature_probability, generator)


def _draw_shape(n_batch: int, prob: torch.Tensor, shared: bool, per_column: int = 1
                ) -> tuple[int, int, int]:
    # shared: one draw per (batch, column), broadcast over instances (common random numbers).
    return (n_batch, 1 if shared else prob.shape[0], per_column * prob.shape[1])


def _independent(n_batch: int, prob: torch.Tensor, generator: torch.Generator | None,
                 shared: bool = False) -> torch.Tensor:
    present = _rand(_draw_shape(n_batch, prob, shared), prob, generator) < prob
    # A second, independent draw for the values: reusing the mask's draw would make present
    # values uniform on [0, p] instead of [0, 1].
    values = _rand(_draw_shape(n_batch, prob, shared), prob, generator)
    return torch.where(present, values, 0.0)


def _correlated(n_batch: int, prob: torch.Tensor, generator: torch.Generator | None,
                shared: bool = False) -> torch.Tensor:
    present = _rand(_draw_shape(n_batch, prob, shared), prob, generator) < prob
    present = present.repeat_interleave(2, dim=-1)
    values = _rand(_draw_shape(n_batch, prob, shared, 2), prob, generator)
    return torch.where(present, values, 0.0)


def _anticorrelated(n_batch: int, prob: torch.Tensor, generator: torch.Generator | None,
                    shared: bool = False) -> torch.Tensor:
    one_present = _rand(_draw_shape(n_batch, prob, shared), prob, generator) < 2 * prob
    first = _rand(_draw_shape(n_batch, prob, shared), prob, generator) < 0.5
    present = torch.stack([one_present & first, one_present & ~first], dim=-1).flatten(-2)
    values = _rand(_draw_shape(n_batch, prob, shared, 2), prob, generator)
    return torch.where(present, values, 0.0)


def generate_correlated_batch(
    n_batch: int, pair_probability: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Correlated pairs: both features of a pair are present together or absent together.

    pair_probability: [n_instances, n_pairs], the chance a pair is present.
    Returns x: [n_batch, n_instances, 2 * n_pairs]; features 2k and 2k+1 form pair k. Present
    values are independent uniform draws on [0, 1].
    """
    check_positive_int("n_batch", n_batch)
    check_tensor("pair_probability", pair_probability, ["n_instances", "n_pairs"], dtype="float")
    check_probability("pair_probability", pair_probability)
    return _correlated(n_batch, pair_probability, generator)


def generate_anticorrelated_batch(
    n_batch: int, pair_probability: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Anti-correlated pairs: the two features of a pair are never present together.

    pair_probability: [n_instances, n_pairs], each feature's own chance of being present
    (at most 0.5, since the pair's two events are disjoint: one of them happens with chance
    2p, then a fair coin picks which).
    Returns x: [n_batch, n_instances, 2 * n_pairs]; features 2k and 2k+1 form pair k.
    """
    check_positive_int("n_batch", n_batch)
    check_tensor("pair_probability", pair_probability, ["n_instances", "n_pairs"], dtype="float")
    check_probability("pair_probability", pair_probability)
    if (pair_probability > 0.5).any():
        raise ValueError(
            "pair_probability: anti-correlated features can each be present at most half of "
            f"the time, got a maximum of {pair_probability.max().item():.3g}"
        )
    return _anticorrelated(n_batch, pair_probability, generator)


# -- the model ---------------------------------------------------------------------------------


def toy_forward(
    x: torch.Tensor, W: torch.Tensor, b_final: torch.Tensor, linear: bool = False
) -> torch.Tensor:
    """The toy model's forward pass, as a plain function.

    x: [batch, n_instances, n_features], W: [n_instances, n_hidden, n_features],
    b_final: [n_instances, n_features] -> x': [batch, n_instances, n_features]
    x' = ReLU(Wᵀ W x + b_final), or without the ReLU when ``linear``.
    """
    dims = check_tensor("W", W, ["n_instances", "n_hidden", "n_features"], dtype="float")
    check_tensor("x", x, [None, "n_instances", "n_features"], dtype="float", dims=dims)
    check_tensor("b_final", b_final, ["n_instances", "n_features"], dtype="float", dims=dims)
    hidden = torch.einsum("ihf,bif->bih", W, x)
    out = torch.einsum("ihf,bih->bif", W, hidden) + b_final
    return out if linear else F.relu(out)


def _init_W(n_instances: int, n_hidden: int, n_features: int, seed: int) -> torch.Tensor:
    # Xavier-normal per instance, drawn on the CPU so that a seed gives the same start on
    # every device.
    gen = make_generator(seed)
    std = math.sqrt(2.0 / (n_hidden + n_features))
    return torch.randn(n_instances, n_hidden, n_features, generator=gen) * std


class ToyModel(HookedRootModule):
    """``n_instances`` toy models of superposition, trained in parallel.

    Parameters: ``W: [n_instances, n_hidden, n_features]`` (column i of an instance's W is
    feature i's direction in the hidden space) and ``b_final: [n_instances, n_features]``.
    Forward: x: [batch, n_instances, n_features] -> x' = ReLU(WᵀWx + b) of the same shape.

    Hook points: ``hook_hidden`` (h = Wx, [batch, n_instances, n_hidden]) and ``hook_out``
    (x', [batch, n_instances, n_features]).

    n_instances, n_features, n_hidden: sizes (n_hidden is the paper's m).
    feature_probability, importance: a number, a 1-D tensor [n_instances] (one per instance)
        or a tensor broadcastable to [n_instances, n_features] (use [1, n_features] for one
        value per feature). Stored as buffers of shape [n_instances, n_features].
    n_correlated_pairs, n_anticorrelated_pairs: the first 2 * n_correlated_pairs features come
        in correlated pairs, the next 2 * n_anticorrelated_pairs in anti-correlated pairs, the
        rest are independent. A pair is present with the probability of its first feature.
    linear: drop the output ReLU (the paper's linear baseline).
    device: None picks one (see toykit.runtime.get_device). seed: the initialisation seed.
    """

    feature_probability: torch.Tensor  # buffers: [n_instances, n_features]
    importance: torch.Tensor

    def __init__(
        self,
        n_instances: int,
        n_features: int,
        n_hidden: int,
        feature_probability: float | torch.Tensor = 1.0,
        importance: float | torch.Tensor = 1.0,
        n_correlated_pairs: int = 0,
        n_anticorrelated_pairs: int = 0,
        linear: bool = False,
        device: str | torch.device | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for name, value in [("n_instances", n_instances), ("n_features", n_features),
                            ("n_hidden", n_hidden)]:
            check_positive_int(name, value)
        for name, value in [("n_correlated_pairs", n_correlated_pairs),
                            ("n_anticorrelated_pairs", n_anticorrelated_pairs)]:
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        if 2 * (n_correlated_pairs + n_anticorrelated_pairs) > n_features:
            raise ValueError(
                f"n_correlated_pairs={n_correlated_pairs} and n_anticorrelated_pairs="
                f"{n_anticorrelated_pairs} need {2 * (n_correlated_pairs + n_anticorrelated_pairs)}"
                f" features, but n_features={n_features}"
            )
        check_non_negative_int("seed", seed)
        self.n_instances, self.n_features, self.n_hidden = n_instances, n_features, n_hidden
        self.n_correlated_pairs = n_correlated_pairs
        self.n_anticorrelated_pairs = n_anticorrelated_pairs
        self.linear = bool(linear)
        self.seed = seed

        prob = per_instance_feature("feature_probability", feature_probability, n_instances,
                                    n_features)
        check_probability("feature_probability", prob)
        imp = per_instance_feature("importance", importance, n_instances, n_features)
        if not torch.isfinite(imp).all() or (imp < 0).any():
            raise ValueError("importance must be finite and non-negative, got values from "
                             f"{imp.min().item()} to {imp.max().item()}")
        anti = slice(2 * n_correlated_pairs, 2 * (n_correlated_pairs + n_anticorrelated_pairs))
        if (prob[:, anti][:, ::2] > 0.5).any():
            raise ValueError("feature_probability of anti-correlated features must be at most 0.5")

        device = resolve_device(device)
        self.W = nn.Parameter(_init_W(n_instances, n_hidden, n_features, seed).to(device))
        self.b_final = nn.Parameter(torch.zeros(n_instances, n_features, device=device))
        self.register_buffer("feature_probability", prob.to(device))
        self.register_buffer("importance", imp.to(device))
        self.hook_hidden = HookPoint()
        self.hook_out = HookPoint()
        self.setup()

    @property
    def device(self) -> torch.device:
        return self.W.device

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, n_instances, n_features] -> h = W x: [batch, n_instances, n_hidden]"""
        return torch.einsum("ihf,bif->bih", self.W, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, n_instances, n_features] -> x': [batch, n_instances, n_features]"""
        check_tensor("x", x, [None, self.n_instances, self.n_features], dtype="float")
        h = self.hook_hidden(self.hidden(x))
        out = torch.einsum("ihf,bih->bif", self.W, h) + self.b_final
        if not self.linear:
            out = F.relu(out)
        return self.hook_out(out)

    def generate_batch(self, n_batch: int, generator: torch.Generator | None = None,
                       shared_draws: bool = False) -> torch.Tensor:
        """A batch of features: [n_batch, n_instances, n_features], on the model's device.

        Correlated pairs first, then anti-correlated pairs, then independent features, each
        with the model's feature_probability (a pair uses its first feature's probability).
        shared_draws: every instance uses the same random numbers, compared with its own
        probabilities ("common random numbers"). Each instance's batch is still distributed
        correctly, but instances with equal settings then see identical inputs, which makes
        comparisons between them far more precise. Training uses independent draws.
        """
        check_positive_int("n_batch", n_batch)
        prob = self.feature_probability
        c, a = self.n_correlated_pairs, self.n_anticorrelated_pairs
        parts = []
        if c:
            parts.append(_correlated(n_batch, prob[:, 0:2 * c:2], generator, shared_draws))
        if a:
            parts.append(_anticorrelated(n_batch, prob[:, 2 * c:2 * (c + a):2], generator,
                                         shared_draws))
        if 2 * (c + a) < self.n_features:
            parts.append(_independent(n_batch, prob[:, 2 * (c + a):], generator, shared_draws))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def loss(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-instance importance-weighted loss, [n_instances]; see importance_weighted_loss."""
        if out.shape != x.shape or x.shape[1:] != self.importance.shape:
            return importance_weighted_loss(out, x, self.importance)  # it explains the problem
        return (self.importance * (x - out) ** 2).sum(dim=-1).mean(dim=0)


class NeuronModel(ToyModel):
    """The paper's privileged-basis variant: a ReLU on the hidden layer too.

    h = ReLU(W x), x' = ReLU(Wᵀ h + b), with the same tied W: [n_instances, n_hidden,
    n_features]. The ReLU makes the hidden *neurons* a privileged basis, so it makes sense to
    ask which features each neuron responds to (see neuron_polysemanticity).

    Hook points: ``hook_hidden_pre`` (W x), ``hook_hidden`` (after the ReLU), ``hook_out``.
    Arguments as for ToyModel, without ``linear``.
    """

    def __init__(
        self,
        n_instances: int,
        n_features: int,
        n_hidden: int,
        feature_probability: float | torch.Tensor = 1.0,
        importance: float | torch.Tensor = 1.0,
        n_correlated_pairs: int = 0,
        n_anticorrelated_pairs: int = 0,
        device: str | torch.device | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(n_instances, n_features, n_hidden, feature_probability, importance,
                         n_correlated_pairs, n_anticorrelated_pairs, linear=False,
                         device=device, seed=seed)
        self.hook_hidden_pre = HookPoint()
        self.setup()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, n_instances, n_features] -> x': [batch, n_instances, n_features]"""
        check_tensor("x", x, [None, self.n_instances, self.n_features], dtype="float")
        h = self.hook_hidden(F.relu(self.hook_hidden_pre(self.hidden(x))))
        out = torch.einsum("ihf,bih->bif", self.W, h) + self.b_final
        return self.hook_out(F.relu(out))


# -- loss and training -------------------------------------------------------------------------


def importance_weighted_loss(
    out: torch.Tensor, x: torch.Tensor, importance: torch.Tensor | float
) -> torch.Tensor:
    """The paper's loss, one value per instance.

    out, x: [batch, n_instances, n_features]; importance: [n_instances, n_features] (or
    anything that broadcasts to it, e.g. a number).
    Returns [n_instances]: loss[i] = mean over the batch of Σ_f importance[i, f] ·
    (x[b, i, f] - out[b, i, f])². Training minimises the *sum* of these over instances,
    which leaves every instance's gradient equal to that of its own loss.
    """
    dims = check_tensor("x", x, ["batch", "n_instances", "n_features"], dtype="float")
    check_tensor("out", out, ["batch", "n_instances", "n_features"], dtype="float", dims=dims)
    importance = torch.as_tensor(importance, dtype=x.dtype, device=x.device)
    target = (dims["n_instances"], dims["n_features"])
    try:
        ok = torch.broadcast_shapes(importance.shape, target) == target
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(
            f"importance must broadcast to [n_instances={dims['n_instances']}, "
            f"n_features={dims['n_features']}], got shape {list(importance.shape)}"
        )
    return (importance * (x - out) ** 2).sum(dim=-1).mean(dim=0)


def train_toy_model(
    model: ToyModel,
    steps: int = 5_000,
    *,
    batch_size: int = 1024,
    lr: float = 1e-3,
    lr_schedule: str | Callable[[int, int], float] = "constant",
    log_every: int | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    progress: bool = True,
    cpu_threads: int | None = 1,
) -> dict[str, list]:
    """Train every instance of ``model`` with Adam on fresh batches from model.generate_batch.

    The optimised objective is model.loss(...).sum(): the per-instance losses added up, so
    instances train independently of each other.

    lr_schedule: "constant", "cosine" or "linear" (both decay to 0), or
        ``f(step, steps) -> factor`` (lr is multiplied by the factor); see toykit.schedules.
    log_every: record the loss every this many steps (default: 100 points over the run,
        plus the last step).
    device: where to train (None: toykit.runtime.get_device()); the model is moved there.
    seed: seeds the batches; with the same model seed and device, a run repeats exactly.
    progress: show a progress bar.
    cpu_threads: torch threads to use while training on the CPU (restored afterwards); None
        leaves torch's setting alone. Toy models are so small that threads mostly wait for
        each other: on a busy 2-core machine one thread trained 5-7 times faster than two.
    Returns history: {"step": [int], "loss": [[float] * n_instances], "lr": [float]}, where
    loss is each instance's mean loss over the steps since the previous record, and lr the
    learning rate at the recorded step.
    """
    if not isinstance(model, ToyModel):
        raise TypeError(f"model must be a ToyModel, got {type(model).__name__}")
    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if log_every is None:
        log_every = max(1, steps // 100)
    check_positive_int("log_every", log_every)
    check_non_negative_int("seed", seed)
    try:
        lr_factor(lr_schedule, 0, steps)  # fail early on a bad schedule
    except ValueError as err:
        raise ValueError(f"lr_schedule: {err}") from None
    if cpu_threads is not None:
        check_positive_int("cpu_threads", cpu_threads)

    device = resolve_device(device)
    model.to(device)
    with cpu_thread_count(cpu_threads, device):
        return _train(model, steps, batch_size, lr, lr_schedule, log_every, device, seed,
                      progress)


def _train(model: ToyModel, steps: int, batch_size: int, lr: float,
           lr_schedule: str | Callable[[int, int], float], log_every: int,
           device: torch.device, seed: int, progress: bool) -> dict[str, list]:
    # Batches are drawn on the model's device (fast on a GPU); runtime.make_generator's CPU
    # generators are for data meant to be identical on every machine.
    generator = torch.Generator(device=device).manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    history: dict[str, list] = {"step": [], "loss": [], "lr": []}
    window_sum, window_len = torch.zeros(model.n_instances, device=device), 0
    for step in tqdm(range(steps), disable=not progress, desc="training toy model"):
        step_lr = lr * lr_factor(lr_schedule, step, steps)
        for group in optimiser.param_groups:
            group["lr"] = step_lr
        x = model.generate_batch(batch_size, generator=generator)
        loss = model.loss(model(x), x)
        optimiser.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimiser.step()
        # Average the losses between records: one batch alone is a noisy estimate.
        window_sum += loss.detach()
        window_len += 1
        if step % log_every == 0 or step == steps - 1:
            history["step"].append(step)
            history["loss"].append((window_sum / window_len).cpu().tolist())
            history["lr"].append(step_lr)
            window_sum.zero_()
            window_len = 0
    return history


@torch.no_grad()
def evaluate_loss(model: ToyModel, n_batch: int = 20_000, seed: int = 12345) -> torch.Tensor:
    """Each instance's loss on one large fresh batch: [n_instances], on the CPU.

    Training losses are noisy estimates; use this to compare instances, e.g. to keep the best
    of several restarts trained with the same settings. The batch uses shared draws (see
    ToyModel.generate_batch), so restarts with equal settings are judged on identical inputs
    and small differences between them are not lost in sampling noise.
    """
    if not isinstance(model, ToyModel):
        raise TypeError(f"model must be a ToyModel, got {type(model).__name__}")
    check_positive_int("n_batch", n_batch)
    generator = torch.Generator(device=model.device).manual_seed(seed)
    x = model.generate_batch(n_batch, generator=generator, shared_draws=True)
    return model.loss(model(x), x).cpu()


# -- measures ----------------------------------------------------------------------------------


def _check_W(W: torch.Tensor) -> None:
    check_tensor("W", W, ["n_instances", "n_hidden", "n_features"], dtype="float")


def superposition_interference(W: torch.Tensor) -> torch.Tensor:
    """How much other features share feature i's direction: Σ_{j≠i} (Ŵ_i · W_j)².

    W: [n_instances, n_hidden, n_features] -> [n_instances, n_features]. Ŵ_i = W_i/‖W_i‖
    (0 for a feature with W_i = 0). 0 means feature i has a direction to itself.
    """
    _check_W(W)
    norms = W.norm(dim=1, keepdim=True)  # [inst, 1, feat]
    W_hat = torch.where(norms > 1e-6, W / norms.clamp_min(1e-6), torch.zeros_like(W))
    overlap = torch.einsum("ihf,ihg->ifg", W_hat, W) ** 2
    return overlap.sum(-1) - overlap.diagonal(dim1=-2, dim2=-1)


def feature_dimensionality(W: torch.Tensor) -> torch.Tensor:
    """The fraction of a hidden dimension each feature gets.

    W: [n_instances, n_hidden, n_features] -> D: [n_instances, n_features]
    D_i = ‖W_i‖² / Σ_j (Ŵ_i · W_j)², where W_i is column i of W (feature i's direction) and
    Ŵ_i = W_i / ‖W_i‖. The sum includes j = i, so 0 ≤ D_i ≤ 1: 1 for a feature with a
    dimension to itself, 1/2 for an antipodal pair, 2/5 for a pentagon. A feature that is not
    represented at all (W_i = 0) gets D_i = 0.
    """
    _check_W(W)
    norms2 = (W ** 2).sum(dim=1)  # [inst, feat]
    alive = norms2 > 1e-12
    W_hat = W / norms2.clamp_min(1e-12).sqrt()[:, None, :]
    denom = (torch.einsum("ihf,ihg->ifg", W_hat, W) ** 2).sum(-1)
    return torch.where(alive, norms2 / denom.clamp_min(1e-12), torch.zeros_like(norms2))


def dimensions_per_feature(W: torch.Tensor) -> torch.Tensor:
    """m / ‖W‖_F²: how many hidden dimensions each learned feature gets, on average.

    W: [n_instances, n_hidden, n_features] -> [n_instances]. ‖W‖_F² roughly counts the
    features the model represents (each with ‖W_i‖ ≈ 1), so this is 1 with no superposition
    and 1/2 when twice as many features as dimensions are stored. An all-zero W gives inf.
    """
    _check_W(W)
    return W.shape[1] / (W ** 2).sum(dim=(1, 2))


def neuron_polysemanticity(W: torch.Tensor) -> torch.Tensor:
    """The effective number of features each hidden neuron responds to.

    W: [n_instances, n_hidden, n_features] (row h of an instance's W holds neuron h's input
    weights) -> P: [n_instances, n_hidden].
    With r_i = max(W[h, i], 0), the part of feature i that can switch a ReLU neuron on by
    itself, P_h = (Σ_i r_i²)² / Σ_i r_i⁴, the participation ratio of the squared weights.
    P_h = 1 for a monosemantic neuron (one feature), k for k equal weights, and something in
    between when one feature dominates. It ignores tiny weights (they enter to the 4th power)
    and needs no threshold. A neuron with no positive weight gets P_h = 0 (it never fires).
    Only meaningful where the hidden basis is privileged, i.e. for NeuronModel.
    """
    _check_W(W)
    r2 = F.relu(W) ** 2
    num = r2.sum(-1) ** 2
    den = (r2 ** 2).sum(-1)
    return torch.where(den > 0, num / den.clamp_min(1e-30), torch.zeros_like(den))


def antipodal_pair_losses(density: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    """Two features (importance 1) in one hidden dimension: the expected loss of each option.

    density: s, each feature's chance of being present (features uniform on [0, 1]).
    Returns (loss_drop, loss_antipodal), expected Σ_f (x_f - x'_f)² per input:
    - drop one: W = [1, 0], bias 0 for the kept feature and the best constant E[x₂] = s/2 for
      the dropped one: loss = Var(x₂) = s/3 - s²/4.
    - antipodal: W = [1, -1], zero bias. Exact unless both features are present (chance s²);
      then the smaller one, m, cancels out of the larger and is lost: error 2m², and
      E[min(U₁, U₂)²] = 1/6, so loss = s²/3.
    The antipodal pair wins for s < 4/7.
    """
    s = torch.as_tensor(density, dtype=torch.float64)
    check_probability("density", s)
    return s / 3 - s ** 2 / 4, s ** 2 / 3
