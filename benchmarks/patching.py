"""Activation patching on IOI prompts: a full layer x position residual-stream sweep on 50
prompts (target: at most 3 s on a laptop CPU), and the other sweeps for reference.

The model is the shipped TinyLang model when ``toykit.pretrained.available()`` lists it, else
a randomly initialised model of the TinyLang recipe's shape (3 layers, d_model 128, 4 heads,
d_mlp 512 at the time of writing): what patching costs depends on the shape, not on the
weights. The prompts are 50 held-out TinyLang IOI prompts of the most common length, with
their ABC corruptions; the metric is the normalised logit difference (IO minus S). Timed,
after a warm-up call: ``patch_blocks`` (resid_pre by layer and position: the target) and, in
the full run, ``patch_heads`` (all positions, and by position), ``attribution_patch_heads``
and ``path_patch_heads`` (every head -> the last layer's queries).

    .venv/bin/python -m benchmarks.patching [--quick]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import torch

from benchmarks.common import figure, median, time_calls
from toykit import patching, pretrained
from toykit.tasks import tinylang
from toykit.transformer import HookedTransformer, TransformerConfig

N_PROMPTS = 50
TARGET_S = 3.0


def model_and_name() -> tuple[HookedTransformer, str]:
    if "tinylang" in pretrained.available():
        return pretrained.load("tinylang", device="cpu"), "the shipped TinyLang model"
    try:
        from toykit.train_recipes import RECIPES

        cfg = RECIPES["tinylang"].config(device="cpu")
    except (ImportError, KeyError, AttributeError):
        cfg = TransformerConfig(n_layers=3, d_model=128, n_heads=4, d_mlp=512, act_fn="gelu",
                                d_vocab=tinylang.VOCAB_SIZE, n_ctx=64, device="cpu")
    return HookedTransformer(cfg), "a random model of the TinyLang shape"


def ioi_prompts(n: int) -> tuple[tinylang.Batch, tinylang.Batch]:
    """n test-split IOI prompts of the most common length, and their ABC corruptions."""
    examples = tinylang.generate_ioi(20 * n, seed=0, split="test")
    lengths = [len(tinylang.TOKENIZER.encode(e.prompt, prepend_bos=True)) for e in examples]
    common = Counter(lengths).most_common(1)[0][0]
    chosen = [e for e, length in zip(examples, lengths) if length == common][:n]
    return tinylang.make_batch(chosen), tinylang.make_batch(chosen, corrupted=True)


def run(quick: bool = False) -> dict:
    """{"figures": [...], "details": {...}}; quick: the residual sweep only, timed once."""
    repeats = 1 if quick else 3
    threads = torch.get_num_threads()
    model, model_name = model_and_name()
    clean, corrupted = ioi_prompts(N_PROMPTS)
    with torch.no_grad():
        clean_logits, corrupted_logits = model(clean.tokens), model(corrupted.tokens)
    metric = patching.logit_diff_metric(clean.label_ids("io"), clean.label_ids("s"), pos=clean.answer_pos,
                                        clean_logits=clean_logits, corrupted_logits=corrupted_logits)
    L, H = model.cfg.n_layers, model.cfg.n_heads
    batch, n_pos = clean.tokens.shape
    shape = f"{L} layers x {n_pos} positions, {batch} prompts"
    sweeps = {f"patching: resid_pre sweep, {shape}":
              lambda: patching.patch_blocks(model, corrupted.tokens, clean.tokens, metric)}
    if not quick:
        receivers = [(L - 1, h) for h in range(H)]
        sweeps.update({
            f"patching: head outputs, {L * H} heads, all positions, {batch} prompts":
                lambda: patching.patch_heads(model, corrupted.tokens, clean.tokens, metric),
            f"patching: head outputs by position, {L * H * n_pos} patches, {batch} prompts":
                lambda: patching.patch_heads(model, corrupted.tokens, clean.tokens, metric, by_pos=True),
            f"patching: attribution patching, every head, {batch} prompts":
                lambda: patching.attribution_patch_heads(model, corrupted.tokens, clean.tokens, metric),
            f"patching: path patching, every head -> layer {L - 1} queries, {batch} prompts":
                lambda: patching.path_patch_heads(model, clean.tokens, corrupted.tokens, metric, receivers),
        })
    figures = []
    for i, (name, fn) in enumerate(sweeps.items()):
        seconds = median(time_calls(fn, repeats=repeats))
        figures.append(figure(name, seconds, "s", at_most=TARGET_S if i == 0 else None,
                              note=f"{model_name}; median of {repeats}; {threads} threads"))
    details = {"model": model_name, "n_layers": L, "d_model": model.cfg.d_model, "prompts": batch,
               "positions": n_pos, "repeats": repeats, "threads": threads}
    return {"figures": figures, "details": details}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the residual sweep only, timed once")
    print(json.dumps(run(parser.parse_args().quick), indent=1))
