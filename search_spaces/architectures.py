"""The architecture side of a search space: which configs the `model:` knobs allow, their cost
range, and whether the budgets can be met, all decided before any compute is spent.

A family's knobs split in two (`lrunet.registry.Family.monotone`): along the monotone ones every
count grows, so the cheapest and dearest config of each combination of the other knobs are its
low and high corners; the other knobs are enumerated (a continuous range by the family's
representative grid). Nothing here imports Ray or Optuna.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from lrunet.objectives import (
    ANALYTIC,
    analytic_values,
    budget_keys,
    format_limit,
    get_objective,
    list_objectives,
    over_budget,
)
from lrunet.registry import Family, count, get_family
from search_spaces.distributions import Distribution
from search_spaces.schema import Reader
from search_spaces.spec import Budgets, CostRange

MAX_ARCHITECTURES = 50_000  # combinations of the non-monotone model knobs checked at load


def _axes(family: Family, knobs: dict[str, Distribution]) -> dict[str, list[Any]]:
    """The values to enumerate of every non-monotone model knob the space sets (a continuous
    range by the family's representative grid); knobs it does not set take the defaults."""
    axes = {}
    for key in family.knobs:
        d = knobs.get(key)
        if d is None or key in family.monotone:
            continue
        axes[key] = list(d.values()) if d.is_finite else family.grid_values(key, d.low, d.high)
    return axes


def _corner(family: Family, knobs: dict[str, Distribution], corner: str) -> dict[str, Any]:
    """The monotone knobs at their lowest or highest value in the space."""
    return {
        k: knobs[k].low if corner == "low" else knobs[k].high
        for k in family.monotone
        if k in knobs
    }


def _combinations(
    family: Family, knobs: dict[str, Distribution], corner: str = "low"
) -> list[dict[str, Any]]:
    axes = _axes(family, knobs)
    base = _corner(family, knobs, corner)
    keys = list(axes)
    return [{**base, **dict(zip(keys, c))} for c in itertools.product(*axes.values())]


def _configs(
    family: Family, knobs: dict[str, Distribution], geometry: dict[str, int], corner: str
) -> list[Any]:
    """Every valid architecture of the enumerated knobs at one corner of the monotone ones."""
    out = []
    for values in _combinations(family, knobs, corner):
        try:
            out.append(family.from_knobs(values, **geometry))
        except ValueError:
            continue
    return out


def check_architectures(
    r: Reader,
    knobs: dict[str, Distribution],
    geometry: dict[str, int],
    family: Family,
    section: str = "model",
) -> CostRange:
    """Every listed value of a model knob of `family` (found under key path `section`) must give
    at least one valid architecture; returns the min and max of each count over the space."""
    axes = _axes(family, knobs)
    total = math.prod(len(v) for v in axes.values())
    if total > MAX_ARCHITECTURES:
        r.fail(
            section,
            f"{total:,} combinations of {' x '.join(axes)} are too many to check (limit "
            f"{MAX_ARCHITECTURES:,}); list values with choice instead of wide ranges",
        )
    valid: set[tuple[str, Any]] = set()  # (knob, value) pairs seen in a valid architecture
    why: dict[tuple[str, Any], str] = {}  # (knob, value) -> why a config with it was invalid
    for values in _combinations(family, knobs, "low"):
        pairs = [(k, values[k]) for k in axes]
        try:
            family.from_knobs(values, **geometry)
        except ValueError as e:
            for pair in pairs:
                why.setdefault(pair, str(e))
            continue
        valid.update(pairs)
    if not valid and axes:
        r.fail(section, f"no valid architecture in the space: {next(iter(why.values()))}")
    if not axes:
        try:
            family.from_knobs(_corner(family, knobs, "low"), **geometry)
        except ValueError as e:
            r.fail(section, f"no valid architecture in the space: {e}")
    for key in axes:
        d = knobs[key]
        if d.kind not in ("fixed", "choice"):
            # a range may hold some invalid values (sampled ones are reported infeasible by
            # check_budget); every value written out must be usable
            continue
        for i, v in enumerate(d.values()):
            if (key, v) in valid:
                continue
            path = f"{section}.{key}" + (f".{d.kind}[{i}]" if d.kind != "fixed" else "")
            special = family.diagnose(key, v, axes) if family.diagnose else None
            if special:
                r.fail(path, special)
            r.fail(
                path,
                f"{key} {v!r} gives no valid architecture with the other knobs of the "
                f"space ({why.get((key, v), '')}); remove it or change the other knobs",
            )
    lows = [analytic_values(count(c)) for c in _configs(family, knobs, geometry, "low")]
    highs = [analytic_values(count(c)) for c in _configs(family, knobs, geometry, "high")]
    return CostRange(
        {m: (min(v[m] for v in lows), max(v[m] for v in highs)) for m in list_objectives(ANALYTIC)}
    )


def merge_costs(ranges: list[CostRange]) -> CostRange:
    """The cost range of a space made of several families' ranges."""
    return CostRange(
        {
            m: (min(c.ranges[m][0] for c in ranges), max(c.ranges[m][1] for c in ranges))
            for m in ranges[0].ranges
        }
    )


def check_budgets(
    r: Reader,
    raw: Any,
    per_family: dict[str, dict[str, Distribution]],
    geometry: dict[str, int],
) -> Budgets:
    """The `budgets:` section (keys: each objective's `budget`, `lrunet.objectives`), failing when
    no architecture of the space (of any of its families, each with its own knobs: family name ->
    knobs) can meet its analytic budgets. A measured budget is checked by each trial."""
    keys = budget_keys()
    m = r.mapping("budgets", raw, tuple(keys), "{max_params: 250000}")
    v: dict[str, Any] = {}
    for key in keys:
        if m.get(key) is not None:
            integer = get_objective(keys[key]).integer_budget
            v[key] = r.number(f"budgets.{key}", m[key], integer=integer)
            if v[key] <= 0:
                r.fail(f"budgets.{key}", f"must be > 0, got {v[key]:g}")
    b = Budgets(v)
    analytic = b.of_kind(ANALYTIC)
    if not analytic:
        return b
    # Counts grow along the family's monotone knobs (LruNet: every stage's reuse), so the cheapest
    # config of each combination of the other knobs is its low corner: the budgets are reachable
    # iff one of those corners meets them.
    smallest = None
    corners = [
        cfg
        for name, knobs in per_family.items()
        for cfg in _configs(get_family(name), knobs, geometry, corner="low")
    ]
    for cfg in corners:
        values = analytic_values(count(cfg))
        if not over_budget(values, analytic):
            return b
        key = tuple(values[keys[k]] for k in analytic)
        if smallest is None or key < smallest[0]:
            smallest = (key, cfg, values)
    _, cfg, values = smallest
    wanted = []
    for k in analytic:
        need = values[keys[k]]
        need = need if get_objective(keys[k]).integer_budget else math.ceil(need * 100) / 100
        wanted.append(format_limit(k, need).replace(" ", " >= ", 1))
    given = ", ".join(f"{key} {value:,}" for key, value in v.items())
    c = count(cfg)
    r.fail(
        "budgets",
        f"no architecture in the space meets the budgets ({given}); the cheapest, "
        f"{cfg.name}, has {c.params:,} params and {c.mflops:.2f} MFLOPs; "
        f"set {' and '.join(wanted)} or shrink the space",
    )
