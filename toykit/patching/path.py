"""Path patching (Wang et al. 2022; Goldowsky-Dill et al. 2023): the effect of some heads on
the metric through chosen receivers only."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from toykit.cache import ActivationCache
from toykit.hooks import check_model
from toykit.patching.engine import check_max_batch, copies_per_pass, replicas
from toykit.patching.inputs import Head, check_heads, source_acts
from toykit.patching.metrics import Metric, metric_value
from toykit.patching.result import PatchingResult
from toykit.transformer import HookedTransformer
from toykit.transformer_inputs import check_tokens


def _receiver_inputs(receiver_input: str | Sequence[str]) -> list[str]:
    inputs = [receiver_input] if isinstance(receiver_input, str) else list(receiver_input)
    if not inputs or any(i not in ("q", "k", "v") for i in inputs):
        raise ValueError(f"receiver_input must be 'q', 'k', 'v' or a list of them, got {receiver_input!r}")
    return list(dict.fromkeys(inputs))


@torch.no_grad()
def _path_cells(model, clean_tokens: torch.Tensor, corrupted: ActivationCache | torch.Tensor, metric: Metric,
                sender_sets: list[list[Head]], receivers: list[Head] | None, inputs: list[str],
                freeze_mlps: bool, max_batch: int | None) -> torch.Tensor:
    """The metric after path patching each sender set (receivers None = the logits): [n_sets]."""
    cfg = model.cfg
    L, batch = cfg.n_layers, clean_tokens.shape[0]
    z_names = [f"blocks.{l}.attn.hook_z" for l in range(L)]
    mlp_names = [f"blocks.{l}.hook_mlp_out" for l in range(L)] if freeze_mlps and not cfg.attn_only else []
    clean_acts = source_acts(model, clean_tokens, clean_tokens, z_names + mlp_names, "clean_tokens", "clean_tokens")
    corr_z = source_acts(model, clean_tokens, corrupted, z_names, "corrupted", "clean_tokens")
    recv_heads: dict[str, list[int]] = {}
    for l, h in receivers or []:
        for inp in inputs:
            recv_heads.setdefault(f"blocks.{l}.attn.hook_{inp}", []).append(h)
    last_needed = max(l for l, _ in receivers) + 1 if receivers else None
    stop = last_needed if last_needed is not None and last_needed < L else None
    per_pass = copies_per_pass(max_batch, clean_tokens)
    values: list[float] = []
    for start in range(0, len(sender_sets), per_pass):
        chunk = sender_sets[start:start + per_pass]
        mask = torch.zeros(len(chunk), L, cfg.n_heads, dtype=torch.bool, device=model.device)
        for r, senders in enumerate(chunk):
            for l, h in senders:
                mask[r, l, h] = True
        tokens = clean_tokens.repeat(len(chunk), 1)
        out = _path_chunk(model, tokens, mask, clean_acts, corr_z, z_names, mlp_names, recv_heads, stop)
        values += [metric_value(metric, part) for part in replicas(out, len(chunk), batch)]
    return torch.tensor(values, dtype=torch.float64)


def _path_chunk(model, tokens: torch.Tensor, mask: torch.Tensor, clean_acts: dict[str, torch.Tensor],
                corr_z: dict[str, torch.Tensor], z_names: list[str], mlp_names: list[str],
                recv_heads: dict[str, list[int]], stop: int | None) -> torch.Tensor:
    """Path patching for n sender sets at once (mask [n, n_layers, n_heads]) on n copies of the
    clean prompts (tokens [n * batch, pos]): the final logits [n * batch, pos, d_vocab]."""
    n = mask.shape[0]

    # Step 1: every head's output frozen to the clean run, except the senders, which take the
    # corrupted run's; MLP outputs frozen too (freeze_mlps). What changes downstream is then
    # only what the senders write directly into the residual stream.
    def freeze_z(act: torch.Tensor, hook) -> torch.Tensor:
        layer = int(hook.name.split(".")[1])
        clean_z, corr = clean_acts[hook.name], corr_z[hook.name]  # [b, p, h, e]
        m = mask[:, layer][:, None, None, :, None]  # [n, 1, 1, h, 1]
        return torch.where(m, corr[None], clean_z[None]).reshape(act.shape)

    def freeze_mlp(act: torch.Tensor, hook) -> torch.Tensor:
        return clean_acts[hook.name].repeat(n, 1, 1)

    captured: dict[str, torch.Tensor] = {}

    def capture(act: torch.Tensor, hook) -> None:
        captured[hook.name] = act.clone()

    hooks: list[tuple[str, Callable[..., torch.Tensor | None]]] = [(name, freeze_z) for name in z_names]
    hooks += [(name, freeze_mlp) for name in mlp_names]
    hooks += [(name, capture) for name in recv_heads]
    with model.hooks(fwd_hooks=hooks):
        out = model(tokens, stop_at_layer=stop) if stop is not None else model(tokens)
    if not recv_heads:  # the receiver is the output itself
        return out

    # Step 2: a normal clean run, except that the receivers' inputs are the values they had in
    # step 1; everything downstream of them is recomputed.
    def put(act: torch.Tensor, hook) -> torch.Tensor:
        act = act.clone()
        heads = recv_heads[hook.name]
        act[:, :, heads] = captured[hook.name][:, :, heads]
        return act

    with model.hooks(fwd_hooks=[(name, put) for name in recv_heads]):
        return model(tokens)


def _path_args(model, clean_tokens, receivers, receiver_input, max_batch) -> tuple:
    check_model(model, HookedTransformer)
    check_max_batch(max_batch)
    tokens = check_tokens(model, clean_tokens, "clean_tokens")
    if isinstance(receivers, str):
        if receivers != "logits":
            raise ValueError(f"receivers must be a list of (layer, head) pairs or 'logits', got {receivers!r}")
        recv = None
    else:
        recv = check_heads(model, receivers, "receivers")
        if not recv:
            raise ValueError("receivers is empty")
    return tokens, recv, _receiver_inputs(receiver_input)


def path_patch(
    model,
    clean_tokens: torch.Tensor,
    corrupted: ActivationCache | torch.Tensor,
    metric: Metric,
    senders: Sequence[Head],
    receivers: Sequence[Head] | str,
    receiver_input: str | Sequence[str] = "q",
    freeze_mlps: bool = True,
) -> float:
    """Path patching: the effect of the senders on the metric *through* the receivers only.

    Follows Wang et al. (2022): (1) run the clean prompts with every attention head's output
    (hook_z) frozen to its clean value, except the senders, whose outputs come from the
    corrupted run; MLP outputs are frozen to their clean values too unless freeze_mlps=False
    (then paths through MLPs count as direct). Record the receivers' inputs. (2) Run the clean
    prompts again with just the receivers' inputs set to those values; measure the metric.

    senders: (layer, head) pairs, patched together.
    receivers: (layer, head) pairs, or "logits" for the senders' direct effect on the output
        (then step 1 alone is measured).
    receiver_input: which input of the receivers carries the path: "q", "k", "v" or a list.
    Returns the metric (compare with the clean run's value: the drop is the path's effect).
    A sender in the same or a later layer than every receiver has no path: an error.
    """
    tokens, recv, inputs = _path_args(model, clean_tokens, receivers, receiver_input, 1)
    send = check_heads(model, list(senders), "senders")
    if not send:
        raise ValueError("senders is empty")
    if recv is not None and min(l for l, _ in send) >= max(l for l, _ in recv):
        raise ValueError(f"no path: every sender {send} is in the same or a later layer than every receiver {recv}")
    return _path_cells(model, tokens, corrupted, metric, [send], recv, inputs, freeze_mlps,
                       max_batch=tokens.shape[0])[0].item()


def path_patch_heads(
    model,
    clean_tokens: torch.Tensor,
    corrupted: ActivationCache | torch.Tensor,
    metric: Metric,
    receivers: Sequence[Head] | str,
    receiver_input: str | Sequence[str] = "q",
    freeze_mlps: bool = True,
    max_batch: int | None = None,
) -> PatchingResult:
    """``path_patch`` with each attention head as the single sender in turn.

    Returns dims ("layer", "head"); NaN for heads with no path to any receiver (same or later
    layer); baseline = the metric on the clean run.
    """
    tokens, recv, inputs = _path_args(model, clean_tokens, receivers, receiver_input, max_batch)
    L, H = model.cfg.n_layers, model.cfg.n_heads
    last = L if recv is None else max(l for l, _ in recv)
    heads = [(l, h) for l in range(last) for h in range(H)]
    values = _path_cells(model, tokens, corrupted, metric, [[]] + [[hd] for hd in heads], recv, inputs,
                         freeze_mlps, max_batch)
    grid = torch.full((L, H), float("nan"), dtype=torch.float64)
    for (l, h), v in zip(heads, values[1:]):
        grid[l, h] = v
    target = "logits" if recv is None else f"{'/'.join(inputs)} of {recv}"
    return PatchingResult(grid, ("layer", "head"), {"layer": list(range(L)), "head": list(range(H))},
                          values[0].item(), f"path patching each head -> {target}")
