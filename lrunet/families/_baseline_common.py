"""What the LruNet paper's four Table 7 baselines share (LRUNET_SPEC.md, "Table 7 — baselines"):
the config base class (validation, name, dict and knob round trips), the width-name parser, the
layer-by-layer counting tally, and the `Family` each of `lrunet.families.mobilenet` and
`lrunet.families.shufflenet` registers per config. No torch here, and no family registered.

Based on the MIT-licensed okankop/CNN-layer-reuse (Copyright (c) 2017 Okan Köpüklü), whose
channel tables, CIFAR strides, width rounding (`int(c * width)`; no `_make_divisible`),
initialisation and parameter names the baselines keep: its 12 released checkpoints load strictly
and give its outputs. Counts follow `lrunet.counting` (LRUNET_SPEC §2). Nothing is shared: these
are the no-reuse references.

Departures from the reference common to all four (each family module lists its own):
* The final pool is an `nn.AdaptiveAvgPool2d(1)` module, not `F.avg_pool2d(x, x.size()[-2:])`
  (MobileNets, ShuffleNet) or `F.avg_pool2d(x, 4)` (ShuffleNetV2): the same values and counts
  wherever the reference runs (ShuffleNetV2 ends at 4x4 at 28 and 32), seen by
  `count_by_hooks`, and valid at any input size. `x.view(N, -1)` is `torch.flatten(x, 1)`.
* What the reference cannot build is a ValueError naming what works where the reference
  crashes: zero channel counts here, and each family's own cases listed in its module.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from lrunet.counting import Counts
from lrunet.knobs import Knob
from lrunet.registry import Family, register_family

NO_SHARING = "no weight sharing (the no-reuse reference)"


def _fmt(w: float) -> str:
    """The shortest spelling of a width (`0.40` -> `0.4`, `1.0` -> `1`)."""
    return repr(float(w)).removesuffix(".0")


def _stages(triples) -> str:
    return ", ".join(f"{c}x{n}/s{s}" for c, n, s in triples)


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
    # a name's one option, -<letter><integer>, as (letter, config field); None: no options
    OPTION: ClassVar[tuple[str, str] | None] = None
    OPTION_HELP: ClassVar[str] = "no options"  # what a name's options may be, for errors

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


def parse(cls: type, name: str, **geometry: Any):
    """Decode a `cls.TAG` name into a config; the only option is `cls.OPTION` (ShuffleNet's
    -g<groups>)."""
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
        if cls.OPTION is not None:
            letter, field = cls.OPTION
            if field not in kwargs and re.fullmatch(rf"{letter}\d+", opt):
                kwargs[field] = int(opt[len(letter) :])
                continue
        raise ValueError(
            f"cannot parse option {opt!r} in {name!r}: {cls.TAG} names take {cls.OPTION_HELP}; "
            f"expected {cls.GRAMMAR}, {example}"
        )
    overlap = sorted(set(kwargs) & set(geometry))
    if overlap:
        raise ValueError(f"{overlap} given both in the name {name!r} and as arguments")
    try:
        return cls(**kwargs, **geometry)
    except ValueError as e:
        raise ValueError(f"{name!r}: {e}") from None


def _details(cfg: Any) -> list[str]:
    return [*cfg.details(), f"sharing      none: {NO_SHARING}"]


def register(
    cls: type,
    build: Callable[[Any], Any],
    monotone: tuple[str, ...] = (),
    grid: Callable[[str, float, float], list[Any]] | None = None,
) -> Family:
    """Register the family of baseline config `cls` (name: its tag in lower case)."""
    return register_family(
        Family(
            name=cls.TAG.lower(),
            tag=cls.TAG,
            config=cls,
            grammar=cls.GRAMMAR,
            summary=f"{cls.SUMMARY}; {NO_SHARING}",
            parse=functools.partial(parse, cls),
            build=build,
            count=cls.count,
            knobs=cls.KNOBS,
            from_knobs=cls.from_knobs,
            to_knobs=cls.to_knobs,
            monotone=monotone,
            grid=grid,
            presets=cls.PRESETS,
            details=_details,
        )
    )
