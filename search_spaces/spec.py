"""`SearchSpec`: a validated search space, and what the rest of the platform asks of it.

Built by `search_spaces.loader.load_space`; never import Ray or Optuna here at module level. The
spec samples flat trial configs (keys: `lrunet.recipe.TRIAL_KEYS`), enumerates finite spaces,
translates itself to Ray Tune's param space or to Optuna distributions, and decides analytically
(milliseconds, from the family's analytic counts) whether a config fits the budgets, so that an
over-budget or invalid architecture is reported infeasible instead of being trained.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from lrunet.counting import Counts
from lrunet.objectives import (
    ANALYTIC,
    MEASURED,
    analytic_values,
    budget_keys,
    get_objective,
    over_budget,
)
from lrunet.recipe import split_trial_config
from lrunet.registry import DEFAULT_FAMILY, FAMILY_KEY, count
from search_spaces.distributions import Distribution, Fixed

MIXED = "mixed"  # SearchSpec.family of a space whose trials draw their family


@dataclass(frozen=True)
class Objective:
    metric: str  # a registered objective (lrunet.objectives)
    mode: str  # "min" or "max"


@dataclass(frozen=True)
class Budgets:
    """Hard limits, keyed by `budgets:` key (`max_params`, `max_latency_ms`, ...: each objective's
    `budget` in `lrunet.objectives`). A config over an analytic one never trains; one over a
    measured one is rejected by its trial before the first epoch. `budgets.max_params` reads a
    limit (None: not set)."""

    limits: Mapping[str, float] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        if name != "limits" and not name.startswith("__") and name in budget_keys():
            return self.limits.get(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def of_kind(self, kind: str) -> dict[str, float]:
        """The limits on objectives of one kind (ANALYTIC or MEASURED)."""
        keys = budget_keys()
        return {k: v for k, v in self.limits.items() if get_objective(keys[k]).kind == kind}

    def limit(self, metric: str) -> float | None:
        """The budget capping objective `metric`, if the space sets one."""
        key = get_objective(metric).budget
        return None if key is None else self.limits.get(key)

    def describe(self) -> str:
        """`max_params 250,000, max_latency_ms 4` (empty when none is set)."""
        keys = budget_keys()
        return ", ".join(f"{k} {get_objective(keys[k]).format(v)}" for k, v in self.limits.items())


@dataclass(frozen=True)
class Training:
    """Search-budget defaults (the CLI may override them)."""

    max_epochs: int  # ASHA's max_t: no trial trains longer
    grace_epochs: int = 1  # ASHA's grace period: no trial is stopped before this
    reduction_factor: float = 3.0  # ASHA's eta: keep 1/eta of the trials at each rung
    num_samples: int = 20  # trials to run
    subset: int | None = None  # training images used (None: all)


@dataclass(frozen=True)
class CostRange:
    """Min and max of each analytic objective over every valid architecture in the space, budgets
    ignored: `ranges["params"]`, also read as `costs.params`."""

    ranges: Mapping[str, tuple[float, float]]

    def __getattr__(self, name: str) -> tuple[float, float]:
        if name != "ranges" and not name.startswith("__"):
            try:
                return self.ranges[name]
            except KeyError:
                pass
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def _num(v: float) -> str:
    return f"{int(v):,}" if float(v).is_integer() and abs(v) >= 1000 else f"{v:g}"


def _rng(rng: random.Random | int | None) -> random.Random:
    return rng if isinstance(rng, random.Random) else random.Random(rng)


@dataclass(frozen=True)
class SearchSpec:
    """A search space, validated: every knob typed, every range sane, the budgets reachable."""

    name: str
    path: str
    description: str
    dataset: str
    geometry: dict[str, int]  # num_classes, in_channels, input_size used for counting
    knobs: dict[str, Distribution]  # in TRIAL_KEYS order; recipe.epochs always present
    objectives: tuple[Objective, ...]
    reference_point: tuple[float, ...]
    budgets: Budgets
    training: Training
    costs: CostRange = field(compare=False)
    family: str = DEFAULT_FAMILY  # the architecture family (lrunet.registry) of every trial,
    # or MIXED: `knobs["family"]` is then a choice and `blocks` holds each family's own knobs
    blocks: dict[str, dict[str, Distribution]] = field(default_factory=dict)
    # what each trial measures before training (lrunet.objectives.MEASUREMENTS), with settings:
    # {"latency": {"target": "cpu1", "batch_size": 32}}
    measure: dict[str, dict[str, Any]] = field(default_factory=dict)

    # --- shape of the space -------------------------------------------------------------------

    @property
    def families(self) -> tuple[str, ...]:
        """The architecture families trials are drawn from (one unless the space is mixed)."""
        return tuple(self.blocks) if self.blocks else (self.family,)

    @property
    def metrics(self) -> list[str]:
        return [o.metric for o in self.objectives]

    @property
    def modes(self) -> list[str]:
        return [o.mode for o in self.objectives]

    @property
    def fixed(self) -> dict[str, Any]:
        """The knobs that are not searched, with their values."""
        return {k: d.value for k, d in self.knobs.items() if isinstance(d, Fixed)}

    @property
    def searched(self) -> dict[str, Distribution]:
        return {k: d for k, d in self.knobs.items() if not isinstance(d, Fixed)}

    @property
    def dimensions(self) -> int:
        """Searched knobs, each family's own counted too in a mixed space."""
        own = sum(not isinstance(d, Fixed) for b in self.blocks.values() for d in b.values())
        return len(self.searched) + own

    def _all(self) -> list[tuple[str, Distribution]]:
        return [*self.knobs.items(), *((k, d) for b in self.blocks.values() for k, d in b.items())]

    @property
    def is_grid(self) -> bool:
        """True when every knob takes finitely many values (choice, randint, quniform, fixed)."""
        return all(d.is_finite for _, d in self._all())

    @property
    def num_configs(self) -> int | None:
        """Number of distinct flat configs, or None for a continuous space."""
        if not self.is_grid:
            return None
        if not self.blocks:
            return math.prod(d.size for d in self.knobs.values())
        shared = math.prod(d.size for k, d in self.knobs.items() if k != FAMILY_KEY)
        return shared * sum(math.prod(d.size for d in b.values()) for b in self.blocks.values())

    def grid(self) -> Iterator[dict[str, Any]]:
        """Every flat config of a finite space, in a fixed order (family by family)."""
        if not self.is_grid:
            continuous = [k for k, d in self._all() if not d.is_finite]
            raise ValueError(
                f"{self.name}: not a finite space, {', '.join(continuous)} "
                "are continuous; use choice/randint/quniform to enumerate it"
            )
        for family in self.families:
            knobs = dict(self.knobs)
            if self.blocks:
                knobs[FAMILY_KEY] = Fixed(family)
                knobs.update(self.blocks[family])
            keys = list(knobs)
            for values in itertools.product(*(knobs[k].values() for k in keys)):
                yield dict(zip(keys, values))
            if not self.blocks:
                return

    def sample(self, rng: random.Random | int | None = None) -> dict[str, Any]:
        """One flat trial config (budgets NOT applied: see `check_budget`). In a mixed space the
        family is drawn first, then that family's knobs only."""
        r = _rng(rng)
        flat = {k: d.sample(r) for k, d in self.knobs.items()}
        if self.blocks:
            flat.update({k: d.sample(r) for k, d in self.blocks[flat[FAMILY_KEY]].items()})
        return flat

    def complete(self, suggestion: Mapping[str, Any]) -> dict[str, Any]:
        """The flat trial config of a searcher's suggestion: the fixed knobs added and, in a mixed
        space, the drawn family's knobs (suggested as `<family>.<knob>`, or plain) and its fixed
        block values; knobs of the other families are dropped."""
        flat = {**self.fixed, **suggestion}
        if not self.blocks:
            return flat
        family = flat[FAMILY_KEY]
        out = {k: v for k, v in flat.items() if "." not in k and k in self.knobs}
        for k, d in self.blocks[family].items():
            if isinstance(d, Fixed):
                out[k] = d.value
        prefix = f"{family}."
        for k, v in flat.items():
            if k.startswith(prefix):
                out[k[len(prefix) :]] = v
            elif k in self.blocks[family]:
                out[k] = v
        return out

    def block_name(self, family: str, knob: str) -> str:
        """The searcher's name of a mixed space's family knob (`dacnn.width`): families' knobs of
        the same name have different domains, so each gets its own dimension."""
        return f"{family}.{knob}"

    def sample_feasible(
        self, rng: random.Random | int | None = None, max_tries: int = 1000
    ) -> dict[str, Any]:
        """A sampled config that is a valid architecture within the budgets (rejection
        sampling)."""
        r = _rng(rng)
        for _ in range(max_tries):
            flat = self.sample(r)
            if self.check_budget(flat) is None:
                return flat
        raise ValueError(
            f"{self.name}: no feasible config in {max_tries} samples; loosen the budgets"
        )

    # --- translations (Ray / Optuna imported only here) ---------------------------------------

    def to_tune_param_space(self, grid: bool = False) -> dict[str, Any]:
        """Ray Tune's `param_space`: fixed knobs as constants, the others as `tune` domains.

        With `grid=True` every finite searched knob becomes `tune.grid_search` (exhaustive; not for
        use with a searcher such as OptunaSearch).
        """
        from ray import tune

        if self.blocks:
            raise ValueError(
                f"{self.name}: a space mixing families is conditional (each family has its own "
                "knobs); its searchers draw the family first (experiments.searchers), there is "
                "no flat Ray Tune param_space"
            )
        space: dict[str, Any] = {}
        for k, d in self.knobs.items():
            if grid and d.is_finite and not isinstance(d, Fixed):
                space[k] = tune.grid_search(list(d.values()))
            else:
                space[k] = d.to_tune()
        return space

    def to_optuna_distributions(self) -> dict[str, Any]:
        """Optuna distributions of the searched knobs; the fixed ones are in `self.fixed`. A
        mixed space's are conditional: `experiments.searchers.DefineByRun` draws them."""
        if self.blocks:
            raise ValueError(
                f"{self.name}: a space mixing families is conditional; use a define-by-run "
                "space (experiments.searchers.DefineByRun)"
            )
        return {k: d.to_optuna() for k, d in self.searched.items()}

    # --- budgets ------------------------------------------------------------------------------

    def counts(self, flat: Mapping[str, Any]) -> Counts:
        """Analytic params/MACs/MFLOPs of a flat config at the dataset's counting geometry.
        Raises ValueError for an invalid architecture."""
        cfg, _ = split_trial_config(flat, **self.geometry)
        return count(cfg)

    def check_budget(self, flat: Mapping[str, Any]) -> str | None:
        """None if `flat` is a valid architecture within the analytic budgets, else the reason it
        is infeasible (one line). Measured budgets are the trial's to check."""
        try:
            cfg, _ = split_trial_config(flat, **self.geometry)
        except ValueError as e:
            return f"invalid architecture: {e}"
        over = over_budget(analytic_values(count(cfg)), self.budgets.of_kind(ANALYTIC))
        return f"{cfg.name} over budget: {'; '.join(over)}" if over else None

    def feasible_fraction(self, samples: int = 1000, seed: int = 0) -> float:
        """Share of sampled configs that are valid and within the budgets."""
        r = random.Random(seed)
        return sum(self.check_budget(self.sample(r)) is None for _ in range(samples)) / samples

    # --- description --------------------------------------------------------------------------

    def summary(self) -> str:
        """A multi-line description for `launch.py check-space` and `launch.py spaces`."""
        g, c, b, t = self.geometry, self.costs, self.budgets, self.training
        n = self.num_configs
        configs = "continuous" if n is None else f"{n:,}"
        lines = [
            f"{self.name}: {self.description}" if self.description else self.name,
            f"  file          {self.path}",
            f"  family        {self.family}"
            + (f": {', '.join(self.families)}" if self.blocks else ""),
            f"  dataset       {self.dataset} ({g['num_classes']} classes, "
            f"{g['in_channels']}x{g['input_size']}x{g['input_size']} counted)",
            f"  dimensions    {self.dimensions} searched, {len(self.fixed)} fixed",
            f"  configs       {configs}",
            f"  params        {c.params[0]:,} .. {c.params[1]:,}"
            + (f"   budget {b.max_params:,}" if b.max_params is not None else ""),
            f"  MFLOPs        {c.mflops[0]:.2f} .. {c.mflops[1]:.2f}"
            + (f"   budget {b.max_mflops:g}" if b.max_mflops is not None else ""),
        ]
        if b.of_kind(ANALYTIC):
            share = self.feasible_fraction()
            lines.append(f"  feasible      {share:.0%} of 1,000 samples within the budgets")
        for key, limit in b.of_kind(MEASURED).items():
            metric = budget_keys()[key]
            lines.append(
                f"  {metric:<13} budget {limit:g} {get_objective(metric).unit}, checked by "
                "each trial before training"
            )
        for name, settings in self.measure.items():
            told = ", ".join(f"{k} {v}" for k, v in settings.items())
            lines.append(f"  measure       {name}: {told}")
        objectives = ", ".join(f"{o.metric} {o.mode}" for o in self.objectives)
        ref = ", ".join(_num(v) for v in self.reference_point)
        lines += [
            f"  objectives    {objectives} (hypervolume reference point {ref})",
            f"  training      max_epochs {t.max_epochs}, grace_epochs {t.grace_epochs}, "
            f"reduction_factor {t.reduction_factor:g}, num_samples {t.num_samples}, "
            f"subset {'all' if t.subset is None else f'{t.subset:,}'}",
        ]
        width = max(len(k) for k, _ in self._all())
        if self.searched:
            lines.append("  searched:")
            lines += [f"    {k:<{width}}  {d.describe()}" for k, d in self.searched.items()]
        for family, block in self.blocks.items():
            lines.append(f"  {family} (when drawn):")
            lines += [f"    {k:<{width}}  {d.describe()}" for k, d in block.items()]
            if not block:
                lines.append(f"    {'(defaults)':<{width}}  every knob at the family's default")
        lines.append("  fixed:")
        lines += [
            f"    {k:<{width}}  {d.describe()}"
            for k, d in self.knobs.items()
            if isinstance(d, Fixed)
        ]
        return "\n".join(lines)
