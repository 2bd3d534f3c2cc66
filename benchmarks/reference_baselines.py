"""A straightforward eager MobileNetV2, the yardstick for the project's Table 7 baseline.

Written torchvision-style from the project's MobileNetV2 config tables (`cfg.blocks`: in, out,
stride and expansion per block; `stem_width`, `last_width`; LRUNET_SPEC.md "Table 7 -
baselines"): a conv-BN-ReLU6 stem at stride 1, the inverted residuals ([1x1 expansion + BN +
ReLU6,] depthwise 3x3 + BN + ReLU6, linear 1x1 + BN, a residual add when stride 1 and in == out),
a 1x1 conv-BN-ReLU6 to `last_width`, global average, Dropout, Linear. Plain modules, contiguous
(NCHW) tensors, nothing tuned; `benchmarks/train_step.py` times it against
`lrunet.registry.build_model` run as the trainer runs it (channels_last). Module names are the
project's (`features.<i>.conv.<j>`, `classifier.1`): one `state_dict` loads strictly into either.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

DROPOUT = 0.2


class ConvBNReLU6(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        pad = (kernel - 1) // 2
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers += list(ConvBNReLU6(cin, hidden, 1))
        layers += list(ConvBNReLU6(hidden, hidden, 3, stride, groups=hidden))
        layers += [nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class ReferenceMobileNetV2(nn.Module):
    def __init__(self, cfg: Any) -> None:
        super().__init__()
        self.cfg = cfg
        blocks = [InvertedResidual(cin, cout, s, e) for cin, cout, s, e in cfg.blocks]
        self.features = nn.Sequential(
            ConvBNReLU6(cfg.in_channels, cfg.stem_width, 3),
            *blocks,
            ConvBNReLU6(cfg.blocks[-1][1], cfg.last_width, 1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(DROPOUT), nn.Linear(cfg.last_width, cfg.num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.classifier(x.view(x.size(0), -1))
