"""The ShuffleNet and ShuffleNetV2 networks of the Table 7 baselines, built from their configs.

Configs, names, counts and the list of departures from the reference are in
`lrunet.families.shufflenet`. Based on okankop/CNN-layer-reuse (MIT, Copyright (c) 2017 Okan
Köpüklü), `models/shufflenet.py` and `models/shufflenetv2.py`: the same layers and parameter
names (its checkpoints load). The channel shuffle divides with `//` (the reference's `C/g`
float crashes `view`), as torchvision's `channel_shuffle` does; the final pool is an
`nn.AdaptiveAvgPool2d(1)` module; a basic block's split point is fixed at construction (the
reference reads the same number off `x.size(1)`), which keeps traces and exports free of it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """[N, C, H, W] -> [N, g, C/g, H, W] -> transpose -> [N, C, H, W]."""
    n, c, h, w = x.size()
    x = x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous()
    return x.view(n, c, h, w)


class ShuffleBlock(nn.Module):
    def __init__(self, groups: int = 2) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups)


class Bottleneck(nn.Module):
    """Grouped 1x1, shuffle, depthwise 3x3, grouped 1x1; stride 2 concatenates an average-
    pooled shortcut, stride 1 adds the input."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, groups: int, mid: int):
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(in_planes, mid, 1, groups=groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.shuffle1 = ShuffleBlock(groups)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_planes, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        pool = [nn.AvgPool2d(3, stride=2, padding=1)] if stride == 2 else []
        self.shortcut = nn.Sequential(*pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.shuffle1(F.relu(self.bn1(self.conv1(x))))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        res = self.shortcut(x)
        return F.relu(torch.cat([out, res], 1) if self.stride == 2 else out + res)


class ShuffleNet(nn.Module):
    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg
        stem = cfg.planes[0]
        self.conv1 = nn.Conv2d(cfg.in_channels, stem, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        blocks = [Bottleneck(cin, cout, s, cfg.groups, mid) for cin, cout, s, mid in cfg.blocks]
        starts = [i for i, b in enumerate(cfg.blocks) if b[2] == 2] + [len(blocks)]
        self.layer1, self.layer2, self.layer3 = (
            nn.Sequential(*blocks[a:b]) for a, b in zip(starts, starts[1:])
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(cfg.planes[-1], cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(torch.flatten(self.pool(out), 1))


def _conv_bn(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1):
    conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)
    return conv, nn.BatchNorm2d(cout)


class BasicBlock(nn.Module):
    """Split the channels in half; 1x1, depthwise 3x3, 1x1 on the second half; concatenate and
    shuffle with 2 groups."""

    def __init__(self, in_channels: int, split_ratio: float = 0.5) -> None:
        super().__init__()
        self.split = c = int(in_channels * split_ratio)  # fixed by the input width
        self.conv1, self.bn1 = _conv_bn(c, c)
        self.conv2, self.bn2 = _conv_bn(c, c, 3, groups=c)
        self.conv3, self.bn3 = _conv_bn(c, c)
        self.shuffle = ShuffleBlock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x[:, : self.split], x[:, self.split :]
        out = F.relu(self.bn1(self.conv1(x2)))
        out = self.bn2(self.conv2(out))
        out = F.relu(self.bn3(self.conv3(out)))
        return self.shuffle(torch.cat([x1, out], 1))


class DownBlock(nn.Module):
    """Two stride-2 branches (depthwise 3x3 + 1x1; 1x1 + depthwise 3x3 + 1x1), concatenated and
    shuffled with 2 groups."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = out_channels // 2
        self.conv1, self.bn1 = _conv_bn(in_channels, in_channels, 3, 2, groups=in_channels)
        self.conv2, self.bn2 = _conv_bn(in_channels, mid)
        self.conv3, self.bn3 = _conv_bn(in_channels, mid)
        self.conv4, self.bn4 = _conv_bn(mid, mid, 3, 2, groups=mid)
        self.conv5, self.bn5 = _conv_bn(mid, mid)
        self.shuffle = ShuffleBlock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = F.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        out2 = F.relu(self.bn3(self.conv3(x)))
        out2 = F.relu(self.bn5(self.conv5(self.bn4(self.conv4(out2)))))
        return self.shuffle(torch.cat([out1, out2], 1))


class ShuffleNetV2(nn.Module):
    def __init__(self, cfg) -> None:
        from lrunet.families.shufflenet import SHUFFLENETV2_BLOCKS, SHUFFLENETV2_STEM

        super().__init__()
        self.cfg = cfg
        widths = cfg.stage_widths
        self.conv1, self.bn1 = _conv_bn(cfg.in_channels, SHUFFLENETV2_STEM, 3)
        cin, layers = SHUFFLENETV2_STEM, []
        for cout, n in zip(widths[:3], SHUFFLENETV2_BLOCKS):
            layers.append(
                nn.Sequential(DownBlock(cin, cout), *(BasicBlock(cout) for _ in range(n)))
            )
            cin = cout
        self.layer1, self.layer2, self.layer3 = layers
        self.conv2, self.bn2 = _conv_bn(widths[2], widths[3])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(widths[3], cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.linear(torch.flatten(self.pool(out), 1))
