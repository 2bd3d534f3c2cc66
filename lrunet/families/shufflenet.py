"""ShuffleNet and ShuffleNetV2, two of the LruNet paper's Table 7 baselines, as the reference
trains them for CIFAR next to LruNet (LRUNET_SPEC.md, "Table 7 — baselines"): configs, name
grammars, analytic counts, knobs and registration, without torch; the networks
(`lrunet.families._shufflenet`) are imported when one is built. What the four baselines share is
in `lrunet.families._baseline_common`.

Based on the MIT-licensed okankop/CNN-layer-reuse (Copyright (c) 2017 Okan Köpüklü),
`models/{shufflenet,shufflenetv2}.py`; `channel_shuffle` as in torchvision's
`models/shufflenetv2.py`. Channel tables, CIFAR strides, the width rounding (`int(c * width)`),
the initialisation and the parameter names are the reference's: its released checkpoints load
strictly and give its outputs.

Names (case-insensitive; canonical width spelling is the shortest, `0.40x` -> `0.4x`)::

    ShuffleNet-<width>x-g<3|8>  Table 7: ShuffleNet-0.5x-g3, ShuffleNet-0.75x-g3 (no -g: g3)
    ShuffleNetV2-<width>x       width 0.25, 0.5, 0.75, 1, 1.5 or 2; Table 7: 0.25x, 0.75x

Counts follow `lrunet.counting` (LRUNET_SPEC §2). Nothing is shared: the no-reuse references.

Departures from the reference, all of them: those common to the four baselines (the final pool
module; a ValueError naming what works where the reference cannot build, listed in
`lrunet.families._baseline_common`), and:
* The ShuffleNets' channel shuffle divides with `//`: the reference's float `C/g` makes `view`
  raise TypeError on Python 3, so neither ShuffleNet runs a forward pass there.
* Their cases of that ValueError: ShuffleNet channels not divisible by the groups, groups other
  than 3 and 8 (NameError), ShuffleNetV2 widths outside its table (KeyError), zero channel
  counts.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from lrunet.counting import Counts
from lrunet.families._baseline_common import _Base, _fmt, _stages, _Tally, register
from lrunet.knobs import Knob

SHUFFLENET_PLANES = {3: (24, 240, 480, 960), 8: (24, 384, 768, 1536)}  # stem + 3 stages
SHUFFLENET_BLOCKS = (4, 8, 4)
SHUFFLENETV2_TABLE = {  # width -> 3 stage widths and the final 1x1 conv's width
    0.25: (32, 64, 128, 1024),
    0.5: (48, 96, 192, 1024),
    0.75: (60, 120, 240, 1024),
    1.0: (116, 232, 464, 1024),
    1.5: (176, 352, 704, 1024),
    2.0: (224, 488, 976, 2048),
}
SHUFFLENETV2_BLOCKS = (3, 7, 3)  # basic blocks after each stage's down-sampling block
SHUFFLENETV2_STEM = 24
SHUFFLENETV2_WIDTHS = tuple(map(_fmt, SHUFFLENETV2_TABLE))


def _shufflenet_blocks(planes: tuple[int, ...], g: int) -> tuple[tuple[int, int, int, int], ...]:
    out, cin = [], planes[0]
    for width, n in zip(planes[1:], SHUFFLENET_BLOCKS):
        for i in range(n):
            cout = width - cin if i == 0 else width  # block 0 concatenates its pooled input
            out.append((cin, cout, 2 if i == 0 else 1, (cout // (4 * g)) * g))
            cin = width
    return tuple(out)


def _shufflenet_problem(width: float, g: int) -> str | None:
    """Why the reference's ShuffleNet cannot be built at `width` with `g` groups, or None."""
    planes = tuple(int(c * width) for c in SHUFFLENET_PLANES[g])
    bad = [c for c in planes if c < 1 or c % g]
    if bad:
        return f"channel counts {planes}, and {bad[0]} is not a positive multiple of {g}"
    thin = [cout for _, cout, _, mid in _shufflenet_blocks(planes, g) if mid < 1]
    if thin:
        return f"a stage of {thin[0]} new channels, fewer than the {4 * g} a bottleneck needs"
    return None


@functools.cache
def _shufflenet_widths(g: int) -> str:
    grid = sorted({k / 20 for k in range(1, 41)} | {k / 8 for k in range(1, 17)})
    return ", ".join(_fmt(w) for w in grid if _shufflenet_problem(w, g) is None)


@dataclass(frozen=True)
class ShuffleNetConfig(_Base):
    """ShuffleNet (v1) as the reference builds it for CIFAR: a 3x3 stem of 24*w channels at
    stride 1, 4 + 8 + 4 bottlenecks (grouped 1x1, shuffle, depthwise 3x3, grouped 1x1; the
    first of each stage concatenates a 3x3 average-pooled shortcut), a Linear head."""

    TAG: ClassVar[str] = "ShuffleNet"
    GRAMMAR: ClassVar[str] = "ShuffleNet-<width>x-g<3|8>"
    SUMMARY: ClassVar[str] = "ShuffleNet (Zhang et al. 2018), CIFAR variant of the LruNet repo"
    PRESETS: ClassVar[tuple[str, ...]] = tuple(
        f"ShuffleNet-{w}x-g{g}" for w, g in (("0.5", 3), ("0.75", 3), ("1", 3), ("1", 8))
    )
    KNOBS: ClassVar[dict[str, Knob]] = {
        "width": Knob("width", "model", float, lo=1 / 8),  # and channels divisible by groups
        "groups": Knob("groups", "model", int, lo=3, hi=8),  # 3 or 8
    }
    OPTION: ClassVar[tuple[str, str] | None] = ("g", "groups")  # -g8
    OPTION_HELP: ClassVar[str] = "only -g3 or -g8"

    width: float = 1.0
    groups: int = 3
    num_classes: int = 10
    in_channels: int = 3
    input_size: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        g = self.groups
        if isinstance(g, bool) or not isinstance(g, int) or g not in SHUFFLENET_PLANES:
            raise ValueError(f"groups: {g!r} is not one of 3, 8 (the reference's)")
        problem = _shufflenet_problem(self.width, g)
        if problem:
            raise ValueError(
                f"width: {self.width:g} with g{g} gives {problem}; widths that work with "
                f"g{g} include {_shufflenet_widths(g)}"
            )

    @property
    def name(self) -> str:
        return f"{super().name}-g{self.groups}"

    @property
    def planes(self) -> tuple[int, int, int, int]:
        """Stem and stage widths: int(c * width) over the reference's table for `groups`."""
        return tuple(int(c * self.width) for c in SHUFFLENET_PLANES[self.groups])

    @property
    def blocks(self) -> tuple[tuple[int, int, int, int], ...]:
        """(in, out of the conv branch, stride, bottleneck width) of each bottleneck."""
        return _shufflenet_blocks(self.planes, self.groups)

    def count(self) -> Counts:
        t, g = _Tally(), self.groups
        s = t.conv(self.in_channels, self.planes[0], self.input_size, 3)
        for cin, cout, stride, mid in self.blocks:
            if stride == 2:
                t.avg_pool(cin, s)  # the shortcut's 3x3, stride-2 average pool
            t.conv(cin, mid, s, groups=g)
            s = t.conv(mid, mid, s, 3, stride, groups=mid)
            t.conv(mid, cout, s, groups=g)
        return t.head(self.planes[-1], self.num_classes, s)

    def details(self) -> list[str]:
        stages = _stages(zip(self.planes[1:], SHUFFLENET_BLOCKS, (2, 2, 2)))
        return [
            f"depth        {1 + 3 * len(self.blocks)} conv layers + 1 linear",
            f"widths       stem {self.planes[0]}, stages {stages}, groups {self.groups}",
        ]


@dataclass(frozen=True)
class ShuffleNetV2Config(_Base):
    """ShuffleNetV2 as the reference builds it for CIFAR: a fixed 24-channel 3x3 stem at stride
    1 and no max-pool, 3 stages of a down-sampling block and 3/7/3 basic blocks, a 1x1 conv,
    a Linear head. Widths come from a fixed table."""

    TAG: ClassVar[str] = "ShuffleNetV2"
    GRAMMAR: ClassVar[str] = "ShuffleNetV2-<width>x with width one of 0.25, 0.5, 0.75, 1, 1.5, 2"
    SUMMARY: ClassVar[str] = "ShuffleNetV2 (Ma et al. 2018), CIFAR variant of the LruNet repo"
    PRESETS: ClassVar[tuple[str, ...]] = tuple(f"ShuffleNetV2-{w}x" for w in ("0.25", "0.75", "1"))
    # categorical: a YAML space lists its names; from_knobs also takes the numbers
    KNOBS: ClassVar[dict[str, Knob]] = {
        "width": Knob("width", "model", str, names=SHUFFLENETV2_WIDTHS)
    }

    width: float = 1.0
    num_classes: int = 10
    in_channels: int = 3
    input_size: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.width not in SHUFFLENETV2_TABLE:
            raise ValueError(
                f"width: {self.width:g} is not in ShuffleNetV2's width table; allowed widths: "
                f"{', '.join(SHUFFLENETV2_WIDTHS)}"
            )

    @property
    def stage_widths(self) -> tuple[int, int, int, int]:
        return SHUFFLENETV2_TABLE[self.width]

    def to_knobs(self) -> dict[str, Any]:
        return {"width": _fmt(self.width)}

    @classmethod
    def from_knobs(cls, values: Mapping[str, Any], **geometry: Any):
        values = dict(values)
        w = values.get("width")
        if isinstance(w, str):
            if re.fullmatch(r"\d+(\.\d+)?", w.strip()) is None:
                raise ValueError(f"width: {w!r} is not one of {', '.join(SHUFFLENETV2_WIDTHS)}")
            values["width"] = float(w)
        return super().from_knobs(values, **geometry)

    def count(self) -> Counts:
        t, widths = _Tally(), self.stage_widths
        s = t.conv(self.in_channels, SHUFFLENETV2_STEM, self.input_size, 3)
        cin = SHUFFLENETV2_STEM
        for cout, n in zip(widths[:3], SHUFFLENETV2_BLOCKS):
            mid, half = cout // 2, int(cout * 0.5)
            down = t.conv(cin, cin, s, 3, 2, groups=cin)  # left branch
            t.conv(cin, mid, down)
            t.conv(cin, mid, s)  # right branch
            t.conv(mid, mid, s, 3, 2, groups=mid)
            t.conv(mid, mid, down)
            s = down
            for _ in range(n):  # a basic block convolves half of the channels
                t.conv(half, half, s)
                t.conv(half, half, s, 3, groups=half)
                t.conv(half, half, s)
            cin = cout
        t.conv(widths[2], widths[3], s)
        return t.head(widths[3], self.num_classes, s)

    def details(self) -> list[str]:
        w, n = self.stage_widths, sum(SHUFFLENETV2_BLOCKS)
        stages = _stages((c, b + 1, 2) for c, b in zip(w[:3], SHUFFLENETV2_BLOCKS))
        return [
            f"depth        {2 + 15 + 3 * n} conv layers (3 down + {n} basic blocks) + 1 linear",
            f"widths       stem {SHUFFLENETV2_STEM}, stages {stages}, last {w[3]}",
        ]


CONFIGS = (ShuffleNetConfig, ShuffleNetV2Config)


def _grid(knob: str, lo: float, hi: float) -> list[Any]:
    """ShuffleNet's representative values of a knob range for the search-space checks: the
    allowed group counts, or every width in [lo, hi] that builds (channel counts only change at
    multiples of 1 / the last stage's width, so these are all the distinct networks)."""
    if knob == "groups":
        return [g for g in SHUFFLENET_PLANES if lo <= g <= hi]
    widths = set()
    for g, planes in SHUFFLENET_PLANES.items():
        step = planes[-1]
        for k in range(math.ceil(lo * step), math.floor(hi * step) + 1):
            if lo <= k / step <= hi and _shufflenet_problem(k / step, g) is None:
                widths.add(k / step)
    return sorted(widths)


def _build(cfg: Any):
    from lrunet.families import _shufflenet as nets

    return getattr(nets, cfg.TAG)(cfg)


# Counts are non-decreasing in width (tests/test_baselines.py checks it), but a ShuffleNet corner
# may not build, so the loader enumerates its valid widths (`_grid`), and ShuffleNetV2's table
# (a categorical knob): neither declares a monotone knob.
FAMILIES = {
    ShuffleNetConfig: register(ShuffleNetConfig, _build, grid=_grid),
    ShuffleNetV2Config: register(ShuffleNetV2Config, _build),
}
