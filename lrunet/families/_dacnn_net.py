"""The DACNN network, built from a `DacnnConfig` alone (grammar, sharing rules and every departure
from the release: `lrunet.families.dacnn`; the release's networks: DACNN_SPEC.md §1).

Module tree (parameter names, as `dead_params` reports them)::

    kernels.<i>            every 3x3 F->F conv, one Conv2d per distinct kernel, called at each use
    stem, stem_bn          res only: 3x3 in->F1 (no bias) + BN
    stages.<s>.<j>         vgg: a layer (conv if unshared: the stem or a transition; bn;
                           regulator); res: a block (transition; bn1, bn2; regulator; proj,
                           proj_bn; unused_bn, unused_bn1, unused_regulator under -release)
    unused_conv_fix        res `d` -release only: the release's dead 128->128 conv
    pool, avgpool, fc      MaxPool2d(2, ceil_mode=True) after every stage; global average; Linear

Layers get the kernel table as a forward argument rather than holding the shared Conv2d
themselves, so `state_dict` has one key per tensor (the release repeats a shared kernel under
every path that holds it) and `parameters()` lists each once either way.

Speed (benchmarks/RESULTS.md, "DACNN and Table 7 baselines"): in eval mode (running statistics)
every conv -> BN pair is one conv with the BN folded into its weights and bias, the same function
up to float rounding, differentiable in the same parameters: +13-31 % eval images/s on the CPU
at the trainer's eval batch of 500 (noise-level at 32-128). `forward_plain` is the
module-by-module pass (`count_by_hooks` uses it to see every module); a BN in training mode never
folds, so training makes the same module calls. ReLUs and the residual add are in place. A
training step is 68-83 % oneDNN convolutions (channels_last, `lrunet.fast.prepare_for_device`);
nothing else measured on the model side paid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lrunet.families.dacnn import CONV_FIX_WIDTH, DacnnConfig
from lrunet.fast import bn_affine


def dead_params(cfg: DacnnConfig) -> set[str]:
    """Names (as in `named_parameters()`) of the -release parameters that never get a gradient."""
    if not (cfg.release and cfg.body == "res"):
        return set()
    names = {"unused_conv_fix.weight"} if cfg.doubling else set()
    for s, n in enumerate(cfg.layout):
        for j in range(n):
            p = f"stages.{s}.{j}."
            if not cfg.doubling:
                names |= {p + "unused_bn.weight", p + "unused_bn.bias"}
            elif not cfg.regulator:
                names.add(p + "unused_regulator.weight")
            if cfg.doubling and j == 0 and cfg.transition(s):
                names |= {p + "unused_bn1.weight", p + "unused_bn1.bias"}
    return names


def rotate(x: torch.Tensor, shift: int = 1) -> torch.Tensor:
    """Cyclic channel rotation (the release's `swap`): output channel c is input c + shift mod C.
    Keeps the memory format (channels_last stays channels_last)."""
    return torch.roll(x, -shift, 1)


def regulator(channels: int, groups: int) -> nn.Conv2d:
    """A 1x1 F->F conv with `groups` groups and no bias, initialised to the identity ([P]: a random
    init would scramble the branch at the start of training)."""
    conv = nn.Conv2d(channels, channels, 1, groups=groups, bias=False)
    per = channels // groups
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[torch.arange(channels), torch.arange(channels) % per, 0, 0] = 1.0
    return conv


def _conv3(cin: int, cout: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, bias=bias)


def _conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d, x: torch.Tensor, fold: bool) -> torch.Tensor:
    """bn(conv(x)); with `fold` and `bn` in eval mode (running statistics), one conv whose weight
    and bias absorb the BN's affine map."""
    if not fold or bn.training or bn.running_mean is None or bn.running_var is None:
        return bn(conv(x))
    scale, shift = bn_affine(bn)
    bias = shift if conv.bias is None else conv.bias * scale + shift
    weight = conv.weight * scale.view(-1, 1, 1, 1)
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


def _conv_act_bn(
    conv: nn.Conv2d, bn: nn.BatchNorm2d, x: torch.Tensor, relubn: bool, fold: bool
) -> torch.Tensor:
    """conv, then BN and ReLU in the config's order (in-place ReLU: no backward needs its
    input); conv -> BN folded as in `_conv_bn`."""
    if relubn:
        return bn(F.relu(conv(x), inplace=True))
    return F.relu(_conv_bn(conv, bn, x, fold), inplace=True)


class VggLayer(nn.Module):
    """conv -> BN -> [regulator] -> ReLU (or conv -> ReLU -> BN -> [regulator] with -relubn); a
    bare layer (-release, Mix_Net's stage 5) is the conv [and regulator] alone."""

    def __init__(
        self, cin: int, cout: int, kernel: int | None, cfg: DacnnConfig, bare: bool = False
    ) -> None:
        super().__init__()
        self.kernel = -1 if kernel is None else kernel
        self.conv = _conv3(cin, cout, cfg.bias) if kernel is None else None
        self.bn = None if bare else nn.BatchNorm2d(cout)
        self.regulator = (
            regulator(cout, cfg.regulator) if cfg.regulator and kernel is not None else None
        )
        self.relubn = cfg.relubn

    def forward(self, x: torch.Tensor, kernels: nn.ModuleList) -> torch.Tensor:
        return self._run(x, kernels, fold=True)

    def forward_plain(self, x: torch.Tensor, kernels: nn.ModuleList) -> torch.Tensor:
        return self._run(x, kernels, fold=False)

    def _run(self, x: torch.Tensor, kernels: nn.ModuleList, fold: bool) -> torch.Tensor:
        conv = self.conv if self.kernel < 0 else kernels[self.kernel]
        if self.bn is None:
            x = conv(x)
            return x if self.regulator is None else self.regulator(x)
        if self.relubn:
            x = self.bn(F.relu(conv(x), inplace=True))
            return x if self.regulator is None else self.regulator(x)
        x = _conv_bn(conv, self.bn, x, fold)
        if self.regulator is not None:
            x = self.regulator(x)
        return F.relu(x, inplace=True)


class ResBlock(nn.Module):
    """h = act(bn1(conv_a(x))), [rot], bn2(conv_b(h)), [regulator], [rot];
    out = relu(h + [rot rot] shortcut(x)). conv_a is a transition (with a 1x1+BN projection
    shortcut) in the first block of a stage whose width changed, else a shared kernel."""

    def __init__(self, cin: int, cout: int, k1: int | None, k2: int, cfg: DacnnConfig) -> None:
        super().__init__()
        transition = k1 is None
        self.k1, self.k2 = (-1 if transition else k1), k2
        self.transition = _conv3(cin, cout, cfg.bias) if transition else None
        self.bn1 = nn.BatchNorm2d(cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.regulator = regulator(cout, cfg.regulator) if cfg.regulator else None
        self.proj = nn.Conv2d(cin, cout, 1, bias=False) if transition else None
        self.proj_bn = nn.BatchNorm2d(cout) if transition else None
        self.rot, self.relubn = cfg.rot, cfg.relubn
        if cfg.release:  # dead by design: created as in the release, never called
            if not cfg.doubling:
                self.unused_bn = nn.BatchNorm2d(cout)
            elif not cfg.regulator:
                self.unused_regulator = nn.Conv2d(cout, cout, 1, bias=False)
            if cfg.doubling and transition:
                self.unused_bn1 = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor, kernels: nn.ModuleList) -> torch.Tensor:
        return self._run(x, kernels, fold=True)

    def forward_plain(self, x: torch.Tensor, kernels: nn.ModuleList) -> torch.Tensor:
        return self._run(x, kernels, fold=False)

    def _run(self, x: torch.Tensor, kernels: nn.ModuleList, fold: bool) -> torch.Tensor:
        conv_a = self.transition if self.k1 < 0 else kernels[self.k1]
        h = _conv_act_bn(conv_a, self.bn1, x, self.relubn, fold)
        if self.rot:
            h = rotate(h)
        h = _conv_bn(kernels[self.k2], self.bn2, h, fold)
        if self.regulator is not None:
            h = self.regulator(h)
        if self.rot:
            h = rotate(h)
        s = x if self.proj is None else _conv_bn(self.proj, self.proj_bn, x, fold)
        if self.rot:
            s = rotate(s, 2)
        return F.relu(h.add_(s), inplace=True)


class DacnnNet(nn.Module):
    """A DACNN (vgg or res body) for `cfg`; `self.cfg` keeps the config."""

    def __init__(self, cfg: DacnnConfig) -> None:
        super().__init__()
        self.cfg = cfg
        plan, kernel_widths = cfg.kernel_plan()
        widths = cfg.stage_widths
        self.kernels = nn.ModuleList(_conv3(f, f, cfg.bias) for f in kernel_widths)
        self.res = cfg.body == "res"
        if self.res:
            self.stem = nn.Conv2d(cfg.in_channels, widths[0], 3, padding=1, bias=False)
            self.stem_bn = nn.BatchNorm2d(widths[0])
        stages = []
        for s, f in enumerate(widths):
            cin = cfg.in_channels if s == 0 else widths[s - 1]
            ids = list(plan[s])
            if self.res:
                first = [None] if cfg.transition(s) else []
                ks = first + ids  # two per block
                blocks = [
                    ResBlock(cin if ks[2 * j] is None else f, f, ks[2 * j], ks[2 * j + 1], cfg)
                    for j in range(cfg.layout[s])
                ]
            else:
                own = s == 0 or cfg.transition(s)
                ks = ([None] if own else []) + ids
                blocks = [
                    VggLayer(cin if k is None else f, f, k, cfg, bare=j == 0 and cfg.bare_first(s))
                    for j, k in enumerate(ks)
                ]
            stages.append(nn.ModuleList(blocks))
        self.stages = nn.ModuleList(stages)
        if self.res and cfg.release and cfg.doubling:
            self.unused_conv_fix = _conv3(CONV_FIX_WIDTH, CONV_FIX_WIDTH, False)
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, fold=True)

    def forward_plain(self, x: torch.Tensor) -> torch.Tensor:
        """The stem module by module; `count_by_hooks` also swaps every layer's forward for its
        forward_plain, so that it sees each conv and BN call."""
        return self._run(x, fold=False)

    def _run(self, x: torch.Tensor, fold: bool) -> torch.Tensor:
        kernels = self.kernels
        if self.res:
            x = _conv_act_bn(self.stem, self.stem_bn, x, self.cfg.relubn, fold)
        for stage in self.stages:
            for layer in stage:
                x = layer(x, kernels)
            x = self.pool(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))
