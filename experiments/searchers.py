"""Searchers for `launch.py --searcher random|nsga2|tpe`, and the budget gate in front of them.

* `SpaceSampler`: seeded random search over a `SearchSpec`; a finite space is walked without
  replacement (a shuffled grid), so `lru_paper` with `--num-samples 9` is exactly Table 2's grid.
* `nsga2` / `tpe`: Ray's `OptunaSearch` with Optuna's NSGA-II or TPE sampler, multi-objective over
  the space's objectives. A space mixing families is conditional: `DefineByRun` draws the family,
  then that family's knobs (Optuna's define-by-run API).
* `BudgetedSearcher` wraps any of them. A proposal over an analytic budget (or an impossible
  architecture) never trains: the inner searcher is told (`tell_infeasible`), the proposal is
  recorded as `infeasible`, and the next proposal is drawn. A trial over a measured budget
  (latency) reports itself infeasible before its first epoch and the inner searcher is told the
  same way. A trial the scheduler
  stopped before the full budget is reported to the inner searcher without values, which Ray's
  `OptunaSearch` tells Optuna as PRUNED, so its low-budget accuracy is never taken as final.
"""

from __future__ import annotations

import os
import pickle
import random
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher

from lrunet import metrics as M
from lrunet.registry import FAMILY_KEY
from search_spaces.distributions import Distribution, Fixed
from search_spaces.spec import SearchSpec

SEARCHERS = ("random", "nsga2", "tpe")
MAX_INFEASIBLE_IN_A_ROW = 1000


class SpaceSampler(Searcher):
    """Random search over a `SearchSpec` (without replacement when the space is finite)."""

    def __init__(self, spec: SearchSpec, seed: int = 0, metric=None, mode=None) -> None:
        super().__init__(metric=metric, mode=mode)
        self.spec = spec
        self.rng = random.Random(seed)
        self.grid: list[dict[str, Any]] | None = None
        if spec.is_grid and (spec.num_configs or 0) <= 100_000:
            self.grid = list(spec.grid())
            self.rng.shuffle(self.grid)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.grid is not None:
            return self.grid.pop() if self.grid else Searcher.FINISHED
        return self.spec.sample(self.rng)

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        pass

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"rng": self.rng.getstate(), "grid": self.grid}, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self.rng.setstate(state["rng"])
        self.grid = state["grid"]


class DefineByRun:
    """Optuna's define-by-run space of a mixed-family `SearchSpec`: the family first, then only
    that family's knobs, each family's under its own name (`dacnn.width` is not `lrunet.width`:
    same knob name, another domain). A class, not a closure, so Ray's OptunaSearch can pickle it
    into its checkpoint for `--resume`."""

    def __init__(self, spec: SearchSpec) -> None:
        self.spec = spec

    def __call__(self, trial) -> None:
        values = {k: _suggest(trial, k, d) for k, d in self.spec.searched.items()}
        family = values.get(FAMILY_KEY, self.spec.fixed.get(FAMILY_KEY))
        for k, d in self.spec.blocks.get(family, {}).items():
            if not isinstance(d, Fixed):
                _suggest(trial, self.spec.block_name(family, k), d)
        return None


def _suggest(trial, name: str, d: Distribution) -> Any:
    import optuna.distributions as od

    dist = d.to_optuna()
    if isinstance(dist, od.CategoricalDistribution):
        return trial.suggest_categorical(name, list(dist.choices))
    if isinstance(dist, od.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


def make_optuna(
    spec: SearchSpec,
    kind: str,
    seed: int,
    storage_url: str | None = None,
    study_name: str = "lrunet",
) -> Searcher:
    """Ray's OptunaSearch over the space's objectives; the study lives in `storage_url` (an
    Optuna RDB URL such as sqlite:///.../optuna.db) when given, so it can be read afterwards."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if kind == "nsga2":
        sampler = optuna.samplers.NSGAIISampler(seed=seed, population_size=8)
    else:
        # group=True: TPE models each family's knobs among the trials that drew that family
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=bool(spec.blocks))
    metrics, modes = spec.metrics, spec.modes
    if len(metrics) == 1:
        metrics, modes = metrics[0], modes[0]
    storage = optuna.storages.RDBStorage(storage_url) if storage_url else None
    return OptunaSearch(
        space=DefineByRun(spec) if spec.blocks else spec.to_optuna_distributions(),
        metric=metrics,
        mode=modes,
        sampler=sampler,
        storage=storage,
        study_name=study_name,
    )


class BudgetedSearcher(Searcher):
    """Budget gate and early-stop translation around an inner searcher (module docstring)."""

    def __init__(
        self,
        inner: Searcher,
        spec: SearchSpec,
        max_epochs: int,
        on_infeasible: Callable[[Mapping[str, Any], str], None] | None = None,
    ) -> None:
        super().__init__(metric=inner.metric, mode=inner.mode)
        self.inner = inner
        self.spec = spec
        self.max_epochs = max_epochs
        self.on_infeasible = on_infeasible
        self.infeasible = 0
        self._rejected = 0
        self._inner_id: dict[str, str] = {}  # Tune's trial id -> the id the inner searcher knows

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.inner.set_search_properties(metric, mode, config, **spec) or True

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        inner_id = trial_id
        for _ in range(MAX_INFEASIBLE_IN_A_ROW):
            config = self.inner.suggest(inner_id)
            if config is None or config == Searcher.FINISHED:
                return config
            flat = self.spec.complete(config)
            reason = self.spec.check_budget(flat)
            if reason is None:
                self._inner_id[trial_id] = inner_id
                if not self.spec.blocks:
                    return config
                # a mixed space's suggestion names knobs `<family>.<knob>`: the trial gets plain
                # names, of its own family only (the space's fixed knobs come from param_space)
                return {k: v for k, v in flat.items() if k not in self.spec.fixed}
            self.infeasible += 1
            tell_infeasible(self.inner, inner_id)
            if self.on_infeasible is not None:
                self.on_infeasible(flat, reason)
            # the inner searcher keys its state by trial id: the next proposal needs a fresh one
            self._rejected += 1
            inner_id = f"{trial_id}-infeasible{self._rejected}"
        raise ValueError(
            f"{self.spec.name}: the searcher proposed {MAX_INFEASIBLE_IN_A_ROW} infeasible "
            f"configs in a row; loosen budgets ({self.spec.budgets.describe()})"
        )

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if result.get(M.INFEASIBLE):  # rejected by a measured budget: it has no objectives
            return
        self.inner.on_trial_result(self._inner_id.get(trial_id, trial_id), result)

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        inner_id = self._inner_id.pop(trial_id, trial_id)
        if not error and result and result.get(M.INFEASIBLE):
            # over a measured budget (the trial's first seconds): infeasible, as in `suggest`
            self.infeasible += 1
            tell_infeasible(self.inner, inner_id)
            return
        if not error and result and result.get("training_iteration", 0) < self.max_epochs:
            result = None  # stopped early: no final values (OptunaSearch -> PRUNED)
        self.inner.on_trial_complete(inner_id, result=result, error=error)

    def save(self, checkpoint_path: str) -> None:
        # One file holding the inner searcher's state too: Tune copies only *.pkl / *.json
        # files between the driver's staging folder and the storage, so a side file would be
        # missing after a driver crash and `--resume` could not restore the searcher.
        with tempfile.TemporaryDirectory(prefix="lrunet-searcher-") as d:
            inner = os.path.join(d, "inner.pkl")
            self.inner.save(inner)
            blob = Path(inner).read_bytes()
        with open(checkpoint_path, "wb") as f:
            pickle.dump(
                {
                    "infeasible": self.infeasible,
                    "rejected": self._rejected,
                    "inner_id": self._inner_id,
                    "inner": blob,
                },
                f,
            )

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)  # Tune's own searcher checkpoint, written by `save`
        with tempfile.TemporaryDirectory(prefix="lrunet-searcher-") as d:
            inner = os.path.join(d, "inner.pkl")
            Path(inner).write_bytes(state["inner"])
            self.inner.restore(inner)
        self.infeasible, self._rejected = state["infeasible"], state["rejected"]
        self._inner_id = state["inner_id"]


INFEASIBLE_CONSTRAINT = "budget"


def tell_infeasible(inner: Searcher, trial_id: str) -> None:
    """Tell the inner searcher that its proposal `trial_id` must not train.

    Optuna hears a PRUNED trial with no values whose `budget` constraint is violated: its TPE
    sampler then counts the proposal among its bad trials and learns to avoid the region. A
    FAIL it would ignore altogether, and in a space where a whole family (or any categorical
    value) is over budget TPE's liking for never-observed categories would propose it again and
    again. Other searchers hear a failed trial."""
    trials = getattr(inner, "_ot_trials", None)  # Ray's OptunaSearch: trial id -> Optuna trial
    if trials is not None and trial_id in trials:
        trials[trial_id].set_constraint(INFEASIBLE_CONSTRAINT, 1.0)
        inner.on_trial_complete(trial_id, result=None, error=False)
    else:
        inner.on_trial_complete(trial_id, result=None, error=True)


def build_searcher(
    kind: str,
    spec: SearchSpec,
    seed: int,
    max_epochs: int,
    on_infeasible: Callable[[Mapping[str, Any], str], None] | None = None,
    optuna_storage: str | None = None,
    study_name: str = "lrunet",
) -> BudgetedSearcher:
    if kind not in SEARCHERS:
        raise ValueError(f"--searcher {kind!r}: choose one of {', '.join(SEARCHERS)}")
    if kind == "random":
        inner: Searcher = SpaceSampler(spec, seed)
    else:
        inner = make_optuna(spec, kind, seed, optuna_storage, study_name)
    return BudgetedSearcher(inner, spec, max_epochs, on_infeasible)
