"""The LruNet paper's Table 7 baselines as four families: MobileNet, MobileNetV2, ShuffleNet and
ShuffleNetV2, the CIFAR variants the reference trains next to LruNet (LRUNET_SPEC.md, "Table 7 —
baselines"). Configs, name grammars, analytic counts and knobs live here, without torch; the
networks (`lrunet.families._mobilenet`, `._shufflenet`) are imported when one is built.

Based on the MIT-licensed okankop/CNN-layer-reuse (Copyright (c) 2017 Okan Köpüklü),
`models/{mobilenet,mobilenetv2,shufflenet,shufflenetv2}.py`; `channel_shuffle` as in
torchvision's `models/shufflenetv2.py`. Channel tables, CIFAR strides, the width rounding
(`int(c * width)`; no `_make_divisible`), the initialisation and the parameter names are the
reference's: its 12 released checkpoints load strictly and give its outputs.

Names (case-insensitive; canonical width spelling is the shortest, `0.40x` -> `0.4x`)::

    MobileNet-<width>x          Table 7: MobileNet-0.25x, MobileNet-0.4x
    MobileNetV2-<width>x        Table 7: MobileNetV2-0.25x, MobileNetV2-0.4x
    ShuffleNet-<width>x-g<3|8>  Table 7: ShuffleNet-0.5x-g3, ShuffleNet-0.75x-g3 (no -g: g3)
    ShuffleNetV2-<width>x       width 0.25, 0.5, 0.75, 1, 1.5 or 2; Table 7: 0.25x, 0.75x

Counts follow `lrunet.counting` (LRUNET_SPEC §2). Nothing is shared: the no-reuse references.

Departures from the reference, all of them:
* The ShuffleNets' channel shuffle divides with `//`: the reference's float `C/g` makes `view`
  raise TypeError on Python 3, so neither ShuffleNet runs a forward pass there.
* The final pool is an `nn.AdaptiveAvgPool2d(1)` module, not `F.avg_pool2d(x, x.size()[-2:])`
  (MobileNets, ShuffleNet) or `F.avg_pool2d(x, 4)` (ShuffleNetV2): the same values and counts
  wherever the reference runs (ShuffleNetV2 ends at 4x4 at 28 and 32), seen by
  `count_by_hooks`, and valid at any input size. `x.view(N, -1)` is `torch.flatten(x, 1)`.
* What the reference cannot build is a ValueError naming what works where the reference
  crashes: ShuffleNet channels not divisible by the groups, groups other than 3 and 8
  (NameError), ShuffleNetV2 widths outside its table (KeyError), zero channel counts.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from lrunet.counting import Counts
from lrunet.knobs import Knob
from lrunet.registry import Family, register_family

NO_SHARING = "no weight sharing (the no-reuse reference)"
# (channels, blocks, first stride); the third stage's stride is 1 for CIFAR
MOBILENET_STAGES = ((64, 1, 2), (128, 2, 2), (256, 2, 1), (512, 6, 2), (1024, 2, 1))
# (expansion, channels, blocks, first stride); the fourth stage's stride is 2 -> 1 for CIFAR
MOBILENETV2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 1))
MOBILENETV2_STAGES += ((6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
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


def _fmt(w: float) -> str:
    return repr(float(w)).removesuffix(".0")


SHUFFLENETV2_WIDTHS = tuple(map(_fmt, SHUFFLENETV2_TABLE))


class _Tally:
    """Adds up `Counts` layer by layer under `lrunet.counting`'s conventions."""

    def __init__(self) -> None:
        self.conv_params = self.bn_params = self.macs = self.extra = 0

    def conv(self, cin: int, cout: int, size: int, k: int = 1, stride: int = 1, groups: int = 1):
        """A bias-free k x k conv (padding k // 2) and its BatchNorm; returns the output size."""
        out = (size + 2 * (k // 2) - k) // stride + 1
        weights = cout * (cin // groups) * k * k
        self.conv_params += weights
        self.bn_params += 2 * cout
        self.macs += weights * out * out
        self.extra += 3 * cout * out * out  # 1 per conv output element, 2 per BN output element
        return out

    def avg_pool(self, channels: int, size: int) -> None:
        self.extra += channels * size * size  # an average pool counts its input elements

    def head(self, cin: int, classes: int, size: int) -> Counts:
        """The global average pool and the Linear classifier, then the totals."""
        self.avg_pool(cin, size)
        self.conv_params += cin * classes + classes
        self.macs += cin * classes
        params = self.conv_params + self.bn_params
        return Counts(params, self.conv_params, self.macs, self.macs + self.extra)


class _Base:
    """What the four configs share: validation, name, dict round trip, declarations."""

    TAG: ClassVar[str]
    GRAMMAR: ClassVar[str]
    SUMMARY: ClassVar[str]
    PRESETS: ClassVar[tuple[str, ...]]
    KNOBS: ClassVar[dict[str, Knob]]
    MIN_BASE: ClassVar[int] = 0  # int(MIN_BASE * width) is the narrowest layer (0: no rule)

    def __post_init__(self) -> None:
        w = self.width
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0:
            raise ValueError(f"width: expected a positive number, got {w!r}")
        object.__setattr__(self, "width", float(w))
        for field in ("num_classes", "in_channels", "input_size"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{field}: expected an integer >= 1, got {v!r}")
        if self.MIN_BASE and int(self.MIN_BASE * self.width) < 1:
            raise ValueError(
                f"width: {self.width:g} gives int({self.MIN_BASE} * {self.width:g}) = 0 "
                f"channels; {self.TAG} needs width >= 1/{self.MIN_BASE} = {1 / self.MIN_BASE:g}"
            )

    @property
    def name(self) -> str:
        return f"{self.TAG}-{_fmt(self.width)}x"

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]):
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; allowed: {fields}")
        return cls(**d)

    def to_knobs(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.KNOBS}

    @classmethod
    def from_knobs(cls, values: Mapping[str, Any], **geometry: Any):
        unknown = sorted(set(values) - set(cls.KNOBS))
        if unknown:
            raise ValueError(f"{cls.TAG} has no knob(s) {unknown}; its knobs: {list(cls.KNOBS)}")
        return cls(**values, **geometry)


def _mobilenet_blocks(cin: int, table: tuple, width: float) -> tuple[tuple[int, ...], ...]:
    """(in, out, stride, *rest) of every block of a (*rest, channels, blocks, stride) table."""
    out = []
    for *rest, c, n, s in table:
        cout = int(c * width)
        for i in range(n):
            out.append((cin, cout, s if i == 0 else 1, *rest))
            cin = cout
    return tuple(out)


def _stages(triples) -> str:
    return ", ".join(f"{c}x{n}/s{s}" for c, n, s in triples)


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


CONFIGS = (MobileNetConfig, MobileNetV2Config, ShuffleNetConfig, ShuffleNetV2Config)


def parse(cls: type, name: str, **geometry: Any):
    """Decode a `cls.TAG` name into a config; the only option is ShuffleNet's -g<groups>."""
    if not isinstance(name, str):
        raise ValueError(f"architecture name must be a string, got {name!r}")
    example = f"e.g. {cls.PRESETS[0]!r}"
    m = re.fullmatch(rf"{cls.TAG}-(\d+(?:\.\d+)?)x((?:-[^-]*)*)", name.strip(), re.IGNORECASE)
    if not m:
        raise ValueError(
            f"cannot parse {cls.TAG} name {name!r}; expected {cls.GRAMMAR}, {example}"
        )
    kwargs: dict[str, Any] = {"width": float(m[1])}
    for opt in m[2].lower().split("-")[1:]:
        if cls is ShuffleNetConfig and "groups" not in kwargs and re.fullmatch(r"g\d+", opt):
            kwargs["groups"] = int(opt[1:])
            continue
        allowed = "only -g3 or -g8" if cls is ShuffleNetConfig else "no options"
        raise ValueError(
            f"cannot parse option {opt!r} in {name!r}: {cls.TAG} names take {allowed}; "
            f"expected {cls.GRAMMAR}, {example}"
        )
    overlap = sorted(set(kwargs) & set(geometry))
    if overlap:
        raise ValueError(f"{overlap} given both in the name {name!r} and as arguments")
    try:
        return cls(**kwargs, **geometry)
    except ValueError as e:
        raise ValueError(f"{name!r}: {e}") from None


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
    if isinstance(cfg, (MobileNetConfig, MobileNetV2Config)):
        from lrunet.families import _mobilenet as nets
    else:
        from lrunet.families import _shufflenet as nets
    return getattr(nets, cfg.TAG)(cfg)


def _details(cfg: Any) -> list[str]:
    return [*cfg.details(), f"sharing      none: {NO_SHARING}"]


FAMILIES = {
    cls: register_family(
        Family(
            name=cls.TAG.lower(),
            tag=cls.TAG,
            config=cls,
            grammar=cls.GRAMMAR,
            summary=f"{cls.SUMMARY}; {NO_SHARING}",
            parse=functools.partial(parse, cls),
            build=_build,
            count=cls.count,
            knobs=cls.KNOBS,
            from_knobs=cls.from_knobs,
            to_knobs=cls.to_knobs,
            # Counts are non-decreasing in width (tests/test_baselines.py checks it), but only
            # MobileNets take every width: a ShuffleNet corner may not build, so the loader
            # enumerates its valid widths (`_grid`), and ShuffleNetV2's table (categorical).
            monotone=("width",) if cls in (MobileNetConfig, MobileNetV2Config) else (),
            grid=_grid if cls is ShuffleNetConfig else None,
            presets=cls.PRESETS,
            details=_details,
        )
    )
    for cls in CONFIGS
}
