"""DACNN's search knobs (DACNN_SPEC.md §5.2 for the grammar they span): `KNOBS`, the model knobs
a search space may set, and `from_knobs` / `to_knobs` between a flat dict of knob values and a
`DacnnConfig`. No torch here.

The layout is `stages` (1..5) plus `blocks_1` .. `blocks_5` (1..64), the blocks of stages past
`stages` ignored: every sample is a valid layout and each of these is monotone (a free layout
string cannot be range-checked, and a 0-means-absent stage would make later stages shift).
Scope is width/stage/none/group with `group_size` for g<k>; booleans are "off"/"on" strings;
`regulator` is the group count (0: none).

`lrunet.families.dacnn` imports these from here and registers them; import them from there. This
module reads that one's config, and dacnn.py imports it back once the config is defined, so
importing this module before dacnn.py is a circular-import error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lrunet.families.dacnn import BODIES, MAX_BLOCKS, SCOPES, DacnnConfig, _check_int
from lrunet.knobs import Knob

KNOB_STAGES = 5  # 32 px reach 1 px after five pools
STAGES_KEY = "stages"
BLOCK_KEYS = tuple(f"blocks_{s + 1}" for s in range(KNOB_STAGES))
SWITCHES = ("doubling", "rot", "relubn", "bias", "release")  # config booleans, "off"/"on"
ONOFF = ("off", "on")
DEFAULT_BLOCKS = 2
KNOBS = {
    k.name: k
    for k in (
        Knob("body", "model", str, names=BODIES),
        Knob(STAGES_KEY, "model", int, lo=1, hi=KNOB_STAGES),
        *(Knob(k, "model", int, lo=1, hi=MAX_BLOCKS) for k in BLOCK_KEYS),
        Knob("width", "model", int, lo=1),
        Knob("doubling", "model", str, names=ONOFF),
        Knob("scope", "model", str, names=(*SCOPES, "group")),
        Knob("group_size", "model", int, lo=1),
        Knob("untied_stages", "model", int, lo=0, hi=KNOB_STAGES),
        Knob("regulator", "model", int, lo=0),
        *(Knob(k, "model", str, names=ONOFF) for k in ("rot", "relubn", "bias", "release")),
    )
}


def from_knobs(values: Mapping[str, Any], **geometry: Any) -> DacnnConfig:
    """A config from any subset of KNOBS (the rest take DacnnConfig's defaults).

    The layout is `stages` stages of `blocks_1` .. `blocks_<stages>` blocks each: blocks of
    stages past `stages` are ignored, so every sample of a space is a valid layout; without
    `stages`, the default's 4 stages, or more if a later `blocks_<s>` is given. Scope "group"
    means g<group_size> (default 2); group_size is ignored for the other scopes.
    """
    unknown = sorted(set(values) - set(KNOBS))
    if unknown:
        raise ValueError(f"dacnn has no knob(s) {unknown}; its knobs: {', '.join(KNOBS)}")
    default = DacnnConfig()
    given = [s + 1 for s, k in enumerate(BLOCK_KEYS) if k in values]
    stages = values.get(STAGES_KEY, max([len(default.layout), *given]))
    _check_int(STAGES_KEY, stages, 1, KNOB_STAGES)
    old = default.layout + (DEFAULT_BLOCKS,) * KNOB_STAGES
    kw: dict[str, Any] = {
        "layout": tuple(values.get(BLOCK_KEYS[s], old[s]) for s in range(stages))
    }
    for key in ("body", "width", "untied_stages", "regulator"):
        if key in values:
            kw[key] = values[key]
    for key in SWITCHES:
        if key in values:
            if values[key] not in ONOFF:
                raise ValueError(f"{key}: {values[key]!r} is not one of {', '.join(ONOFF)}")
            kw[key] = values[key] == "on"
    scope = values.get("scope", default.scope)
    if scope == "group":
        k = values.get("group_size", DEFAULT_BLOCKS)
        _check_int("group_size", k, 1)
        scope = f"g{k}"
    elif scope not in SCOPES:
        raise ValueError(f"scope: {scope!r} is not one of {', '.join(KNOBS['scope'].names)}")
    return DacnnConfig(**kw, scope=scope, **geometry)


def to_knobs(cfg: DacnnConfig) -> dict[str, Any]:
    """Every knob of `cfg` (the inverse of `from_knobs`); blocks past the last stage read 2."""
    n = len(cfg.layout)
    if n > KNOB_STAGES:
        raise ValueError(f"{cfg.name}: {n} stages; the knobs describe at most {KNOB_STAGES}")
    layout = cfg.layout + (DEFAULT_BLOCKS,) * (KNOB_STAGES - n)
    k = cfg.share_group
    return {
        "body": cfg.body,
        STAGES_KEY: n,
        **dict(zip(BLOCK_KEYS, layout)),
        "width": cfg.width,
        "scope": "group" if k else cfg.scope,
        "group_size": k or DEFAULT_BLOCKS,
        "untied_stages": cfg.untied_stages,
        "regulator": cfg.regulator,
        **{key: ONOFF[getattr(cfg, key)] for key in SWITCHES},
    }
