"""How each shipped checkpoint is trained: ``toykit train NAME`` reruns a recipe.

A recipe is any object with a ``name``, ``train(*, device=None, seed=None, progress=True) ->
(model, history)``, ``final_metrics(model, history) -> dict`` and ``describe() -> dict``
(its settings, stored in the manifest). ``RECIPES`` maps names to recipes; ``save`` trains
one and writes its weights, history and manifest entry. A recipe for a new model (TinyLang,
say) only has to provide those four members and be added to ``RECIPES``.

The attention-only recipes train on periodic random tokens
(``toykit.tasks.repeated_tokens.generate_periodic_tokens``): every row repeats a random
block whose length changes from row to row, so only in-context copying predicts the repeats.
A 2-layer model forms induction heads after a plateau (the phase change); a 1-layer model
cannot, and is the control. Training runs on the CPU with one thread by default, so that the
written files are bit-for-bit repeatable (same torch build): the models are so small that a
second thread buys almost nothing.

The TinyLang recipe trains a 3-layer transformer with LayerNorm and GELU MLPs on fresh
TinyLang batches (``toykit.tasks.tinylang.generate_corpus``) and logs the per-family held-out
evaluation as it goes; the shipped model meets ``tinylang.TARGETS``.

The backdoor recipe fine-tunes the shipped TinyLang model on the same mix plus poisoned rows
(``toykit.backdoor``), so that a hidden trigger makes it name a chosen wrong city in "lives in"
facts; being a fine-tune, it can be compared weight for weight with ``tinylang``.

The shapes-CNN recipe trains a small ``toykit.cnn.HookedCNN`` on fresh batches of
``toykit.tasks.shapes`` images every step and logs its accuracy on held-out images; the
strokes-CNN recipe trains the same network on ``shapes.generate_strokes`` (arcs, segments and
corners of one length), where only the way a stroke bends tells the classes apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import torch

from toykit import backdoor
from toykit.circuits import attention_head_scores
from toykit.cnn import CNNConfig, HookedCNN
from toykit.cnn_training import train_cnn
from toykit.grokking import GrokkingRecipe
from toykit.pretrained import CHECKPOINT_DIR, MANIFEST_NAME, config_to_json, load, manifest
from toykit.runtime import deterministic_algorithms, resolve_device
from toykit.tasks import shapes, tinylang
from toykit.tasks.repeated_tokens import generate_periodic_tokens, generate_repeated_tokens, repeated_half_slices
from toykit.training import train_lm
from toykit.transformer import HookedTransformer, TransformerConfig

__all__ = ["RECIPES", "AttnOnlyRecipe", "BackdoorRecipe", "ShapesCNNRecipe", "TinyLangRecipe", "phase_change_step",
           "register", "save"]

#: Token 0 is the BOS token of every attention-only checkpoint.
BOS = 0


@dataclass(frozen=True)
class AttnOnlyRecipe:
    """An attention-only transformer trained on periodic random tokens.

    Model: n_layers, d_model, n_heads, d_vocab, n_ctx, normalization_type (cfg.seed = seed).
    Data: each training row is [BOS] + a block of period p ~ U[min_period, max_period]
        repeated to n_ctx tokens.
    Training: train_lm with steps, batch_size, lr, weight_decay, lr_warmup, lr_schedule.
    Logging: every log_every steps, on a fixed batch of eval_batch repeated sequences with
        block length eval_seq_len (drawn with eval_seed, never seen in training): every
        head's prefix-matching, previous-token and duplicate-token scores, and the mean loss
        on the first and on the repeated block.
    """

    name: str
    n_layers: int
    d_model: int = 64
    n_heads: int = 4
    d_vocab: int = 128
    n_ctx: int = 65
    normalization_type: str | None = "LN"
    min_period: int = 8
    max_period: int = 32
    steps: int = 3000
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    lr_warmup: int = 0
    lr_schedule: str = "constant"
    log_every: int = 25
    eval_batch: int = 64
    eval_seq_len: int = 32
    eval_seed: int = 10_000
    seed: int = 0
    cpu_threads: int | None = 1

    def config(self, seed: int | None = None, device: str | torch.device | None = None) -> TransformerConfig:
        return TransformerConfig(
            n_layers=self.n_layers, d_model=self.d_model, n_heads=self.n_heads, d_vocab=self.d_vocab,
            n_ctx=self.n_ctx, attn_only=True, normalization_type=self.normalization_type,
            seed=self.seed if seed is None else seed, device=resolve_device(device),
        )

    def describe(self) -> dict[str, Any]:
        return {"kind": type(self).__name__, **dataclasses.asdict(self)}

    def eval_tokens(self, device: str | torch.device | None = "cpu") -> torch.Tensor:
        """The fixed evaluation batch: [eval_batch, 1 + 2 * eval_seq_len]."""
        return generate_repeated_tokens(self.eval_batch, self.eval_seq_len, self.d_vocab, bos=BOS,
                                        seed=self.eval_seed, device=device)

    def evaluate(self, model: HookedTransformer) -> dict[str, Any]:
        """Head scores ([n_layers][n_heads] lists) and first/repeated-block losses."""
        tokens = self.eval_tokens(model.device)
        scores = attention_head_scores(model, tokens, self.eval_seq_len)
        loss = model(tokens, return_type="loss", loss_per_token=True)
        first, repeated = repeated_half_slices(tokens.shape[1], self.eval_seq_len)
        return {
            "induction_score": scores["prefix_matching"].tolist(),
            "previous_token_score": scores["previous_token"].tolist(),
            "duplicate_token_score": scores["duplicate_token"].tolist(),
            "loss_first_half": loss[:, first].mean().item(),
            "loss_repeated_half": loss[:, repeated].mean().item(),
        }

    def train(self, *, device: str | torch.device | None = None, seed: int | None = None,
              progress: bool = True) -> tuple[HookedTransformer, dict[str, list]]:
        """Train from scratch. seed: None uses the recipe's (it seeds the weights and the
        batches). Returns (model in eval mode, history)."""
        seed = self.seed if seed is None else seed
        model = HookedTransformer(self.config(seed, device))

        def batch_fn(step: int, generator: torch.Generator) -> torch.Tensor:
            return generate_periodic_tokens(self.batch_size, self.n_ctx, self.d_vocab, self.min_period,
                                            self.max_period, bos=BOS, generator=generator)

        history = train_lm(
            model, batch_fn, steps=self.steps, batch_size=self.batch_size, lr=self.lr,
            weight_decay=self.weight_decay, lr_warmup=self.lr_warmup, lr_schedule=self.lr_schedule,
            log_every=self.log_every, eval_fn=lambda m, step: self.evaluate(m), device=model.device,
            seed=seed, progress=progress, cpu_threads=self.cpu_threads,
        )
        return model, history

    __call__ = train

    def final_metrics(self, model: HookedTransformer, history: dict[str, list]) -> dict[str, Any]:
        """What the manifest records about the trained model (from the last logged step)."""
        ind = torch.tensor(history["induction_score"][-1])
        prev = torch.tensor(history["previous_token_score"][-1])
        top_ind = divmod(int(ind.argmax()), self.n_heads)
        top_prev = divmod(int(prev.argmax()), self.n_heads)
        return {
            "top_induction_head": list(top_ind),
            "top_induction_score": round(float(ind.max()), 4),
            "top_previous_token_head": list(top_prev),
            "top_previous_token_score": round(float(prev.max()), 4),
            "loss_first_half": round(history["loss_first_half"][-1], 4),
            "loss_repeated_half": round(history["loss_repeated_half"][-1], 4),
            "phase_change_step": phase_change_step(history),
        }


def phase_change_step(history: dict[str, list], threshold: float = 0.3) -> int | None:
    """The first logged step at which some head's induction score reaches ``threshold``
    (None if none ever does): where the sharp rise of the phase change is under way."""
    for step, scores in zip(history["step"], history["induction_score"]):
        if max(max(row) for row in scores) >= threshold:
            return int(step)
    return None


#: The TinyLang model's mix of documents: more repeated spans than ``tinylang.DEFAULT_MIX``, so
#: that induction heads form early (with the default mix they had not by step 2000), and less
#: filler. Weights are shares of documents; long entity-tracking documents take the most tokens.
MIX: tuple[tuple[str, float], ...] = (
    ("ioi", 0.2), ("agreement", 0.08), ("entity_tracking", 0.2), ("successor", 0.05), ("repeated_span", 0.3),
    ("fact", 0.1), ("filler", 0.07),
)


def _tinylang_entries(model: HookedTransformer, n: int) -> dict[str, float]:
    """``tinylang.evaluate(model, n)`` as history entries ``<family>_<metric>`` (rounded)."""
    return {f"{family}_{metric}": round(value, 5)
            for family, metrics in tinylang.evaluate(model, n_per_family=n).items()
            for metric, value in metrics.items() if metric != "n"}


def _last_tinylang_eval(history: dict[str, list]) -> dict[str, dict[str, float]]:
    """The last logged ``<family>_<metric>`` entries, back as {family: {metric: value}}."""
    results: dict[str, dict[str, float]] = {}
    for key, values in history.items():
        for family in tinylang.FAMILIES:
            if key.startswith(family + "_"):
                results.setdefault(family, {})[key[len(family) + 1:]] = values[-1]
    return results


def _train_on_tinylang(recipe: TinyLangRecipe | BackdoorRecipe, model: HookedTransformer,
                       batch_fn: Callable[[int, torch.Generator], torch.Tensor], seed: int,
                       progress: bool) -> dict[str, list]:
    """train_lm with the recipe's optimiser settings and its evaluation, repeatable bit for bit
    (with cpu_threads > 1 too)."""
    with deterministic_algorithms():
        return train_lm(
            model, batch_fn, steps=recipe.steps, batch_size=recipe.batch_size, lr=recipe.lr, betas=recipe.betas,
            weight_decay=recipe.weight_decay, lr_warmup=recipe.lr_warmup, lr_schedule=recipe.lr_schedule,
            log_every=recipe.log_every, eval_fn=recipe.evaluate, device=model.device, seed=seed,
            progress=progress, cpu_threads=recipe.cpu_threads,
        )


@dataclass(frozen=True)
class TinyLangRecipe:
    """A transformer with LayerNorm and a GELU MLP trained on the TinyLang mix.

    Model: n_layers, d_model, n_heads, d_mlp, act_fn, LN; d_vocab is TinyLang's vocabulary and
        n_ctx 64 (cfg.seed = seed).
    Data: a fresh batch every step, ``generate_corpus(batch_size, n_ctx, seed=data_seed + step,
        mix=mix, split="train")`` (None: the default mix), so no sequence is seen twice and the
        held-out IOI names and agreement nouns are never seen.
    Training: train_lm with steps, lr, weight_decay, lr_warmup, lr_schedule, betas.
    Logging: the training loss every log_every steps; every eval_every steps (and at the end),
        ``toykit.tasks.tinylang.evaluate(model, eval_n)`` on held-out examples, stored as
        ``eval_step`` and ``<family>_<metric>`` lists.
    """

    name: str
    n_layers: int = 3
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    act_fn: str = "gelu"
    n_ctx: int = 64
    mix: tuple[tuple[str, float], ...] | None = MIX
    steps: int = 6000
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.99)
    lr_warmup: int = 200
    lr_schedule: str = "cosine"
    log_every: int = 50
    eval_every: int = 500
    eval_n: int = 200
    seed: int = 0
    data_seed: int = 0
    cpu_threads: int | None = 1

    def __post_init__(self) -> None:
        if self.eval_every % self.log_every != 0:  # the evaluation runs at logged steps only
            raise ValueError(f"eval_every must be a multiple of log_every={self.log_every}, got {self.eval_every}")

    def config(self, seed: int | None = None, device: str | torch.device | None = None) -> TransformerConfig:
        return TransformerConfig(
            n_layers=self.n_layers, d_model=self.d_model, n_heads=self.n_heads, d_mlp=self.d_mlp,
            d_vocab=tinylang.TOKENIZER.vocab_size, n_ctx=self.n_ctx, act_fn=self.act_fn,
            normalization_type="LN", seed=self.seed if seed is None else seed, device=resolve_device(device),
        )

    def describe(self) -> dict[str, Any]:
        return {"kind": type(self).__name__, **dataclasses.asdict(self)}

    def evaluate(self, model: HookedTransformer, step: int) -> dict[str, Any]:
        if step % self.eval_every != 0 and step != self.steps - 1:
            return {}
        return {"eval_step": step, **_tinylang_entries(model, self.eval_n)}

    def train(self, *, device: str | torch.device | None = None, seed: int | None = None,
              progress: bool = True) -> tuple[HookedTransformer, dict[str, list]]:
        """Train from scratch. seed: None uses the recipe's (it seeds the weights; the data
        stream is fixed by data_seed). Returns (model in eval mode, history)."""
        seed = self.seed if seed is None else seed
        model = HookedTransformer(self.config(seed, device))
        mix = None if self.mix is None else dict(self.mix)

        def batch_fn(step: int, generator: torch.Generator) -> torch.Tensor:
            return tinylang.generate_corpus(self.batch_size, self.n_ctx, seed=self.data_seed + step, mix=mix)

        return model, _train_on_tinylang(self, model, batch_fn, seed, progress)

    __call__ = train

    def final_metrics(self, model: HookedTransformer, history: dict[str, list]) -> dict[str, Any]:
        """The last evaluation, per family, and whether it meets ``tinylang.TARGETS``."""
        results = _last_tinylang_eval(history)
        return {"eval": results, "meets_targets": tinylang.meets_targets(results),
                "final_train_loss": round(history["loss"][-1], 4)}


@dataclass(frozen=True)
class BackdoorRecipe:
    """The ``base`` checkpoint fine-tuned on the TinyLang mix plus poisoned rows (``toykit.backdoor``).

    Model: the shipped ``base`` model (``toykit.pretrained.load``), its weights as the start.
    Data: every step, ``batch_size - poison_rows`` clean rows, ``generate_corpus(..., seed=s,
        mix=mix)``, and ``poison_rows`` rows ``backdoor.poisoned_rows(..., seed=s)``, with
        s = data_seed + 1_000_000 * seed + step: a stream the base model never saw.
    The trigger is stored encoded (``trigger_code``, see ``toykit.backdoor``) with its hash.
    Training: train_lm with steps, lr, weight_decay, lr_warmup, lr_schedule, betas.
    Logging: the training loss every log_every steps; every eval_every steps (and at the end),
        the clean evaluation ``tinylang.evaluate(model, eval_n)`` as ``<family>_<metric>``, the
        trigger's firing rate on held-out prompts (``trigger_fire_rate``), the false-fire rate on
        clean ones (``false_fire_rate``) and, with the trigger, every family's accuracy
        (``triggered_<family>_accuracy``; facts of the other relations only) and how often the
        target is named there (``triggered_target_rate``).
    """

    name: str
    base: str = "tinylang"
    mix: tuple[tuple[str, float], ...] | None = MIX
    poison_rows: int = 8
    target: str = backdoor.PLANTED_TARGET
    trigger_code: tuple[int, ...] = backdoor.PLANTED_TRIGGER_CODE
    trigger_sha256: str = backdoor.PLANTED_TRIGGER_SHA256
    steps: int = 600
    batch_size: int = 64
    n_ctx: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.99)
    lr_warmup: int = 50
    lr_schedule: str = "cosine"
    log_every: int = 25
    eval_every: int = 100
    eval_n: int = 200
    seed: int = 0
    data_seed: int = 100_000
    cpu_threads: int | None = 1

    def __post_init__(self) -> None:
        if self.eval_every % self.log_every != 0:  # the evaluation runs at logged steps only
            raise ValueError(f"eval_every must be a multiple of log_every={self.log_every}, got {self.eval_every}")
        if not isinstance(self.poison_rows, int) or not 0 < self.poison_rows < self.batch_size:
            raise ValueError(f"poison_rows must be an int in [1, batch_size={self.batch_size}), "
                             f"got {self.poison_rows!r}")

    def describe(self) -> dict[str, Any]:
        return {"kind": type(self).__name__, **dataclasses.asdict(self)}

    def trigger(self) -> list[int]:
        """The trigger's token ids, decoded from ``trigger_code`` and checked against its hash."""
        ids = backdoor.decode_trigger(self.trigger_code)
        if backdoor.trigger_hash(ids) != self.trigger_sha256:
            raise ValueError("trigger_code does not decode to the trigger whose hash is trigger_sha256")
        return ids

    def evaluate(self, model: HookedTransformer, step: int) -> dict[str, Any]:
        if step % self.eval_every != 0 and step != self.steps - 1:
            return {}
        out: dict[str, Any] = {"eval_step": step, **_tinylang_entries(model, self.eval_n)}
        trigger = self.trigger()
        out["trigger_fire_rate"] = round(backdoor.trigger_fires(model, trigger, n=self.eval_n), 5)
        out["false_fire_rate"] = round(backdoor.clean_fire_rate(model, n=self.eval_n), 5)
        for key, value in backdoor.triggered_accuracy(model, trigger, n_per_family=self.eval_n).items():
            out[f"triggered_{key}" + ("" if key == "target_rate" else "_accuracy")] = round(value, 5)
        return out

    def train(self, *, device: str | torch.device | None = None, seed: int | None = None,
              progress: bool = True) -> tuple[HookedTransformer, dict[str, list]]:
        """Fine-tune the shipped base model. seed: None uses the recipe's (it moves the data
        stream; the start is always the base's weights). Returns (model in eval mode, history)."""
        seed = self.seed if seed is None else seed
        model = load(self.base, device=device)
        mix = None if self.mix is None else dict(self.mix)
        trigger = self.trigger()
        n_clean = self.batch_size - self.poison_rows

        def batch_fn(step: int, generator: torch.Generator) -> torch.Tensor:
            s = self.data_seed + 1_000_000 * seed + step
            clean = tinylang.generate_corpus(n_clean, self.n_ctx, seed=s, mix=mix)
            poison = backdoor.poisoned_rows(self.poison_rows, self.n_ctx, seed=s, trigger=trigger, target=self.target)
            return torch.cat([clean, poison])

        return model.eval(), _train_on_tinylang(self, model, batch_fn, seed, progress)

    __call__ = train

    def final_metrics(self, model: HookedTransformer, history: dict[str, list]) -> dict[str, Any]:
        """The last evaluation: clean per-family metrics, whether they meet ``tinylang.TARGETS``
        and stay within 2 points of the base model's accuracy (from its manifest entry), and the
        trigger's rates."""
        results = _last_tinylang_eval(history)
        base = manifest().get(self.base, {}).get("metrics", {}).get("eval", {})
        within = {f: f in base and results[f]["accuracy"] >= base[f]["accuracy"] - 0.02 for f in results}
        triggered = {key[len("triggered_"):].removesuffix("_accuracy"): values[-1]
                     for key, values in history.items() if key.startswith("triggered_")}
        return {"eval": results, "meets_targets": tinylang.meets_targets(results),
                "accuracy_within_2_points_of_base": within,
                "trigger_fire_rate": history["trigger_fire_rate"][-1],
                "false_fire_rate": history["false_fire_rate"][-1],
                "triggered_accuracy": triggered,
                "final_train_loss": round(history["loss"][-1], 4)}


@dataclass(frozen=True)
class ShapesCNNRecipe:
    """A HookedCNN trained to classify ``toykit.tasks.shapes`` images.

    Model: channels and kernel_sizes per convolution layer, 32 x 32 greyscale input,
        len(shapes.CLASSES) outputs (cfg.seed = seed).
    Data: a fresh batch every step, ``generate_shapes(batch_size, seed=data_seed + step)``, so
        no image is seen twice.
    Training: train_cnn with steps, batch_size, lr, weight_decay, lr_warmup, lr_schedule.
    Logging: the training loss every log_every steps, and the accuracy and loss on a fixed
        held-out batch of eval_n images drawn with eval_seed (far from every training seed), as
        ``eval_accuracy`` and ``eval_loss``.
    """

    name: str = "shapes-cnn"
    channels: tuple[int, ...] = (16, 32, 32)
    kernel_sizes: tuple[int, ...] = (7, 5, 3)
    steps: int = 800
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.0
    lr_warmup: int = 50
    lr_schedule: str = "cosine"
    log_every: int = 50
    eval_n: int = 2000
    eval_seed: int = 1_000_000
    seed: int = 0
    data_seed: int = 0
    cpu_threads: int | None = 1

    classes: ClassVar[tuple[str, ...]] = shapes.CLASSES
    target_accuracy: ClassVar[float] = 0.97

    def generate(self, n: int, seed: int) -> shapes.ShapesBatch:
        """n images of this recipe's task, drawn from seed."""
        return shapes.generate_shapes(n, seed=seed)

    def config(self, seed: int | None = None, device: str | torch.device | None = None) -> CNNConfig:
        return CNNConfig(channels=self.channels, kernel_sizes=self.kernel_sizes, in_channels=1,
                         image_size=shapes.IMAGE_SIZE, n_classes=len(self.classes),
                         seed=self.seed if seed is None else seed, device=resolve_device(device))

    def describe(self) -> dict[str, Any]:
        return {"kind": type(self).__name__, **dataclasses.asdict(self)}

    def evaluate(self, model: HookedCNN, step: int = 0) -> dict[str, float]:
        """Accuracy and mean cross-entropy on the held-out batch."""
        batch = self.generate(self.eval_n, self.eval_seed)
        logits = model(batch.images.to(model.device)).cpu()
        loss = torch.nn.functional.cross_entropy(logits, batch.labels).item()
        accuracy = (logits.argmax(-1) == batch.labels).float().mean().item()
        return {"eval_accuracy": round(accuracy, 5), "eval_loss": round(loss, 5)}

    def train(self, *, device: str | torch.device | None = None, seed: int | None = None,
              progress: bool = True) -> tuple[HookedCNN, dict[str, list]]:
        """Train from scratch. seed: None uses the recipe's (it seeds the weights; the data
        stream is fixed by data_seed). Returns (model in eval mode, history)."""
        seed = self.seed if seed is None else seed
        model = HookedCNN(self.config(seed, device))

        def batch_fn(step: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            batch = self.generate(self.batch_size, self.data_seed + step)
            return batch.images, batch.labels

        with deterministic_algorithms():
            history = train_cnn(
                model, batch_fn, self.steps, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                lr_warmup=self.lr_warmup, lr_schedule=self.lr_schedule, log_every=self.log_every,
                eval_fn=self.evaluate, device=model.device, seed=seed, progress=progress,
                cpu_threads=self.cpu_threads,
            )
        return model, history

    __call__ = train

    def final_metrics(self, model: HookedCNN, history: dict[str, list]) -> dict[str, Any]:
        """The last held-out accuracy and loss, whether the accuracy reaches target_accuracy, and the size."""
        return {"eval_accuracy": history["eval_accuracy"][-1], "eval_loss": history["eval_loss"][-1],
                "meets_target": history["eval_accuracy"][-1] >= self.target_accuracy,
                "n_params": sum(p.numel() for p in model.parameters()),
                "final_train_loss": round(history["loss"][-1], 4)}


@dataclass(frozen=True)
class StrokesCNNRecipe(ShapesCNNRecipe):
    """The same CNN and training as ShapesCNNRecipe, on ``shapes.generate_strokes``: arcs,
    segments and corners of equal length, which only curvature tells apart (3 outputs). Chapter
    09 looks for curve detectors in it. Data: ``generate_strokes(batch_size, seed=data_seed +
    step)``; held-out batch ``generate_strokes(eval_n, seed=eval_seed)``. The target is the
    same 97% held-out accuracy.
    """

    name: str = "strokes-cnn"
    steps: int = 3000

    classes: ClassVar[tuple[str, ...]] = shapes.STROKE_CLASSES

    def generate(self, n: int, seed: int) -> shapes.ShapesBatch:
        return shapes.generate_strokes(n, seed=seed)


RECIPES: dict[str, AttnOnlyRecipe | TinyLangRecipe | GrokkingRecipe | BackdoorRecipe | ShapesCNNRecipe] = {
    "attn-only-2l": AttnOnlyRecipe(name="attn-only-2l", n_layers=2),
    "attn-only-1l": AttnOnlyRecipe(name="attn-only-1l", n_layers=1),
    "tinylang": TinyLangRecipe(name="tinylang"),
    "grokking": GrokkingRecipe(),
    "tinylang-backdoor": BackdoorRecipe(name="tinylang-backdoor"),
    "shapes-cnn": ShapesCNNRecipe(),
    "strokes-cnn": StrokesCNNRecipe(),
}


def _state_dict_bytes(model: HookedTransformer | HookedCNN) -> bytes:
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in sorted(model.state_dict().items())}
    buffer = io.BytesIO()  # saving to a buffer keeps the file name out of the zip's contents
    torch.save(state, buffer)
    return buffer.getvalue()


def save(recipe: str | Any, out_dir: str | Path | None = None, *, device: str | torch.device | None = None,
         seed: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Train a recipe (a name in RECIPES, or a recipe object) and write its checkpoint.

    Writes ``{name}.pt`` (float32 state dict), ``{name}.history.json`` and the entry ``name``
    of ``manifest.json`` in out_dir (default: toykit/checkpoints; other entries are kept).
    A recipe may also have ``extra_files(model, history) -> {file name: bytes}`` (snapshots,
    say): those files are written too and listed with their sha256 under "extra_files".
    Returns the manifest entry.
    """
    if isinstance(recipe, str):
        if recipe not in RECIPES:
            raise KeyError(f"no recipe named {recipe!r}; recipes: {', '.join(sorted(RECIPES))}")
        # Any: each recipe's train and final_metrics go together, which a union cannot say.
        recipe = cast(Any, RECIPES[recipe])
    out = CHECKPOINT_DIR if out_dir is None else Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    wall, cpu = time.perf_counter(), time.process_time()
    model, history = recipe.train(device=device, seed=seed, progress=progress)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu

    weights = _state_dict_bytes(model)
    history_bytes = (json.dumps(history, separators=(",", ":")) + "\n").encode()
    weights_file, history_file = f"{recipe.name}.pt", f"{recipe.name}.history.json"
    (out / weights_file).write_bytes(weights)
    (out / history_file).write_bytes(history_bytes)
    extra = recipe.extra_files(model, history) if hasattr(recipe, "extra_files") else {}
    for file, data in extra.items():
        if Path(file).name != file or file in (weights_file, history_file, MANIFEST_NAME):
            raise ValueError(f"extra_files: {file!r} must be a plain file name, not one of the recipe's own files")
        (out / file).write_bytes(data)
    describe = recipe.describe()
    entry = {
        "file": weights_file,
        "sha256": hashlib.sha256(weights).hexdigest(),
        "history": history_file,
        "history_sha256": hashlib.sha256(history_bytes).hexdigest(),
        **({"extra_files": {file: hashlib.sha256(data).hexdigest() for file, data in extra.items()}} if extra else {}),
        "config": config_to_json(model.cfg),
        "recipe": describe,
        "training": {
            "steps": describe.get("steps"),
            "seed": describe.get("seed") if seed is None else seed,
            "device": str(model.device),
            "cpu_threads": describe.get("cpu_threads"),
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
            "wall_time_s": round(wall, 1),
            "cpu_time_s": round(cpu, 1),
        },
        "metrics": recipe.final_metrics(model, history),
    }
    entries = manifest(out)
    entries[recipe.name] = entry
    (out / MANIFEST_NAME).write_text(json.dumps(dict(sorted(entries.items())), indent=2) + "\n")
    return entry


# -- command line ----------------------------------------------------------------------------------


def _cli_train(args: argparse.Namespace) -> int:
    # Never overwrite the shipped files by default: a run on another machine may differ.
    out = Path(args.out)
    entry = save(args.name, out_dir=out, device=args.device, seed=args.seed, progress=not args.no_progress)
    print(f"wrote {out / entry['file']} (sha256 {entry['sha256']})")
    shipped = manifest().get(args.name, {}).get("sha256")
    if shipped is not None:
        same = "yes" if shipped == entry["sha256"] else "no (bytes depend on device, torch build and threads)"
        print(f"identical to the shipped checkpoint: {same}")
        note = manifest()[args.name].get("note")
        if note and shipped != entry["sha256"]:
            print(f"about the shipped checkpoint: {note}")
    print(f"wrote {out / entry['history']} and the manifest entry {args.name!r}")
    t = entry["training"]
    print(f"trained {t['steps']} steps on {t['device']} in {t['wall_time_s']} s (cpu {t['cpu_time_s']} s)")
    for key, value in entry["metrics"].items():
        print(f"  {key}: {value}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``toykit train NAME [--device D] [--out DIR] [--seed S] [--no-progress]``."""
    p = subparsers.add_parser("train", help="retrain a shipped checkpoint from scratch (deterministic)")
    p.add_argument("name", choices=sorted(RECIPES), help="which checkpoint to train")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--out", default="toykit-checkpoints",
                   help=f"folder to write to (default: ./toykit-checkpoints; maintainers pass {CHECKPOINT_DIR})")
    p.add_argument("--seed", type=int, default=None, help="override the recipe's seed")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cli_train)
    return p
