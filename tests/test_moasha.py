"""Contract tests for experiments.moasha.MOASHAScheduler: synthetic metric streams, no training.

Schedulers are driven the way Tune's controller drives them (``on_trial_add``, then
``on_trial_result`` per result, then ``on_trial_complete`` with the last result when a trial stops
or ends), with real ``ray.tune.experiment.Trial`` objects (``stub=True`` skips the trainable
registry) and, for single objectives, compared with Ray's own ``ASHAScheduler``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from ray import tune
from ray.train._internal.storage import StorageContext
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from experiments.moasha import (
    STATE_FILE,
    MOASHAScheduler,
    epsilon_net_order,
    keeps,
    rung_milestones,
)
from experiments.pareto import non_dominated_sort
from lrunet.metrics import PARAMS, VAL_ACC

pytestmark = pytest.mark.timeout(120)

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP
T = "training_iteration"


def _trials(n: int, storage: StorageContext | None = None) -> list[Trial]:
    return [Trial("__fake", stub=True, storage=storage) for _ in range(n)]


def _result(t: int, **metrics: float) -> dict:
    return {T: t, **metrics}


def _stream(seed: int, n_trials: int, max_t: int, k: int) -> list[tuple[int, int, list[float]]]:
    """Interleaved (trial index, time, objective values) events, a random order of trials that
    start at random moments, with occasional skipped iterations, early ends and NaNs."""
    rng = np.random.default_rng(seed)
    quality = rng.normal(size=(n_trials, k))
    length = np.where(rng.random(n_trials) < 0.15, rng.integers(1, max_t + 1, n_trials), max_t)
    clock = np.zeros(n_trials, dtype=int)
    active: list[int] = []
    waiting = list(range(n_trials))
    events = []
    while waiting or active:
        if waiting and (not active or rng.random() < 0.3):
            active.append(waiting.pop(0))
        i = active[int(rng.integers(len(active)))]
        clock[i] = min(length[i], clock[i] + (2 if rng.random() < 0.1 else 1))
        values = quality[i] + 0.3 * np.log1p(clock[i]) + rng.normal(scale=0.2, size=k)
        if rng.random() < 0.01:
            values[0] = np.nan
        events.append((i, int(clock[i]), [float(v) for v in values]))
        if clock[i] >= length[i]:
            active.remove(i)
    return events


def _run(scheduler, events, trials, metrics, stopped=None):
    """Feed events as Tune would; return each decision (None for results of stopped trials)."""
    stopped = set() if stopped is None else stopped
    for trial in trials:
        scheduler.on_trial_add(None, trial)
    last: dict[int, int] = {}
    for i, t, _ in events:
        last[i] = t
    decisions = []
    for i, t, values in events:
        if i in stopped:
            decisions.append(None)
            continue
        result = _result(t, **dict(zip(metrics, values, strict=False)))
        decision = scheduler.on_trial_result(None, trials[i], result)
        decisions.append(decision)
        if decision == STOP or t == last[i]:
            stopped.add(i)
            scheduler.on_trial_complete(None, trials[i], result)
    return decisions


@pytest.mark.parametrize(
    ("seed", "mode", "rf", "grace", "max_t", "stop_last"),
    [
        (0, "max", 3, 1, 27, True),
        (1, "min", 3, 1, 20, True),
        (2, "max", 2, 2, 16, False),
        (3, "min", 4, 1, 30, False),
        (4, "max", 2.5, 1, 12, True),
    ],
)
def test_single_objective_matches_ray_asha(seed, mode, rf, grace, max_t, stop_last) -> None:
    events = _stream(seed, n_trials=60, max_t=max_t, k=1)
    assert len(events) > 300
    ray_asha = ASHAScheduler(
        time_attr=T,
        metric=VAL_ACC,
        mode=mode,
        max_t=max_t,
        grace_period=grace,
        reduction_factor=rf,
        brackets=1,
        stop_last_trials=stop_last,
    )
    ours = MOASHAScheduler(
        [VAL_ACC], [mode], max_t=max_t, grace_period=grace, reduction_factor=rf,
        stop_last_trials=stop_last,
    )  # fmt: skip
    trials = _trials(60)
    expected = _run(ray_asha, events, trials, [VAL_ACC])
    got = _run(ours, events, trials, [VAL_ACC])
    assert got == expected
    assert expected.count(STOP) > 20  # the stream exercises stopping, not only continuing
    assert [m for m, _ in ours._rungs] == [m for m, _ in ray_asha._brackets[0]._rungs]


@pytest.mark.parametrize("tie_break", ["crowding", "epsnet"])
@pytest.mark.parametrize("seed", [5, 6])
def test_constant_second_objective_leaves_ray_decisions_unchanged(seed: int, tie_break) -> None:
    """The multi-objective rule (layers, crowding, interpolation) reduces to Ray's percentile."""
    events = _stream(seed, n_trials=60, max_t=27, k=1)
    events = [(i, t, [v[0], 7.0]) for i, t, v in events if not np.isnan(v[0])]
    ray_asha = ASHAScheduler(time_attr=T, metric=VAL_ACC, mode="max", max_t=27, grace_period=1,
                             reduction_factor=3, brackets=1)  # fmt: skip
    ours = MOASHAScheduler([VAL_ACC, PARAMS], ["max", "min"], max_t=27, reduction_factor=3,
                           tie_break=tie_break)  # fmt: skip
    trials = _trials(60)
    assert _run(ours, events, trials, [VAL_ACC, PARAMS]) == _run(
        ray_asha, events, trials, [VAL_ACC]
    )


def _rung_with(recorded: list[tuple[float, ...]], metrics, modes, rf=3, tie_break="crowding"):
    scheduler = MOASHAScheduler(
        metrics, modes, max_t=9, grace_period=1, reduction_factor=rf, tie_break=tie_break
    )
    trials = _trials(len(recorded))
    for trial, values in zip(trials, recorded, strict=True):
        scheduler.on_trial_add(None, trial)
        scheduler.on_trial_result(None, trial, _result(1, **dict(zip(metrics, values))))
    return scheduler


def _newcomer(scheduler, metrics, values) -> str:
    (trial,) = _trials(1)
    scheduler.on_trial_add(None, trial)
    return scheduler.on_trial_result(None, trial, _result(1, **dict(zip(metrics, values))))


@pytest.mark.parametrize("tie_break", ["crowding", "epsnet"])
@pytest.mark.parametrize("k", [2, 3])
def test_a_trial_dominating_every_recorded_trial_always_continues(k: int, tie_break) -> None:
    metrics = [f"m{i}" for i in range(k)]
    modes = ["max", "min", "max"][:k]
    sign = np.array([1.0 if m == "max" else -1.0 for m in modes])
    rng = np.random.default_rng(k)
    for n in range(0, 40):
        recorded = rng.normal(size=(n, k))
        best = recorded.max(axis=0) if n else np.zeros(k)  # in "larger is better" form
        scheduler = _rung_with([tuple(r * sign) for r in recorded], metrics, modes, 3, tie_break)
        x = (best + rng.uniform(0.0, 1.0, size=k) * (rng.random(k) < 0.5)) * sign
        x[0] = (best[0] + 0.01) * sign[0]  # strictly better in one objective: dominates all
        assert _newcomer(scheduler, metrics, x) == CONTINUE, n


@pytest.mark.parametrize("k", [2, 3])
def test_a_trial_dominated_by_every_recorded_trial_stops_once_one_is_recorded(k: int) -> None:
    metrics = [f"m{i}" for i in range(k)]
    modes = ["min", "max", "min"][:k]
    sign = np.array([1.0 if m == "max" else -1.0 for m in modes])
    rng = np.random.default_rng(10 + k)
    assert _newcomer(_rung_with([], metrics, modes), metrics, [0.0] * k) == CONTINUE
    for n in range(1, 40):
        recorded = rng.normal(size=(n, k))
        worst = recorded.min(axis=0) - 0.01
        scheduler = _rung_with([tuple(r * sign) for r in recorded], metrics, modes)
        assert _newcomer(scheduler, metrics, worst * sign) == STOP, n


# Non-collinear (accuracy max, params min) rungs where the newcomer dominates every recorded trial.
# Syne Tune 0.16's MOASHA (asha.Bracket with NonDominatedPriority) ranks its non-dominated sort's
# output, an *ordering* (trial indices, best first), as if it held each trial's priority, so the
# newcomer's "rank" is that of whichever trial sorts last: here C, index 2 of 4 -> 0.5 > 1/3,
# stop, though the newcomer dominates all three. Its own tests have no such case.
DOMINATED_RUNG = [(80.0, 1000.0), (85.0, 5000.0), (60.0, 8000.0)]  # A, B: front; C behind both
DOMINATOR = (90.0, 150.0)


def _ordering_read_as_ranks(recorded, x, rf: float) -> bool:
    """Continue? with a non-dominated sort's ordering read as priorities (the misreading)."""
    ordering = np.concatenate(non_dominated_sort([*recorded, x], ["max", "min"]))
    rank = np.searchsorted(np.sort(ordering), ordering)[-1] / len(ordering)
    return not rank > 1 / rf


def test_a_dominating_trial_continues_at_a_non_collinear_rung() -> None:
    metrics, modes = [VAL_ACC, PARAMS], ["max", "min"]
    (ax, ay), (bx, by), (cx, cy) = ((acc, np.log10(p)) for acc, p in DOMINATED_RUNG)
    assert abs((bx - ax) * (cy - ay) - (by - ay) * (cx - ax)) > 1.0  # not on a line (log too)
    assert not _ordering_read_as_ranks(DOMINATED_RUNG, DOMINATOR, 3)  # the case bites
    scheduler = _rung_with(DOMINATED_RUNG, metrics, modes, rf=3)
    assert _newcomer(scheduler, metrics, DOMINATOR) == CONTINUE
    assert keeps([(acc, -p) for acc, p in DOMINATED_RUNG], (DOMINATOR[0], -DOMINATOR[1]), 3)


@pytest.mark.parametrize("tie_break", ["crowding", "epsnet"])
def test_dominating_trials_continue_at_every_rung_of_a_two_objective_stream(tie_break) -> None:
    """Through the scheduler at rungs 1, 3 and 9: random non-collinear (accuracy, params) rungs
    and a newcomer that dominates each; many of them are cases the misreading would stop."""
    metrics, modes = [VAL_ACC, PARAMS], ["max", "min"]
    rng = np.random.default_rng(17)
    misread = 0
    for n in range(1, 30):
        scheduler = MOASHAScheduler(metrics, modes, max_t=27, grace_period=1, reduction_factor=3,
                                    tie_break=tie_break)  # fmt: skip
        for t in (1, 3, 9):  # trials reporting first at t are recorded at rung t only
            acc = rng.uniform(50, 90, size=n)
            params = 10 ** rng.uniform(3, 6, size=n)
            recorded = list(zip(acc, params, strict=True))
            x = (acc.max() + rng.uniform(0.01, 2), params.min() * rng.uniform(0.5, 1))
            misread += not _ordering_read_as_ranks(recorded, x, 3)
            for trial, (a, p) in zip(_trials(n), recorded, strict=True):
                scheduler.on_trial_add(None, trial)
                scheduler.on_trial_result(None, trial, _result(t, **{VAL_ACC: a, PARAMS: p}))
            (newcomer,) = _trials(1)
            scheduler.on_trial_add(None, newcomer)
            result = _result(t, **{VAL_ACC: x[0], PARAMS: x[1]})
            assert scheduler.on_trial_result(None, newcomer, result) == CONTINUE, (n, t)
        assert [len(r) for _, r in scheduler._rungs] == [0, n + 1, n + 1, n + 1]
    assert misread >= 20  # the stream exercises the failure mode, not only easy rungs


def test_syne_tune_moasha_stops_the_dominating_trial() -> None:
    """The peer's behaviour that the two tests above guard against (skipped without the
    optional `[bench]` extra)."""
    asha = pytest.importorskip("syne_tune.optimizer.schedulers.asha")
    prio = pytest.importorskip(
        "syne_tune.optimizer.schedulers.multiobjective.multiobjective_priority"
    )
    bracket = asha.Bracket(1, 9, 3, 0, prio.NonDominatedPriority())
    for i, (acc, p) in enumerate(DOMINATED_RUNG):  # minimised, as its MOASHA passes them
        bracket.on_result(trial_id=i, cur_iter=1, metrics={"err": -acc, "params": p})
    newcomer = {"err": -DOMINATOR[0], "params": DOMINATOR[1]}
    assert bracket.on_result(trial_id=3, cur_iter=1, metrics=newcomer) == "STOP"


def test_cheap_end_of_the_front_survives_where_accuracy_asha_stops_it() -> None:
    metrics, modes = [VAL_ACC, PARAMS], ["max", "min"]
    front = [(90.0, 300.0), (80.0, 200.0), (70.0, 100.0)]
    scheduler = _rung_with(front, metrics, modes, rf=2)
    # The smallest, least accurate model is a boundary point of the front: infinite crowding.
    assert _newcomer(scheduler, metrics, (60.0, 50.0)) == CONTINUE
    ray_asha = ASHAScheduler(metric=VAL_ACC, mode="max", max_t=9, reduction_factor=2)
    trials = _trials(4)
    for trial, (acc, _) in zip(trials, [*front, (60.0, 50.0)], strict=True):
        ray_asha.on_trial_add(None, trial)
        decision = ray_asha.on_trial_result(None, trial, _result(1, **{VAL_ACC: acc}))
    assert decision == STOP
    # (65, 150) is dominated by (70, 100): second layer, behind all four recorded -> stop.
    assert _newcomer(scheduler, metrics, (65.0, 150.0)) == STOP


def test_between_the_two_trials_around_the_cutoff_interpolates_like_ray() -> None:
    # Recorded lo=(1, 1) and hi=(3, 3), both maximised, rf=3: Ray's position h = 2/3, so the
    # cutoff is 2/3 of the way from lo to hi, at (2.33, 2.33). x between them in rank (second
    # layer) continues iff its projection on lo->hi is past that point.
    assert keeps([(1.0, 1.0), (3.0, 3.0)], (2.5, 2.5), 3)
    assert not keeps([(1.0, 1.0), (3.0, 3.0)], (2.0, 2.0), 3)
    assert not keeps([(1.0, 1.0), (3.0, 3.0)], (2.9, 1.5), 3)  # projection 2.2 < 2.33
    assert keeps([(1.0, 1.0), (3.0, 3.0)], (2.9, 2.0), 3)  # projection 2.45 >= 2.33
    # The same numbers with one objective are Ray's percentile: 1 + (2/3) * 2 = 2.33.
    assert keeps([(1.0,), (3.0,)], (2.4,), 3) and not keeps([(1.0,), (3.0,)], (2.3,), 3)


def test_epsilon_net_order_starts_at_the_best_first_objective_then_the_farthest() -> None:
    # c = (1, 0) is best in the first objective; a is farthest from c; b comes last
    a, b, c = (0.0, 1.0), (0.6, 0.5), (1.0, 0.0)
    assert list(epsilon_net_order(np.array([a, b, c]))) == [1, 2, 0]
    # objectives scaled by range (10 each): after (10, 0) and (0, 10), (4.5, 5.5) is 0.64 from
    # the nearest chosen point and (4, 6) only 0.57
    layer = [(0.0, 10.0), (4.0, 6.0), (4.5, 5.5), (10.0, 0.0)]
    assert list(epsilon_net_order(np.array(layer))) == [1, 3, 2, 0]


def test_an_unknown_tie_break_is_named() -> None:
    with pytest.raises(ValueError, match="tie_break 'random'"):
        MOASHAScheduler([VAL_ACC, PARAMS], ["max", "min"], tie_break="random")


def test_results_without_every_objective_are_ignored() -> None:
    scheduler = _rung_with([(0.9, 10.0)], [VAL_ACC, PARAMS], ["max", "min"])
    (trial,) = _trials(1)
    scheduler.on_trial_add(None, trial)
    assert scheduler.on_trial_result(None, trial, _result(1, **{VAL_ACC: 0.1})) == CONTINUE
    assert scheduler.on_trial_result(None, trial, {VAL_ACC: 0.1, PARAMS: 99.0}) == CONTINUE
    assert [len(r) for _, r in scheduler._rungs] == [0, 0, 1]


def test_state_round_trips_through_save_and_restore(tmp_path: Path) -> None:
    metrics, modes = [VAL_ACC, PARAMS], ["max", "min"]
    events = _stream(7, n_trials=40, max_t=9, k=2)
    half = len(events) // 2
    trials = _trials(40)
    first = MOASHAScheduler(metrics, modes, max_t=9, reduction_factor=3)
    stopped: set[int] = set()
    _run(first, events[:half], trials, metrics, stopped)
    path = tmp_path / "state.json"
    first.save(str(path))
    second = MOASHAScheduler(metrics, modes, max_t=9, reduction_factor=3)
    second.restore(str(path))
    assert second._state() == first._state()
    assert sum(len(r) for _, r in second._rungs) > 20
    # Both continue the stream identically; a fresh scheduler would not.
    rest_first = _run(first, events[half:], trials, metrics, set(stopped))
    rest_second = _run(second, events[half:], trials, metrics, set(stopped))
    fresh = _run(MOASHAScheduler(metrics, modes, max_t=9), events[half:], trials, metrics,
                 set(stopped))  # fmt: skip
    assert rest_second == rest_first
    assert fresh != rest_first


def test_restore_refuses_state_from_other_objectives(tmp_path: Path) -> None:
    scheduler = _rung_with([(0.9, 10.0)], [VAL_ACC, PARAMS], ["max", "min"])
    scheduler.save(str(tmp_path / "s.json"))
    other = MOASHAScheduler([VAL_ACC, PARAMS], ["max", "max"], max_t=9)
    with pytest.raises(ValueError, match="saved modes"):
        other.restore(str(tmp_path / "s.json"))


def test_state_follows_the_experiment_directory_across_a_resume(tmp_path: Path, ray_local) -> None:
    storage = StorageContext(storage_path=str(tmp_path), experiment_dir_name="exp")
    metrics, modes = [VAL_ACC, PARAMS], ["max", "min"]
    first = MOASHAScheduler(metrics, modes, max_t=9, reduction_factor=3)
    a, b = _trials(2, storage)
    for trial in (a, b):
        first.on_trial_add(None, trial)
    assert first.on_trial_result(None, a, _result(1, **{VAL_ACC: 0.9, PARAMS: 10.0})) == CONTINUE
    assert first.on_trial_result(None, b, _result(1, **{VAL_ACC: 0.5, PARAMS: 20.0})) == STOP
    state_file = Path(storage.experiment_driver_staging_path, STATE_FILE)
    assert json.loads(state_file.read_text())["stopped_at"] == {b.trial_id: 1}
    # A resumed run re-adds the same trials to a scheduler unpickled with empty rungs.
    second = MOASHAScheduler(metrics, modes, max_t=9, reduction_factor=3)
    for trial in (a, b):
        second.on_trial_add(None, trial)
    assert second._state() == first._state()
    # b resumed from an older checkpoint is stopped again at the rung where it was stopped.
    assert second.on_trial_result(None, b, _result(1, **{VAL_ACC: 0.99, PARAMS: 1.0})) == STOP
    (c,) = _trials(1, storage)
    second.on_trial_add(None, c)
    assert second.on_trial_result(None, c, _result(1, **{VAL_ACC: 0.4, PARAMS: 30.0})) == STOP
    assert not [f for f in os.listdir(state_file.parent) if f.endswith(".tmp")]


def test_scheduler_keeps_its_own_metrics_away_from_tune() -> None:
    scheduler = MOASHAScheduler([VAL_ACC, PARAMS], ["max", "min"], max_t=9)
    assert scheduler.metric is None
    assert scheduler.metrics == [VAL_ACC, PARAMS] and scheduler.modes == ["max", "min"]
    assert scheduler.set_search_properties(None, None, num_samples=4)
    assert not scheduler.set_search_properties(VAL_ACC, "max")
    assert scheduler.metric is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metrics": VAL_ACC, "modes": ["max"]}, "non-empty list"),
        ({"metrics": [VAL_ACC, PARAMS], "modes": ["max"]}, "one of"),
        ({"metrics": [VAL_ACC], "modes": ["up"]}, "'up' is not one of"),
        ({"metrics": [VAL_ACC, VAL_ACC], "modes": ["max", "max"]}, "repeat"),
        ({"metrics": [VAL_ACC], "modes": ["max"], "reduction_factor": 1}, "reduction_factor"),
        ({"metrics": [VAL_ACC], "modes": ["max"], "max_t": 2, "grace_period": 3}, "max_t"),
    ],
)
def test_invalid_settings_are_named(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MOASHAScheduler(**kwargs)


def test_rungs_are_grace_times_powers_of_the_reduction_factor() -> None:
    assert rung_milestones(1, 27, 3) == [27, 9, 3, 1]
    assert rung_milestones(2, 20, 2) == [16, 8, 4, 2]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_rung_records_survive_a_tuner_restore(tmp_path: Path, ray_local) -> None:
    """A real Tuner run, interrupted by an errored trial, resumed with ``Tuner.restore``: the
    resumed trial is judged against the rung records of the first run."""
    flag = tmp_path / "crashed-once"

    def trainable(config: dict) -> None:
        for _ in range(4):
            if config["crash"] and not flag.exists():
                flag.touch()
                raise RuntimeError("simulated interruption before the first rung")
            tune.report({"acc": config["acc"], "cost": config["cost"]})

    specs = [
        {"acc": 0.9, "cost": 10.0, "crash": False},
        {"acc": 0.8, "cost": 5.0, "crash": False},
        {"acc": 0.7, "cost": 1.0, "crash": False},
        {"acc": 0.1, "cost": 100.0, "crash": True},  # dominated by all three at rung 2
    ]
    scheduler = MOASHAScheduler(["acc", "cost"], ["max", "min"], max_t=4, grace_period=2,
                                reduction_factor=2)  # fmt: skip
    tuner = tune.Tuner(
        tune.with_parameters(trainable),
        param_space={k: tune.sample_from(lambda spec, k=k: spec.config.spec[k]) for k in specs[0]}
        | {"spec": tune.grid_search(specs)},
        tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=2),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="resume", verbose=0),
    )
    first = tuner.fit()
    assert len(first.errors) == 1
    assert sorted(r.metrics[T] for r in first if r.error is None) == [4, 4, 4]
    state = json.loads((tmp_path / "resume" / STATE_FILE).read_text())
    assert len(state["rungs"][-1]) == 3  # three trials recorded at rung 2 (milestones descend)

    restored = tune.Tuner.restore(str(tmp_path / "resume"), trainable, resume_errored=True)
    second = restored.fit()
    assert not second.errors
    resumed = [r for r in second if r.config["spec"]["crash"]]
    # Judged against the three records of the first run it stops at rung 2; a scheduler that
    # had forgotten them would let it run to max_t as the first trial at that rung.
    assert resumed[0].metrics[T] == 2
