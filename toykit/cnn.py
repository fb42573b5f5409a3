"""HookedCNN: a small convolutional image classifier with a hook point on every activation.

The layout is the classic one: a few convolution layers, each followed by a ReLU and (except
the last) a 2 x 2 max-pool, then a global average over positions and a linear readout.

    images [b, in_channels, H, W]
      conv.0: W [c0, in_channels, k0, k0], b [c0]  -> conv.0.hook_pre, ReLU -> conv.0.hook_post
      2 x 2 max-pool                                (H/2, W/2)
      conv.1: W [c1, c0, k1, k1], b [c1]            -> conv.1.hook_pre / hook_post
      ...
      mean over positions                           -> hook_pooled [b, c_last]
      x @ W_U [c_last, n_classes] + b_U             -> hook_logits [b, n_classes]

Hook shapes: ``conv.{l}.hook_pre`` and ``conv.{l}.hook_post`` are [b, c_l, H_l, W_l] with
H_l = H / 2**l (every convolution keeps the size: padding k // 2). The hooks work as on a
HookedTransformer (``run_with_cache``, ``run_with_hooks``, ``names_filter``), because both
are ``toykit.hooks.HookedRootModule``. The first layer's kernels are 7 x 7 by default, big
enough for oriented edge filters to be visible when plotted.

    model = HookedCNN(CNNConfig())
    logits, cache = model.run_with_cache(images)   # images [b, 1, 32, 32]
    cache["conv.0.hook_post"]                       # [b, 16, 32, 32]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from toykit.hooks import HookedRootModule, HookPoint
from toykit.runtime import make_generator, resolve_device
from toykit.validation import check_non_negative_int, check_positive_int, check_tensor

__all__ = ["CNNConfig", "ConvLayer", "HookedCNN"]


@dataclass(kw_only=True)
class CNNConfig:
    """Everything that defines a HookedCNN, checked when it is made.

    channels: output channels of each convolution layer (its length is the number of layers).
    kernel_sizes: each layer's (odd) square kernel size, one per layer.
        The defaults are the shipped ``shapes-cnn`` model's (23,045 parameters).
    in_channels, image_size: the input images, [b, in_channels, image_size, image_size];
        image_size must be divisible by 2 ** (n_layers - 1) (one max-pool between layers).
    n_classes: the readout's outputs.
    seed: the initial weights depend only on this (drawn on the CPU, then moved).
    device: None picks ``toykit.get_device()``. dtype: a floating-point torch dtype.
    """

    channels: tuple[int, ...] = (16, 32, 32)
    kernel_sizes: tuple[int, ...] = (7, 5, 3)
    in_channels: int = 1
    image_size: int = 32
    n_classes: int = 5
    seed: int = 0
    device: str | torch.device | None = None
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        c = "CNNConfig: "  # every error names the class and the field
        # JSON gives lists; a tuple keeps the config hashable and comparable.
        self.channels = _int_tuple(c + "channels", self.channels)
        self.kernel_sizes = _int_tuple(c + "kernel_sizes", self.kernel_sizes)
        if len(self.kernel_sizes) != len(self.channels):
            raise ValueError(f"{c}kernel_sizes must have one entry per layer (len(channels)={len(self.channels)}), "
                             f"got {len(self.kernel_sizes)}")
        for k in self.kernel_sizes:
            if k % 2 == 0:
                raise ValueError(f"{c}kernel_sizes must be odd (so that a layer keeps the image size), "
                                 f"got {self.kernel_sizes}")
        for name in ("in_channels", "image_size", "n_classes"):
            check_positive_int(c + name, getattr(self, name))
        check_non_negative_int(c + "seed", self.seed)
        if self.image_size % 2 ** (self.n_layers - 1):
            raise ValueError(f"{c}image_size must be divisible by 2 ** (n_layers - 1) = {2 ** (self.n_layers - 1)} "
                             f"(a 2 x 2 max-pool between layers), got {self.image_size}")
        if not isinstance(self.dtype, torch.dtype) or not self.dtype.is_floating_point:
            raise TypeError(f"{c}dtype must be a floating-point torch.dtype, got {self.dtype!r}")

    @property
    def n_layers(self) -> int:
        return len(self.channels)


def _int_tuple(name: str, value: object) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) == 0:
        raise ValueError(f"{name} must be a non-empty sequence of positive ints, got {value!r}")
    return tuple(check_positive_int(name, v) for v in value)


class ConvLayer(nn.Module):
    """One convolution and its ReLU. W: [c_out, c_in, k, k], b: [c_out].

    x [b, c_in, H, W] -> hook_pre [b, c_out, H, W] -> ReLU -> hook_post [b, c_out, H, W].
    """

    def __init__(self, c_in: int, c_out: int, k: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.empty(c_out, c_in, k, k, dtype=dtype))
        self.b = nn.Parameter(torch.zeros(c_out, dtype=dtype))
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.hook_pre(F.conv2d(x, self.W, self.b, padding=self.W.shape[-1] // 2))
        return self.hook_post(F.relu(pre))


class HookedCNN(HookedRootModule):
    """A small CNN classifier with hook points (see the module docstring for the layout).

    cfg: a CNNConfig (or a dict of its fields).
    Call it on images [b, in_channels, image_size, image_size] (float) to get logits
    [b, n_classes]. ``run_with_cache`` and ``run_with_hooks`` come from HookedRootModule.
    Weights: ``conv[l].W`` [c_l, c_{l-1}, k_l, k_l], ``conv[l].b`` [c_l], ``W_U``
    [c_last, n_classes], ``b_U`` [n_classes].
    """

    def __init__(self, cfg: CNNConfig | dict) -> None:
        super().__init__()
        if isinstance(cfg, dict):
            cfg = CNNConfig(**cfg)
        if not isinstance(cfg, CNNConfig):
            raise TypeError(f"HookedCNN: cfg must be a CNNConfig or a dict, got {type(cfg).__name__}")
        self.cfg = cfg
        ins = (cfg.in_channels, *cfg.channels[:-1])
        self.conv = nn.ModuleList(ConvLayer(i, o, k, cfg.dtype) for i, o, k in zip(ins, cfg.channels, cfg.kernel_sizes))
        self.hook_pooled = HookPoint()  # [b, c_last]
        self.W_U = nn.Parameter(torch.empty(cfg.channels[-1], cfg.n_classes, dtype=cfg.dtype))
        self.b_U = nn.Parameter(torch.zeros(cfg.n_classes, dtype=cfg.dtype))
        self.hook_logits = HookPoint()  # [b, n_classes]
        self.init_weights()
        self.to(resolve_device(cfg.device))
        self.setup()

    @torch.no_grad()
    def init_weights(self, seed: int | None = None) -> None:
        """He (Kaiming) normal weights, std sqrt(2 / fan_in), suited to ReLU; biases 0.

        seed: None uses cfg.seed. Draws happen on the CPU in a fixed order, so the same seed
        gives the same weights on every device.
        """
        g = make_generator(self.cfg.seed if seed is None else seed)
        for name, p in self.named_parameters():
            if name.rsplit(".", 1)[-1].startswith("W"):
                fan_in = p.shape[0] if name == "W_U" else p[0].numel()
                std = math.sqrt(2 / fan_in) if name != "W_U" else math.sqrt(1 / fan_in)
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype).to(p.device) * std)
            else:
                p.zero_()

    @property
    def device(self) -> torch.device:
        return self.W_U.device

    def layer_geometry(self, layer: int) -> list[tuple[int, int, int]]:
        """(kernel, stride, padding) of every conv and pool from the input up to conv.{layer}'s
        output (its hook points), input first: the stack ``toykit.dataset_examples.receptive_field``
        takes. The pools are functions here, not modules, so they are listed from the layout."""
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < self.cfg.n_layers:
            raise ValueError(f"layer must be a conv layer index in [0, {self.cfg.n_layers}), got {layer!r}")
        geometry: list[tuple[int, int, int]] = []
        for i, k in enumerate(self.cfg.kernel_sizes[:layer + 1]):
            if i > 0:
                geometry.append((2, 2, 0))  # the max-pool between layers
            geometry.append((k, 1, k // 2))  # a conv that keeps the size
        return geometry

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [b, in_channels, image_size, image_size] (float; moved to the model's device)
        -> logits [b, n_classes]."""
        c = self.cfg
        check_tensor("images", images, [None, c.in_channels, c.image_size, c.image_size], dtype="float")
        x = images.to(self.device, self.W_U.dtype)
        for i, layer in enumerate(self.conv):
            if i > 0:  # halve the resolution between layers
                x = F.max_pool2d(x, 2)
            x = layer(x)
        pooled = self.hook_pooled(x.mean(dim=(2, 3)))
        return self.hook_logits(pooled @ self.W_U + self.b_U)

    def extra_repr(self) -> str:
        c = self.cfg
        return f"channels={c.channels}, kernel_sizes={c.kernel_sizes}, n_classes={c.n_classes}"
