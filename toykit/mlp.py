"""TinyMLP: a multi-layer perceptron small enough to see every activation, for learning hooks.

Every hidden layer is a block computing ``pre = x @ W_in + b_in`` and ``post = act(pre)``,
with a hook point on each, and a final unembedding ``out = post @ W_out + b_out``. Weights
are right-multiplied and named as in TransformerLens, so the habits carry over.

Hook names and shapes:

=====================  ===================
hook                   shape
=====================  ===================
hook_in                [batch, d_in]
blocks.{l}.hook_pre    [batch, d_hidden]
blocks.{l}.hook_post   [batch, d_hidden]
hook_out               [batch, d_out]
=====================  ===================

``cache["pre", 0]`` on a cache from this model means ``blocks.0.hook_pre``.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from toykit.hooks import HookedRootModule, HookPoint
from toykit.runtime import make_generator, resolve_device
from toykit.validation import check_non_negative_int, check_positive_int, check_tensor

ACT_FNS = {
    "relu": torch.relu,
    "gelu": F.gelu,
    "tanh": torch.tanh,
    "linear": lambda x: x,
}


class MLPBlock(nn.Module):
    """One hidden layer: ``pre = x @ W_in + b_in``, ``post = act_fn(pre)``.

    W_in: [d_in, d_hidden], b_in: [d_hidden].
    """

    def __init__(self, d_in: int, d_hidden: int, act_fn: str = "relu") -> None:
        super().__init__()
        self.d_in, self.d_hidden, self.act_fn = d_in, d_hidden, act_fn
        self.W_in = nn.Parameter(torch.empty(d_in, d_hidden))
        self.b_in = nn.Parameter(torch.zeros(d_hidden))
        self.hook_pre = HookPoint()  # [batch, d_hidden]
        self.hook_post = HookPoint()  # [batch, d_hidden]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, d_in] -> [batch, d_hidden]"""
        pre = self.hook_pre(x @ self.W_in + self.b_in)
        return self.hook_post(ACT_FNS[self.act_fn](pre))

    def extra_repr(self) -> str:
        return f"d_in={self.d_in}, d_hidden={self.d_hidden}, act_fn={self.act_fn!r}"


class TinyMLP(HookedRootModule):
    """A hooked MLP: ``n_layers`` hidden layers of width ``d_hidden``, then a linear readout.

    d_in, d_hidden, d_out: input, hidden and output widths.
    n_layers: number of hidden layers (blocks), at least 1.
    act_fn: "relu", "gelu", "tanh" or "linear".
    seed: the weights depend only on this (drawn on the CPU, then moved), so the same seed
        gives the same model on every device.
    device: None picks ``toykit.get_device()`` (CUDA when present, else the CPU).

    Parameters: ``blocks[l].W_in`` [d_in or d_hidden, d_hidden], ``blocks[l].b_in``
    [d_hidden], ``W_out`` [d_hidden, d_out], ``b_out`` [d_out].
    """

    def __init__(
        self,
        d_in: int,
        d_hidden: int,
        d_out: int,
        n_layers: int = 2,
        act_fn: str = "relu",
        seed: int = 0,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        for name, value in [("d_in", d_in), ("d_hidden", d_hidden), ("d_out", d_out),
                            ("n_layers", n_layers)]:
            check_positive_int(name, value)
        if act_fn not in ACT_FNS:
            raise ValueError(f"act_fn must be one of {sorted(ACT_FNS)}, got {act_fn!r}")
        check_non_negative_int("seed", seed)
        self.d_in, self.d_hidden, self.d_out = d_in, d_hidden, d_out
        self.n_layers, self.act_fn, self.seed = n_layers, act_fn, seed

        self.hook_in = HookPoint()  # [batch, d_in]
        self.blocks = nn.ModuleList(
            MLPBlock(d_in if layer == 0 else d_hidden, d_hidden, act_fn)
            for layer in range(n_layers)
        )
        self.W_out = nn.Parameter(torch.empty(d_hidden, d_out))
        self.b_out = nn.Parameter(torch.zeros(d_out))
        self.hook_out = HookPoint()  # [batch, d_out]
        self._init_weights(seed)
        self.to(resolve_device(device))
        self.setup()

    @torch.no_grad()
    def _init_weights(self, seed: int) -> None:
        g = make_generator(seed)
        # He scaling keeps activations O(1) through ReLU layers; small non-zero biases make
        # each neuron's threshold (and the readout's offset) visible in the chapter.
        for block in cast("list[MLPBlock]", self.blocks):  # an nn.ModuleList of MLPBlocks
            block.W_in.copy_(torch.randn(block.W_in.shape, generator=g)
                             * math.sqrt(2.0 / block.d_in))
            block.b_in.copy_(0.1 * torch.randn(block.b_in.shape, generator=g))
        self.W_out.copy_(torch.randn(self.W_out.shape, generator=g) / math.sqrt(self.d_hidden))
        self.b_out.copy_(0.1 * torch.randn(self.b_out.shape, generator=g))

    @property
    def device(self) -> torch.device:
        return self.W_out.device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, d_in] -> logits [batch, d_out]"""
        check_tensor("x", x, ["batch", self.d_in], dtype="float")
        if x.device != self.device:
            raise ValueError(
                f"x is on {x.device} but the model is on {self.device}: "
                "create x with device=model.device or call x.to(model.device)"
            )
        if x.dtype != self.W_out.dtype:
            raise TypeError(
                f"x has dtype {x.dtype} but the model's weights are {self.W_out.dtype}: "
                f"call x.to({self.W_out.dtype})"
            )
        h = self.hook_in(x)
        for block in self.blocks:
            h = block(h)
        return self.hook_out(h @ self.W_out + self.b_out)

    def extra_repr(self) -> str:
        return (f"d_in={self.d_in}, d_hidden={self.d_hidden}, d_out={self.d_out}, "
                f"n_layers={self.n_layers}, act_fn={self.act_fn!r}, seed={self.seed}")
