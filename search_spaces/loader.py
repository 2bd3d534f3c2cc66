"""Load a search-space YAML file into a `SearchSpec`, validated before any compute is spent.

    load_space("lru_full")               a shipped space, search_spaces/lru_full.yaml
    load_space("spaces/mine.yaml")       any path (contains "/" or ends in .yaml/.yml)
    load_space("lru_smoke", overrides={"training": {"num_samples": 4}})
    load_space("mine.yaml", geometry_from_data=f)   an image folder's geometry from its files

The schema is documented in search_spaces/README.md. Every problem raises `SpaceError` (a
ValueError) with a one-line message naming the file and line, the key path and the fix; a missing
file raises FileNotFoundError listing the shipped spaces. Nothing here imports Ray or Optuna.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lrunet.datasets import GEOMETRY_KEYS
from lrunet.metrics import PARAMS, VAL_ACC
from lrunet.objectives import (
    ANALYTIC,
    MEASUREMENTS,
    budget_keys,
    get_measurement,
    get_objective,
    list_objectives,
    measurements,
)
from lrunet.recipe import Recipe
from lrunet.registry import FAMILY_KEY, get_family, list_families
from search_spaces.architectures import check_architectures, check_budgets, merge_costs
from search_spaces.distributions import Choice, Distribution, Fixed
from search_spaces.model_section import read_model
from search_spaces.schema import (
    DATASET_GEOMETRY,
    DATASET_TRAIN_IMAGES,
    DATASETS,
    RECIPE_KNOBS,
    TOP_LEVEL_KEYS,
    Reader,
    SpaceError,
    did_you_mean,
)
from search_spaces.spec import (
    MIXED,
    Budgets,
    CostRange,
    Objective,
    SearchSpec,
    Training,
)

SPACES_DIR = Path(__file__).resolve().parent
DEFAULT_OBJECTIVES = ((VAL_ACC, "max"), (PARAMS, "min"))
TRAINING_KEYS = ("max_epochs", "grace_epochs", "reduction_factor", "num_samples", "subset")
# (dataset name, the geometry keys the file gives) -> the dataset's whole geometry, read from its
# files; what a search passes once it knows the data folder (`experiments.search`)
GeometryFromData = Callable[[str, Mapping[str, int]], Mapping[str, int]]
FROM_FILES = ("imagefolder",)  # datasets whose geometry lives in their files


def list_spaces() -> list[str]:
    """Names of the shipped spaces (search_spaces/*.yaml)."""
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def resolve_space(name_or_path: str) -> tuple[Path, str]:
    """(path, label for messages). A bare name is a shipped space; anything with a '/' or a
    .yaml/.yml suffix is a path."""
    s = str(name_or_path)
    if "/" in s or s.endswith((".yaml", ".yml")):
        path = Path(s)
        if not path.exists():
            raise FileNotFoundError(
                f"search space file {s} does not exist; shipped spaces: "
                f"{', '.join(list_spaces())} (pass a name, or a path to a .yaml file)"
            )
        if path.is_dir():
            raise SpaceError(f"{s} is a directory; pass a .yaml file or a shipped space name")
        return path, s
    path = SPACES_DIR / f"{s}.yaml"
    if not path.exists():
        raise FileNotFoundError(
            f"no shipped search space {s!r}{did_you_mean(s, list_spaces())}; shipped spaces: "
            f"{', '.join(list_spaces())}; or pass a path to a .yaml file"
        )
    return path, f"search_spaces/{s}.yaml"


def _merge(base: Any, over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base) if isinstance(base, dict) else {}
    for k, v in over.items():
        out[k] = (
            _merge(out.get(k), v)
            if isinstance(v, dict) and isinstance(out.get(k), dict)
            else copy.deepcopy(v)
        )
    return out


def load_space(
    name_or_path: str,
    overrides: dict[str, Any] | None = None,
    *,
    geometry_from_data: GeometryFromData | None = None,
) -> SearchSpec:
    """Read, validate and return the search space `name_or_path` (see the module docstring).

    `overrides` is merged into the file's mapping before validation (nested mappings merge key
    by key), so a CLI option such as `--num-samples` is checked like the file itself.
    `geometry_from_data(name, given)` completes the geometry of a dataset whose geometry lives in
    its files (an image folder): it gets the keys the file gives, returns all three, and is
    checked like the file (a given key it contradicts is an error). Without it such a space
    needs its whole geometry in the file. Counts, budgets and the reference point then use it.
    """
    path, label = resolve_space(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SpaceError(f"{label}: not UTF-8 text ({e.reason}); save the file as UTF-8") from None
    r = Reader(label + (" (with overrides)" if overrides else ""), text)
    data = r.data
    if data is None:
        r.fail("", "the file is empty; start from search_spaces/lru_smoke.yaml")
    if not isinstance(data, dict):
        r.fail(
            "",
            f"expected a mapping of sections ({', '.join(TOP_LEVEL_KEYS)}) at the top "
            f"level, got {type(data).__name__}",
        )
    if overrides:
        data = _merge(data, overrides)
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            if key in RECIPE_KNOBS:
                r.fail(str(key), f"{key} is a recipe knob; put it under `recipe:`")
            if key == FAMILY_KEY or any(key in get_family(f).knobs for f in list_families()):
                r.fail(str(key), f"{key} is a model knob; put it under `model:`")
            r.fail(
                str(key),
                f"unknown section{did_you_mean(key, TOP_LEVEL_KEYS)}; allowed: "
                f"{', '.join(TOP_LEVEL_KEYS)}",
            )
    description = data.get("description") or ""
    if not isinstance(description, str):
        r.fail("description", f"expected text, got {description!r}")
    dataset, geometry = _dataset(r, data.get("dataset"), geometry_from_data)
    families, model, blocks = read_model(r, data.get("model"))
    recipe = _recipe(r, data.get("recipe"))
    training = _training(r, data.get("training"), recipe, dataset)
    if "epochs" not in recipe:  # the LR schedule spans the whole epoch budget
        recipe["epochs"] = Fixed(training.max_epochs)
    names = tuple(f.name for f in families)
    # every trial config names its family: fixed, or drawn before the family's own knobs
    family_knob = Choice(names) if blocks else Fixed(names[0])
    knobs = {
        FAMILY_KEY: family_knob,
        **model,
        **{k: recipe[k] for k in RECIPE_KNOBS if k in recipe},
    }
    per_family = blocks or {names[0]: model}
    costs = merge_costs(
        [
            check_architectures(
                r, per_family[f.name], geometry, f, f"model.{f.name}" if blocks else "model"
            )
            for f in families
        ]
    )
    budgets = check_budgets(r, data.get("budgets"), per_family, geometry)
    objectives = _objectives(r, data.get("objectives"))
    reference = _reference_point(
        r, data.get("reference_point"), objectives, geometry, costs, budgets
    )
    measure = _measure(r, data.get("measure"), objectives, budgets)
    return SearchSpec(
        name=path.stem,
        path=label,
        description=" ".join(description.split()),
        dataset=dataset,
        geometry=geometry,
        knobs=knobs,
        objectives=objectives,
        reference_point=reference,
        budgets=budgets,
        training=training,
        costs=costs,
        family=names[0] if not blocks else MIXED,
        blocks=blocks,
        measure=measure,
    )


# --- sections ---------------------------------------------------------------------------------


def _dataset(
    r: Reader, raw: Any, from_data: GeometryFromData | None = None
) -> tuple[str, dict[str, int]]:
    if raw is None:
        return "cifar10", dict(DATASET_GEOMETRY["cifar10"])
    if isinstance(raw, str):
        if raw not in DATASETS:
            r.fail(
                "dataset",
                f"unknown dataset {raw!r}{did_you_mean(raw, DATASETS)}; use one of "
                f"{', '.join(DATASETS)}",
            )
        if raw in FROM_FILES:
            return raw, _geometry_from_files(r, raw, {}, from_data)
        return raw, dict(DATASET_GEOMETRY[raw])
    m = r.mapping("dataset", raw, ("name", *GEOMETRY_KEYS), "{name: cifar10}")
    name = m.get("name")
    if name not in DATASETS:
        r.fail(
            "dataset.name",
            f"{name!r} is not a dataset{did_you_mean(name, DATASETS)}; use one "
            f"of {', '.join(DATASETS)}",
        )
    given: dict[str, int] = {}
    for key in GEOMETRY_KEYS:
        if key in m:
            given[key] = r.number(f"dataset.{key}", m[key], integer=True)
            if given[key] < (2 if key == "input_size" else 1):
                r.fail(f"dataset.{key}", f"must be at least {2 if key == 'input_size' else 1}")
    if name in FROM_FILES:
        return name, _geometry_from_files(r, name, given, from_data)
    return name, {**DATASET_GEOMETRY[name], **given}


def _geometry_from_files(
    r: Reader, name: str, given: dict[str, int], from_data: GeometryFromData | None
) -> dict[str, int]:
    """An image folder's geometry: the file's keys completed (and checked) from the folder when
    `from_data` is given, else the file's keys with the old defaults (3 channels, 32x32)."""
    if given.get("in_channels", 1) not in (1, 3):
        r.fail(
            "dataset.in_channels",
            f"{name} images are read as 1 channel (every image greyscale) or 3 (RGB), not "
            f"{given['in_channels']}; write in_channels: 1 or 3, or leave it out (the folder "
            "tells)",
        )
    if from_data is None:
        if "num_classes" not in given:
            r.fail(
                "dataset",
                f"{name} takes its classes, channels and size from its folder, which a search "
                f"reads (--data-dir DIR); to load the space without the folder, give them: "
                f"`dataset: {{name: {name}, num_classes: N, in_channels: 3, input_size: 32}}`",
            )
        return {"in_channels": 3, "input_size": 32, **given}
    found = dict(from_data(name, dict(given)))
    for key in GEOMETRY_KEYS:  # what the folder says is validated like the file
        v = found.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < (2 if key == "input_size" else 1):
            r.fail("dataset", f"{name}: the folder gave {key} = {v!r}, not a valid {key}")
        if key in given and given[key] != v:
            r.fail(
                f"dataset.{key}",
                f"{given[key]} but the folder has {key} {v}; fix it or leave it out (the "
                "folder tells)",
            )
    return {key: found[key] for key in GEOMETRY_KEYS}


def _recipe(r: Reader, raw: Any) -> dict[str, Distribution]:
    """The `recipe:` section's knobs."""
    if raw is None:
        return {}
    keys = list(RECIPE_KNOBS)
    if not isinstance(raw, dict):
        r.fail("recipe", f"expected a mapping of knobs such as `{keys[0]}: ...`, got {raw!r}")
    knobs: dict[str, Distribution] = {}
    for key, value in raw.items():
        path = f"recipe.{key}"
        if key not in RECIPE_KNOBS:
            if key == FAMILY_KEY or any(key in get_family(f).knobs for f in list_families()):
                r.fail(path, f"{key} is a model knob; move it under `model:`")
            r.fail(
                path,
                f"unknown recipe knob{did_you_mean(key, keys)}; allowed: {', '.join(keys)}",
            )
        knobs[key] = r.knob(path, RECIPE_KNOBS[key], value)
    return knobs


def _training(r: Reader, raw: Any, knobs: dict[str, Distribution], dataset: str) -> Training:
    m = r.mapping("training", raw, TRAINING_KEYS, "{max_epochs: 4, num_samples: 8}")
    epochs = knobs.get("epochs")
    default_max = int(epochs.high) if epochs is not None else Recipe.epochs
    v: dict[str, Any] = {}
    for key in ("max_epochs", "grace_epochs", "num_samples"):
        if key in m:
            v[key] = r.number(f"training.{key}", m[key], integer=True)
            if v[key] < 1:
                r.fail(f"training.{key}", f"must be an integer >= 1, got {v[key]}")
    max_epochs = v.setdefault("max_epochs", default_max)
    # A schedule longer than max_epochs is allowed (ASHA stops the trial at max_epochs, e.g. a
    # quick run of a 300-epoch recipe); one that always ends before max_epochs is a typo.
    if epochs is not None and epochs.high < max_epochs:
        r.fail(
            "recipe.epochs",
            f"is at most {epochs.high} but training.max_epochs is {max_epochs}; no trial "
            "trains past its LR schedule, so raise recipe.epochs or lower training.max_epochs",
        )
    if v.get("grace_epochs", 1) > max_epochs:
        r.fail(
            "training.grace_epochs",
            f"{v['grace_epochs']} exceeds max_epochs {max_epochs}; "
            "the grace period must be at most max_epochs",
        )
    if "reduction_factor" in m:
        v["reduction_factor"] = r.number("training.reduction_factor", m["reduction_factor"])
        if v["reduction_factor"] <= 1:
            r.fail(
                "training.reduction_factor",
                f"must be > 1 (ASHA keeps 1/reduction_factor of "
                f"the trials per rung), got "
                f"{v['reduction_factor']:g}; use 2, 3 or 4",
            )
    if m.get("subset") is not None:
        v["subset"] = r.number("training.subset", m["subset"], integer=True)
        available = DATASET_TRAIN_IMAGES.get(dataset)
        if v["subset"] < 1 or (available is not None and v["subset"] > available):
            r.fail(
                "training.subset",
                f"{v['subset']} training images requested; {dataset} has "
                f"{available or 'an unknown number of'} (use 1 .. "
                f"{available or 'N'}, or null for all)",
            )
    return Training(**v)


def _objectives(r: Reader, raw: Any) -> tuple[Objective, ...]:
    if raw is None:
        return tuple(Objective(m, mode) for m, mode in DEFAULT_OBJECTIVES)
    if not isinstance(raw, list) or not raw:
        r.fail(
            "objectives",
            "expected a non-empty list such as `[{metric: val_acc, mode: max}, "
            "{metric: params, mode: min}]`",
        )
    names = list_objectives()
    out: list[Objective] = []
    for i, item in enumerate(raw):
        path = f"objectives[{i}]"
        if isinstance(item, str):
            metric, mode = item, None
        else:
            m = r.mapping(path, item, ("metric", "mode"), "{metric: val_acc, mode: max}")
            if "metric" not in m:
                r.fail(path, "missing `metric:`; write e.g. {metric: params, mode: min}")
            metric, mode = m["metric"], m.get("mode")
            path += ".metric"
        if not isinstance(metric, str) or metric not in names:
            r.fail(
                path,
                f"unknown metric {metric!r}{did_you_mean(metric, names)}; "
                f"objectives can be: {', '.join(names)}",
            )
        natural = get_objective(metric).mode
        if mode is not None and mode != natural:
            where = path.removesuffix(".metric") + ".mode"
            if mode not in ("min", "max"):
                r.fail(where, f"mode must be min or max, got {mode!r}")
            r.fail(
                where, f"{metric} is always {natural}imised; write mode: {natural} or drop mode"
            )
        if any(o.metric == metric for o in out):
            r.fail(path, f"{metric} is listed twice; remove the duplicate")
        out.append(Objective(metric, natural))
    return tuple(out)


def _reference_point(
    r: Reader,
    raw: Any,
    objectives: tuple[Objective, ...],
    geometry: dict[str, int],
    costs: CostRange,
    budgets: Budgets,
) -> tuple[float, ...]:
    """The hypervolume's reference point: given, checked against each objective's bounds (and,
    for an analytic one, against the space's range), or each objective's default."""
    if raw is None:
        ref = []
        for i, o in enumerate(objectives):
            info = get_objective(o.metric)
            v = info.default_reference(geometry, costs.ranges, budgets.limit(o.metric))
            if v is None:
                r.fail(
                    "reference_point" if budgets.limits else f"objectives[{i}]",
                    f"{o.metric} is {info.kind} during the search, so it has no default "
                    f"hypervolume reference point; set budgets.{info.budget} or a "
                    f"reference_point (measure an architecture with 'python launch.py describe "
                    f"ARCH --latency')",
                )
            ref.append(float(v))
        return tuple(ref)
    names = [o.metric for o in objectives]
    if not isinstance(raw, list) or len(raw) != len(objectives):
        r.fail(
            "reference_point",
            f"expected a list of {len(objectives)} numbers, one per "
            f"objective ({', '.join(names)}), got {raw!r}",
        )
    ref = []
    for i, (o, v) in enumerate(zip(objectives, raw)):
        x = r.number(f"reference_point[{i}]", v)
        path = f"reference_point[{i}]"
        info = get_objective(o.metric)
        lo, hi = info.bounds
        if hi is not None and not lo <= x < hi:
            unit = " (percent)" if info.unit == "%" else f" ({info.unit})" if info.unit else ""
            r.fail(
                path, f"{o.metric} reference {x:g} must be in [{lo:g}, {hi:g}){unit}; use {lo:g}"
            )
        if hi is None and lo is not None and (x < lo or (info.bounds_open and x == lo)):
            r.fail(path, f"{o.metric} reference must be > {lo:g}, got {x:g}")
        if info.kind == ANALYTIC:
            smallest, largest = costs.ranges[o.metric]
            if x <= smallest:
                r.fail(
                    path,
                    f"{o.metric} reference {x:g} is not above the smallest {o.metric} in "
                    f"the space ({smallest:,}), so the hypervolume would always be 0; use a "
                    f"value >= {largest:,}",
                )
        ref.append(x)
    return tuple(ref)


def _measure(
    r: Reader, raw: Any, objectives: tuple[Objective, ...], budgets: Budgets
) -> dict[str, dict[str, Any]]:
    """The `measure:` section: what each trial measures before training, with its settings. A
    measurement that an objective or a budget needs is on even when the section omits it."""
    keys = budget_keys()
    needed = measurements([o.metric for o in objectives] + [keys[k] for k in budgets.limits])
    m = r.mapping("measure", raw or {}, tuple(MEASUREMENTS), "{latency: {target: cpu1}}")
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys([*needed, *m]):
        settings = m.get(name) or {}
        if not isinstance(settings, dict):
            r.fail(f"measure.{name}", f"expected a mapping of settings, got {settings!r}")
        try:
            out[name] = get_measurement(name).clean(settings)
        except ValueError as e:
            r.fail(f"measure.{name}", str(e))
    return out
