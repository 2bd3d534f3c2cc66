"""The objective registry: every metric a search may optimise or cap, declared once.

An `ObjectiveInfo` says what the metric is (name, direction, unit, label, how to print it), where
its value comes from, and how a search uses it:

* ``analytic``: a function of the architecture's analytic counts (`lrunet.counting.Counts`),
  known before anything runs, so a budget on it rejects a proposal in the driver in milliseconds
  and the loader can tell whether any architecture of the space meets it;
* ``trained``: reported by the training loop every epoch (validation accuracy, loss);
* ``measured``: measured on the trial's hardware before training (`lrunet.latency`), so a budget
  on it rejects a configuration in the trial's first seconds, before any epoch is trained.

Everything else reads this table: the search-space schema (which metrics may be objectives, which
`budgets:` keys exist, the default hypervolume reference point and the checks on a given one),
the budget checks, MLflow tracking (which result keys become metrics), the front (ideal point,
table columns) and its plots (axis labels, log axes), and the CLIs. Adding an objective is one
`register_objective` call here (README "Adding an objective").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lrunet import metrics as M
from lrunet.counting import Counts

ANALYTIC, TRAINED, MEASURED = "analytic", "trained", "measured"
KINDS = (ANALYTIC, TRAINED, MEASURED)

# What a default reference point may depend on: the dataset geometry, the (min, max) of each
# analytic objective over the space, and the objective's budget (None when the space sets none).
ReferenceRule = Callable[[Mapping[str, int], Mapping[str, tuple[float, float]], float | None], Any]


@dataclass(frozen=True)
class ObjectiveInfo:
    """One objective (module docstring). `reference` gives the default hypervolume reference
    point (None: the space must set one or a budget); `bounds` is the interval a reference point
    given in a space must lie in (None: unbounded on that side; a lower bound is exclusive when
    `bounds_open`)."""

    name: str
    mode: str  # "max" or "min"
    kind: str  # ANALYTIC, TRAINED or MEASURED
    unit: str  # "%", "ms" or "" (a count)
    label: str  # axis and card label, e.g. "validation accuracy (%)"
    column: str  # short table header, e.g. "val acc %"
    decimals: int = 0  # digits printed after the point (0: an integer with thousands separators)
    ideal: float | None = None  # the best value it can take (None: unknown)
    budget: str | None = None  # the `budgets:` key capping it, e.g. "max_params"
    integer_budget: bool = False
    log_axis: bool = False  # spans decades: plotted on a log axis
    value: Callable[[Counts], float] | None = None  # analytic: from the counts (int if counted)
    measurement: str | None = None  # measured objectives: the `measure:` entry that yields it
    reference: ReferenceRule | None = None
    bounds: tuple[float | None, float | None] = (None, None)
    bounds_open: bool = False
    doc: str = ""

    def __post_init__(self) -> None:
        if self.mode not in ("max", "min"):
            raise ValueError(f"objective {self.name}: mode {self.mode!r} is not 'max' or 'min'")
        if self.kind not in KINDS:
            raise ValueError(f"objective {self.name}: kind {self.kind!r} is not one of {KINDS}")
        if (self.kind == ANALYTIC) != (self.value is not None):
            raise ValueError(f"objective {self.name}: an analytic objective needs `value`")
        if (self.kind == MEASURED) != (self.measurement is not None):
            raise ValueError(f"objective {self.name}: a measured objective needs `measurement`")
        if self.budget is not None and self.mode != "min":
            raise ValueError(f"objective {self.name}: only a minimised objective can be capped")

    def format(self, v: float) -> str:
        """The value as tables print it (`val acc 91.23`, `params 232,650`, `1.84` ms)."""
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            return "-"
        return f"{v:,.0f}" if self.decimals == 0 else f"{v:.{self.decimals}f}"

    def default_reference(
        self,
        geometry: Mapping[str, int],
        ranges: Mapping[str, tuple[float, float]],
        budget: float | None,
    ) -> float | None:
        return None if self.reference is None else self.reference(geometry, ranges, budget)


_REGISTRY: dict[str, ObjectiveInfo] = {}


def register_objective(info: ObjectiveInfo) -> ObjectiveInfo:
    """Add an objective; a name or budget key registered twice raises ValueError."""
    if info.name in _REGISTRY:
        raise ValueError(f"objective {info.name!r} is already registered")
    if info.budget is not None and any(o.budget == info.budget for o in _REGISTRY.values()):
        raise ValueError(f"budget key {info.budget!r} is already used by another objective")
    _REGISTRY[info.name] = info
    return info


def list_objectives(kind: str | None = None) -> list[str]:
    """Registered objective names (of one kind), in registration order."""
    return [n for n, o in _REGISTRY.items() if kind is None or o.kind == kind]


def get_objective(name: str) -> ObjectiveInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown objective {name!r}; objectives: {', '.join(_REGISTRY)}"
        ) from None


def budget_keys() -> dict[str, str]:
    """`budgets:` key -> the objective it caps, e.g. {"max_params": "params", ...}."""
    return {o.budget: n for n, o in _REGISTRY.items() if o.budget is not None}


def analytic_values(counts: Counts) -> dict[str, float]:
    """Every analytic objective's value from an architecture's counts."""
    return {n: o.value(counts) for n, o in _REGISTRY.items() if o.kind == ANALYTIC}


def format_limit(key: str, limit: float) -> str:
    """A budget as messages print it: `max_params 12,000`, `max_mflops 20`, `max_latency_ms 4`."""
    o = _REGISTRY[budget_keys()[key]]
    return f"{key} {int(limit):,}" if o.integer_budget else f"{key} {limit:g}"


def over_budget(values: Mapping[str, float], limits: Mapping[str, float]) -> list[str]:
    """What breaks the `limits` (budget key -> limit) among `values` (objective -> value), as
    `params 232,650 > max_params 12,000`; a value not given is not checked."""
    keys = budget_keys()
    out = []
    for key, limit in limits.items():
        metric = keys[key]
        v = values.get(metric)
        if v is not None and v > limit:
            out.append(f"{metric} {_REGISTRY[metric].format(v)} > {format_limit(key, limit)}")
    return out


def measurements(names: list[str] | tuple[str, ...]) -> list[str]:
    """The `measure:` entries the given objectives (or budgeted objectives) need, in order."""
    out: list[str] = []
    for n in names:
        m = get_objective(n).measurement
        if m is not None and m not in out:
            out.append(m)
    return out


def logged_metrics() -> tuple[str, ...]:
    """Result keys a trial's MLflow run records: every objective plus the loop's other metrics."""
    extra = (M.TRAIN_LOSS, M.TRAIN_ACC, M.EPOCH_SECONDS, M.IMAGES_PER_SEC, M.LR)
    return tuple(dict.fromkeys((*_REGISTRY, *extra, *MEASURED_EXTRAS)))


# --- measurements -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """How a trial measures its measured objectives before training: the space's `measure:`
    entry `name` takes `settings` (setting -> validator returning the clean value or raising
    ValueError with the fix), defaulting to `defaults`; `function` ("module:function") is called
    in the trial as `function(cfg, **settings, threads=N)` and returns a dict of metrics."""

    name: str
    settings: Mapping[str, Callable[[Any], Any]]
    defaults: Mapping[str, Any]
    function: str
    keys: tuple[str, ...]  # the metrics `function` returns
    doc: str = ""

    def clean(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """`raw` settings validated, with the defaults filled in (ValueError: which and why)."""
        unknown = sorted(set(raw) - set(self.settings))
        if unknown:
            raise ValueError(
                f"unknown setting(s) {unknown}; {self.name} takes {', '.join(self.settings)}"
            )
        return {k: check(raw.get(k, self.defaults[k])) for k, check in self.settings.items()}

    def run(self, cfg: Any, settings: Mapping[str, Any], threads: int | None) -> dict[str, float]:
        import importlib

        module, _, fn = self.function.partition(":")
        return getattr(importlib.import_module(module), fn)(cfg, **settings, threads=threads)


MEASUREMENTS: dict[str, Measurement] = {}


def register_measurement(m: Measurement) -> Measurement:
    if m.name in MEASUREMENTS:
        raise ValueError(f"measurement {m.name!r} is already registered")
    MEASUREMENTS[m.name] = m
    return m


def get_measurement(name: str) -> Measurement:
    try:
        return MEASUREMENTS[name]
    except KeyError:
        raise ValueError(
            f"unknown measurement {name!r}; measurements: {', '.join(MEASUREMENTS)}"
        ) from None


def _latency_target(v: Any) -> str:
    from lrunet.latency import TARGETS  # imported when a space asks for latency: it loads torch

    if v not in TARGETS:
        raise ValueError(f"target {v!r} is not one of {', '.join(TARGETS)}")
    return v


def _latency_clock(v: Any) -> str:
    from lrunet.latency import CLOCKS

    if v not in CLOCKS:
        raise ValueError(f"clock {v!r} is not one of {', '.join(CLOCKS)}")
    return v


def _positive_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"expected a positive integer, got {v!r}")
    return v


register_measurement(
    Measurement(
        "latency",
        {"target": _latency_target, "batch_size": _positive_int, "clock": _latency_clock},
        {"target": "cpu1", "batch_size": 32, "clock": "wall"},
        "lrunet.latency:measure_config",
        (
            M.LATENCY_MS,
            M.LATENCY_IQR_MS,
            M.LATENCY_BATCH_MS,
            M.LATENCY_BATCH_IQR_MS,
            M.LATENCY_SECONDS,
        ),
        doc="median forward latency at batch 1 and at batch_size on a target (lrunet.latency)",
    )
)


# --- the built-in objectives ------------------------------------------------------------------


def _zero(geometry, ranges, budget) -> float:
    return 0.0


def _chance_loss(geometry, ranges, budget) -> float:
    """Cross-entropy of a uniform guess: ln(classes)."""
    return round(math.log(geometry["num_classes"]), 4)


def _budget_else_max(name: str) -> ReferenceRule:
    """A count's budget if the space sets one, else its largest value in the space."""

    def rule(geometry, ranges, budget) -> float:
        return float(budget) if budget is not None else float(ranges[name][1])

    return rule


def _budget_only(geometry, ranges, budget) -> float | None:
    """A measured value has no range before the search: its budget, else none (required)."""
    return None if budget is None else float(budget)


register_objective(
    ObjectiveInfo(
        M.VAL_ACC,
        "max",
        TRAINED,
        "%",
        "validation accuracy (%)",
        "val acc %",
        decimals=2,
        ideal=100.0,
        reference=_zero,
        bounds=(0.0, 100.0),
        doc="accuracy on the seeded validation split carved from the training data",
    )
)
register_objective(
    ObjectiveInfo(
        M.VAL_LOSS,
        "min",
        TRAINED,
        "",
        "validation loss",
        "val loss",
        decimals=4,
        ideal=0.0,
        reference=_chance_loss,
        bounds=(0.0, None),
        bounds_open=True,
        doc="mean cross-entropy on the validation split",
    )
)
for _name, _label, _budget, _decimals in (
    (M.PARAMS, "parameters", "max_params", 0),
    (M.CONV_PARAMS, "conv parameters", None, 0),
    (M.MACS, "multiply-accumulates", None, 0),
    (M.MFLOPS, "MFLOPs (the paper's convention)", "max_mflops", 2),
):
    register_objective(
        ObjectiveInfo(
            _name,
            "min",
            ANALYTIC,
            "",
            _label,
            _name,
            decimals=_decimals,
            ideal=0.0,
            budget=_budget,
            integer_budget=_name == M.PARAMS,
            log_axis=True,
            value=(lambda c, _n=_name: getattr(c, _n)),
            reference=_budget_else_max(_name),
            doc=f"analytic {_label} of the architecture (lrunet.counting)",
        )
    )
for _name, _label, _budget in (
    (M.LATENCY_MS, "latency at batch 1 (ms)", "max_latency_ms"),
    (M.LATENCY_BATCH_MS, "latency of one batch (ms)", "max_latency_batch_ms"),
):
    register_objective(
        ObjectiveInfo(
            _name,
            "min",
            MEASURED,
            "ms",
            _label,
            _name.replace("_ms", " ms"),
            decimals=3,
            ideal=0.0,
            budget=_budget,
            measurement="latency",
            reference=_budget_only,
            bounds=(0.0, None),
            bounds_open=True,
            doc="median inference latency on the space's target, measured before training",
        )
    )

# Metrics a measurement reports beside its objectives (logged to MLflow, not optimised).
MEASURED_EXTRAS = (M.LATENCY_IQR_MS, M.LATENCY_BATCH_IQR_MS, M.LATENCY_SECONDS)
