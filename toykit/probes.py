"""Linear probes: is a property linearly decodable from a model's activations?

A probe is a linear map fitted on cached activations x [n, d_model] to predict a label: a
class (multinomial logistic regression) or a number (ridge regression). Fit it on one part of
the data and score it on held-out examples, or it measures memorisation.

High probe accuracy shows that the information is *present*, not that the model *uses* it
(only an intervention, see ``toykit.patching``, shows that). Hewitt & Liang (2019) add a
second caution: a flexible probe can learn a task by itself. Their **control task** gives
every word *type* (for example the token at the probed position) a random label, fixed per
type; a probe that scores well there is memorising types, not reading the model.
**Selectivity** = task accuracy - control accuracy, with the same probe, data and split.

Contents:

- fitting: ``fit_logistic_probe`` (full-batch L-BFGS), ``fit_ridge_probe`` (closed form),
  ``fit_probe`` (with a held-out split), ``train_test_split``; a ``LinearProbe`` holds the
  weights in the *raw* activation space (any standardisation is folded in), so
  ``probe.direction(c)`` is a direction you can add to the residual stream.
- control tasks: ``control_labels``, ``probe_selectivity``, ``majority_rate`` (the chance level).
- many sites at once: ``probe_sweep`` (one probe per layer or site), on activations collected
  with ``toykit.activations.collect_resid`` or ``collect_activations`` (the model run in
  chunks, one position kept per prompt).
- directions without a probe: ``mean_difference``, ``class_means``, and ``fit_pca``.

Shapes: n = examples, d = d_model (any width), C = classes, k = outputs or components.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from toykit.runtime import make_generator
from toykit.validation import check_positive_int, check_tensor

__all__ = [
    "PCA",
    "LinearProbe",
    "ProbeFit",
    "ProbeSweep",
    "class_means",
    "control_labels",
    "fit_logistic_probe",
    "fit_pca",
    "fit_probe",
    "fit_ridge_probe",
    "majority_rate",
    "mean_difference",
    "probe_selectivity",
    "probe_sweep",
    "train_test_split",
]


# -- the probe ------------------------------------------------------------------------------------

TASKS = ("classification", "regression")


@dataclass
class LinearProbe:
    """A fitted linear probe: outputs = x @ W + b, in the raw activation space.

    W: [d, k] (k = n_classes for classification, the number of targets for regression).
    b: [k].
    task: "classification" or "regression".
    scalar_output: a regression probe fitted on 1-D targets; predict returns [...] not [..., 1].
    """

    W: torch.Tensor
    b: torch.Tensor
    task: str
    scalar_output: bool = False

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be 'classification' or 'regression', got {self.task!r}")
        dims = check_tensor("W", self.W, ["d", "k"], dtype="float")
        check_tensor("b", self.b, ["k"], dtype="float", dims=dims)

    @property
    def d_in(self) -> int:
        return self.W.shape[0]

    @property
    def n_outputs(self) -> int:
        return self.W.shape[1]

    def _check_x(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, dtype="float")
        if x.ndim == 0 or x.shape[-1] != self.d_in:
            raise ValueError(f"x must have shape [..., {self.d_in}] for this probe, got {list(x.shape)}")
        return x.to(self.W.device, self.W.dtype)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., d] -> logits (classification) or predictions (regression) [..., k]."""
        return self._check_x(x) @ self.W + self.b

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., d] -> class ids [...] (classification), or values [..., k] ([...] for a
        scalar_output regression probe)."""
        out = self(x)
        if self.task == "classification":
            return out.argmax(-1)
        return out[..., 0] if self.scalar_output else out

    def score(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Accuracy (classification) or R² averaged over outputs (regression) on x [n, d], y [n]
        (or [n, k])."""
        check_tensor("x", x, ["n", self.d_in], dtype="float")
        pred = self.predict(x)
        y = y.to(pred.device)
        if y.shape != pred.shape:
            raise ValueError(f"y must have shape {list(pred.shape)} to match x, got {list(y.shape)}")
        if self.task == "classification":
            return (pred == y).float().mean().item()
        return _r2(pred, y.to(pred.dtype))

    def direction(self, cls: int | None = None, normalize: bool = True) -> torch.Tensor:
        """A direction [d] in activation space that raises the probe's output.

        classification: with 2 classes, W[:, 1] - W[:, 0] (toward class 1; ``cls=0`` flips
        it); with more, W[:, cls] - mean_j W[:, j], which raises class cls's logit against
        the average (cls required). regression: W[:, cls or 0].
        This is the gradient of that output with respect to x, so adding it to an activation
        moves the probe's reading the most per unit of norm.
        """
        k = self.n_outputs
        if cls is not None and (not isinstance(cls, int) or isinstance(cls, bool) or not 0 <= cls < k):
            raise ValueError(f"cls must be None or an int in [0, {k}), got {cls!r}")
        if self.task == "regression":
            d = self.W[:, cls or 0]
        elif k == 2:
            d = self.W[:, 1] - self.W[:, 0]
            d = -d if cls == 0 else d
        else:
            if cls is None:
                raise ValueError(f"this probe has {k} classes: say which one with cls=")
            d = self.W[:, cls] - self.W.mean(1)
        return d / d.norm().clamp_min(1e-12) if normalize else d

    def to(self, device: str | torch.device) -> LinearProbe:
        return LinearProbe(self.W.to(device), self.b.to(device), self.task, self.scalar_output)


def _r2(pred: torch.Tensor, y: torch.Tensor) -> float:
    """1 - SS_res / SS_tot per output, averaged over outputs."""
    pred, y = pred.reshape(len(y), -1), y.reshape(len(y), -1)
    ss_res = ((y - pred) ** 2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0).clamp_min(1e-12)
    return (1 - ss_res / ss_tot).mean().item()


def _standardization(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean [d] and 1 / std [d]; (near-)constant features get 1 / std = 0, as they
    carry no information and would otherwise blow up."""
    var, mu = torch.var_mean(x, dim=0)
    sigma = var.sqrt()
    keep = sigma > 1e-6 * sigma.max().clamp_min(1e-30)
    return mu, torch.where(keep, 1 / sigma.clamp_min(1e-30), torch.zeros_like(sigma))


def _preconditioner(x: torch.Tensor, mu: torch.Tensor, inv_sigma: torch.Tensor, delta: float = 0.1) -> torch.Tensor:
    """P = (C + delta I)^(-1/2) [d, d], C the correlation matrix of the standardised features.

    The optimiser searches over V with W = P V: the same objective and minimum, but the
    cross-entropy's curvature in V is closer to isotropic when features are correlated (as
    residual-stream features are), so L-BFGS needs several times fewer steps. delta keeps
    P bounded along directions of tiny variance, where only the penalty acts; 0.1 balanced
    noisy-label and separable problems best in our tests.
    """
    cov = (x.T @ x / x.shape[0] - torch.outer(mu, mu)) * torch.outer(inv_sigma, inv_sigma)
    evals, evecs = torch.linalg.eigh(cov)
    return (evecs * (evals.clamp_min(0) + delta).rsqrt()) @ evecs.T


def _check_reg(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")


def _lbfgs(loss_and_grad, w: torch.Tensor, max_iter: int, history: int = 10, grad_tol: float = 1e-6,
           change_tol: float = 1e-7) -> torch.Tensor:
    """Minimise a smooth convex function of a flat vector w by L-BFGS (Nocedal & Wright,
    algorithm 7.4) with a backtracking line search. loss_and_grad(w) -> (loss, grad).

    Our own few lines rather than torch.optim.LBFGS, whose first use imports torch's compiler
    stack (seconds on a laptop) and which offers nothing more that a probe needs.
    """
    loss, grad = loss_and_grad(w)
    steps: list[tuple[torch.Tensor, torch.Tensor, float]] = []  # (s, y, 1 / y.s)
    for _ in range(max_iter):
        if grad.abs().max().item() <= grad_tol:
            break
        # Two-loop recursion: direction = -H grad, H the inverse-Hessian estimate.
        q = grad.clone()
        alphas = []
        for s, y, rho in reversed(steps):
            a = rho * (s @ q)
            alphas.append(a)
            q -= a * y
        if steps:
            s, y, _ = steps[-1]
            q *= (s @ y) / (y @ y)
        else:
            q *= min(1.0, 1.0 / grad.abs().sum().item())  # a cautious first step
        for (s, y, rho), a in zip(steps, reversed(alphas)):
            q += (a - rho * (y @ q)) * s
        direction = -q
        slope = (grad @ direction).item()
        if slope >= 0:  # not a descent direction: forget the history, go downhill
            steps.clear()
            direction, slope = -grad, -(grad @ grad).item()
        t = 1.0
        while True:  # backtrack until the Armijo condition holds
            new_w = w + t * direction
            new_loss, new_grad = loss_and_grad(new_w)
            if new_loss <= loss + 1e-4 * t * slope or t < 1e-10:
                break
            t *= 0.5
        s, y = new_w - w, new_grad - grad
        sy = (s @ y).item()
        if sy > 1e-12:  # keep only pairs that carry positive curvature
            steps.append((s, y, 1.0 / sy))
            del steps[:-history]
        done = abs(loss - new_loss) <= change_tol * max(1.0, abs(loss))
        w, loss, grad = new_w, new_loss, new_grad
        if done:
            break
    return w


def fit_logistic_probe(
    x: torch.Tensor,
    y: torch.Tensor,
    n_classes: int | None = None,
    l2: float = 1e-3,
    max_iter: int = 200,
) -> LinearProbe:
    """Multinomial logistic regression, fitted with full-batch L-BFGS.

    x: [n, d] float; y: [n] class ids (int or bool).
    n_classes: None -> max(y) + 1 (at least 2).
    l2: penalty (l2 / 2) * ‖W‖² on standardised features, added to the mean cross-entropy;
        it keeps weights finite when the classes are separable.
    max_iter: most L-BFGS iterations (each costs about two passes over x; typically
        20-60 are needed).
    Returns a LinearProbe with W [d, n_classes] in the raw space of x.
    """
    dims = check_tensor("x", x, ["n", "d"], dtype="float")
    check_tensor("y", y, ["n"], dims=dims)
    if y.is_floating_point() or y.is_complex():
        raise TypeError(f"y must hold integer class ids (or bools), got {y.dtype}; use fit_ridge_probe for numbers")
    _check_reg("l2", l2)
    check_positive_int("max_iter", max_iter)
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 examples to fit a probe, got {x.shape[0]}")
    y = y.to(x.device, torch.long)
    if y.min() < 0:
        raise ValueError(f"y must hold class ids >= 0, got {y.min().item()}")
    if n_classes is None:
        n_classes = max(int(y.max()) + 1, 2)
    check_positive_int("n_classes", n_classes)
    if n_classes < 2 or y.max() >= n_classes:
        raise ValueError(f"n_classes must be >= 2 and above every label, got n_classes={n_classes} "
                         f"and labels up to {y.max().item()}")
    dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    x = x.detach().to(dtype)
    n = x.shape[0]
    # The penalty acts on standardised features (so it treats every feature alike), but the
    # standardisation is folded into the weights rather than applied to a copy of x: x is
    # read twice per step and never copied; at this size the skinny matmuls are memory-bound.
    mu, inv_sigma = _standardization(x)
    onehot = F.one_hot(y, n_classes).to(dtype)
    d = x.shape[1]
    # Parameters, flattened: V [d, C] (the standardised-space weights are W = P V, see
    # _preconditioner), then b [C], started at the log class frequencies (the best model
    # that ignores x).
    w0 = torch.cat([torch.zeros(d * n_classes, dtype=dtype, device=x.device),
                    onehot.mean(0).clamp_min(1e-6).log()])

    P = _preconditioner(x, mu, inv_sigma)

    def loss_and_grad(w: torch.Tensor) -> tuple[float, torch.Tensor]:
        # Written out rather than with autograd: cheaper, and only two passes over x.
        V, b = w[:-n_classes].view(d, n_classes), w[-n_classes:]
        W = P @ V
        W_raw = W * inv_sigma[:, None]
        logp = torch.log_softmax(torch.addmm(b - mu @ W_raw, x, W_raw), dim=-1)  # [n, C]
        loss = -(logp * onehot).sum() / n + 0.5 * l2 * W.square().sum()
        g = (logp.exp() - onehot) / n  # d loss / d logits
        g_sum = g.sum(0)
        grad_W = ((g.T @ x).T - mu[:, None] * g_sum) * inv_sigma[:, None] + l2 * W
        return loss.item(), torch.cat([(P @ grad_W).reshape(-1), g_sum])

    w = _lbfgs(loss_and_grad, w0, max_iter)
    W_raw = (P @ w[:-n_classes].view(d, n_classes)) * inv_sigma[:, None]
    b = w[-n_classes:]
    return LinearProbe(W_raw, b - mu @ W_raw, "classification")


def fit_ridge_probe(x: torch.Tensor, y: torch.Tensor, l2: float = 1e-3) -> LinearProbe:
    """Ridge regression in closed form: predict numbers y [n] (or [n, k]) from x [n, d].

    l2: penalty l2 * ‖W‖² on standardised features, per example (so its effect does not
        depend on n). Solved in float64 for stability.
    Returns a LinearProbe with W [d, k] (k = 1 for 1-D y, with scalar_output=True).
    """
    dims = check_tensor("x", x, ["n", "d"], dtype="float")
    if not isinstance(y, torch.Tensor) or y.ndim not in (1, 2):
        raise ValueError(f"y must be a tensor of shape [n] or [n, k], got {getattr(y, 'shape', type(y).__name__)}")
    check_tensor("y", y, ["n"] + [None] * (y.ndim - 1), dims=dims)
    _check_reg("l2", l2)
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 examples to fit a probe, got {x.shape[0]}")
    scalar = y.ndim == 1
    y64 = y.detach().to(x.device, torch.float64).reshape(len(y), -1)
    x64 = x.detach().to(torch.float64)
    mu, inv_sigma = _standardization(x64)
    xs = (x64 - mu) * inv_sigma
    n, d = xs.shape
    y_mean = y64.mean(0)
    A = xs.T @ xs / n + l2 * torch.eye(d, dtype=torch.float64, device=x.device)
    W_std = torch.linalg.solve(A, xs.T @ (y64 - y_mean) / n)  # [d, k]
    W_raw = W_std * inv_sigma[:, None]
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    return LinearProbe(W_raw.to(dtype), (y_mean - mu @ W_raw).to(dtype), "regression", scalar_output=scalar)


def train_test_split(n: int, test_frac: float = 0.2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random split of range(n): (train_idx, test_idx), each sorted, at least one each."""
    check_positive_int("n", n)
    if not isinstance(test_frac, (int, float)) or not 0 < test_frac < 1:
        raise ValueError(f"test_frac must lie strictly between 0 and 1, got {test_frac!r}")
    if n < 2:
        raise ValueError(f"need at least 2 examples to split into train and test, got n={n}")
    n_test = min(max(1, round(n * test_frac)), n - 1)
    perm = torch.randperm(n, generator=make_generator(seed))
    return perm[n_test:].sort().values, perm[:n_test].sort().values


@dataclass
class ProbeFit:
    """A probe fitted on a training split and scored on held-out examples.

    metric: "accuracy" (classification) or "r2" (regression).
    train_idx, test_idx: the example indices of each split.
    """

    probe: LinearProbe
    train_score: float
    test_score: float
    metric: str
    train_idx: torch.Tensor
    test_idx: torch.Tensor


def _infer_task(y: torch.Tensor, task: str | None) -> str:
    if task is None:
        return "regression" if y.is_floating_point() else "classification"
    if task not in TASKS:
        raise ValueError(f"task must be None, 'classification' or 'regression', got {task!r}")
    return task


def fit_probe(
    x: torch.Tensor,
    y: torch.Tensor,
    task: str | None = None,
    test_frac: float = 0.2,
    seed: int = 0,
    l2: float = 1e-3,
    max_iter: int = 200,
    n_classes: int | None = None,
    split: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> ProbeFit:
    """Fit a probe on a training split of (x [n, d], y [n]) and score it on the rest.

    task: "classification" (logistic, scored by accuracy), "regression" (ridge, scored by R²),
        or None: classification for integer/bool y, regression for float y.
    test_frac, seed: the held-out share and the seed of ``train_test_split``; or give
        ``split=(train_idx, test_idx)`` yourself.
    l2, max_iter, n_classes: passed on to the fitting function.
    """
    dims = check_tensor("x", x, ["n", "d"], dtype="float")
    check_tensor("y", y)
    check_tensor("y", y, ["n"] + [None] * (y.ndim - 1), dims=dims)
    task = _infer_task(y, task)
    if split is None:
        train_idx, test_idx = train_test_split(x.shape[0], test_frac, seed)
    else:
        train_idx, test_idx = split
        for name, idx in (("split[0]", train_idx), ("split[1]", test_idx)):
            check_tensor(name, idx, [None], dtype="int")
            if idx.numel() == 0 or idx.min() < 0 or idx.max() >= x.shape[0]:
                raise ValueError(f"{name} must be non-empty indices into the {x.shape[0]} examples")
    if task == "classification":
        if n_classes is None:
            n_classes = max(int(y.max()) + 1, 2)
        probe = fit_logistic_probe(x[train_idx.to(x.device)], y[train_idx.to(y.device)], n_classes, l2, max_iter)
    else:
        probe = fit_ridge_probe(x[train_idx.to(x.device)], y[train_idx.to(y.device)].float(), l2)
    y_eval = y if task == "classification" else y.float()

    def score(idx: torch.Tensor) -> float:
        return probe.score(x[idx.to(x.device)], y_eval[idx.to(y.device)])

    return ProbeFit(probe, score(train_idx), score(test_idx), "accuracy" if task == "classification" else "r2",
                    train_idx, test_idx)


# -- control tasks --------------------------------------------------------------------------------


def control_labels(types: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Hewitt & Liang's control task: a random label per *type*, the same wherever it occurs.

    types: [n] int, what identifies an input's type (e.g. the token id at the probed position,
        or an id for a tuple of tokens); the control label is a function of it alone.
    labels: [n] int, the real labels; each type's control label is drawn from their empirical
        distribution, so both tasks have the same label frequencies (in expectation).
    Returns [n] control labels (int64).
    """
    dims = check_tensor("types", types, ["n"], dtype="int")
    check_tensor("labels", labels, ["n"], dims=dims)
    if labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"labels must hold integer class ids, got {labels.dtype}")
    if labels.numel() == 0:
        raise ValueError("control_labels: got no examples")
    if labels.min() < 0:
        raise ValueError(f"labels must be class ids >= 0, got {labels.min().item()}")
    uniq, inverse = torch.unique(types.cpu(), return_inverse=True)
    freq = torch.bincount(labels.cpu().long()).double()
    per_type = torch.multinomial(freq / freq.sum(), len(uniq), replacement=True,
                                 generator=make_generator(seed))
    return per_type[inverse].to(labels.device)


def majority_rate(labels: torch.Tensor, split: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Held-out accuracy of always guessing the most common *training* label: the chance level
    a probe must beat. A control task has its own label frequencies (one draw per type), so its
    majority rate can differ from the real task's; compare each accuracy with its own rate.

    labels: [n] class ids; split: (train_idx, test_idx) as from ``train_test_split``.
    """
    check_tensor("labels", labels, ["n"], dtype="int")
    train_idx, test_idx = split
    labels = labels.cpu()
    guess = torch.bincount(labels[train_idx.cpu()]).argmax()
    return (labels[test_idx.cpu()] == guess).float().mean().item()


def probe_selectivity(
    x: torch.Tensor,
    labels: torch.Tensor,
    types: torch.Tensor,
    test_frac: float = 0.2,
    seed: int = 0,
    control_seed: int = 0,
    l2: float = 1e-3,
    max_iter: int = 200,
) -> dict[str, float]:
    """Held-out accuracy on the real task and on a control task, and their difference.

    x: [n, d]; labels: [n] class ids; types: [n] int (see ``control_labels``).
    The same split (test_frac, seed) and probe settings serve both tasks.
    Returns {"accuracy", "control_accuracy", "selectivity"} (selectivity = the difference), and
    "chance", "control_chance": each task's held-out majority rate (see ``majority_rate``).
    """
    check_tensor("x", x, ["n", "d"], dtype="float")
    control = control_labels(types, labels, seed=control_seed)
    split = train_test_split(x.shape[0], test_frac, seed)
    n_classes = max(int(labels.max()) + 1, int(control.max()) + 1, 2)
    task = fit_probe(x, labels, "classification", l2=l2, max_iter=max_iter, n_classes=n_classes, split=split)
    ctrl = fit_probe(x, control, "classification", l2=l2, max_iter=max_iter, n_classes=n_classes, split=split)
    return {"accuracy": task.test_score, "control_accuracy": ctrl.test_score,
            "selectivity": task.test_score - ctrl.test_score,
            "chance": majority_rate(labels, split), "control_chance": majority_rate(control, split)}


@dataclass
class ProbeSweep:
    """One probe per site (layer, position, hook...), fitted and scored the same way.

    sites: a label per site (e.g. "0_pre", ..., "final_post"), flattened row-major.
    train_score, test_score: [*sites] accuracy or R² (``metric``).
    control_score, selectivity: [*sites] held-out control-task accuracy and test_score minus
        it; None when no types were given.
    probes: the fitted LinearProbe of each site, flattened like sites.
    chance, control_chance: held-out majority rate (``majority_rate``) of the task and of the
        control task (classification only, else None): the level each accuracy must beat.
    split: the (train_idx, test_idx) every site used.
    """

    sites: list[str]
    train_score: torch.Tensor
    test_score: torch.Tensor
    metric: str
    probes: list[LinearProbe]
    control_score: torch.Tensor | None = None
    selectivity: torch.Tensor | None = None
    chance: float | None = None
    control_chance: float | None = None
    split: tuple[torch.Tensor, torch.Tensor] | None = None

    def best(self) -> tuple[str, float]:
        """(site, held-out score) of the best site."""
        i = int(self.test_score.argmax())
        return self.sites[i], self.test_score.flatten()[i].item()

    def table(self) -> list[dict[str, object]]:
        """One dict per site, with rounded scores: handy for printing or a DataFrame."""
        rows = []
        columns = {f"train_{self.metric}": self.train_score, f"test_{self.metric}": self.test_score,
                   "control_accuracy": self.control_score, "selectivity": self.selectivity}
        for i, site in enumerate(self.sites):
            row: dict[str, object] = {"site": site}
            row.update({k: round(v.flatten()[i].item(), 4) for k, v in columns.items() if v is not None})
            rows.append(row)
        return rows


def probe_sweep(
    acts: torch.Tensor,
    y: torch.Tensor,
    sites: Sequence[str] | None = None,
    types: torch.Tensor | None = None,
    task: str | None = None,
    test_frac: float = 0.2,
    seed: int = 0,
    control_seed: int = 0,
    l2: float = 1e-3,
    max_iter: int = 200,
) -> ProbeSweep:
    """Fit one probe per site on the same examples and split.

    acts: [*sites, n, d]: one or more leading site axes, e.g. [n_layers + 1, n, d] from
        ``toykit.activations.collect_resid`` (sites = its labels), or [n_layers + 1, pos, n, d]
        for every layer and position (``collect_resid(..., pos=None)`` gives
        [n_layers + 1, n, pos, d]: ``.movedim(2, 1)`` it).
    y: [n] labels (class ids or numbers, see ``fit_probe``'s task).
    sites: a label per site, flattened in row-major order (default: the index, "i" or "i,j").
    types: [n] int for a control task (classification only): also fits each site on
        ``control_labels(types, y, control_seed)`` and reports selectivity.
    Scores come back shaped like the site axes.
    """
    check_tensor("acts", acts, dtype="float")
    if acts.ndim < 3:
        raise ValueError(f"acts must have shape [*sites, n, d] with at least one site axis, got {list(acts.shape)}")
    site_shape = acts.shape[:-2]
    flat = acts.reshape(-1, *acts.shape[-2:])
    check_tensor("y", y)
    check_tensor("y", y, [acts.shape[-2]] + [None] * (y.ndim - 1))
    if sites is None:
        sites = [",".join(str(int(i)) for i in idx) for idx in torch.cartesian_prod(
            *[torch.arange(k) for k in site_shape]).reshape(len(flat), -1)]
    sites = [str(s) for s in sites]
    if len(sites) != len(flat):
        raise ValueError(f"sites has {len(sites)} labels but acts has {len(flat)} sites")
    task = _infer_task(y, task)
    if types is not None and task != "classification":
        raise ValueError("a control task (types=) needs class labels, not a regression target")
    split = train_test_split(acts.shape[-2], test_frac, seed)
    n_classes = None
    control = None
    if task == "classification":
        n_classes = max(int(y.max()) + 1, 2)
        if types is not None:
            control = control_labels(types, y, seed=control_seed)
            n_classes = max(n_classes, int(control.max()) + 1)
    fits = [fit_probe(a, y, task, l2=l2, max_iter=max_iter, n_classes=n_classes, split=split) for a in flat]
    result = ProbeSweep(
        sites=sites,
        train_score=torch.tensor([f.train_score for f in fits]).reshape(site_shape),
        test_score=torch.tensor([f.test_score for f in fits]).reshape(site_shape),
        metric=fits[0].metric,
        probes=[f.probe for f in fits],
        split=split,
    )
    if task == "classification":
        result.chance = majority_rate(y, split)
    if control is not None:
        result.control_chance = majority_rate(control, split)
        ctrl = [fit_probe(a, control, task, l2=l2, max_iter=max_iter, n_classes=n_classes, split=split).test_score
                for a in flat]
        result.control_score = torch.tensor(ctrl).reshape(site_shape)
        result.selectivity = result.test_score - result.control_score
    return result


# -- directions without a probe, and PCA ----------------------------------------------------------


def mean_difference(x: torch.Tensor, mask: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """The difference of means: mean(x[mask]) - mean(x[~mask]).

    x: [n, d]; mask: [n] bool, True for the "positive" examples (both groups non-empty).
    normalize: return a unit vector.
    Returns [d]. Often as good a steering direction as a probe's, and needs no fitting.
    """
    dims = check_tensor("x", x, ["n", "d"], dtype="float")
    check_tensor("mask", mask, ["n"], dtype="bool", dims=dims)
    mask = mask.to(x.device)
    n_pos = int(mask.sum())
    if n_pos == 0 or n_pos == len(mask):
        raise ValueError(f"mask must select some but not all examples, got {n_pos} of {len(mask)}")
    d = x[mask].mean(0) - x[~mask].mean(0)
    return d / d.norm().clamp_min(1e-12) if normalize else d


def class_means(x: torch.Tensor, y: torch.Tensor, n_classes: int | None = None) -> torch.Tensor:
    """The mean activation of each class: x [n, d], y [n] class ids -> [n_classes, d]
    (NaN rows for classes with no examples)."""
    dims = check_tensor("x", x, ["n", "d"], dtype="float")
    check_tensor("y", y, ["n"], dtype="int", dims=dims)
    y = y.to(x.device)
    if y.numel() == 0 or y.min() < 0:
        raise ValueError("y must be non-empty class ids >= 0")
    n_classes = int(y.max()) + 1 if n_classes is None else n_classes
    check_positive_int("n_classes", n_classes)
    if y.max() >= n_classes:
        raise ValueError(f"y has labels up to {y.max().item()}, at or above n_classes={n_classes}")
    sums = torch.zeros(n_classes, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, y, x)
    counts = torch.bincount(y, minlength=n_classes).to(x.dtype)
    return sums / counts[:, None]


@dataclass
class PCA:
    """Principal components of a set of activations.

    mean: [d] (zeros if fitted with center=False); components: [k, d], orthonormal rows, in
    order of variance, each with its largest-magnitude entry positive (a fixed sign);
    explained_variance: [k]; explained_variance_ratio: [k], shares of the total variance.
    """

    mean: torch.Tensor
    components: torch.Tensor
    explained_variance: torch.Tensor
    explained_variance_ratio: torch.Tensor

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., d] -> coordinates [..., k]."""
        if not isinstance(x, torch.Tensor) or x.shape[-1:] != self.mean.shape:
            raise ValueError(f"x must have shape [..., {self.mean.shape[0]}], got {getattr(x, 'shape', x)}")
        return (x.to(self.mean) - self.mean) @ self.components.T

    def inverse_transform(self, z: torch.Tensor) -> torch.Tensor:
        """coordinates [..., k] -> points [..., d] in the original space."""
        if not isinstance(z, torch.Tensor) or z.shape[-1:] != self.components.shape[:1]:
            raise ValueError(f"z must have shape [..., {self.components.shape[0]}], got {getattr(z, 'shape', z)}")
        return z.to(self.mean) @ self.components + self.mean


def fit_pca(x: torch.Tensor, k: int | None = None, center: bool = True) -> PCA:
    """PCA by SVD: x [n, d] -> PCA with the top k components (all min(n, d) if None)."""
    check_tensor("x", x, ["n", "d"], dtype="float")
    n, d = x.shape
    if n < 2:
        raise ValueError(f"PCA needs at least 2 points, got {n}")
    k = min(n, d) if k is None else k
    check_positive_int("k", k)
    if k > min(n, d):
        raise ValueError(f"k={k} is more components than min(n, d) = {min(n, d)}")
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    x = x.detach().to(dtype)
    mean = x.mean(0) if center else torch.zeros(d, dtype=dtype, device=x.device)
    _, S, Vh = torch.linalg.svd(x - mean, full_matrices=False)
    variance = S.square() / (n - 1)
    total = (x - mean).square().sum() / (n - 1)
    comps = Vh[:k]
    signs = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
    comps = comps * torch.where(signs == 0, torch.ones_like(signs), signs)
    return PCA(mean, comps, variance[:k], variance[:k] / total.clamp_min(1e-30))
