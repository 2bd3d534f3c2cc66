"""The MobileNet and MobileNetV2 networks of the Table 7 baselines, built from their configs.

Configs, names, counts and the list of departures from the reference are in
`lrunet.families.mobilenet`. Based on okankop/CNN-layer-reuse (MIT, Copyright (c) 2017 Okan
Köpüklü), `models/mobilenet.py` and `models/mobilenetv2.py`: the same layers, initialisation
and parameter names (its checkpoints load), with an `nn.AdaptiveAvgPool2d(1)` module as the
final pool.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

DROPOUT = 0.2  # fixed in the reference, before the Linear head


def conv_bn(inp: int, oup: int, stride: int, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup), act(inplace=True)
    )


class Block(nn.Module):
    """Depthwise 3x3 + pointwise 1x1, each followed by BN and ReLU."""

    def __init__(self, in_planes: int, out_planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, in_planes, 3, stride, 1, groups=in_planes, bias=False)
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv2 = nn.Conv2d(in_planes, out_planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)))


class MobileNet(nn.Module):
    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg
        blocks = [Block(cin, cout, s) for cin, cout, s in cfg.blocks]
        self.features = nn.Sequential(conv_bn(cfg.in_channels, cfg.stem_width, 1), *blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(DROPOUT), nn.Linear(cfg.last_width, cfg.num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class InvertedResidual(nn.Module):
    """[1x1 expansion,] depthwise 3x3, linear 1x1; a residual add when shapes allow."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        expand = (
            []
            if expand_ratio == 1
            else [
                nn.Conv2d(inp, hidden, 1, bias=False),
                nn.BatchNorm2d(hidden),
                nn.ReLU6(inplace=True),
            ]
        )
        self.conv = nn.Sequential(
            *expand,
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, oup, 1, bias=False),
            nn.BatchNorm2d(oup),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg
        self.features = nn.Sequential(
            conv_bn(cfg.in_channels, cfg.stem_width, 1, nn.ReLU6),
            *(InvertedResidual(cin, cout, s, t) for cin, cout, s, t in cfg.blocks),
            nn.Sequential(
                nn.Conv2d(cfg.blocks[-1][1], cfg.last_width, 1, bias=False),
                nn.BatchNorm2d(cfg.last_width),
                nn.ReLU6(inplace=True),
            ),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(DROPOUT), nn.Linear(cfg.last_width, cfg.num_classes)
        )
        self._initialize_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))

    def _initialize_weights(self) -> None:
        """The reference's: He-normal convs (fan-out), unit BN, N(0, 0.01) Linear weights."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / n))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
