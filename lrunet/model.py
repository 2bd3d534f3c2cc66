"""The LruNet network (Köpüklü et al. 2019, "Convolutional Neural Networks with Layer Reuse").

Built only from an `LruNetConfig`. The computation is the one the paper's released code performs
(LRUNET_SPEC.md §1); module names follow the reference so its checkpoints load strictly:

    features    stem: 3x3 conv stride 2 (no bias) -> BN -> ReLU, tiled to the stage-1 width
    stage1..4   one LruBlock each; max-pool after stages 1, 2 and 4; the tensor is duplicated
                ([x, x]) on entry to stages 2, 3 and 4
                (tied: stageS.dw, stageS.pw; untied or -k<k>: stageS.dw_list.i, stageS.pw_list.i;
                -reg[<g>]: stageS.reg_list.i, one per pass)
    classifier  grouped 1x1 conv -> BN -> ReLU -> Dropout -> 1x1 conv (bias) -> ReLU -> avg pool

The reference's ReLU on the class maps (spec §6.1) is kept: numbers must match the paper's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lrunet import fast
from lrunet.config import NUM_STAGES, LruNetConfig
from lrunet.fast import autocast_for, memory_format_for, prepare_for_device

__all__ = [
    "LruBlock",
    "LruNet",
    "autocast_for",
    "build_model",
    "channel_shuffle",
    "memory_format_for",
    "prepare_for_device",
    "shuffle_permutation",
    "swap_shuffle",
]


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's interleave: reshape channels to (groups, C/groups), transpose, flatten."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def swap_shuffle(x: torch.Tensor) -> torch.Tensor:
    """The reference's shuffle: swap the two channel halves, then interleave with 2 groups.

    Output channel 2k is input channel C/2 + k and 2k+1 is input channel k; unlike the plain
    2-group interleave this permutation has no fixed point (paper §2.1).
    """
    b, c, h, w = x.shape
    return x.view(b, 2, c // 2, h, w).flip(1).transpose(1, 2).reshape(b, c, h, w)


def shuffle_permutation(cfg: LruNetConfig, channels: int) -> list[int] | None:
    """out[i] = in[perm[i]] for the config's shuffle on `channels` channels (None: no shuffle)."""
    idx = torch.arange(channels, dtype=torch.float32).view(1, channels, 1, 1)
    if cfg.shuffle == "none":
        return None
    if cfg.shuffle == "swap":
        out = swap_shuffle(idx)
    else:
        out = channel_shuffle(idx, cfg.shuffle_groups)
    return [int(v) for v in out.flatten().tolist()]


class LruBlock(nn.Module):
    """One stage: a depthwise 3x3 (F -> 2F) and a grouped 1x1 (2F -> F) applied `reuse` times.

    Pass i computes relu(BN_pw[i](pw(BN_dw[i](dw(r)))) + r) with fresh BatchNorms per pass and the
    channel shuffle between passes (none after the last). With sharing "untied", every pass gets
    its own dw and pw (paper Table 4) instead of reusing one pair; with `share_k` = k > 0, pass i
    uses pair i // k of ceil(reuse / k) (DACNN_SPEC.md §5.1). With `regulator` = g > 0 pass i
    computes relu(reg[i](BN_pw[i](...)) + r), reg[i] an unshared 1x1 F -> F conv of g groups.

    `share` is the number of passes per pair (pass i uses pair i // share); `tied` means one
    pair stored as `dw`/`pw` (the reference's names), otherwise the pairs are `dw_list`/`pw_list`.
    """

    def __init__(
        self,
        channels: int,
        reuse: int,
        groups: int,
        shuffle: str,
        shuffle_groups: int,
        tied: bool = True,
        share_k: int = 0,
        regulator: int = 0,
    ) -> None:
        super().__init__()
        if share_k and not tied:
            raise ValueError("share_k: only with tied sharing (untied is share_k 1)")
        self.reuse = reuse
        self.shuffle = shuffle
        self.shuffle_groups = shuffle_groups
        self.share = (min(share_k, reuse) if share_k else reuse) if tied else 1
        self.tied = tied and not share_k
        self.regulator = regulator

        def dw() -> nn.Conv2d:
            return nn.Conv2d(channels, 2 * channels, 3, padding=1, groups=channels, bias=False)

        def pw() -> nn.Conv2d:
            return nn.Conv2d(2 * channels, channels, 1, groups=groups, bias=False)

        if self.tied:
            self.dw = dw()
            self.pw = pw()
        else:
            pairs = -(-reuse // self.share)
            self.dw_list = nn.ModuleList(dw() for _ in range(pairs))
            self.pw_list = nn.ModuleList(pw() for _ in range(pairs))
        self.dw_bn_list = nn.ModuleList(nn.BatchNorm2d(2 * channels) for _ in range(reuse))
        self.pw_bn_list = nn.ModuleList(nn.BatchNorm2d(channels) for _ in range(reuse))
        if regulator:
            self.reg_list = nn.ModuleList(
                nn.Conv2d(channels, channels, 1, groups=regulator, bias=False)
                for _ in range(reuse)
            )
            self.reset_regulators()

    def pair(self, i: int) -> tuple[nn.Conv2d, nn.Conv2d]:
        """The dw and pw convs of pass i."""
        if self.tied:
            return self.dw, self.pw
        j = i // self.share
        return self.dw_list[j], self.pw_list[j]

    def reset_regulators(self) -> None:
        """Every regulator to the identity (a random init would scramble the residual branch)."""
        for reg in getattr(self, "reg_list", ()):
            nn.init.dirac_(reg.weight, groups=self.regulator)

    def _shuffle(self, x: torch.Tensor) -> torch.Tensor:
        if self.shuffle == "swap":
            return swap_shuffle(x)
        if self.shuffle in ("plain", "group"):
            return channel_shuffle(x, self.shuffle_groups)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu":
            return fast.block_forward(self, x)
        return self.forward_plain(x)

    def forward_plain(self, x: torch.Tensor) -> torch.Tensor:
        """The passes written as the reference writes them (the GPU path; the CPU takes
        `lrunet.fast.block_forward`, the same function computed faster)."""
        for i in range(self.reuse):
            dw, pw = self.pair(i)
            t = self.pw_bn_list[i](pw(self.dw_bn_list[i](dw(x))))
            if self.regulator:
                t = self.reg_list[i](t)
            x = F.relu(t + x)
            if i < self.reuse - 1:
                x = self._shuffle(x)
        return x


class LruNet(nn.Module):
    """Layer Reuse Network. `LruNet(LruNetConfig())` is the paper's 8-LruNet-1x for CIFAR-10."""

    def __init__(self, cfg: LruNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        widths = cfg.stage_widths
        self.stem_repeat = widths[0] // cfg.stem_width
        self.features = nn.Sequential(
            nn.Conv2d(cfg.in_channels, cfg.stem_width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(cfg.stem_width),
            nn.ReLU(inplace=True),
        )
        tied = cfg.sharing == "tied"
        for s in range(NUM_STAGES):
            block = LruBlock(
                widths[s],
                cfg.reuse[s],
                cfg.groups,
                cfg.shuffle,
                cfg.shuffle_groups,
                tied,
                cfg.share_k,
                cfg.regulator,
            )
            self.add_module(f"stage{s + 1}", block)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.classifier = nn.Sequential(
            nn.Conv2d(widths[-1], cfg.head_width, 1, groups=cfg.groups, bias=False),
            nn.BatchNorm2d(cfg.head_width),
            nn.ReLU(inplace=True),
            nn.Dropout(cfg.dropout),
            nn.Conv2d(cfg.head_width, cfg.num_classes, 1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The reference init: kaiming_normal_(fan_out) on every conv, BN at gamma 1, beta 0;
        then the regulators (if any) to the identity."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, LruBlock):
                m.reset_regulators()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        if self.stem_repeat > 1:
            x = x.repeat(1, self.stem_repeat, 1, 1)
        x = self.pool(self.stage1(x))
        x = self.pool(self.stage2(torch.cat([x, x], 1)))
        x = self.stage3(torch.cat([x, x], 1))
        return self.pool(self.stage4(torch.cat([x, x], 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        head = self.classifier
        x = head[2](head[1](head[0](x)))
        # dropout draws its mask in memory order: make it NCHW so that a channels_last model
        # drops the same units as a contiguous one for the same seed (the head is tiny)
        x = head[3](x.contiguous())
        return head[6](head[5](head[4](x))).flatten(1)

    def num_params(self) -> int:
        """Trainable parameters, each shared tensor counted once."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def build_model(cfg: LruNetConfig | str, **geometry: int) -> LruNet:
    """An LruNet from a config, or from an architecture name plus dataset geometry."""
    if isinstance(cfg, str):
        from lrunet.config import parse_name

        cfg = parse_name(cfg, **geometry)
    return LruNet(cfg)
