"""A straightforward eager restatement of the DACNN nets, the yardstick for the project's model.

Written from DACNN_SPEC.md §1-2 and §5.2 alone (the release code has no licence and is not
used): plain `nn.Conv2d` / `nn.BatchNorm2d` / `nn.ReLU` / `nn.MaxPool2d` modules, one module call
per op, contiguous (NCHW) tensors, nothing tuned. A shared ("anchored") kernel is one `nn.Conv2d`
object placed in every layer that uses it, the way the release shares it (so `state_dict()`
repeats it under every path and autograd sums its gradient over the uses); every use has its own
BN. The `-rot` rotation (output channel c = input c + 1 mod C) is a `torch.cat` of two channel
slices. `benchmarks/train_step.py` times it against `lrunet.families._dacnn_net.DacnnNet` after
checking that both compute the same function.

Module names are the release's kind (`conv1`, `bn1`, `shortcut`, `layers`, `linear`), not the
project's; `ReferenceDacnn.key_map` maps each `state_dict` key to the project's name. It covers
every DACNN option except `-release` (dead parameters, nothing to time).
"""

from __future__ import annotations

import torch
from torch import nn

from lrunet.families.dacnn import DacnnConfig


def swap(x: torch.Tensor) -> torch.Tensor:
    """The rotation by one channel: out[:, c] = x[:, (c + 1) % C]."""
    return torch.cat([x[:, 1:], x[:, :1]], 1)


class Kernels:
    """Which module each 3x3 F->F position uses (spec §5.2 `-t<scope>`, `-u<n>`): shared ones are
    created at their first use and numbered in that order."""

    def __init__(self, cfg: DacnnConfig) -> None:
        self.cfg = cfg
        self.by_key: dict[tuple, nn.Conv2d] = {}
        self.index: dict[int, int] = {}  # id(conv) -> number in order of first use

    def get(self, stage: int, position: int, width: int) -> nn.Conv2d:
        cfg = self.cfg
        if stage < cfg.untied_stages or cfg.scope == "none":
            key: tuple = ("own", stage, position)
        elif cfg.scope == "width":
            key = ("width", width)
        elif cfg.scope == "stage":
            key = ("stage", stage)
        else:  # g<k>: groups of k consecutive positions within a stage
            key = ("group", stage, position // int(cfg.scope[1:]))
        if key not in self.by_key:
            conv = nn.Conv2d(width, width, 3, padding=1, bias=cfg.bias)
            self.by_key[key] = conv
            self.index[id(conv)] = len(self.index)
        return self.by_key[key]


class VggLayer(nn.Module):
    """conv -> BN -> [regulator] -> ReLU, or conv -> ReLU -> BN -> [regulator] with -relubn."""

    def __init__(self, conv: nn.Conv2d, cout: int, reg: nn.Conv2d | None, relubn: bool) -> None:
        super().__init__()
        self.conv = conv
        self.bn = nn.BatchNorm2d(cout)
        self.regulator = reg
        self.relu = nn.ReLU()
        self.relubn = relubn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        if self.relubn:
            out = self.bn(self.relu(out))
            if self.regulator is not None:
                out = self.regulator(out)
            return out
        out = self.bn(out)
        if self.regulator is not None:
            out = self.regulator(out)
        return self.relu(out)


class BasicBlock(nn.Module):
    """Spec §1.4: h = act(bn1(conv1(x))); [rot]; h = bn2(conv2(h)); [regulator]; [rot];
    out = relu(h + [rot rot] shortcut(x)). act is ReLU after BN, or before it with -relubn."""

    def __init__(
        self,
        conv1: nn.Conv2d,
        conv2: nn.Conv2d,
        cin: int,
        cout: int,
        reg: nn.Conv2d | None,
        cfg: DacnnConfig,
    ) -> None:
        super().__init__()
        self.conv1 = conv1
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = conv2
        self.bn2 = nn.BatchNorm2d(cout)
        self.regulator = reg
        self.shortcut = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
            if cin != cout
            else None
        )
        self.relu = nn.ReLU()
        self.rot, self.relubn = cfg.rot, cfg.relubn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        if self.relubn:
            out = self.bn1(self.relu(out))
        else:
            out = self.relu(self.bn1(out))
        if self.rot:
            out = swap(out)
        out = self.bn2(self.conv2(out))
        if self.regulator is not None:
            out = self.regulator(out)
        if self.rot:
            out = swap(out)
        sc = x if self.shortcut is None else self.shortcut(x)
        if self.rot:
            sc = swap(swap(sc))
        return self.relu(out + sc)


class ReferenceDacnn(nn.Module):
    """A DACNN (vgg or res body) for any `DacnnConfig` without -release."""

    def __init__(self, cfg: DacnnConfig) -> None:
        super().__init__()
        if cfg.release:
            raise ValueError("ReferenceDacnn: -release (dead parameters) is not restated")
        self.cfg = cfg
        n = len(cfg.layout)  # `d`: doubling per stage, capped at 8x the start
        widths = [
            min(cfg.width << s, 8 * cfg.width) if cfg.doubling else cfg.width for s in range(n)
        ]
        kernels = Kernels(cfg)
        projects: dict[int, str] = {}  # id(module) -> the project's name for it

        def reg(f: int) -> nn.Conv2d | None:
            if not cfg.regulator:
                return None
            return nn.Conv2d(f, f, 1, groups=cfg.regulator, bias=False)

        self.res = cfg.body == "res"
        if self.res:
            self.conv1 = nn.Conv2d(cfg.in_channels, widths[0], 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(widths[0])
            self.relu = nn.ReLU()
            projects[id(self.conv1)], projects[id(self.bn1)] = "stem", "stem_bn"
        stages = []
        for s, f in enumerate(widths):
            cin = cfg.in_channels if s == 0 else widths[s - 1]
            layers = []
            if self.res:
                pos = 0
                for j in range(cfg.layout[s]):
                    prefix = f"stages.{s}.{j}"
                    if j == 0 and s > 0 and cin != f:  # a transition: unshared, own shortcut
                        conv1 = nn.Conv2d(cin, f, 3, padding=1, bias=cfg.bias)
                        projects[id(conv1)] = prefix + ".transition"
                        block_in = cin
                    else:
                        conv1 = kernels.get(s, pos, f)
                        pos, block_in = pos + 1, f
                    conv2 = kernels.get(s, pos, f)
                    pos += 1
                    block = BasicBlock(conv1, conv2, block_in, f, reg(f), cfg)
                    for name in ("bn1", "bn2", "regulator"):
                        if getattr(block, name) is not None:
                            projects[id(getattr(block, name))] = f"{prefix}.{name}"
                    if block.shortcut is not None:
                        projects[id(block.shortcut[0])] = prefix + ".proj"
                        projects[id(block.shortcut[1])] = prefix + ".proj_bn"
                    layers.append(block)
            else:
                own = s == 0 or cin != f  # the stem, or a transition
                for j in range(cfg.layout[s]):
                    prefix = f"stages.{s}.{j}"
                    if own and j == 0:
                        conv = nn.Conv2d(cin, f, 3, padding=1, bias=cfg.bias)
                        projects[id(conv)] = prefix + ".conv"
                        layer = VggLayer(conv, f, None, cfg.relubn)
                    else:
                        layer = VggLayer(kernels.get(s, j - own, f), f, reg(f), cfg.relubn)
                        if layer.regulator is not None:
                            projects[id(layer.regulator)] = prefix + ".regulator"
                    projects[id(layer.bn)] = prefix + ".bn"
                    layers.append(layer)
            stages.append(nn.Sequential(*layers))
        self.layers = nn.ModuleList(stages)
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(widths[-1], cfg.num_classes)
        projects[id(self.linear)] = "fc"
        for conv in kernels.by_key.values():
            projects[id(conv)] = f"kernels.{kernels.index[id(conv)]}"

        # every state_dict key (a shared kernel under each of its paths) -> the project's key
        self.key_map: dict[str, str] = {}
        for name, module in self.named_modules(remove_duplicate=False):
            if id(module) in projects and name:
                for local in (*module._parameters, *module._buffers):
                    self.key_map[f"{name}.{local}"] = f"{projects[id(module)]}.{local}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.res:
            out = self.conv1(out)
            if self.cfg.relubn:
                out = self.bn1(self.relu(out))
            else:
                out = self.relu(self.bn1(out))
        for stage in self.layers:
            out = stage(out)
            out = self.pool(out)
        out = self.avgpool(out)
        out = out.view(out.size(0), -1)
        return self.linear(out)

    def project_state_dict(self) -> dict[str, torch.Tensor]:
        """This net's weights and buffers under the project's (`DacnnNet`'s) names."""
        return {self.key_map[k]: v for k, v in self.state_dict().items()}
