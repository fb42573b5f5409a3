"""A tiny hooked CNN, a hand-set oriented line detector and a line renderer, for the tests of
feature visualisation, dataset examples and tuning curves.

Angles follow toykit.tuning_curves: degrees, 0° horizontal, anticlockwise as displayed (rows
point down), so a line at θ runs along (x, row) = (cos θ, -sin θ).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from toykit.hooks import HookedRootModule, HookPoint


class ConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hook_post(torch.relu(self.hook_pre(self.conv(x))))


class TinyCNN(HookedRootModule):
    """conv 7×7 (4 channels) -> max-pool 2 -> conv 3×3 (8 channels) -> mean over space -> linear.

    Hook points conv.{0,1}.hook_pre / hook_post [batch, channels, h, w] and hook_logits
    [batch, n_classes]. The pool is registered after the convs (not in running order) on purpose.
    ``boom`` makes forward raise; ``seen_training`` records the mode of every forward pass.
    """

    def __init__(self, seed: int = 0, channels: tuple[int, int] = (4, 8), n_classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.ModuleList([ConvBlock(1, channels[0], 7), ConvBlock(channels[0], channels[1], 3)])
        self.pool = nn.MaxPool2d(2)
        self.readout = nn.Linear(channels[1], n_classes)
        self.hook_logits = HookPoint()
        self.seen_training: list[bool] = []
        self.boom = False
        self.setup()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen_training.append(self.training)
        if self.boom:
            raise RuntimeError("boom")
        x = self.pool(self.conv[0](x))
        x = self.conv[1](x)
        return self.hook_logits(self.readout(x.mean(dim=(-2, -1))))


def line_filter(angle: float, size: int = 7, sigma: float = 1.0) -> torch.Tensor:
    """A zero-mean [size, size] detector of bright lines at ``angle`` degrees: a Mexican hat
    across the line times a Gaussian along it."""
    c = (size - 1) / 2
    rows, cols = torch.meshgrid(torch.arange(size) - c, torch.arange(size) - c, indexing="ij")
    t = math.radians(angle)
    across = cols * math.sin(t) + rows * math.cos(t)
    along = cols * math.cos(t) - rows * math.sin(t)
    across_profile = (1 - across**2 / sigma**2) * torch.exp(-across**2 / (2 * sigma**2))
    k = across_profile * torch.exp(-along**2 / (2 * (size / 3) ** 2))
    return k - k.mean()


def line_detector_net(angle: float, seed: int = 0) -> TinyCNN:
    """TinyCNN whose conv.0 channel 0 is ``line_filter(angle)`` with no bias; the rest random."""
    model = TinyCNN(seed)
    with torch.no_grad():
        model.conv[0].conv.weight[0, 0] = line_filter(angle)
        model.conv[0].conv.bias[0] = 0.0
    return model


def render_lines(angle: float, n: int, size: int = 32, width: float = 1.0, seed: int = 0) -> torch.Tensor:
    """n images [n, 1, size, size] of one bright anti-aliased line at ``angle`` degrees on black,
    each shifted across itself by a random offset of up to a quarter of the image."""
    g = torch.Generator().manual_seed(seed)
    c = (size - 1) / 2
    rows, cols = torch.meshgrid(torch.arange(size) - c, torch.arange(size) - c, indexing="ij")
    t = math.radians(angle)
    offset = (torch.rand(n, generator=g) - 0.5) * size / 2
    across = cols * math.sin(t) + rows * math.cos(t) - offset[:, None, None]
    return (1 - (across.abs() - width / 2).clamp(min=0)).clamp(min=0)[:, None]
