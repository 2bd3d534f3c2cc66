"""The LruNet configuration and its name grammar.

`LruNetConfig` is the model's whole interface: `lrunet.model.LruNet` is built from it and from
nothing else, and the analytic counts in `lrunet.counting` read only it. Defaults are the paper's
reference network (Köpüklü et al. 2019, Table 1; the released code as measured in LRUNET_SPEC.md).

Name grammar (one decoder, `parse_name`; one canonical spelling, `format_name`)::

    <reuse>-LruNet-<width>x[-g<groups>][-s<shuffle>][-d<dropout>][-untied][-k<k>][-reg[<g>]]

    reuse    one integer N for all four stages ("14"), or four integers N1.N2.N3.N4 ("2.4.8.14")
    width    the width multiplier, shortest decimal spelling ("1", "2", "0.5", "1.25")
    -g       pointwise group count, omitted when 8 (the paper's)
    -s       channel-shuffle variant, omitted when "swap" (the reference's):
             -snone, -splain, -sgroup
    -d       dropout probability, omitted when 0.5 (the paper's CIFAR-10 value): -d0.7, -d0
    -untied  a new dw+pw pair for every pass (the paper's Table 4 "with new layers")
    -k       sharing in groups of k consecutive passes (DACNN_SPEC.md §5.1): pass i of a stage
             uses pair floor(i / k), so stage s holds ceil(N_s / k) pairs. Omitted when
             k >= every N_s (plain LruNet); -k1 is spelled -untied; -untied-k<k> with k > 1 is
             an error
    -reg     an unshared, identity-initialised 1x1 F -> F "regulator" conv per pass after BN_pw,
             before the residual add: -reg is dense, -reg<g> has g groups (g divides F1)

The paper's own names (`14-LruNet-1x`, `1-LruNet-2x`) are canonical names. Dataset geometry
(classes, input channels, input size) is not architecture and is not spelled in the name: pass
it to `parse_name` as keyword arguments.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

NUM_STAGES = 4
BASE_WIDTH = 64  # stage-1 channels at width 1x; stages double: 64, 128, 256, 512
STEM_WIDTH = 64  # the reference's fixed stem width (tiled for 2x, see stage_widths)
SHUFFLE_VARIANTS = ("swap", "plain", "group", "none")
SHARING_MODES = ("tied", "untied")
MAX_REUSE = 64
SHARE_K_DOC = "0 (every pass of a stage shares one pair) or an integer k >= 1"

GRAMMAR = (
    "<N or N1.N2.N3.N4>-LruNet-<width>x[-g<groups>][-s<shuffle>][-d<dropout>][-untied]"
    "[-k<k>][-reg[<g>]]"
)

_NAME_RE = re.compile(
    r"^(?P<reuse>\d+(?:\.\d+){3}|\d+)-lrunet-(?P<width>\d+(?:\.\d+)?)x"
    r"(?P<opts>(?:-[a-z][a-z0-9.]*)*)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class LruNetConfig:
    """Everything that determines an LruNet. Validated on construction.

    Attributes:
        reuse: passes N through each stage's shared block, one per stage (stage 1..4).
        width: width multiplier; stage-1 channels are int(64 * width), doubling per stage.
        groups: group count of the pointwise 1x1 convolutions (blocks and head).
        shuffle: channel shuffle between passes: "swap" (reference: swap the halves, then
            interleave with 2 groups), "plain" (ShuffleNet interleave, 2 groups), "group"
            (ShuffleNet interleave with `groups` groups) or "none".
        dropout: element-wise dropout before the classifier.
        sharing: "tied" reuses one dw+pw pair N times (layer reuse); "untied" gives every pass
            its own pair, the same depth without reuse (paper Table 4).
        share_k: with sharing "tied", pass i of a stage uses pair i // share_k, so stage s holds
            ceil(N_s / share_k) pairs (DACNN_SPEC.md §5.1); 0 means one pair per stage. The config
            is normalised on construction so that equal networks compare equal: share_k >= every
            N_s becomes 0 (plain LruNet) and share_k = 1 becomes sharing "untied", share_k 0.
        regulator: 0 for none, else the group count g of one unshared 1x1 F -> F conv per pass,
            applied after BN_pw and before the residual add, initialised to the identity.
        num_classes, in_channels, input_size: dataset geometry (input is square).
    """

    reuse: tuple[int, int, int, int] = (8, 8, 8, 8)
    width: float = 1.0
    groups: int = 8
    shuffle: str = "swap"
    dropout: float = 0.5
    sharing: str = "tied"
    share_k: int = 0
    regulator: int = 0
    num_classes: int = 10
    in_channels: int = 3
    input_size: int = 32

    def __post_init__(self) -> None:
        reuse = self.reuse
        if isinstance(reuse, int) and not isinstance(reuse, bool):
            reuse = (reuse,) * NUM_STAGES
        if not isinstance(reuse, (tuple, list)) or len(reuse) not in (1, NUM_STAGES):
            raise ValueError(
                f"reuse: expected one integer or {NUM_STAGES} integers (one per stage), "
                f"got {self.reuse!r}"
            )
        if len(reuse) == 1:
            reuse = tuple(reuse) * NUM_STAGES
        for n in reuse:
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_REUSE:
                raise ValueError(
                    f"reuse: every stage's N must be an integer in 1..{MAX_REUSE}, "
                    f"got {self.reuse!r}"
                )
        object.__setattr__(self, "reuse", tuple(int(n) for n in reuse))

        if isinstance(self.width, bool) or not isinstance(self.width, (int, float)):
            raise ValueError(f"width: expected a positive number, got {self.width!r}")
        object.__setattr__(self, "width", float(self.width))
        if int(BASE_WIDTH * self.width) < 1:
            raise ValueError(
                f"width: {self.width:g} gives int(64 * {self.width:g}) = "
                f"{int(BASE_WIDTH * self.width)} stage-1 channels; use width >= {1 / BASE_WIDTH:g}"
            )
        _check_int("groups", self.groups, 1)
        _check_int("num_classes", self.num_classes, 1)
        _check_int("in_channels", self.in_channels, 1)
        _check_int("input_size", self.input_size, 1)
        if self.shuffle not in SHUFFLE_VARIANTS:
            raise ValueError(
                f"shuffle: {self.shuffle!r} is not one of {', '.join(SHUFFLE_VARIANTS)}"
            )
        if self.sharing not in SHARING_MODES:
            raise ValueError(f"sharing: {self.sharing!r} is not one of {', '.join(SHARING_MODES)}")
        _check_int("share_k", self.share_k, 0, f"; allowed: {SHARE_K_DOC}")
        _check_int("regulator", self.regulator, 0, "; allowed: 0 (none) or a group count g >= 1")
        if self.sharing == "untied" and self.share_k > 1:
            raise ValueError(
                f"share_k: {self.share_k} cannot be combined with sharing 'untied' (a pair per "
                "pass); allowed with 'untied': 0 or 1, or use sharing 'tied' with share_k"
            )
        if self.share_k == 1:
            object.__setattr__(self, "sharing", "untied")
        if self.share_k == 1 or self.share_k >= max(self.reuse):
            object.__setattr__(self, "share_k", 0)
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)):
            raise ValueError(f"dropout: expected a number in [0, 1), got {self.dropout!r}")
        object.__setattr__(self, "dropout", float(self.dropout))
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: expected a number in [0, 1), got {self.dropout!r}")

        f1 = self.stage_widths[0]
        if f1 % self.groups:
            valid = [g for g in range(1, f1 + 1) if f1 % g == 0]
            raise ValueError(
                f"groups: {self.groups} does not divide the {f1} stage-1 channels of width "
                f"{self.width:g}; allowed group counts for this width: {valid}"
            )
        if self.shuffle in ("swap", "plain") and f1 % 2:
            raise ValueError(
                f"shuffle: {self.shuffle!r} needs an even channel count but width {self.width:g} "
                f"gives {f1} stage-1 channels; use shuffle 'none' or an even width"
            )
        if self.regulator and f1 % self.regulator:
            valid = [g for g in range(1, f1 + 1) if f1 % g == 0]
            raise ValueError(
                f"regulator: {self.regulator} groups do not divide the stage widths "
                f"{list(self.stage_widths)} of width {self.width:g}; allowed: 0 (none) or a "
                f"group count in {valid}"
            )
        if self.input_size < 2:
            raise ValueError("input_size: must be at least 2")

    # --- derived geometry ---------------------------------------------------------------------

    @property
    def stage_widths(self) -> tuple[int, int, int, int]:
        """Channels F of each stage: F1 = int(64 * width), doubling per stage.

        Each transition duplicates the tensor ([x, x], LRUNET_SPEC §1), so a stage has exactly
        twice the channels of the one before. For 1x and 2x this equals the reference's int(c * w).
        """
        f1 = int(BASE_WIDTH * self.width)
        return (f1, 2 * f1, 4 * f1, 8 * f1)

    @property
    def stem_width(self) -> int:
        """Output channels of the stem convolution.

        The rule: 64 whenever 64 divides the stage-1 width F1, the stem output then being tiled
        F1 / 64 times (the reference's 2x concatenates the 64-channel stem output with itself);
        otherwise F1, a plain stem of the stage's width (the reference crashes for such widths).
        1x and 2x are therefore identical to the reference.
        """
        f1 = self.stage_widths[0]
        return STEM_WIDTH if f1 % STEM_WIDTH == 0 else f1

    @property
    def head_width(self) -> int:
        """Hidden channels of the head's grouped 1x1 convolution: 4 * F1 (= int(256 * w))."""
        return 4 * self.stage_widths[0]

    @property
    def shuffle_groups(self) -> int:
        return self.groups if self.shuffle == "group" else 2

    @property
    def stage_pairs(self) -> tuple[int, int, int, int]:
        """Distinct dw+pw pairs each stage holds: 1 tied, N_s untied, ceil(N_s / k) with -k."""
        if self.sharing == "untied":
            return self.reuse
        if self.share_k:
            return tuple(-(-n // self.share_k) for n in self.reuse)
        return (1,) * NUM_STAGES

    @property
    def depth(self) -> int:
        """Convolution layers on the forward path: 1 stem + 2 per pass (3 with a regulator)
        + 2 head (8N + 3 for the paper's networks)."""
        return 3 + (3 if self.regulator else 2) * sum(self.reuse)

    @property
    def name(self) -> str:
        return format_name(self)

    def replace(self, **changes: Any) -> LruNetConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["reuse"] = list(self.reuse)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LruNetConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise ValueError(f"unknown LruNetConfig field(s) {unknown}; allowed: {sorted(fields)}")
        d = dict(d)
        if isinstance(d.get("reuse"), list):
            d["reuse"] = tuple(d["reuse"])
        return cls(**d)


def _check_int(field: str, value: Any, minimum: int, allowed: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{field}: expected an integer >= {minimum}, got {value!r}{allowed}")


def format_name(cfg: LruNetConfig) -> str:
    """The canonical name of `cfg`'s architecture (see the module docstring for the grammar)."""
    n = cfg.reuse
    reuse = str(n[0]) if len(set(n)) == 1 else ".".join(str(i) for i in n)
    width = repr(cfg.width).removesuffix(".0")
    parts = [f"{reuse}-LruNet-{width}x"]
    if cfg.groups != 8:
        parts.append(f"g{cfg.groups}")
    if cfg.shuffle != "swap":
        parts.append(f"s{cfg.shuffle}")
    if cfg.dropout != 0.5:
        parts.append(f"d{repr(cfg.dropout).removesuffix('.0')}")
    if cfg.sharing != "tied":
        parts.append("untied")
    if cfg.share_k:
        parts.append(f"k{cfg.share_k}")
    if cfg.regulator:
        parts.append("reg" if cfg.regulator == 1 else f"reg{cfg.regulator}")
    return "-".join(parts)


def parse_name(name: str, **geometry: Any) -> LruNetConfig:
    """Decode an architecture name into a config. `geometry` sets num_classes, in_channels,
    input_size (or any other field the name does not spell).

    >>> parse_name("14-LruNet-1x").reuse
    (14, 14, 14, 14)
    """
    if not isinstance(name, str):
        raise ValueError(f"architecture name must be a string, got {name!r}")
    m = _NAME_RE.match(name.strip())
    if not m:
        raise ValueError(
            f"cannot parse architecture name {name!r}; expected "
            f"'{GRAMMAR}', e.g. '14-LruNet-1x' or '2.4.8.14-LruNet-1x-g4-snone'"
        )
    kwargs: dict[str, Any] = {
        "reuse": tuple(int(x) for x in m["reuse"].split(".")),
        "width": float(m["width"]),
    }
    for opt in filter(None, m["opts"].lower().split("-")):
        key, val = opt[0], opt[1:]
        try:
            if opt == "untied":
                field, value = "sharing", "untied"
            elif opt == "tied":
                field, value = "sharing", "tied"
            elif opt.startswith("reg") and (opt == "reg" or opt[3:].isdigit()):
                field, value = "regulator", int(opt[3:] or 1)
                if value < 1:
                    raise ValueError
            elif key == "k" and val.isdigit():
                field, value = "share_k", int(val)
                if value < 1:
                    raise ValueError
            elif key == "g" and val.isdigit():
                field, value = "groups", int(val)
            elif key == "s" and val in SHUFFLE_VARIANTS:
                field, value = "shuffle", val
            elif key == "d":
                field, value = "dropout", float(val)
            else:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"cannot parse option {opt!r} in architecture name {name!r}; allowed options: "
                f"-g<groups>, -s<shuffle> with shuffle in {SHUFFLE_VARIANTS}, -d<dropout>, "
                "-untied, -k<k> with k >= 1, -reg (dense) or -reg<g> with g >= 1 groups"
            ) from None
        if field in kwargs:
            raise ValueError(f"option for {field!r} given twice in architecture name {name!r}")
        kwargs[field] = value
    overlap = set(kwargs) & set(geometry)
    if overlap:
        raise ValueError(f"{sorted(overlap)} given both in the name {name!r} and as arguments")
    return LruNetConfig(**kwargs, **geometry)


def canonical_name(name: str) -> str:
    """Re-spell any accepted name canonically (`14-lrunet-1.0X` -> `14-LruNet-1x`)."""
    return format_name(parse_name(name))
