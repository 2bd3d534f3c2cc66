"""MobileNet and MobileNetV2, two of the LruNet paper's Table 7 baselines, as the reference trains
them for CIFAR next to LruNet (LRUNET_SPEC.md, "Table 7 — baselines"): configs, name grammars,
analytic counts, knobs and registration, without torch; the networks
(`lrunet.families._mobilenet`) are imported when one is built. What the four baselines share is
in `lrunet.families._baseline_common`.

Based on the MIT-licensed okankop/CNN-layer-reuse (Copyright (c) 2017 Okan Köpüklü),
`models/{mobilenet,mobilenetv2}.py`. Channel tables, CIFAR strides, the width rounding
(`int(c * width)`; no `_make_divisible`), the initialisation and the parameter names are the
reference's: its released checkpoints load strictly and give its outputs.

Names (case-insensitive; canonical width spelling is the shortest, `0.40x` -> `0.4x`)::

    MobileNet-<width>x          Table 7: MobileNet-0.25x, MobileNet-0.4x
    MobileNetV2-<width>x        Table 7: MobileNetV2-0.25x, MobileNetV2-0.4x

Counts follow `lrunet.counting` (LRUNET_SPEC §2). Nothing is shared: the no-reuse references.

Departures from the reference, all of them: those common to the four baselines (the final pool
module; a ValueError naming what works where the reference cannot build, listed in
`lrunet.families._baseline_common`), whose zero-channel case here is a width below 1/32
(MobileNet) or 1/16 (MobileNetV2). None of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from lrunet.counting import Counts
from lrunet.families._baseline_common import _Base, _stages, _Tally, register
from lrunet.knobs import Knob

# (channels, blocks, first stride); the third stage's stride is 1 for CIFAR
MOBILENET_STAGES = ((64, 1, 2), (128, 2, 2), (256, 2, 1), (512, 6, 2), (1024, 2, 1))
# (expansion, channels, blocks, first stride); the fourth stage's stride is 2 -> 1 for CIFAR
MOBILENETV2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 1))
MOBILENETV2_STAGES += ((6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _mobilenet_blocks(cin: int, table: tuple, width: float) -> tuple[tuple[int, ...], ...]:
    """(in, out, stride, *rest) of every block of a (*rest, channels, blocks, stride) table."""
    out = []
    for *rest, c, n, s in table:
        cout = int(c * width)
        for i in range(n):
            out.append((cin, cout, s if i == 0 else 1, *rest))
            cin = cout
    return tuple(out)


@dataclass(frozen=True)
class MobileNetConfig(_Base):
    """MobileNet (v1) as the reference builds it for CIFAR: a 32*w stem at stride 1, 13
    depthwise-separable blocks up to 1024*w channels, Dropout 0.2 and a Linear head."""

    TAG: ClassVar[str] = "MobileNet"
    GRAMMAR: ClassVar[str] = "MobileNet-<width>x"
    SUMMARY: ClassVar[str] = "MobileNet (Howard et al. 2017), CIFAR variant of the LruNet repo"
    PRESETS: ClassVar[tuple[str, ...]] = ("MobileNet-0.25x", "MobileNet-0.4x", "MobileNet-1x")
    KNOBS: ClassVar[dict[str, Knob]] = {"width": Knob("width", "model", float, lo=1 / 32)}
    MIN_BASE: ClassVar[int] = 32

    width: float = 1.0
    num_classes: int = 10
    in_channels: int = 3
    input_size: int = 32

    @property
    def stem_width(self) -> int:
        return int(32 * self.width)

    @property
    def blocks(self) -> tuple[tuple[int, int, int], ...]:
        """(in, out, stride) of each depthwise-separable block."""
        return _mobilenet_blocks(self.stem_width, MOBILENET_STAGES, self.width)

    @property
    def last_width(self) -> int:
        return self.blocks[-1][1]  # int(1024 * width), the reference's last_channel

    def count(self) -> Counts:
        t = _Tally()
        s = t.conv(self.in_channels, self.stem_width, self.input_size, 3)
        for cin, cout, stride in self.blocks:
            s = t.conv(cin, cin, s, 3, stride, groups=cin)
            t.conv(cin, cout, s)
        return t.head(self.last_width, self.num_classes, s)

    def details(self) -> list[str]:
        stages = _stages((int(c * self.width), n, s) for c, n, s in MOBILENET_STAGES)
        return [
            f"depth        {1 + 2 * len(self.blocks)} conv layers + 1 linear",
            f"widths       stem {self.stem_width}, stages {stages}, last {self.last_width}",
        ]


@dataclass(frozen=True)
class MobileNetV2Config(_Base):
    """MobileNetV2 as the reference builds it for CIFAR: stem and fourth-stage strides 1, 17
    inverted residuals, a 1x1 conv to 1280 (1280*w when w > 1), Dropout 0.2, a Linear head."""

    TAG: ClassVar[str] = "MobileNetV2"
    GRAMMAR: ClassVar[str] = "MobileNetV2-<width>x"
    SUMMARY: ClassVar[str] = "MobileNetV2 (Sandler et al. 2018), CIFAR variant of the LruNet repo"
    PRESETS: ClassVar[tuple[str, ...]] = tuple(f"MobileNetV2-{w}x" for w in ("0.25", "0.4", "1"))
    KNOBS: ClassVar[dict[str, Knob]] = {"width": Knob("width", "model", float, lo=1 / 16)}
    MIN_BASE: ClassVar[int] = 16

    width: float = 1.0
    num_classes: int = 10
    in_channels: int = 3
    input_size: int = 32

    @property
    def stem_width(self) -> int:
        return int(32 * self.width)

    @property
    def blocks(self) -> tuple[tuple[int, int, int, int], ...]:
        """(in, out, stride, expansion) of each inverted residual (hidden = in * expansion)."""
        return _mobilenet_blocks(self.stem_width, MOBILENETV2_STAGES, self.width)

    @property
    def last_width(self) -> int:
        return int(1280 * self.width) if self.width > 1.0 else 1280

    def count(self) -> Counts:
        t = _Tally()
        s = t.conv(self.in_channels, self.stem_width, self.input_size, 3)
        for cin, cout, stride, e in self.blocks:
            if e != 1:
                t.conv(cin, cin * e, s)
            s = t.conv(cin * e, cin * e, s, 3, stride, groups=cin * e)
            t.conv(cin * e, cout, s)
        t.conv(self.blocks[-1][1], self.last_width, s)
        return t.head(self.last_width, self.num_classes, s)

    def details(self) -> list[str]:
        convs = 2 + sum(2 if e == 1 else 3 for *_, e in self.blocks)
        stages = _stages((int(c * self.width), n, s) for _, c, n, s in MOBILENETV2_STAGES)
        return [
            f"depth        {convs} conv layers ({len(self.blocks)} inverted residuals) + 1 linear",
            f"widths       stem {self.stem_width}, stages {stages}, last {self.last_width}",
        ]


CONFIGS = (MobileNetConfig, MobileNetV2Config)


def _build(cfg: Any):
    from lrunet.families import _mobilenet as nets

    return getattr(nets, cfg.TAG)(cfg)


# Counts are non-decreasing in width (tests/test_baselines.py checks it) and the MobileNets take
# every width, so the loader checks a width range at its corners.
FAMILIES = {cls: register(cls, _build, monotone=("width",)) for cls in CONFIGS}
