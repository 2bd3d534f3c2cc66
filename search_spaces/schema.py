"""What a search-space YAML file may contain: the knobs, their types and ranges, the datasets, and
the reader that turns raw YAML values into typed ones with one-line errors.

Every error names the file (with the line when known), the key path and the fix, e.g.::

    spaces/mine.yaml:7: model.reuse_1: unknown distribution 'randit' (did you mean 'randint'?);
    write one of {choice: [...]}, {randint: [lo, hi]}, ...

The model knobs are those the space's architecture family declares (`lrunet.registry.Family.knobs`,
LruNet's by default), the recipe knobs `lrunet.recipe.RECIPE_KEYS`, so a sampled trial config goes
straight into `lrunet.recipe.split_trial_config`.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Any, NoReturn

import yaml

from lrunet.datasets import DATASET_NAMES
from lrunet.datasets import DATASETS as DATASET_TABLE
from lrunet.knobs import Knob
from lrunet.recipe import RECIPE_KEYS, SCHEDULES, TRIAL_KEYS
from lrunet.registry import DEFAULT_FAMILY, FAMILY_KEY, get_family, list_families
from search_spaces.distributions import (
    DISTRIBUTIONS,
    Choice,
    Distribution,
    Fixed,
    LogUniform,
    QUniform,
    RandInt,
    Uniform,
)

# Geometry used to COUNT params and MFLOPs (keyword arguments of split_trial_config), from the
# one dataset table (lrunet.datasets). Fashion-MNIST is counted at 28x28 as the paper does (its
# MFLOPs are at the 28x28 test geometry, LRUNET_SPEC.md §2) although the reference trains on
# 32x32 crops. The 8x8 sklearn digits are upsampled to 32x32 by the trainer. imagefolder has no
# default: a search reads it from the folder (load_space's geometry_from_data).
DATASET_GEOMETRY: dict[str, dict[str, int]] = {n: i.geometry for n, i in DATASET_TABLE.items()}
DATASETS = DATASET_NAMES
# Images available for training (an upper bound for `training.subset`).
DATASET_TRAIN_IMAGES: dict[str, int] = {
    n: i.train_images for n, i in DATASET_TABLE.items() if i.train_images is not None
}

TOP_LEVEL_KEYS = (
    "description",
    "dataset",
    "model",
    "recipe",
    "objectives",
    "reference_point",
    "budgets",
    "measure",
    "training",
)


_RECIPE_KNOBS = [
    Knob("lr", "recipe", float, lo=0, lo_open=True),
    Knob("momentum", "recipe", float, lo=0, hi=1, hi_open=True),
    Knob("weight_decay", "recipe", float, lo=0),
    Knob("batch_size", "recipe", int, lo=1),
    Knob("epochs", "recipe", int, lo=1),
    Knob("schedule", "recipe", str, names=SCHEDULES),
    Knob("label_smoothing", "recipe", float, lo=0, hi=1, hi_open=True),
    Knob("seed", "recipe", int, lo=0),
]
# A KeyError at import if lrunet.recipe gains a recipe key this table does not describe.
RECIPE_KNOBS: dict[str, Knob] = {k: {kn.name: kn for kn in _RECIPE_KNOBS}[k] for k in RECIPE_KEYS}


def knobs_for(family: str = DEFAULT_FAMILY) -> dict[str, Knob]:
    """Every knob a space of `family` may set: `family` itself, its model knobs, the recipe's
    (in the order of `lrunet.recipe.trial_keys`)."""
    fam = get_family(family)
    family_knob = Knob(FAMILY_KEY, "model", str, names=tuple(list_families()))
    return {FAMILY_KEY: family_knob, **fam.knobs, **RECIPE_KNOBS}


def section_keys(family: str = DEFAULT_FAMILY) -> dict[str, tuple[str, ...]]:
    """Keys allowed under `model:` and `recipe:` for a space of `family`."""
    return {"model": (FAMILY_KEY, *get_family(family).knobs), "recipe": RECIPE_KEYS}


# LruNet's knobs, the default family's (lrunet.recipe.TRIAL_KEYS order).
KNOBS: dict[str, Knob] = {k: knobs_for()[k] for k in TRIAL_KEYS}
SECTION_KEYS = section_keys()


class SpaceError(ValueError):
    """A search-space file is wrong. The message is one line: file, key path, problem, fix."""


def did_you_mean(word: Any, options: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest option, or ''."""
    options = list(options)
    lowered = {o.lower(): o for o in options}
    if isinstance(word, str) and word.lower() in lowered:
        return f" (did you mean {lowered[word.lower()]!r}?)"
    close = difflib.get_close_matches(str(word), options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _same_number(name: str, value: float) -> bool:
    try:
        return float(name) == float(value)
    except ValueError:
        return False


class Reader:
    """Raises SpaceErrors that point at the file and line of a key path."""

    def __init__(self, label: str, text: str) -> None:
        self.label = label
        self.lines: dict[str, int] = {}
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
            self.data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
            where = f"{label}:{mark.line + 1}:{mark.column + 1}" if mark else label
            problem = getattr(e, "problem", None) or str(e).split("\n")[0]
            context, cmark = getattr(e, "context", None), getattr(e, "context_mark", None)
            if context and cmark is not None:
                problem += f" ({context} started at line {cmark.line + 1})"
            raise SpaceError(
                f"{where}: YAML syntax error: {problem}; fix the indentation, quoting or "
                "brackets there"
            ) from None
        if root is not None:
            self._index(root, "")

    def _index(self, node: yaml.Node, path: str) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                name = str(key.value)
                sub = f"{path}.{name}" if path else name
                if name in seen:
                    raise SpaceError(
                        f"{self.label}:{key.start_mark.line + 1}: {sub}: key given twice (YAML "
                        "would silently keep the last one); remove one of them"
                    )
                seen.add(name)
                self.lines[sub] = key.start_mark.line + 1
                self._index(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                sub = f"{path}[{i}]"
                self.lines[sub] = item.start_mark.line + 1
                self._index(item, sub)

    def fail(self, path: str, message: str) -> NoReturn:
        line = None
        probe = path
        while probe and line is None:  # the nearest enclosing key with a known line
            line = self.lines.get(probe)
            probe = probe.rpartition("[")[0] if probe.endswith("]") else probe.rpartition(".")[0]
        where = f"{self.label}:{line}" if line else self.label
        raise SpaceError(f"{where}: {path}: {message}" if path else f"{where}: {message}")

    # --- typed values -------------------------------------------------------------------------

    def number(self, path: str, raw: Any, *, integer: bool = False) -> int | float:
        """A number from YAML. Strings such as '1e-3' (PyYAML reads 1e-3 as text) are cast."""
        what = "an integer" if integer else "a number"
        v: Any = raw
        if isinstance(raw, str):
            try:
                v = float(raw.strip().replace("_", ""))
            except ValueError:
                self.fail(
                    path,
                    f"expected {what}, got the text {raw!r}; write {what} such as "
                    f"{'16' if integer else '0.001 or 1e-3'}",
                )
        elif isinstance(raw, bool) or not isinstance(raw, (int, float)):
            got = "nothing" if raw is None else f"{type(raw).__name__} {raw!r}"
            self.fail(path, f"expected {what}, got {got}")
        if isinstance(v, float) and not math.isfinite(v):
            self.fail(path, f"expected a finite number, got {raw!r}")
        if integer:
            if isinstance(v, float) and not v.is_integer():
                self.fail(path, f"expected an integer, got {raw!r}; round it")
            return int(v)
        return float(v)

    def value(self, path: str, knob: Knob, raw: Any) -> Any:
        """One value of `knob`, type-checked and range-checked."""
        if knob.type is str:
            if isinstance(raw, (int, float)) and not isinstance(raw, bool):
                # a named value that reads as a number (ShuffleNetV2's widths "0.25", ...)
                raw = next((n for n in knob.names if _same_number(n, raw)), raw)
            if not isinstance(raw, str) or raw not in knob.names:
                self.fail(path, f"{raw!r} is not {knob.domain()}{did_you_mean(raw, knob.names)}")
            return raw
        v = self.number(path, raw, integer=knob.type is int)
        if not knob.admits(v):
            self.fail(path, f"{v:g} is out of range: {knob.name} must be {knob.domain()}")
        return v

    def knob(self, path: str, knob: Knob, raw: Any) -> Distribution:
        """A knob's fixed value or distribution."""
        if raw is None:
            self.fail(path, "no value given; write a value or a distribution, or remove the key")
        if isinstance(raw, list):
            hint = " (per-stage values go in reuse_1 .. reuse_4)" if knob.name == "reuse" else ""
            self.fail(
                path,
                f"a bare list is ambiguous; to search over these values write "
                f"{{choice: {raw}}}{hint}",
            )
        if not isinstance(raw, dict):
            return Fixed(self.value(path, knob, raw))
        if len(raw) != 1:
            self.fail(
                path,
                f"a distribution is a mapping with exactly one key, got "
                f"{sorted(map(str, raw))}; write e.g. {{randint: [1, 16]}}",
            )
        ((name, args),) = raw.items()
        sub = f"{path}.{name}"
        if name not in DISTRIBUTIONS:
            self.fail(
                sub,
                f"unknown distribution {name!r}{did_you_mean(name, DISTRIBUTIONS)}; "
                f"use one of {', '.join(DISTRIBUTIONS)}",
            )
        allowed = {
            str: ("choice",),
            int: ("choice", "randint"),
            float: ("choice", "uniform", "loguniform", "quniform"),
        }[knob.type]
        if name not in allowed:
            kind = {str: "a named", int: "an integer", float: "a real-valued"}[knob.type]
            self.fail(
                sub,
                f"{knob.name} is {kind} knob and cannot use {name}; use {' or '.join(allowed)}",
            )
        if name == "choice":
            return self._choice(sub, knob, args)
        arity = 3 if name == "quniform" else 2
        form = "[lo, hi, q]" if arity == 3 else "[lo, hi]"
        if not isinstance(args, list) or len(args) != arity:
            self.fail(sub, f"expected a list {form}, got {args!r}")
        nums = [
            self.number(f"{sub}[{i}]", a, integer=knob.type is int) for i, a in enumerate(args)
        ]
        lo, hi = nums[0], nums[1]
        if lo > hi:
            self.fail(sub, f"reversed range {form} = {nums}; write the smaller bound first")
        if lo == hi:
            self.fail(
                sub,
                f"empty range: lo = hi = {lo:g}; to fix {knob.name} write "
                f"`{knob.name}: {lo:g}`, or widen the range",
            )
        for i, b in enumerate((lo, hi)):
            if not knob.admits(b):
                self.fail(
                    f"{sub}[{i}]",
                    f"bound {b:g} is out of range: {knob.name} must be {knob.domain()}",
                )
        if name == "randint":
            return RandInt(int(lo), int(hi))
        if name == "uniform":
            return Uniform(lo, hi)
        if name == "loguniform":
            if lo <= 0:
                self.fail(
                    sub,
                    f"loguniform needs lo > 0, got {lo:g}; use uniform or a positive lower bound",
                )
            return LogUniform(lo, hi)
        q = nums[2]
        if q <= 0:
            self.fail(f"{sub}[2]", f"step q must be > 0, got {q:g}")
        for i, b in enumerate((lo, hi)):
            if abs(b / q - round(b / q)) > 1e-9:
                self.fail(
                    f"{sub}[{i}]",
                    f"bound {b:g} is not a multiple of the step {q:g}; "
                    f"make both bounds multiples of q",
                )
        return QUniform(lo, hi, q)

    def _choice(self, path: str, knob: Knob, args: Any) -> Choice:
        if not isinstance(args, list) or not args:
            self.fail(path, f"expected a non-empty list of values, got {args!r}")
        values = tuple(self.value(f"{path}[{i}]", knob, a) for i, a in enumerate(args))
        for i, v in enumerate(values):
            if v in values[:i]:
                self.fail(
                    f"{path}[{i}]",
                    f"value {v!r} listed twice (it would be sampled twice "
                    "as often); remove the duplicate",
                )
        return Choice(values)

    def mapping(self, path: str, raw: Any, allowed: Iterable[str], example: str) -> dict:
        """A section that must be a mapping whose keys are all in `allowed`."""
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.fail(path, f"expected a mapping such as `{example}`, got {raw!r}")
        allowed = list(allowed)
        for key in raw:
            if key not in allowed:
                self.fail(
                    f"{path}.{key}" if path else str(key),
                    f"unknown key{did_you_mean(key, allowed)}; allowed: {', '.join(allowed)}",
                )
        return raw
