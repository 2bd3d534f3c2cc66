"""The `model:` section of a search space: which architecture family (or families) it searches
and the knobs of each.

One family::

    model:
      family: dacnn              # default lrunet
      body: vgg
      width: {choice: [16, 32]}

Several families in one search (conditional knobs: a trial draws a family, then that family's
knobs; a family without a block takes its defaults)::

    model:
      family: {choice: [lrunet, dacnn, mobilenetv2]}
      lrunet:
        reuse: {randint: [1, 4]}
      dacnn:
        body: vgg
        width: {choice: [16, 32]}
      mobilenetv2:
        width: {choice: [0.25, 0.5]}

Every problem is a one-line `SpaceError` naming the file, line, key path and fix.
"""

from __future__ import annotations

from typing import Any

from lrunet.registry import DEFAULT_FAMILY, FAMILY_KEY, Family, get_family, list_families
from search_spaces.distributions import Distribution
from search_spaces.schema import RECIPE_KNOBS, Reader, did_you_mean


def read_model(
    r: Reader, raw: Any
) -> tuple[list[Family], dict[str, Distribution], dict[str, dict[str, Distribution]]]:
    """(families, model knobs of a one-family space, per-family knob blocks of a mixed one)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        r.fail("model", f"expected a mapping of knobs such as `family: lrunet`, got {raw!r}")
    families = _families(r, raw.get(FAMILY_KEY))
    if not isinstance(raw.get(FAMILY_KEY), dict):
        return families, family_knobs(r, raw, families[0], "model"), {}
    names = [f.name for f in families]
    blocks: dict[str, dict[str, Distribution]] = {}
    for key, value in raw.items():
        path = f"model.{key}"
        if key == FAMILY_KEY:
            continue
        if key in names:
            if value is not None and not isinstance(value, dict):
                r.fail(path, f"expected a mapping of {key}'s knobs such as `width: 0.5`")
            blocks[key] = family_knobs(r, value or {}, get_family(key), path)
            continue
        if key in list_families():
            r.fail(
                path,
                f"a knob block for {key}, which the family choice does not list; add {key} "
                f"to model.family's choice or remove the block",
            )
        owners = [n for n in names if key in get_family(n).knobs]
        if owners:
            r.fail(
                path,
                f"with a choice of families, knobs go in their family's block: write "
                f"`model.{owners[0]}.{key}` ({key} is a knob of {', '.join(owners)})",
            )
        if key in RECIPE_KNOBS:
            r.fail(path, f"{key} is a recipe knob; move it under `recipe:`")
        r.fail(
            path,
            f"unknown key{did_you_mean(key, names)}; with a choice of families `model:` holds "
            f"`family` and one block per family ({', '.join(names)})",
        )
    return families, {}, {n: blocks.get(n, {}) for n in names}


def _families(r: Reader, raw: Any) -> list[Family]:
    path = f"model.{FAMILY_KEY}"
    if raw is None:
        return [get_family(DEFAULT_FAMILY)]
    if isinstance(raw, list):
        r.fail(path, f"a bare list is ambiguous; to search over families write {{choice: {raw}}}")
    if not isinstance(raw, dict):
        return [_one(r, path, raw)]
    if list(raw) != ["choice"]:
        r.fail(
            path,
            "families are searched with a choice, e.g. `family: {choice: [lrunet, dacnn]}`; "
            f"got {sorted(map(str, raw))}",
        )
    options = raw["choice"]
    if not isinstance(options, list) or not options:
        r.fail(f"{path}.choice", f"expected a non-empty list of families, got {options!r}")
    out: list[Family] = []
    for i, name in enumerate(options):
        family = _one(r, f"{path}.choice[{i}]", name)
        if family in out:
            r.fail(f"{path}.choice[{i}]", f"{family.name} is listed twice; remove the duplicate")
        out.append(family)
    return out


def _one(r: Reader, path: str, raw: Any) -> Family:
    families = list_families()
    if not isinstance(raw, str) or raw.lower() not in families:
        r.fail(
            path,
            f"unknown architecture family {raw!r}{did_you_mean(raw, families)}; registered "
            f"families: {', '.join(families)}",
        )
    return get_family(raw.lower())


def family_knobs(
    r: Reader, raw: dict[str, Any], family: Family, section: str
) -> dict[str, Distribution]:
    """The knobs of one family in the mapping `raw` found at key path `section`."""
    knobs: dict[str, Distribution] = {}
    keys = list(family.knobs)
    for key, value in raw.items():
        path = f"{section}.{key}"
        if key == FAMILY_KEY:
            if section != "model":
                r.fail(path, "a family block names its family by its key; remove `family:`")
            continue  # read by _families
        if key not in keys:
            if key in RECIPE_KNOBS:
                r.fail(path, f"{key} is a recipe knob; move it under `recipe:`")
            owners = [f for f in list_families() if key in get_family(f).knobs]
            hint = (
                f" ({key} is a knob of {', '.join(owners)}, not of {family.name})"
                if owners
                else ""
            )
            allowed = ([FAMILY_KEY] if section == "model" else []) + keys
            r.fail(
                path,
                f"unknown model knob{did_you_mean(key, keys)}{hint}; allowed: "
                f"{', '.join(allowed)}",
            )
        knobs[key] = r.knob(path, family.knobs[key], value)
    stages = [f"reuse_{s}" for s in range(1, 5)]
    if "reuse" in knobs and all(k in knobs for k in stages):
        r.fail(
            f"{section}.reuse",
            "has no effect because reuse_1 .. reuse_4 are all given (a "
            "per-stage key wins); remove reuse or one of the per-stage keys",
        )
    return {k: knobs[k] for k in keys if k in knobs}
