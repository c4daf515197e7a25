"""`Detector`: a small CNN from the stacked BEV input to dense CenterNet-style maps.

    x = detector_input(stack, cfg.raster)             # (B, 2K + 3, H, W)
    out = detector(x)                                  # DenseOutput on the G x G grid
    detections = decode(out, cfg.raster, cfg.stride, cfg.slots)

Backbone: stages of (strided 3x3 conv, residual 3x3 block), each halving the
resolution. Neck: an FPN-style top-down path that upsamples the deepest stage
back to the output stride, adding 1x1 lateral projections on the way. Head:
`perception.heads.DenseHead`.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from perception.config import DetectorConfig
from perception.heads import DenseHead, DenseOutput, conv_norm_relu


class ResidualBlock(nn.Module):
    """x + conv(conv(x)): depth without making the gradient path longer."""

    def __init__(self, channels: int, group_size: int):
        super().__init__()
        self.conv1 = conv_norm_relu(channels, channels, group_size)
        self.conv2 = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.GroupNorm(channels // group_size, channels),
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x + self.conv2(self.conv1(x)))


class Backbone(nn.Module):
    """Stage s (0-based) outputs `widths[s]` channels at stride 2^(s+1)."""

    def __init__(self, in_channels: int, widths: tuple[int, ...], group_size: int):
        super().__init__()
        stages, c_in = [], in_channels
        for width in widths:
            stages.append(
                nn.Sequential(conv_norm_relu(c_in, width, group_size, stride=2), ResidualBlock(width, group_size))
            )
            c_in = width
        self.stages = nn.ModuleList(stages)

    def forward(self, x: Tensor) -> list[Tensor]:
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs


class Neck(nn.Module):
    """Top-down path from the deepest stage to the output stride (FPN without extra levels)."""

    def __init__(self, widths: tuple[int, ...], first_stage: int, width: int, group_size: int):
        super().__init__()
        self.first_stage = first_stage
        self.lateral = nn.ModuleList(nn.Conv2d(w, width, 1) for w in widths[first_stage:])
        self.smooth = conv_norm_relu(width, width, group_size)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, stages: list[Tensor]) -> Tensor:
        used = stages[self.first_stage :]
        top = self.lateral[-1](used[-1])
        for level in range(len(used) - 2, -1, -1):
            top = self.upsample(top) + self.lateral[level](used[level])
        return self.smooth(top)  # (B, width, G, G)


@dataclass(frozen=True)
class DetectorOutputs:
    """Everything one backbone pass gives (for objectives that need several parts).

    Attributes:
        dense: the raw head maps.
        features: [B, F, G, G] float, the stride-`stride` feature map.
        embedding: [B, D] float, pooled backbone embedding.
    """

    dense: DenseOutput
    features: Tensor
    embedding: Tensor


class Detector(nn.Module):
    """Stacked BEV frames + map `[B, 2K + 3, H, W]` -> `DenseOutput` on the G x G grid.

    Attributes:
        cfg: the config that built it.
        feature_channels: F, channels of `features(x)` (for heads built on top of it).
        embed_dim: D, size of `embed(x)`.
    """

    def __init__(self, cfg: DetectorConfig = DetectorConfig()):
        super().__init__()
        self.cfg = cfg
        self.feature_channels = cfg.neck_width
        self.embed_dim = cfg.embed_dim
        self.backbone = Backbone(cfg.in_channels, cfg.widths, cfg.group_size)
        first_stage = cfg.stride.bit_length() - 2  # stage s has stride 2^(s+1)
        self.neck = Neck(cfg.widths, first_stage, cfg.neck_width, cfg.group_size)
        self.head = DenseHead(cfg.neck_width, cfg.head_width, cfg.group_size, cfg.prior_existence)
        self.embed_proj = nn.Linear(cfg.widths[-1], cfg.embed_dim)

    def _check_input(self, x: Tensor) -> None:
        size, channels = self.cfg.raster.size, self.cfg.in_channels
        if x.dim() != 4 or x.shape[1] != channels or x.shape[2] != size or x.shape[3] != size:
            raise ValueError(f"Detector input x: expected shape [B, {channels}, {size}, {size}], got {tuple(x.shape)}")

    def outputs(self, x: Tensor) -> DetectorOutputs:
        """Dense maps, features and embedding from one backbone pass."""
        self._check_input(x)
        stages = self.backbone(x)
        features = self.neck(stages)  # (B, F, G, G)
        embedding = self.embed_proj(stages[-1].mean(dim=(2, 3)))  # (B, D)
        return DetectorOutputs(dense=self.head(features), features=features, embedding=embedding)

    def forward(self, x: Tensor) -> DenseOutput:
        self._check_input(x)
        return self.head(self.neck(self.backbone(x)))

    def features(self, x: Tensor) -> Tensor:
        """[B, F, G, G] float: the stride-`stride` feature map the head reads."""
        self._check_input(x)
        return self.neck(self.backbone(x))

    def embed(self, x: Tensor) -> Tensor:
        """[B, D] float: the deepest stage, average-pooled and projected."""
        self._check_input(x)
        return self.embed_proj(self.backbone(x)[-1].mean(dim=(2, 3)))


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
