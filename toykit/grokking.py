"""Grokking modular addition: the model and training of Nanda et al. (2023), "Progress
measures for grokking via mechanistic interpretability".

The model is a ``HookedTransformer`` with one layer, d_model 128, 4 heads of 32, d_mlp 512,
ReLU and no LayerNorm, reading the three tokens ``a, b, =`` (``toykit.tasks.
modular_addition``). Its vocabulary is p + 1 tokens (0..p-1 and "="); the answer is read
from the logits at the last position.

Training follows the paper's code (``transformers.py`` of the progress-measures-paper
repository): weights drawn randn / sqrt(d_model), the unembedding randn / sqrt(d_vocab);
full batch (one step = one epoch) AdamW, lr 1e-3 after a 10-step linear warm-up, weight decay
1.0 on every trained parameter, betas (0.9, 0.98); the weight matrices and the MLP biases are
trained (the paper's model has no other biases: toykit's stay at zero); the loss is the
cross-entropy over all p + 1 tokens at the last position. The analyses read the logits of
the p number tokens only. The model first memorises the training set, then slowly forms a
circuit that computes (a + b) mod p with a few Fourier frequencies, and finally cleans up
the memorised solution, at which point the test loss drops: grokking.

``train_grokking`` logs, at every ``log_every`` epochs: train and test loss and accuracy, the
weight norm, and the Fourier energy of the embedding per frequency; after training it finds
the final model's key frequencies and adds the restricted and excluded losses of every
logged epoch (``toykit.fourier``), so the history holds the paper's progress measures.
"""

from __future__ import annotations

import dataclasses
import io
import math
import random
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from toykit.fourier import (
    excluded_loss,
    fourier_transform,
    frequency_energy,
    key_frequencies,
    logit_sum_frequency_energy,
    restricted_loss,
)
from toykit.progress import tqdm
from toykit.runtime import cpu_thread_count, resolve_device
from toykit.tasks.modular_addition import ModularAdditionSplit, all_pairs, make_split
from toykit.transformer import HookedTransformer, TransformerConfig, copy_model, per_head_linear
from toykit.transformer_inputs import check_tokens
from toykit.validation import check_non_negative_int, check_positive_int, check_tensor

__all__ = [
    "GrokkingRecipe",
    "GrokkingRun",
    "grokking_config",
    "grokking_model",
    "grokking_phases",
    "is_trained",
    "key_frequencies_of",
    "last_position_logits",
    "logit_table",
    "paper_split",
    "progress_measures",
    "snapshot_bytes",
    "train_grokking",
    "weight_norm",
]


def grokking_config(p: int = 113, *, d_model: int = 128, n_heads: int = 4, d_mlp: int = 512, seed: int = 0,
                    device: str | torch.device | None = None) -> TransformerConfig:
    """The paper's architecture for modulus p: 1 layer, ReLU, no LayerNorm, n_ctx 3, d_vocab p + 1,
    weights drawn with std 1/sqrt(d_model) (init_range; ``grokking_model`` rescales W_U)."""
    check_positive_int("p", p)
    check_positive_int("d_model", d_model)
    return TransformerConfig(n_layers=1, d_model=d_model, n_heads=n_heads, d_mlp=d_mlp, d_vocab=p + 1, n_ctx=3,
                             act_fn="relu", normalization_type=None, seed=seed, init_range=1 / math.sqrt(d_model),
                             device=resolve_device(device))


def grokking_model(p: int = 113, *, d_model: int = 128, n_heads: int = 4, d_mlp: int = 512, seed: int = 0,
                   device: str | torch.device | None = None) -> HookedTransformer:
    """A freshly initialised model of ``grokking_config``, drawn from ``seed``.

    The initialisation of the paper's code (``transformers.py`` of Nanda et al.'s
    progress-measures-paper repository): every weight matrix is randn / sqrt(d_model) except
    the unembedding, randn / sqrt(d_vocab); biases start at zero."""
    model = HookedTransformer(grokking_config(p, d_model=d_model, n_heads=n_heads, d_mlp=d_mlp, seed=seed,
                                              device=device))
    with torch.no_grad():  # N(0, 1/d_model) -> N(0, 1/d_vocab): same draws, another scale
        model.unembed.W_U.mul_(math.sqrt(d_model / model.cfg.d_vocab))
    return model


def paper_split(p: int = 113, frac_train: float = 0.3, seed: int = 0) -> ModularAdditionSplit:
    """The train/test split of the paper's code (``gen_train_test``): the p² pairs, in row-major
    order of (a, b), shuffled by Python's ``random`` seeded with ``seed``; the first
    int(frac_train * p²) are the train set. On the CPU; indices sorted within each set.

    ``toykit.tasks.modular_addition.make_split`` draws another permutation (torch's) and rounds
    instead of truncating, so its sets differ."""
    check_non_negative_int("seed", seed)
    base = make_split(p, frac_train, 0)  # validates p and frac_train, and holds every input
    order = list(range(p * p))
    random.Random(seed).shuffle(order)  # random.seed(seed); random.shuffle(pairs) in the paper's code
    n_train = int(frac_train * p * p)
    if not 0 < n_train < p * p:
        raise ValueError(f"frac_train={frac_train} leaves an empty train or test set for p={p}")
    train, test = torch.tensor(order[:n_train]).sort().values, torch.tensor(order[n_train:]).sort().values
    return dataclasses.replace(base, seed=seed, train_index=train, test_index=test)


# -- the forward pass, computing only the last position -----------------------------------------


def _fast_path_ok(model: HookedTransformer) -> bool:
    cfg = model.cfg
    return (cfg.n_layers == 1 and cfg.normalization_type is None
            and not any(hp.has_hooks for hp in model.hook_points()))


def last_position_logits(model: HookedTransformer, tokens: torch.Tensor, n_out: int | None = None) -> torch.Tensor:
    """The logits at the last position, for the first n_out tokens: [batch, n_out].

    The same numbers as ``model(tokens)[:, -1, :n_out]`` (to float rounding), but a one-layer
    model without LayerNorm computes only what the last position needs. Its queries, keys and
    values depend only on (position, token), so they are computed once per vocabulary entry
    and looked up, and the MLP and unembedding run on the last position alone: about a third
    of the full forward pass and backward pass. Hooks do not fire on this path, so any other
    model, or one with hooks attached, runs the ordinary forward pass instead.

    tokens: [batch, pos] ints in [0, d_vocab). n_out: None means d_vocab.
    """
    tokens = check_tokens(model, tokens)
    n_out = model.cfg.d_vocab if n_out is None else check_positive_int("n_out", n_out)
    if n_out > model.cfg.d_vocab:
        raise ValueError(f"n_out must be at most d_vocab={model.cfg.d_vocab}, got {n_out}")
    if not _fast_path_ok(model):
        return model(tokens)[:, -1, :n_out]
    attn, n_pos = model.blocks[0].attn, tokens.shape[1]
    h, d, e = attn.W_Q.shape
    V = model.cfg.d_vocab
    # The residual stream at every (position, token): [n_pos * V, d]; row pos * V + token.
    table = (model.embed.W_E[None] + model.pos_embed.W_pos[:n_pos, None]).reshape(n_pos * V, d)
    rows = tokens + torch.arange(n_pos, device=tokens.device) * V  # [batch, pos]
    kv = per_head_linear(table, torch.cat([attn.W_K, attn.W_V]), torch.cat([attn.b_K, attn.b_V]))  # [n_pos * V, 2h, e]
    k, v = F.embedding(rows, kv.reshape(n_pos * V, 2 * h * e)).view(-1, n_pos, 2, h, e).unbind(2)  # [batch, pos, h, e]
    q_table = per_head_linear(table[(n_pos - 1) * V:], attn.W_Q, attn.b_Q).reshape(V, h * e)
    q = F.embedding(tokens[:, -1], q_table).view(-1, 1, h, e)
    # Broadcast-and-sum beats a batched matmul here: the per-example matrices are tiny.
    pattern = ((q * k).sum(-1) / math.sqrt(e)).softmax(dim=1)  # [batch, key pos, h]
    z = (pattern[..., None] * v).sum(1)  # [batch, h, e]
    resid = F.embedding(rows[:, -1], table) + torch.addmm(attn.b_O, z.reshape(-1, h * e), attn.W_O.reshape(h * e, d))
    if not model.cfg.attn_only:
        resid = resid + model.blocks[0].mlp(resid)
    return F.linear(resid, model.unembed.W_U[:, :n_out].T, model.unembed.b_U[:n_out])


def logit_table(model: HookedTransformer, p: int | None = None) -> torch.Tensor:
    """The logits of every input (a, b): [p, p, p], entry [a, b, c] the logit of answer c.

    p: the modulus (default d_vocab - 1). Runs without gradients.
    """
    p = model.cfg.d_vocab - 1 if p is None else check_positive_int("p", p)
    tokens, _ = all_pairs(p, model.device)
    with torch.no_grad():
        return last_position_logits(model, tokens, p).view(p, p, p)


def weight_norm(model: torch.nn.Module) -> float:
    """The L2 norm of all parameters together: sqrt(sum of squares)."""
    with torch.no_grad():
        return math.sqrt(sum(float(p.double().square().sum()) for p in model.parameters()))


def key_frequencies_of(model: HookedTransformer, p: int | None = None, min_share: float = 0.01) -> list[int]:
    """The model's key frequencies: those whose cos/sin(w(a+b)) terms each carry at least
    ``min_share`` of that part of the logits (``toykit.fourier.logit_sum_frequency_energy``).
    Sorted by frequency.

    The threshold is low because the logits' energy is often dominated by one frequency while
    the others, with a few percent each, are still needed (restricted loss ~1 without them);
    in trained models the frequencies the model does not use stay below 0.1%."""
    energy = logit_sum_frequency_energy(logit_table(model, p).double())
    return sorted(key_frequencies(energy, min_share).tolist())


# -- training -------------------------------------------------------------------------------------


@dataclass
class GrokkingRun:
    """What ``train_grokking`` returns.

    model: the trained model (eval mode). split: its data.
    history: {"epoch": [...], "train_loss", "test_loss", "train_accuracy", "test_accuracy",
        "weight_norm", "embed_frequency_energy" ([p//2 + 1] per epoch, see
        ``toykit.fourier.frequency_energy``), and with progress measures "restricted_loss"
        and "excluded_loss"}: one entry per logged epoch. Epoch e means after e full-batch
        steps (epoch 0 is the initial model).
    snapshots: {epoch: state dict (float32, on the CPU)} for the snapshot epochs.
    key_frequencies: the final model's key frequencies (``key_frequencies_of``), used for the
        restricted and excluded losses; [] without progress measures.
    """

    model: HookedTransformer
    split: ModularAdditionSplit
    history: dict[str, list]
    snapshots: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    key_frequencies: list[int] = field(default_factory=list)


def _state(model: HookedTransformer) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", torch.float32, copy=True) for k, v in model.state_dict().items()}


@torch.no_grad()
def _evaluate(model: HookedTransformer, split: ModularAdditionSplit, n_classes: int) -> dict[str, object]:
    p = split.p
    logits = last_position_logits(model, split.tokens, n_classes)  # [p*p, n_classes]
    nll = F.cross_entropy(logits.double(), split.labels, reduction="none")
    correct = (logits.argmax(-1) == split.labels).double()
    W_E = model.embed.W_E[:p].double()
    return {
        "train_loss": float(nll[split.train_index].mean()),
        "test_loss": float(nll[split.test_index].mean()),
        "train_accuracy": float(correct[split.train_index].mean()),
        "test_accuracy": float(correct[split.test_index].mean()),
        "weight_norm": weight_norm(model),
        "embed_frequency_energy": frequency_energy(fourier_transform(W_E)).sum(-1).tolist(),
    }


def progress_measures(model: HookedTransformer, states: Iterable[dict[str, torch.Tensor]],
                      split: ModularAdditionSplit, frequencies: list[int]) -> dict[str, list[float]]:
    """The restricted and excluded loss (``toykit.fourier``) of each state dict in ``states``,
    loaded in turn into a copy of ``model``: {"restricted_loss": [...], "excluded_loss": [...]}."""
    work = copy_model(model).eval()
    mask = split.train_mask.to(work.device)
    out: dict[str, list[float]] = {"restricted_loss": [], "excluded_loss": []}
    for state in states:
        work.load_state_dict(state)
        logits = logit_table(work, split.p).double()
        out["restricted_loss"].append(restricted_loss(logits, frequencies))
        out["excluded_loss"].append(excluded_loss(logits, frequencies, mask))
    return out


def train_grokking(
    model: HookedTransformer,
    split: ModularAdditionSplit,
    epochs: int,
    *,
    lr: float = 1e-3,
    weight_decay: float = 1.0,
    betas: tuple[float, float] = (0.9, 0.98),
    lr_warmup: int = 10,
    train_mlp_biases: bool = True,
    n_classes: int | None = None,
    log_every: int = 100,
    snapshot_epochs: Iterable[int] = (),
    measures: bool = True,
    min_share: float = 0.01,
    device: str | torch.device | None = None,
    progress: bool = True,
    cpu_threads: int | None = None,
) -> GrokkingRun:
    """Train ``model`` in place, full batch, on ``split``'s training inputs.

    model: a HookedTransformer with d_vocab = split.p + 1 and n_ctx >= 3 (``grokking_model``).
    epochs: full-batch AdamW steps. lr, weight_decay, betas: AdamW's settings (the paper's by
        default). Weight decay applies to every trained parameter, embeddings included.
    lr_warmup: the learning rate is lr * min(step / lr_warmup, 1) at optimiser step 0, 1, 2, ...
        (the paper's code: torch's LambdaLR, so the first step has lr 0); 0 means no warm-up.
    train_mlp_biases: train b_in and b_out as well as the weight matrices W_* (the paper's
        code). The other biases (attention, unembedding) stay at their values: the paper's
        model has none, so at zero they are the same as absent. False trains the W_* only,
        as TransformerLens's grokking demo does.
    n_classes: the loss is a softmax over the first n_classes logits: None means all d_vocab
        = p + 1 (the paper's code, where "=" is a wrong answer the model must learn to
        avoid); p leaves "=" out (TransformerLens's demo, d_vocab_out = p). Train and test
        loss and accuracy in the history use the same softmax.
    log_every: log the history at epochs 0, log_every, 2 * log_every, ... and at ``epochs``.
    snapshot_epochs: epochs in [0, epochs] whose weights to keep in ``run.snapshots``.
    measures: after training, find the final key frequencies (share >= min_share, see
        ``key_frequencies_of``) and add the restricted and excluded losses of every logged
        epoch to the history. This keeps a copy of the weights of every logged epoch in memory
        until the end (about 1 MB each for the paper's model).
    device: None picks toykit.get_device(). progress: show a progress bar.
    cpu_threads: torch threads while training on the CPU (restored afterwards); None leaves
        torch's setting alone. Results depend bitwise on it.

    Full-batch training draws no random numbers: with the same initial weights (cfg.seed),
    split, device and thread count a run repeats bit for bit.
    """
    if not isinstance(model, HookedTransformer):
        raise TypeError(f"model must be a HookedTransformer, got {type(model).__name__}")
    if not isinstance(split, ModularAdditionSplit):
        raise TypeError(f"split must be a ModularAdditionSplit (toykit.tasks.modular_addition.make_split), "
                        f"got {type(split).__name__}")
    if model.cfg.d_vocab != split.p + 1 or model.cfg.n_ctx < 3:
        raise ValueError(f"model must have d_vocab = p + 1 = {split.p + 1} and n_ctx >= 3 for p={split.p}, got "
                         f"d_vocab={model.cfg.d_vocab}, n_ctx={model.cfg.n_ctx}")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
        raise ValueError(f"epochs must be an int >= 0, got {epochs!r}")
    check_positive_int("log_every", log_every)
    for name, value in (("lr", lr), ("weight_decay", weight_decay)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (name == "lr" and not value):
            raise ValueError(f"{name} must be a {'positive' if name == 'lr' else 'non-negative'} number, got {value!r}")
    snapshot_epochs = sorted(set(snapshot_epochs))
    if any(not isinstance(e, int) or not 0 <= e <= epochs for e in snapshot_epochs):
        raise ValueError(f"snapshot_epochs must be ints in [0, epochs={epochs}], got {snapshot_epochs}")
    if cpu_threads is not None:
        check_positive_int("cpu_threads", cpu_threads)
    if isinstance(lr_warmup, bool) or not isinstance(lr_warmup, int) or lr_warmup < 0:
        raise ValueError(f"lr_warmup must be an int >= 0, got {lr_warmup!r}")
    n_classes = model.cfg.d_vocab if n_classes is None else check_positive_int("n_classes", n_classes)
    if not split.p <= n_classes <= model.cfg.d_vocab:
        raise ValueError(f"n_classes must be in [p={split.p}, d_vocab={model.cfg.d_vocab}], got {n_classes}")

    device = resolve_device(device)
    model.to(device)
    split = split.to(device)
    with cpu_thread_count(cpu_threads, device):
        history, snapshots, states = _train(model, split, epochs, lr, weight_decay, betas, lr_warmup,
                                            bool(train_mlp_biases), n_classes, log_every, set(snapshot_epochs),
                                            measures, progress)
        freqs: list[int] = []
        if measures:
            freqs = key_frequencies_of(model, split.p, min_share)
            history.update(progress_measures(model, states, split, freqs))
    return GrokkingRun(model.eval(), split, history, snapshots, freqs)


def is_trained(name: str, train_mlp_biases: bool) -> bool:
    """Whether train_grokking trains the parameter called ``name``: every W_*, and the MLP
    biases b_in, b_out when train_mlp_biases (the paper's recipe); the other biases stay 0."""
    leaf = name.rsplit(".", 1)[-1]
    return leaf.startswith("W_") or (train_mlp_biases and leaf in ("b_in", "b_out"))


def _train(model: HookedTransformer, split: ModularAdditionSplit, epochs: int, lr: float, weight_decay: float,
           betas: tuple[float, float], lr_warmup: int, train_mlp_biases: bool, n_classes: int, log_every: int,
           snapshot_epochs: set[int], keep_states: bool,
           progress: bool) -> tuple[dict[str, list], dict[int, dict], list[dict]]:
    weights = [p for n, p in model.named_parameters() if is_trained(n, train_mlp_biases)]
    others = [p for n, p in model.named_parameters() if not is_trained(n, train_mlp_biases)]
    was_trainable = [p.requires_grad for p in others]
    # foreach=False: the same per-parameter kernels on every device (see toykit.training).
    optimiser = torch.optim.AdamW(weights, lr=lr, weight_decay=weight_decay, betas=betas, foreach=False)
    # The paper's warm-up: LambdaLR sets lr * min(0 / lr_warmup, 1) = 0 now, then steps once per epoch.
    schedule = (torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: min(step / lr_warmup, 1.0))
                if lr_warmup else None)
    tokens, labels = split.train_tokens, split.train_labels
    check_tensor("split.train_tokens", tokens, [None, 3], dtype="int")
    history: dict[str, list] = {"epoch": []}
    snapshots: dict[int, dict] = {}
    states: list[dict] = []
    bar = tqdm(total=epochs, disable=not progress, desc="grokking", dynamic_ncols=True)
    try:
        for p in others:  # no gradients for the untrained biases: skip their work
            p.requires_grad_(False)
        for epoch in range(epochs + 1):
            if epoch % log_every == 0 or epoch == epochs:
                model.eval()
                history["epoch"].append(epoch)
                for key, value in _evaluate(model, split, n_classes).items():
                    history.setdefault(key, []).append(value)
                if keep_states:
                    states.append(_state(model))
                bar.set_postfix(train=f"{history['train_loss'][-1]:.2e}", test=f"{history['test_loss'][-1]:.2e}",
                                refresh=False)
            if epoch in snapshot_epochs:
                snapshots[epoch] = _state(model)
            if epoch == epochs:
                break
            model.train()
            loss = F.cross_entropy(last_position_logits(model, tokens, n_classes).double(), labels)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            if schedule is not None:
                schedule.step()
            bar.update()
    finally:
        for p, flag in zip(others, was_trainable):
            p.requires_grad_(flag)
        bar.close()
    model.eval()
    return history, snapshots, states


def grokking_phases(history: dict[str, list], memorised_below: float = 0.01, collapse_below: float = 0.5,
                    clean_below: float = 0.01) -> dict[str, tuple[int, int]]:
    """The three phases of Nanda et al., read off a ``train_grokking`` history with thresholds:

    memorisation: from epoch 0 until the train loss is first below ``memorised_below``;
    circuit formation: from there until the test loss collapses, i.e. is first below
        ``collapse_below`` times its highest value since memorisation (the Fourier circuit
        grows while the test loss stays high);
    clean-up: from there until the test loss is first below ``clean_below`` (weight decay
        removes the memorised solution and the test loss collapses).
    Returns {"memorisation": (start, end), "circuit_formation": (...), "cleanup": (...)} in
    epochs. Raises ValueError if the run never reaches a threshold (it has not grokked).
    """
    if not 0 < collapse_below < 1:
        raise ValueError(f"collapse_below must be in (0, 1), got {collapse_below!r}")
    epochs, train, test = history["epoch"], history["train_loss"], history["test_loss"]

    def first(values: list[float], below: float, start: int) -> int:
        epoch = next((int(e) for e, v in zip(epochs, values) if e >= start and v < below), None)
        if epoch is None:
            raise ValueError(f"the run never reaches a {'train' if values is train else 'test'} loss < {below:.3g} "
                             f"after epoch {start}: it has not grokked (train longer)")
        return epoch

    memorised = first(train, memorised_below, 0)
    peak = max(v for e, v in zip(epochs, test) if e >= memorised)
    collapse = first(test, collapse_below * peak, memorised)
    clean = first(test, clean_below, collapse)
    return {"memorisation": (0, memorised), "circuit_formation": (memorised, collapse), "cleanup": (collapse, clean)}


# -- the shipped run ------------------------------------------------------------------------------


def _first_epoch(history: dict[str, list], key: str, below: float) -> int | None:
    """The first logged epoch at which history[key] < below (None if never)."""
    return next((int(e) for e, v in zip(history["epoch"], history.get(key, [])) if v < below), None)


def _phases_or_none(history: dict[str, list]) -> dict[str, list[int]] | None:
    try:
        return {name: list(span) for name, span in grokking_phases(history).items()}
    except ValueError:  # not grokked
        return None


def snapshot_bytes(snapshots: dict[int, dict[str, torch.Tensor]]) -> bytes:
    """Snapshots as one file: {"epochs": int64 [n], name: float16 [n, *shape] for each weight}.

    Half precision halves the size; the analyses of the snapshots are insensitive to it.
    Tensors only, so ``torch.load(weights_only=True)`` reads it without unpickling code.
    """
    epochs = sorted(snapshots)
    if not epochs:
        raise ValueError("no snapshots to save")
    names = sorted(snapshots[epochs[0]])
    data = {"epochs": torch.tensor(epochs, dtype=torch.int64)}
    for name in names:
        data[name] = torch.stack([snapshots[e][name].detach().cpu() for e in epochs]).to(torch.float16).contiguous()
    buffer = io.BytesIO()  # a buffer keeps the file name out of the zip's contents
    torch.save(data, buffer)
    return buffer.getvalue()


_RUN_SNAPSHOTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class GrokkingRecipe:
    """The shipped grokking run (``toykit train grokking``), with the recipe protocol of
    ``toykit.train_recipes``: name, train, final_metrics, describe, plus extra_files (the
    snapshots, written next to the weights).

    Data: paper_split(p, frac_train, data_seed). Model: grokking_model(p, d_model, n_heads,
    d_mlp, seed). Training: train_grokking for ``epochs`` full-batch steps with lr,
    weight_decay, betas, lr_warmup, train_mlp_biases and n_classes, logging every log_every
    epochs, keeping the weights at snapshot_epochs, key frequencies with share >= min_share,
    on cpu_threads threads.

    The defaults are the settings of the paper's code (Nanda et al.'s progress-measures-paper
    repository: ``transformers.py``, ``Config``, ``gen_train_test`` and ``Trainer``), except
    10,000 epochs instead of 50,000 (the test loss of the shipped run is below 0.01 from epoch
    7,100, so the rest is a long tail) and a float64 softmax in the loss (the paper's
    helper casts to float32, though its comment says float64).
    """

    name: str = "grokking"
    p: int = 113
    frac_train: float = 0.3
    epochs: int = 10_000
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    lr: float = 1e-3
    weight_decay: float = 1.0
    betas: tuple[float, float] = (0.9, 0.98)
    lr_warmup: int = 10
    train_mlp_biases: bool = True
    n_classes: int | None = None
    log_every: int = 100
    snapshot_epochs: tuple[int, ...] = (0, 500, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10_000)
    seed: int = 0
    data_seed: int = 0
    min_share: float = 0.01
    cpu_threads: int | None = 1

    def describe(self) -> dict[str, Any]:
        # "steps" is what toykit.train_recipes.save reports: one full-batch step per epoch.
        return {"kind": type(self).__name__, **dataclasses.asdict(self), "steps": self.epochs}

    def split(self, device: str | torch.device | None = "cpu") -> ModularAdditionSplit:
        return paper_split(self.p, self.frac_train, self.data_seed).to(device)

    def run(self, *, device: str | torch.device | None = None, seed: int | None = None,
            progress: bool = True) -> GrokkingRun:
        """Train from scratch and return the whole GrokkingRun. seed: None uses the recipe's
        (it sets the initial weights; the split always uses data_seed)."""
        model = grokking_model(self.p, d_model=self.d_model, n_heads=self.n_heads, d_mlp=self.d_mlp,
                               seed=self.seed if seed is None else seed, device=device)
        return train_grokking(model, self.split(), self.epochs, lr=self.lr, weight_decay=self.weight_decay,
                              betas=self.betas, lr_warmup=self.lr_warmup, train_mlp_biases=self.train_mlp_biases,
                              n_classes=self.n_classes, log_every=self.log_every, snapshot_epochs=self.snapshot_epochs,
                              min_share=self.min_share, device=model.device, progress=progress,
                              cpu_threads=self.cpu_threads)

    def train(self, *, device: str | torch.device | None = None, seed: int | None = None,
              progress: bool = True) -> tuple[HookedTransformer, dict[str, list]]:
        """``run`` as (model in eval mode, history); the snapshots are kept for extra_files."""
        run = self.run(device=device, seed=seed, progress=progress)
        _RUN_SNAPSHOTS[run.model] = run.snapshots
        return run.model, run.history

    __call__ = train

    def extra_files(self, model: HookedTransformer, history: dict[str, list]) -> dict[str, bytes]:
        """{"<name>.snapshots.pt": the snapshots of the run that trained ``model``}."""
        if model not in _RUN_SNAPSHOTS:
            raise ValueError("extra_files needs a model returned by this recipe's train() in this process")
        return {f"{self.name}.snapshots.pt": snapshot_bytes(_RUN_SNAPSHOTS[model])}

    def final_metrics(self, model: HookedTransformer, history: dict[str, list]) -> dict[str, Any]:
        """What the manifest records: final losses and accuracy, key frequencies, the epochs at
        which train loss < 0.01, test loss < 1, restricted loss < 1 and test loss < 0.01 are
        first logged, and ``grokking_phases`` (None if the run has not grokked)."""
        return {
            "train_loss": float(f"{history['train_loss'][-1]:.4g}"),
            "test_loss": float(f"{history['test_loss'][-1]:.4g}"),
            "test_accuracy": round(history["test_accuracy"][-1], 4),
            "weight_norm": round(history["weight_norm"][-1], 2),
            "key_frequencies": key_frequencies_of(model, self.p, self.min_share),
            "train_loss_below_0.01_epoch": _first_epoch(history, "train_loss", 0.01),
            "test_loss_below_1_epoch": _first_epoch(history, "test_loss", 1.0),
            "restricted_loss_below_1_epoch": _first_epoch(history, "restricted_loss", 1.0),
            "test_loss_below_0.01_epoch": _first_epoch(history, "test_loss", 0.01),
            "phases": _phases_or_none(history),
        }
