"""LruNet (Köpüklü et al. 2019) on the family registry.

The config, name grammar, network and counts live in `lrunet.config`, `lrunet.model` and
`lrunet.counting` (their module docstrings cite the spec); this module declares them to the
registry together with the search-space knobs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from lrunet.config import (
    GRAMMAR,
    MAX_REUSE,
    NUM_STAGES,
    SHARING_MODES,
    SHUFFLE_VARIANTS,
    LruNetConfig,
    parse_name,
)
from lrunet.counting import count
from lrunet.knobs import Knob
from lrunet.registry import Family, register_family

STAGE_REUSE_KEYS = tuple(f"reuse_{s + 1}" for s in range(NUM_STAGES))
_REUSE = {"type": int, "lo": 1, "hi": MAX_REUSE}
KNOBS = {
    k.name: k
    for k in (
        Knob("reuse", "model", **_REUSE),
        Knob("width", "model", float, lo=1 / 64),  # int(64 * width) >= 1 stage-1 channel
        Knob("groups", "model", int, lo=1),
        Knob("shuffle", "model", str, names=SHUFFLE_VARIANTS),
        Knob("dropout", "model", float, lo=0, hi=1, hi_open=True),
        Knob("sharing", "model", str, names=SHARING_MODES),
        # 0: one pair per stage; k: pass i uses pair i // k (1 is "untied"; k >= N is 0)
        Knob("share_k", "model", int, lo=0, hi=MAX_REUSE),
        Knob("regulator", "model", int, lo=0),  # 0: none; g: a g-group 1x1 per pass
        *(Knob(k, "model", **_REUSE) for k in STAGE_REUSE_KEYS),
    )
}
MODEL_KEYS = tuple(k for k in KNOBS if k not in STAGE_REUSE_KEYS)


def from_knobs(values: Mapping[str, Any], **geometry: Any) -> LruNetConfig:
    """Per-stage reuse is `reuse_1` .. `reuse_4`; `reuse` sets all four (a per-stage key wins)."""
    model: dict[str, Any] = {k: values[k] for k in MODEL_KEYS if k in values}
    base = model.pop("reuse", LruNetConfig.reuse)
    if isinstance(base, int) and not isinstance(base, bool):
        base = (base,) * NUM_STAGES
    elif isinstance(base, (list, tuple)) and len(base) == 1:
        base = tuple(base) * NUM_STAGES
    if any(k in values for k in STAGE_REUSE_KEYS):
        if not isinstance(base, (list, tuple)) or len(base) != NUM_STAGES:
            raise ValueError(f"reuse: expected an integer or {NUM_STAGES} integers, got {base!r}")
        base = tuple(values.get(k, base[s]) for s, k in enumerate(STAGE_REUSE_KEYS))
    model["reuse"] = tuple(base) if isinstance(base, list) else base
    return LruNetConfig(**model, **geometry)


def to_knobs(cfg: LruNetConfig) -> dict[str, Any]:
    """Every knob of `cfg`, per-stage reuse spelled out (`reuse` itself left out)."""
    flat: dict[str, Any] = {k: getattr(cfg, k) for k in MODEL_KEYS if k != "reuse"}
    flat.update({k: n for k, n in zip(STAGE_REUSE_KEYS, cfg.reuse)})
    return flat


def _build(cfg: LruNetConfig):
    from lrunet.model import LruNet

    return LruNet(cfg)


def _details(cfg: LruNetConfig) -> list[str]:
    if cfg.sharing == "untied":
        sharing = "untied: a new dw+pw pair for every pass"
    elif cfg.share_k:
        sharing = (
            f"k{cfg.share_k}: pass i uses pair i // {cfg.share_k}, "
            f"distinct dw+pw pairs per stage {list(cfg.stage_pairs)}"
        )
    else:
        sharing = "tied: one dw+pw pair per stage, applied N times"
    if cfg.regulator:
        kind = "dense" if cfg.regulator == 1 else f"{cfg.regulator} groups"
        regulator = (
            f"one unshared 1x1 F->F ({kind}) per pass after BN_pw, identity-initialised: "
            f"{sum(cfg.reuse)} in all"
        )
    else:
        regulator = "none"
    return [
        f"depth        {cfg.depth} conv layers, reuse per stage {list(cfg.reuse)}",
        f"widths       stem {cfg.stem_width}, stages {list(cfg.stage_widths)}, "
        f"head {cfg.head_width}",
        f"sharing      {sharing}",
        f"regulator    {regulator}",
    ]


def _grid(knob: str, lo: float, hi: float) -> list[Any]:
    """A width range stands for one width per distinct stage-1 channel count int(64 * width)
    (exact: the network depends on the width only through it); other ranges: 9 points."""
    if knob == "width":
        return [max(lo, f / 64) for f in range(int(64 * lo), int(64 * hi) + 1)]
    values = [lo + (hi - lo) * i / 8 for i in range(9)]
    return sorted({int(round(v)) for v in values}) if KNOBS[knob].type is int else values


def _diagnose(knob: str, value: Any, axes: Mapping[str, list[Any]]) -> str | None:
    """A group count that divides none of the space's stage-1 widths, said as such."""
    if knob != "groups":
        return None
    channels = sorted({int(64 * w) for w in axes.get("width", [LruNetConfig.width])})
    if any(f % value == 0 for f in channels):
        return None
    common = math.gcd(*channels)
    ok = [x for x in range(1, common + 1) if common % x == 0]
    return (
        f"group count {value} divides none of the stage-1 channel counts {channels} of this "
        f"space's widths; use one that divides them (valid for every width: "
        f"{', '.join(map(str, ok))}) or remove {value}"
    )


FAMILY = register_family(
    Family(
        name="lrunet",
        tag="LruNet",
        config=LruNetConfig,
        grammar=GRAMMAR,
        summary="Layer Reuse Network: one depthwise + grouped pointwise pair per stage, "
        "applied N times (new BN per pass, channel shuffle between passes)",
        parse=parse_name,
        build=_build,
        count=count,
        knobs=KNOBS,
        from_knobs=from_knobs,
        to_knobs=to_knobs,
        monotone=("reuse", *STAGE_REUSE_KEYS),
        # the paper's headline network first: it is the example error messages give
        presets=("14-LruNet-1x",)
        + tuple(f"{n}-LruNet-1x" for n in (1, 2, 4, 6, 8, 10, 12, 16))
        + ("14-LruNet-2x", "8-LruNet-1x-untied")
        + ("14-LruNet-1x-k7", "14-LruNet-1x-k2", "14-LruNet-1x-reg8", "8-LruNet-1x-k4-reg8"),
        details=_details,
        grid=_grid,
        diagnose=_diagnose,
    )
)
