"""A straightforward eager restatement of LruNet, the yardstick for the fast model.

Written from LRUNET_SPEC.md §1 alone, the way the paper's released code computes it: contiguous
(NCHW) tensors, the paper's ops in the paper's order, one module call per op, an explicit
channel-shuffle copy between passes and `torch.cat([x, x])` at the transitions. Nothing here is
tuned. `benchmarks/train_step.py` times it against `lrunet.model.LruNet` and
`tests/test_fast_model.py` checks that both compute the same function.

Module names and shapes are the reference's (and `lrunet.model.LruNet`'s), so one `state_dict`
loads strictly into either.
"""

from __future__ import annotations

import torch
from torch import nn

from lrunet.config import LruNetConfig


def _shuffle(x: torch.Tensor, variant: str, groups: int) -> torch.Tensor:
    """The channel shuffle between passes (spec §1), as a copy."""
    if variant == "none":
        return x
    b, c, h, w = x.shape
    if variant == "swap":
        # swap the two halves, then ShuffleNet's interleave with 2 groups
        x = torch.cat([x[:, c // 2 :], x[:, : c // 2]], 1)
        groups = 2
    elif variant == "plain":
        groups = 2
    x = x.view(b, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(b, c, h, w)


class ReferenceBlock(nn.Module):
    """One stage: dw 3x3 (F -> 2F) -> BN -> grouped pw 1x1 (2F -> F) -> BN -> + r -> ReLU,
    `reuse` times, shuffling between passes."""

    def __init__(self, f: int, reuse: int, cfg: LruNetConfig) -> None:
        super().__init__()
        self.reuse = reuse
        self.cfg = cfg

        def dw() -> nn.Conv2d:
            return nn.Conv2d(f, 2 * f, kernel_size=3, stride=1, padding=1, groups=f, bias=False)

        def pw() -> nn.Conv2d:
            return nn.Conv2d(2 * f, f, kernel_size=1, groups=cfg.groups, bias=False)

        if cfg.sharing == "tied":
            self.dw = dw()
            self.pw = pw()
        else:
            self.dw_list = nn.ModuleList([dw() for _ in range(reuse)])
            self.pw_list = nn.ModuleList([pw() for _ in range(reuse)])
        self.dw_bn_list = nn.ModuleList([nn.BatchNorm2d(2 * f) for _ in range(reuse)])
        self.pw_bn_list = nn.ModuleList([nn.BatchNorm2d(f) for _ in range(reuse)])
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.reuse):
            dw = self.dw if self.cfg.sharing == "tied" else self.dw_list[i]
            pw = self.pw if self.cfg.sharing == "tied" else self.pw_list[i]
            out = dw(x)
            out = self.dw_bn_list[i](out)
            out = pw(out)
            out = self.pw_bn_list[i](out)
            out = out + x
            out = self.relu(out)
            if i < self.reuse - 1:
                out = _shuffle(out, self.cfg.shuffle, self.cfg.shuffle_groups)
            x = out
        return x


class ReferenceLruNet(nn.Module):
    """LruNet as the paper's code writes it (spec §1), for any `LruNetConfig`."""

    def __init__(self, cfg: LruNetConfig) -> None:
        super().__init__()
        widths = cfg.stage_widths
        self.stem_repeat = widths[0] // cfg.stem_width
        self.features = nn.Sequential(
            nn.Conv2d(cfg.in_channels, cfg.stem_width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(cfg.stem_width),
            nn.ReLU(),
        )
        self.stage1 = ReferenceBlock(widths[0], cfg.reuse[0], cfg)
        self.stage2 = ReferenceBlock(widths[1], cfg.reuse[1], cfg)
        self.stage3 = ReferenceBlock(widths[2], cfg.reuse[2], cfg)
        self.stage4 = ReferenceBlock(widths[3], cfg.reuse[3], cfg)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.classifier = nn.Sequential(
            nn.Conv2d(widths[3], cfg.head_width, 1, groups=cfg.groups, bias=False),
            nn.BatchNorm2d(cfg.head_width),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Conv2d(cfg.head_width, cfg.num_classes, 1),
            nn.ReLU(),
        )
        self.avgpool = nn.AvgPool2d(2, stride=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(x)
        if self.stem_repeat > 1:
            out = torch.cat([out] * self.stem_repeat, 1)
        out = self.stage1(out)
        out = self.maxpool(out)
        out = torch.cat([out, out], 1)
        out = self.stage2(out)
        out = self.maxpool(out)
        out = torch.cat([out, out], 1)
        out = self.stage3(out)
        out = torch.cat([out, out], 1)
        out = self.stage4(out)
        out = self.maxpool(out)
        out = self.classifier(out)
        out = self.avgpool(out)
        return out.view(out.size(0), -1)
