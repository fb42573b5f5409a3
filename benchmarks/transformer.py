"""Transformer speed: toykit's HookedTransformer against a minimal plain-PyTorch GPT.

Config (issue 3): 2 layers, d_model 128, 4 heads, d_mlp 512, vocab 512, n_ctx 64, batch 64,
LayerNorm and GELU as in the TinyLang model. Figures:

- training tokens/s of toykit and of a plain GPT of the same size written here (nanoGPT-style,
  fused ``scaled_dot_product_attention``), timed in alternating rounds by the same training
  step; their ratio is the target (>= 1.0). toykit also uses the fused kernel when no hook reads
  ``hook_attn_scores`` or ``hook_pattern``. A second plain GPT writes attention out, as toykit
  does when such a hook is attached. A torch.profiler table of one step, and the time of a step
  on a 1 x 4 batch (almost all fixed overhead), are kept to explain the ratio.
- ``toykit.training.train_lm`` tokens/s (the loop learners call, with its per-step checks).
- forward time, and ``run_with_cache`` (every activation cached) over a plain forward (<= 1.15x);
  the memory of that full cache. The cache needs the attention scores and pattern, so a forward
  pass that forms them (a do-nothing hook on hook_pattern) is timed too. On Linux with glibc the
  ratio is measured again after asking malloc to keep freed memory (``keep_freed_memory``): the
  difference is what a ~100 MiB cache costs in first-touch page faults rather than in hooks.
  Notes give the page faults per call.
- with TransformerLens installed, its training speed, forward time and run_with_cache time on
  the same config, as ratios (an extra).

``--profile`` prints torch.profiler's self CPU time per op, toykit next to the plain GPTs.

    .venv/bin/python -m benchmarks.transformer [--quick] [--profile]
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.metadata
import importlib.util
import json
import math
import platform
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmarks.common import figure, interleaved, median, minor_page_faults, paired_ratio, plural
from toykit.training import train_lm
from toykit.transformer import HookedTransformer, TransformerConfig, copy_model, lm_cross_entropy_loss

SIZE = dict(n_layers=2, d_model=128, n_heads=4, d_mlp=512, d_vocab=512, n_ctx=64)
BATCH = 64
ACT_FN, NORM = "gelu", "LN"


# -- a minimal plain-PyTorch GPT of the same size ------------------------------------------------


class PlainBlock(nn.Module):
    """Pre-norm block: x += attn(ln1(x)); x += mlp(ln2(x)). x: [b, p, d_model]."""

    def __init__(self, d_model: int, n_heads: int, d_mlp: int, n_ctx: int, fused: bool) -> None:
        super().__init__()
        self.n_heads, self.fused = n_heads, fused
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc_in = nn.Linear(d_model, d_mlp)
        self.fc_out = nn.Linear(d_mlp, d_model)
        self.register_buffer("future", torch.ones(n_ctx, n_ctx, dtype=torch.bool).triu(1), persistent=False)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        b, p, d = x.shape
        q, k, v = self.qkv(x).view(b, p, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)  # [b, h, p, e]
        if self.fused:
            z = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(d // self.n_heads)
            z = scores.masked_fill(self.future[:p, :p], float("-inf")).softmax(-1) @ v
        return self.proj(z.transpose(1, 2).reshape(b, p, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.ln1(x))
        return x + self.fc_out(F.gelu(self.fc_in(self.ln2(x))))


class PlainGPT(nn.Module):
    """tokens [b, p] -> logits [b, p, d_vocab]; fused: use scaled_dot_product_attention."""

    def __init__(self, n_layers: int, d_model: int, n_heads: int, d_mlp: int, d_vocab: int, n_ctx: int,
                 fused: bool = True) -> None:
        super().__init__()
        self.tok = nn.Embedding(d_vocab, d_model)
        self.pos = nn.Embedding(n_ctx, d_model)
        self.blocks = nn.ModuleList(PlainBlock(d_model, n_heads, d_mlp, n_ctx, fused) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, d_vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.tok(tokens) + self.pos(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


# -- the measurements ------------------------------------------------------------------------------


def toykit_model(device: str = "cpu") -> HookedTransformer:
    return HookedTransformer(TransformerConfig(**SIZE, act_fn=ACT_FN, normalization_type=NORM, device=device))


def plain_model(fused: bool, device: str = "cpu") -> PlainGPT:
    torch.manual_seed(0)
    return PlainGPT(**SIZE, fused=fused).to(device)


def sample_tokens(device: str = "cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, SIZE["d_vocab"], (BATCH, SIZE["n_ctx"]), generator=g).to(device)


def train_step_fn(model: nn.Module, tokens: torch.Tensor, steps: int):
    """A closure running ``steps`` training steps: loss, backward, clip, AdamW, as train_lm does."""
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01, foreach=False)
    model.train()
    toykit = isinstance(model, HookedTransformer)

    def run() -> None:
        for _ in range(steps):
            if toykit:
                loss = model(tokens, return_type="loss")
            else:
                loss = lm_cross_entropy_loss(model(tokens), tokens)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()

    return run


def transformer_lens_model(device: str = "cpu"):
    """The same config in TransformerLens, or None when it is not installed."""
    if importlib.util.find_spec("transformer_lens") is None:
        return None
    from transformer_lens import HookedTransformer as TLHookedTransformer
    from transformer_lens import HookedTransformerConfig

    cfg = HookedTransformerConfig(**SIZE, d_head=SIZE["d_model"] // SIZE["n_heads"], act_fn=ACT_FN,
                                  normalization_type=NORM, device=device, seed=0)
    return TLHookedTransformer(cfg)


def _tl_version() -> str:
    return importlib.metadata.version("transformer_lens")


def _counting_faults(fn, faults: list[int]):
    """fn, also adding the minor page faults of each call to faults[0]."""
    def run() -> None:
        before = minor_page_faults()
        fn()
        if before is not None:
            faults[0] += minor_page_faults() - before
    return run


def _training(quick: bool, device: str) -> tuple[list, dict]:
    tokens = sample_tokens(device)
    steps, rounds = (1, 2) if quick else (3, 12)
    lm_model = toykit_model(device)
    runs = {
        "toykit": train_step_fn(toykit_model(device), tokens, steps),
        "plain_fused": train_step_fn(plain_model(True, device), tokens, steps),
        "plain_explicit": train_step_fn(plain_model(False, device), tokens, steps),
        # The loop learners call: a fresh AdamW each call, per-step checks, schedule, clipping.
        "train_lm": lambda: train_lm(lm_model, lambda step, g: tokens, steps=steps, log_every=10**9, device=device,
                                     progress=False),
    }
    tl = transformer_lens_model(device)
    if tl is not None:
        runs["transformer_lens"] = train_step_fn(tl, tokens, steps)  # returns logits, like the plain GPT
    for fn in runs.values():
        fn()  # warm up, before the page faults are counted
    faults = {name: [0] for name in runs}
    times = interleaved({name: _counting_faults(fn, faults[name]) for name, fn in runs.items()}, rounds=rounds,
                        warmup=0)
    per_step = {name: median(t) / steps for name, t in times.items()}
    fault_rate = {name: f[0] / (rounds * steps) for name, f in faults.items()}
    tok = BATCH * SIZE["n_ctx"]
    note = f"median of {plural(rounds, 'alternating round')} of {plural(steps, 'step')}"
    figures = [
        figure("training tokens/s, toykit", tok / per_step["toykit"], "tokens/s", note=note),
        figure("training tokens/s, plain GPT (fused attention)", tok / per_step["plain_fused"], "tokens/s",
               note=note),
        figure("training speed, toykit / plain GPT (fused attention)",
               paired_ratio(times["plain_fused"], times["toykit"]), "x", at_least=1.0,
               note="ratio of tokens/s, paired rounds; minor page faults per step: "
                    f"toykit {fault_rate['toykit']:.0f}, plain {fault_rate['plain_fused']:.0f}"),
        figure("training speed, toykit / plain GPT (attention written out)",
               paired_ratio(times["plain_explicit"], times["toykit"]), "x",
               note="a plain GPT forming the scores and pattern, as toykit does when a hook reads them; no target"),
        figure("training tokens/s, toykit.training.train_lm", tok / per_step["train_lm"], "tokens/s",
               note=f"{note}; {paired_ratio(times['toykit'], times['train_lm']):.3g}x the bare loop's speed"),
    ]
    if tl is not None:
        figures.append(figure("training speed, toykit / TransformerLens",
                              paired_ratio(times["transformer_lens"], times["toykit"]), "x",
                              note=f"optional: TransformerLens {_tl_version()} is installed; higher is faster"))
    details = {"training_seconds_per_step": {k: round(v, 5) for k, v in per_step.items()},
               "training_minor_page_faults_per_step": {k: round(v) for k, v in fault_rate.items()},
               "training_rounds": rounds, "training_steps_per_round": steps}
    return figures, details


def _written_out(model: HookedTransformer) -> HookedTransformer:
    """A copy whose attention always forms the scores and the pattern, as run_with_cache needs:
    a do-nothing hook on each hook_pattern turns off the fused kernel."""
    copy = copy_model(model).eval()
    for block in copy.blocks:
        block.attn.hook_pattern.add_hook(lambda pattern, hook: None, is_permanent=True)
    return copy


def _cache_ratio(model: HookedTransformer, plain: PlainGPT, tokens: torch.Tensor, rounds: int,
                 calls: int, extra: dict | None = None) -> tuple[dict, dict]:
    """Times (interleaved) and minor page faults per call of forward (fused attention and written
    out), run_with_cache, the plain GPT's forward, and any extra {name: fn} runs."""
    written_out = _written_out(model)
    runs = {"forward": lambda: model(tokens), "run_with_cache": lambda: model.run_with_cache(tokens),
            "forward_written_out": lambda: written_out(tokens), "plain_forward": lambda: plain(tokens),
            **(extra or {})}
    for fn in runs.values():
        fn()  # warm up, before the page faults are counted
    faults = {name: [0] for name in runs}

    def repeat(fn):
        def run() -> None:
            for _ in range(calls):
                fn()
        return run

    times = interleaved({n: _counting_faults(repeat(fn), faults[n]) for n, fn in runs.items()}, rounds=rounds,
                        warmup=0)
    return times, {n: f[0] / (rounds * calls) for n, f in faults.items()}


@torch.no_grad()
def _forward_and_cache(quick: bool, device: str) -> tuple[list, dict]:
    model = toykit_model(device).eval()
    plain = plain_model(True, device).eval()
    tokens = sample_tokens(device)
    rounds, calls = (2, 1) if quick else (12, 4)
    tl = transformer_lens_model(device)
    extra = {} if tl is None else {"tl_forward": lambda: tl(tokens),
                                   "tl_run_with_cache": lambda: tl.run_with_cache(tokens)}
    times, faults = _cache_ratio(model, plain, tokens, rounds, calls, extra)
    _, cache = model.run_with_cache(tokens)
    cache_bytes = sum(t.numel() * t.element_size() for t in cache.values())
    note = f"batch {BATCH}, no grad; median of {plural(rounds, 'alternating round')} of {plural(calls, 'call')}"
    written_out = paired_ratio(times["forward_written_out"], times["forward"])
    over_written_out = paired_ratio(times["run_with_cache"], times["forward_written_out"])
    figures = [
        figure("forward time, toykit", 1000 * median(times["forward"]) / calls, "ms", note=note),
        figure("forward time, toykit / plain GPT (fused attention)",
               paired_ratio(times["forward"], times["plain_forward"]), "x", note="lower is faster"),
        figure("run_with_cache time / forward time", paired_ratio(times["run_with_cache"], times["forward"]), "x",
               at_most=1.15, note=f"all {len(cache)} hook points cached; minor page faults per call: forward "
                                  f"{faults['forward']:.0f}, run_with_cache {faults['run_with_cache']:.0f}",
               why=f"two costs, measured here. (1) A cache holds the attention scores and pattern, which the "
                   f"forward pass's fused attention kernel never forms: a forward pass that forms them takes "
                   f"{written_out:.2f}x as long, and run_with_cache takes {over_written_out:.2f}x that. (2) The "
                   f"{cache_bytes / 2**20:.0f} MiB of cached tensors are new memory on every call, which glibc "
                   f"malloc takes from the OS page by page ({faults['run_with_cache']:.0f} minor page faults per "
                   f"call, against {faults['forward']:.0f} for the forward pass); the row 'glibc malloc keeping "
                   f"freed memory' below removes this cost. To remove it in your own runs, start Python with "
                   f"MALLOC_TRIM_THRESHOLD_=268435456 MALLOC_MMAP_THRESHOLD_=33554432 set."),
        figure("forward time, attention written out / fused", written_out, "x",
               note="diagnostic: a do-nothing hook on each hook_pattern makes attention form scores and pattern"),
        figure("run_with_cache time / forward time, attention written out", over_written_out, "x",
               note="diagnostic: the cost of caching itself, against a forward pass doing the same attention maths"),
        figure("memory of a full cache", cache_bytes / 2**20, "MiB", note=f"batch {BATCH}, float32"),
    ]
    if tl is not None:
        figures += [
            figure("forward time, toykit / TransformerLens", paired_ratio(times["forward"], times["tl_forward"]), "x",
                   note=f"optional: TransformerLens {_tl_version()} is installed; lower is faster"),
            figure("run_with_cache time, toykit / TransformerLens",
                   paired_ratio(times["run_with_cache"], times["tl_run_with_cache"]), "x",
                   note=f"optional: TransformerLens {_tl_version()} is installed; lower is faster; its "
                        f"run_with_cache / its forward: "
                        f"{paired_ratio(times['tl_run_with_cache'], times['tl_forward']):.3g}x"),
        ]
    details = {"cached_activations": len(cache), "cache_minor_page_faults_per_call": {
        k: round(v) for k, v in faults.items()}}
    return figures, details


@torch.no_grad()
def _cache_with_malloc_keeping_memory(quick: bool, device: str) -> tuple[list, dict]:
    """The cache ratio again with glibc keeping freed memory: what is left is the cost of the
    hooks and of forming the attention scores and pattern.

    Run last: it changes this process's malloc for good.
    """
    if device != "cpu" or not keep_freed_memory():
        return [], {}
    rounds, calls = (2, 1) if quick else (12, 4)
    times, faults = _cache_ratio(toykit_model(device).eval(), plain_model(True, device).eval(),
                                 sample_tokens(device), rounds, calls)
    ratio = figure("run_with_cache time / forward time, glibc malloc keeping freed memory",
                   paired_ratio(times["run_with_cache"], times["forward"]), "x",
                   note="diagnostic (mallopt: mmap threshold 32 MiB, trim threshold 256 MiB); minor page faults "
                        f"per call: forward {faults['forward']:.0f}, run_with_cache {faults['run_with_cache']:.0f}; "
                        f"{paired_ratio(times['run_with_cache'], times['forward_written_out']):.3g}x a forward "
                        "pass with attention written out")
    return [ratio], {"cache_minor_page_faults_per_call_malloc_tuned": {k: round(v) for k, v in faults.items()}}


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the OS.

    By default glibc serves big blocks with mmap and trims the heap as soon as a little is
    free, so a tensor allocated again after being freed costs fresh page faults (and zeroing).
    Returns False (and changes nothing) where malloc is not glibc's.
    """
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 256 << 20))


def run(quick: bool = False, device: str = "cpu") -> dict:
    """All the transformer figures: {"figures": [...], "details": {...}}."""
    figures, details = [], {"config": {**SIZE, "batch": BATCH, "act_fn": ACT_FN, "normalization_type": NORM},
                            "device": device, "torch_threads": torch.get_num_threads()}
    # Forward and cache first, in a fresh process, as a learner meets them: what a cache costs
    # depends on the memory malloc kept from earlier work (after a training run, often no page
    # faults at all).
    for part in (_forward_and_cache, _training, _training_profile, _cache_with_malloc_keeping_memory):
        f, d = part(quick, device)
        figures += f
        details.update(d)
    for f in figures:
        if f["name"] == "training speed, toykit / plain GPT (fused attention)" and f["met"] is False:
            f["why"] = _why_training_is_slower(details)
    if importlib.util.find_spec("transformer_lens") is None:
        details["transformer_lens"] = "not installed: comparison skipped"
    return {"figures": figures, "details": details}


# -- profiling -------------------------------------------------------------------------------------


def _step_profile(runs: dict, rounds: int) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]]:
    """Self CPU ms and calls per training step of each op, for each run, from torch.profiler.

    Each run does one step; they are recorded in turn, ``rounds`` times, alternating the order
    as ``interleaved`` does so that background load hits all of them alike. ms is the mean.
    """
    from collections import defaultdict

    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    ms: dict[str, dict[str, float]] = {name: defaultdict(float) for name in runs}
    calls: dict[str, dict[str, int]] = {name: defaultdict(int) for name in runs}
    for run in runs.values():
        run()  # warm up
    names = list(runs)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                runs[name]()
            for event in prof.key_averages():
                ms[name][event.key] += event.self_cpu_time_total / 1000 / rounds
                calls[name][event.key] = event.count
    return ms, calls


def _profile_table(ms: dict[str, dict[str, float]], calls: dict[str, dict[str, int]], rounds: int,
                   row_limit: int) -> str:
    names = list(ms)
    ops = sorted(set().union(*ms.values()), key=lambda op: -max(ms[n][op] for n in names))
    width = max(len(op) for op in ops[:row_limit])
    lines = [f"self CPU ms per training step, mean of {rounds} alternating rounds (calls per step)",
             f"{'op':<{width}}" + "".join(f"{n:>22}" for n in names)]
    for op in ops[:row_limit]:
        lines.append(f"{op:<{width}}" + "".join(f"{ms[n][op]:>14.1f} ({calls[n][op]:>4})" for n in names))
    lines.append(f"{'all ops':<{width}}" + "".join(f"{sum(ms[n].values()):>14.1f} ({sum(calls[n].values()):>4})"
                                                   for n in names))
    return "\n".join(lines)


def _profiled_runs(device: str) -> dict:
    tokens = sample_tokens(device)
    return {"toykit": train_step_fn(toykit_model(device), tokens, 1),
            "plain fused": train_step_fn(plain_model(True, device), tokens, 1),
            "plain explicit": train_step_fn(plain_model(False, device), tokens, 1)}


def profile(rounds: int = 6, device: str = "cpu", row_limit: int = 25) -> str:
    """Where a training step's time goes, toykit next to the plain GPTs, op by op: torch.profiler's
    self CPU time per op and step, sorted by the largest; the last line sums all ops."""
    ms, calls = _step_profile(_profiled_runs(device), rounds)
    return _profile_table(ms, calls, rounds, row_limit)


def _training_profile(quick: bool, device: str) -> tuple[list, dict]:
    """The op profile of a training step, kept in the results to explain the training ratio."""
    rounds = 1 if quick else 6
    ms, calls = _step_profile(_profiled_runs(device), rounds)
    ops_ms = {name: sum(v.values()) for name, v in ms.items()}
    op_calls = {name: sum(v.values()) for name, v in calls.items()}
    # A step on a 1 x 4 batch is almost all fixed cost: Python, dispatch, autograd bookkeeping,
    # AdamW's loop over parameter tensors. It measures what the profile's op times leave out.
    tiny = sample_tokens(device)[:1, :4]
    steps, tiny_rounds = (2, 2) if quick else (20, 12)
    tiny_times = interleaved({"toykit": train_step_fn(toykit_model(device), tiny, steps),
                              "plain fused": train_step_fn(plain_model(True, device), tiny, steps)},
                             rounds=tiny_rounds)
    fixed_ms = {name: 1000 * median(t) / steps for name, t in tiny_times.items()}
    n_params = {"toykit": len(list(toykit_model(device).parameters())),
                "plain fused": len(list(plain_model(True, device).parameters()))}
    details = {"training_profile_ops_ms_per_step": {k: round(v, 2) for k, v in ops_ms.items()},
               "training_profile_op_calls_per_step": op_calls, "parameter_tensors": n_params,
               "training_fixed_ms_per_step": {k: round(v, 3) for k, v in fixed_ms.items()},
               "profiles": {"one training step": _profile_table(ms, calls, rounds, row_limit=20)}}
    return [], details


def _why_training_is_slower(details: dict) -> str:
    """The training ratio's explanation, from _training_profile's and _training's details."""
    ops, calls = details["training_profile_ops_ms_per_step"], details["training_profile_op_calls_per_step"]
    fixed, params = details["training_fixed_ms_per_step"], details["parameter_tensors"]
    step_ms = 1000 * details["training_seconds_per_step"]["toykit"]
    extra = fixed["toykit"] - fixed["plain fused"]
    return (f"torch.profiler puts the ops of a step at {ops['toykit']:.1f} ms for toykit and "
            f"{ops['plain fused']:.1f} ms for the plain GPT, so the kernels are not what is slower. The fixed "
            f"cost of a step is: a step on a 1 x 4 batch takes {fixed['toykit']:.2f} ms against "
            f"{fixed['plain fused']:.2f} ms ({extra:+.2f} ms, {100 * extra / step_ms:+.1f}% of a full step). "
            f"toykit's step makes {calls['toykit']} op calls to the plain GPT's {calls['plain fused']}, and AdamW "
            f"loops over {params['toykit']} parameter tensors to {params['plain fused']}: TransformerLens's layout "
            "keeps W_Q, W_K, W_V and their biases as separate [n_heads, ...] tensors, which a fused model stores "
            "as one matrix.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats: a smoke run")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler tables instead")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.profile:
        print(profile())
    else:
        print(json.dumps(run(args.quick), indent=1))


if __name__ == "__main__":
    main()
