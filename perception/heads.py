"""The dense head: raw per-cell maps on the G x G output grid (`DenseOutput`).

One 1x1 conv emits every map as one packed tensor; `HEAD_LAYOUT` names its
channel slices (as openpilot's model constants do), so nothing downstream
reads magic indices. The maps are raw: `perception.decode` is the one place
they become probabilities, metres and covariances.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from core.contracts import TensorContract, spec
from sim.state import NUM_CLASSES

# (field, channels) in packed order; a field of 1 channel is stored without its channel axis.
HEAD_LAYOUT: tuple[tuple[str, int], ...] = (
    ("existence_logit", 1),
    ("class_logits", NUM_CLASSES),
    ("offset", 2),
    ("position_log_std", 2),
    ("position_corr", 1),
    ("velocity", 2),
    ("velocity_log_std", 2),
    ("velocity_corr", 1),
    ("heading", 2),
    ("heading_log_concentration", 1),
    ("log_size", 2),
)
HEAD_CHANNELS = sum(channels for _, channels in HEAD_LAYOUT)


def _slices() -> dict[str, slice]:
    out, start = {}, 0
    for name, channels in HEAD_LAYOUT:
        out[name] = slice(start, start + channels)
        start += channels
    return out


HEAD_SLICES = _slices()


@dataclass(frozen=True)
class DenseOutput(TensorContract):
    """Raw head maps on the G x G grid; cell (i, j) covers raster rows
    [i s, (i + 1) s) and columns [j s, (j + 1) s) for stride s.

    Attributes:
        existence_logit: [B, G, G] float, logit of "an object's centre lies in this cell".
        class_logits: [B, 3, G, G] float, logits of (vehicle, pedestrian, cyclist).
        offset: [B, 2, G, G] float, centre minus the cell centre along ego (x, y),
            in cells (unbounded, so a centre may sit in a neighbouring cell).
        position_log_std: [B, 2, G, G] float, log std of the centre along ego x and y, log m.
        position_corr: [B, G, G] float, pre-tanh correlation of the centre's x and y.
        velocity: [B, 2, G, G] float, absolute velocity along ego (x, y), m/s.
        velocity_log_std: [B, 2, G, G] float, log std of the velocity, log m/s.
        velocity_corr: [B, G, G] float, pre-tanh correlation of the velocity's x and y.
        heading: [B, 2, G, G] float, unnormalised (cos, sin) of the heading in the ego frame.
        heading_log_concentration: [B, G, G] float, log of the von Mises concentration.
        log_size: [B, 2, G, G] float, log (length, width), log m.
    """

    existence_logit: Tensor = spec(("B", "G", "G"))
    class_logits: Tensor = spec(("B", NUM_CLASSES, "G", "G"))
    offset: Tensor = spec(("B", 2, "G", "G"))
    position_log_std: Tensor = spec(("B", 2, "G", "G"))
    position_corr: Tensor = spec(("B", "G", "G"))
    velocity: Tensor = spec(("B", 2, "G", "G"))
    velocity_log_std: Tensor = spec(("B", 2, "G", "G"))
    velocity_corr: Tensor = spec(("B", "G", "G"))
    heading: Tensor = spec(("B", 2, "G", "G"))
    heading_log_concentration: Tensor = spec(("B", "G", "G"))
    log_size: Tensor = spec(("B", 2, "G", "G"))

    @property
    def grid_size(self) -> int:
        return int(self.existence_logit.shape[-1])

    @classmethod
    def unpack(cls, packed: Tensor) -> DenseOutput:
        """Split a packed `[B, HEAD_CHANNELS, G, G]` tensor into named maps."""
        fields = {}
        for name, channels in HEAD_LAYOUT:
            part = packed[:, HEAD_SLICES[name]]
            fields[name] = part[:, 0] if channels == 1 else part
        return cls(**fields)


def conv_norm_relu(c_in: int, c_out: int, group_size: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv, GroupNorm, ReLU: the unit every part of the detector is built from."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(c_out // group_size, c_out),
        nn.ReLU(inplace=True),
    )


class DenseHead(nn.Module):
    """Shared 3x3 conv, then one 1x1 conv to every raw map."""

    def __init__(self, in_channels: int, width: int, group_size: int, prior_existence: float):
        super().__init__()
        self.trunk = conv_norm_relu(in_channels, width, group_size)
        self.out = nn.Conv2d(width, HEAD_CHANNELS, 1)
        nn.init.normal_(self.out.weight, std=0.01)
        nn.init.zeros_(self.out.bias)
        with torch.no_grad():
            # Most cells are empty: start near the prior so the focal loss is not
            # swamped by easy negatives in the first steps (RetinaNet's init).
            self.out.bias[HEAD_SLICES["existence_logit"]] = -math.log((1 - prior_existence) / prior_existence)
            self.out.bias[HEAD_SLICES["heading"].start] = 1.0  # a defined heading direction at init

    def forward(self, features: Tensor) -> DenseOutput:
        return DenseOutput.unpack(self.out(self.trunk(features)))  # (B, HEAD_CHANNELS, G, G) split
