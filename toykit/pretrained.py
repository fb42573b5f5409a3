"""The trained models that ship inside toykit, so chapters can study them without training.

Checkpoints live in ``toykit/checkpoints/`` next to a ``manifest.json`` that records, for
each name: the weights file and its sha256, the model config, the training history file and
its sha256, and how the model was trained (recipe settings, steps, seed, torch version, wall
and CPU time, final metrics). Weights are a plain state dict of tensors saved with
``torch.save`` and read back with ``torch.load(weights_only=True)``, which unpickles nothing
but tensors and plain containers, so a checkpoint file cannot run code.

    model = toykit.pretrained.load("attn-only-2l")
    history = toykit.pretrained.load_history("attn-only-2l")

``toykit train NAME`` (``toykit.train_recipes``) retrains a checkpoint from scratch and
rewrites its files and manifest entry; with the same code, torch build and thread count the
new file has the same sha256. An entry's optional "note" says where a shipped checkpoint
differs from what the current code trains (tinylang predates the fused attention kernel).

Most checkpoints are HookedTransformers; an entry whose config says ``"architecture": "cnn"``
is a ``toykit.cnn.HookedCNN`` (``shapes-cnn``, ``strokes-cnn``), and ``load`` builds that instead.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any, Literal, overload

import torch

from toykit.cnn import CNNConfig, HookedCNN
from toykit.runtime import resolve_device
from toykit.transformer import HookedTransformer, TransformerConfig

__all__ = [
    "CHECKPOINT_DIR",
    "CheckpointError",
    "available",
    "config_from_json",
    "config_to_json",
    "load",
    "load_history",
    "load_snapshots",
    "manifest",
    "sha256_file",
]

CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"
MANIFEST_NAME = "manifest.json"


class CheckpointError(RuntimeError):
    """A shipped checkpoint is missing, corrupt or does not match its manifest."""


def _root(root: str | Path | None) -> Path:
    return CHECKPOINT_DIR if root is None else Path(root)


def sha256_file(path: str | Path) -> str:
    """The sha256 of a file's bytes, as 64 hex digits."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def manifest(root: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The manifest: {name: entry}. root: the checkpoint folder (default: toykit's own).

    An entry holds "file", "sha256", "history", "history_sha256", "config" (JSON form, see
    ``config_to_json``), "recipe", "training" (steps, seed, torch version, times, ...) and
    "metrics", and optionally a "note". A folder without a manifest has no checkpoints: {}.
    """
    path = _root(root) / MANIFEST_NAME
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"the checkpoint manifest {path} is unreadable: {e}") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"the checkpoint manifest {path} must hold a JSON object, got {type(data).__name__}")
    return data


ARCHITECTURES = ("transformer", "cnn")


def available(root: str | Path | None = None, architecture: str | None = None) -> list[str]:
    """The names of the shipped checkpoints, sorted.

    architecture: "transformer" or "cnn" keeps only checkpoints of that kind; None keeps all.
    """
    if architecture is not None and architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES} or None, got {architecture!r}")
    entries = manifest(root)
    return sorted(name for name, entry in entries.items()
                  if architecture is None or _architecture(entry.get("config", {})) == architecture)


def _architecture(config: dict[str, Any]) -> str:
    """The kind of model a config in JSON form describes (``config_to_json`` marks only CNNs)."""
    return config.get("architecture", "transformer")


def _entry(name: str, root: str | Path | None) -> dict[str, Any]:
    entries = manifest(root)
    if not isinstance(name, str) or name not in entries:
        names = ", ".join(sorted(entries)) or "none"
        raise KeyError(f"no shipped checkpoint named {name!r}; available: {names}")
    return entries[name]


def _read_verified(name: str, root: Path, file: str, expected: str) -> bytes:
    path = root / file
    if not path.exists():
        raise CheckpointError(f"checkpoint {name!r}: the file {path} is missing; "
                              f"recreate it with `toykit train {name}`")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise CheckpointError(
            f"checkpoint {name!r}: the file {path} does not match the manifest "
            f"(sha256 expected {expected}, got {actual}); the file is corrupt or was changed. "
            f"Reinstall toykit or recreate it with `toykit train {name}`"
        )
    return data


# -- config <-> JSON ------------------------------------------------------------------------------


def config_to_json(cfg: TransformerConfig | CNNConfig) -> dict[str, Any]:
    """A TransformerConfig or CNNConfig as a JSON-ready dict (dtype as its name; device left
    out). A CNNConfig's dict starts with ``"architecture": "cnn"``."""
    out: dict[str, Any] = {"architecture": "cnn"} if isinstance(cfg, CNNConfig) else {}
    for field in type(cfg).__dataclass_fields__:
        if field == "device":
            continue
        value = getattr(cfg, field)
        out[field] = str(value).removeprefix("torch.") if field == "dtype" else value
    return out


def config_from_json(data: dict[str, Any], device: str | torch.device | None = None
                     ) -> TransformerConfig | CNNConfig:
    """The inverse of ``config_to_json``; the model will live on ``device`` (None: auto)."""
    data = dict(data)
    dtype = getattr(torch, data.pop("dtype", "float32"))
    kind = CNNConfig if _architecture(data) == "cnn" else TransformerConfig
    data.pop("architecture", None)
    return kind(**data, dtype=dtype, device=resolve_device(device))


def _transformer_config(name: str, entry: dict[str, Any], device: str | torch.device | None) -> TransformerConfig:
    cfg = config_from_json(entry["config"], device)
    if not isinstance(cfg, TransformerConfig):
        raise CheckpointError(f"checkpoint {name!r} is a {type(cfg).__name__} model, not a transformer")
    return cfg


# -- loading ------------------------------------------------------------------------------------


# The CNN is picked out by its name; every other name is a transformer.
@overload
def load(name: Literal["shapes-cnn", "strokes-cnn"], device: str | torch.device | None = None,  # type: ignore[overload-overlap]
         root: str | Path | None = None) -> HookedCNN: ...
@overload
def load(name: str, device: str | torch.device | None = None, root: str | Path | None = None) -> HookedTransformer: ...
def load(name: str, device: str | torch.device | None = None,
         root: str | Path | None = None) -> HookedTransformer | HookedCNN:
    """The shipped model ``name`` (see ``available()``), in eval mode: a HookedTransformer, or
    a HookedCNN for a CNN checkpoint (``shapes-cnn``, ``strokes-cnn``).

    The weights file's sha256 is checked against the manifest before anything is unpickled,
    and it is unpickled with ``weights_only=True``.
    device: where the model lives (None: toykit.get_device()).
    root: the checkpoint folder (default: toykit's own).
    Raises KeyError for an unknown name (listing the available ones) and CheckpointError for
    a missing, changed or unreadable file.
    """
    root = _root(root)
    entry = _entry(name, root)
    data = _read_verified(name, root, entry["file"], entry["sha256"])
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a damaged zip or pickle
        raise CheckpointError(f"checkpoint {name!r}: the file {root / entry['file']} could not be read as a "
                              f"state dict ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {name!r}: {root / entry['file']} does not hold a state dict of tensors")
    cfg = config_from_json(entry["config"], device)
    model = HookedCNN(cfg) if isinstance(cfg, CNNConfig) else HookedTransformer(cfg)
    try:
        model.load_state_dict({k: v.to(cfg.dtype) for k, v in state.items()})
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {name!r}: the weights in {root / entry['file']} do not fit its "
                              f"config: {e}") from e
    return model.eval()


def load_history(name: str, root: str | Path | None = None) -> dict[str, list]:
    """The training history of the shipped model ``name``: a dict of lists, one entry per
    logged step ("step", "loss", "lr", and the recipe's metrics, e.g. "induction_score"
    [n_layers][n_heads] per step). The file's sha256 is checked as in ``load``."""
    root = _root(root)
    entry = _entry(name, root)
    if "history" not in entry:
        raise CheckpointError(f"checkpoint {name!r} ships no training history")
    data = _read_verified(name, root, entry["history"], entry["history_sha256"])
    try:
        history = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {name!r}: the history {root / entry['history']} is not valid JSON: "
                              f"{e}") from e
    return history


def load_snapshots(name: str, device: str | torch.device | None = None,
                   root: str | Path | None = None) -> dict[int, HookedTransformer]:
    """The weights saved during the training of ``name``: {epoch or step: model in eval mode}.

    Read from the manifest's extra file ``{name}.snapshots.pt`` (sha256-checked, unpickled with
    ``weights_only=True``), which holds "epochs" [n] and each weight stacked over snapshots,
    [n, *shape], in half precision; the models are float32 (cfg.dtype) on ``device``.
    Raises CheckpointError if the checkpoint ships no snapshots.
    """
    root = _root(root)
    entry = _entry(name, root)
    file = f"{name}.snapshots.pt"
    expected = entry.get("extra_files", {}).get(file)
    if expected is None:
        raise CheckpointError(f"checkpoint {name!r} ships no snapshots (no {file} in its manifest entry)")
    data = _read_verified(name, root, file, expected)
    try:
        stacked = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        epochs = stacked.pop("epochs").tolist()
    except Exception as e:  # torch raises several types for a damaged zip or pickle
        raise CheckpointError(f"checkpoint {name!r}: {root / file} could not be read as snapshots "
                              f"({type(e).__name__}: {e})") from e
    cfg = _transformer_config(name, entry, device)
    models = {}
    for i, epoch in enumerate(epochs):
        model = HookedTransformer(cfg)
        try:
            model.load_state_dict({k: v[i].to(cfg.dtype) for k, v in stacked.items()})
        except RuntimeError as e:
            raise CheckpointError(f"checkpoint {name!r}: the snapshots in {root / file} do not fit its config: "
                                  f"{e}") from e
        models[int(epoch)] = model.eval()
    return models
