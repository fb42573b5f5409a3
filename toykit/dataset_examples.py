"""Dataset examples: the images of a data set that excite a channel most, cropped to what it sees.

Feature visualisation shows what a channel could respond to; dataset examples show what it does
respond to in real data. Olah et al. 2017, "Feature Visualization" (Distill), section "Why
visualize by optimization?", argue that the two complement each other: examples can mislead
through correlated features, optimisation through unnatural images.

A unit of a conv layer sees only part of the image: its receptive field. ``receptive_field``
computes its size, stride and offset from the stack of conv and pool layers before it, by the
recurrence of Araujo, Norris & Sim 2019, "Computing Receptive Fields of Convolutional Neural
Networks" (Distill), section "Single-path networks" (their r_0, S_0 and the start of the
region); ``top_k_examples`` crops each example to the receptive field of its most active unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from toykit.hooks import HookedRootModule, check_model
from toykit.runtime import eval_mode
from toykit.unit_activations import read_activation
from toykit.validation import check_non_negative_int, check_positive_int, check_tensor

__all__ = ["DatasetExamples", "ReceptiveField", "layers_before", "receptive_field", "top_k_examples"]

#: A layer of the stack as (kernel_size, stride, padding), square, with dilation 1.
LayerGeometry = tuple[int, int, int]


@dataclass(frozen=True)
class ReceptiveField:
    """Where a unit of a conv layer looks in the input.

    The unit at position (y, x) of the layer sees the input rows
    ``y * stride - padding`` to ``y * stride - padding + size - 1`` (and the same for columns);
    rows outside the image are the layers' zero padding.
    """

    size: int
    stride: int
    padding: int

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of the unit (y, x)'s field in input pixels; bottom and
        right are exclusive and the box may extend past the image."""
        top, left = y * self.stride - self.padding, x * self.stride - self.padding
        return top, left, top + self.size, left + self.size


def receptive_field(layers: Sequence[nn.Module | LayerGeometry]) -> ReceptiveField:
    """The receptive field of one unit after a stack of conv and pool layers, input first.

    layers: nn.Conv2d, nn.MaxPool2d or nn.AvgPool2d modules (square kernels, strides and
        paddings; a conv's dilation is allowed), or (kernel_size, stride, padding) tuples.
        Elementwise layers (ReLU, batch norm, hook points) do not change the field; leave them out.
    Returns ReceptiveField(size, stride, padding): an empty stack gives (1, 1, 0), the pixel itself.

    >>> receptive_field([(5, 1, 2), (2, 2, 0), (3, 1, 1)])
    ReceptiveField(size=10, stride=2, padding=4)
    """
    if isinstance(layers, (nn.Module, str)) or not isinstance(layers, Sequence):
        raise TypeError(f"layers must be a sequence of conv/pool modules or (kernel, stride, padding) tuples, "
                        f"got {type(layers).__name__}")
    size, stride, padding = 1, 1, 0
    for i, layer in enumerate(layers):
        k, s, p = _geometry(f"layers[{i}]", layer)
        # Araujo et al. 2019: each layer widens the field by (k - 1) input steps of the layers
        # before it, multiplies the step by its stride and moves the start back by its padding.
        size += (k - 1) * stride
        padding += p * stride
        stride *= s
    return ReceptiveField(size=size, stride=stride, padding=padding)


def layers_before(model: HookedRootModule, hook_name: str, images: torch.Tensor) -> list[nn.Module]:
    """The conv and pool modules that run before the hook point ``hook_name``, in running order.

    images: [batch, channels, height, width], an example input (one image is enough).
    The modules are found by running the model on ``images`` with a PyTorch forward hook on each
    submodule, so pooling done with ``torch.nn.functional`` inside ``forward`` is invisible.
    That is checked: the stack must turn the images' height × width into the activation's
    h × w, or a ValueError asks for the layers to be given to ``receptive_field`` directly. A
    module whose effect on the field cannot be computed (transposed convs, upsampling, adaptive
    pooling) is an error too.
    """
    check_model(model, HookedRootModule, [hook_name])
    check_tensor("images", images, ["batch", "channels", "height", "width"], dtype="float")
    ran: list[nn.Module] = []

    def record(module: nn.Module, inputs: object, output: object) -> None:
        if isinstance(module, (nn.ConvTranspose2d, nn.Upsample, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            raise ValueError(f"layers_before: cannot compute a receptive field through a "
                             f"{type(module).__name__}; pass the layers to receptive_field yourself")
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            ran.append(module)

    handles = [m.register_forward_hook(record) for m in model.modules() if m is not model]
    try:
        with eval_mode(model), torch.no_grad():
            acts = read_activation(model, images[:1], hook_name)
    finally:
        for handle in handles:
            handle.remove()
    if acts.ndim != 4:
        raise ValueError(f"layers_before: {hook_name!r} is not a conv activation [batch, channels, h, w]; "
                         f"got shape {list(acts.shape)}")
    expected = [images.shape[-2], images.shape[-1]]
    for i, layer in enumerate(ran):
        k, stride, p = _geometry(f"layers[{i}]", layer)
        expected = [(n + 2 * p - k) // stride + 1 for n in expected]
    if expected != list(acts.shape[-2:]):
        raise ValueError(f"layers_before: the conv and pool modules found before {hook_name!r} turn "
                         f"{list(images.shape[-2:])} pixels into {expected}, but the activation is "
                         f"{list(acts.shape[-2:])}; some layer is not a module (F.max_pool2d?) or pools "
                         "with ceil_mode. Pass the layers to receptive_field yourself")
    return ran


@dataclass(frozen=True)
class DatasetExamples:
    """What ``top_k_examples`` returns, strongest first.

    indices: [k] rows of the data set.
    activations: [k] the channel's activation (the max over positions for a conv channel).
    images: [k, channels, height, width] the whole images.
    positions: [k, 2] (y, x) of the most active unit in the layer's grid, or None for a dense layer.
    crops: [k, channels, size, size] the receptive field of that unit in each image, with zeros
        where it extends past the image (the layers' own padding), or None for a dense layer.
    """

    indices: torch.Tensor
    activations: torch.Tensor
    images: torch.Tensor
    positions: torch.Tensor | None
    crops: torch.Tensor | None


@torch.no_grad()
def top_k_examples(
    model: HookedRootModule,
    images: torch.Tensor,
    hook_name: str,
    channel: int,
    k: int = 9,
    *,
    field: ReceptiveField | None = None,
    batch_size: int = 256,
) -> DatasetExamples:
    """The ``k`` images that activate ``channel`` at ``hook_name`` most, with their crops.

    images: [n, channels, height, width], the data set, on the model's device.
    channel: a channel of a conv activation [batch, channels, h, w], or a unit of a dense one
        [batch, units]. A conv channel's activation per image is its max over positions.
    field: the receptive field of one unit of the layer; None computes it with
        ``receptive_field(layers_before(model, hook_name, images))``. Only used for conv channels.
    Ties keep the earlier image first. The model runs in eval mode up to the hook point; its
    mode is restored afterwards; ``images`` is not modified.
    """
    check_model(model, HookedRootModule, [hook_name])
    check_tensor("images", images, ["n", "channels", "height", "width"], dtype="float")
    check_positive_int("k", k)
    check_positive_int("batch_size", batch_size)
    check_non_negative_int("channel", channel)
    if k > images.shape[0]:
        raise ValueError(f"k must be at most the number of images ({images.shape[0]}), got {k}")
    if field is not None and not isinstance(field, ReceptiveField):
        raise TypeError(f"field must be None or a ReceptiveField, got {type(field).__name__}")
    best, where = [], []
    with eval_mode(model):
        for start in range(0, images.shape[0], batch_size):
            acts = read_activation(model, images[start:start + batch_size], hook_name)
            if acts.ndim not in (2, 4):
                raise ValueError(f"the activation at {hook_name!r} must be [batch, channels, h, w] or "
                                 f"[batch, units], got {list(acts.shape)}")
            if not channel < acts.shape[1]:
                raise ValueError(f"channel must be below {acts.shape[1]} for {hook_name!r}, got {channel}")
            maps = acts[:, channel]
            if maps.ndim == 1:
                best.append(maps)
                continue
            flat = maps.flatten(1)
            value, arg = flat.max(dim=1)
            best.append(value)
            where.append(torch.stack([arg // maps.shape[-1], arg % maps.shape[-1]], dim=1))
    scores = torch.cat(best)
    # A stable sort of the negated scores keeps ties in data-set order.
    order = torch.sort(-scores, stable=True).indices[:k]
    chosen = images[order.to(images.device)]
    if not where:
        return DatasetExamples(indices=order, activations=scores[order], images=chosen, positions=None, crops=None)
    positions = torch.cat(where)[order]
    field = receptive_field(layers_before(model, hook_name, images)) if field is None else field
    crops = torch.stack([_crop(image, field.box(int(y), int(x))) for image, (y, x) in zip(chosen, positions)])
    return DatasetExamples(indices=order, activations=scores[order], images=chosen, positions=positions, crops=crops)


def _crop(image: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """image[:, top:bottom, left:right] with zeros outside the image. image: [c, h, w]."""
    top, left, bottom, right = box
    h, w = image.shape[-2:]
    pad_top, pad_left = max(0, -top), max(0, -left)
    padded = F.pad(image, (pad_left, max(0, right - w), pad_top, max(0, bottom - h)))
    return padded[:, top + pad_top:bottom + pad_top, left + pad_left:right + pad_left]


def _geometry(name: str, layer: object) -> LayerGeometry:
    """(kernel, stride, padding) of a conv or pool module or tuple, with the conv's dilation folded
    into an effective kernel size."""
    if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        def square(attr: str) -> int:
            value = getattr(layer, attr)
            if isinstance(value, str):
                raise ValueError(f"{name}: padding={value!r} is not supported; give the padding as numbers")
            a, b = (value, value) if isinstance(value, int) else value
            if a != b:
                raise ValueError(f"{name}: {attr} must be the same along both axes, got {value!r}")
            return int(a)

        kernel, stride, padding = square("kernel_size"), square("stride"), square("padding")
        dilation = square("dilation") if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)) else 1
        return dilation * (kernel - 1) + 1, stride, padding
    if (isinstance(layer, tuple) and len(layer) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) for v in layer)
            and layer[0] >= 1 and layer[1] >= 1 and layer[2] >= 0):
        return layer
    raise TypeError(f"{name} must be an nn.Conv2d, nn.MaxPool2d or nn.AvgPool2d, or a tuple "
                    f"(kernel_size >= 1, stride >= 1, padding >= 0), got {layer!r}")
