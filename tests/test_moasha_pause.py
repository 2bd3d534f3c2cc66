"""MO-ASHA's two additions to the paper's rule, on real Ray Tune runs where a scheduler's
behaviour depends on Tune's controller: a trial no recorded trial dominates always continues
(``keep_front``), and pausing (``pause=True``): trials the rung rule stops wait, resume from their
checkpoint once the searcher is finished, best first, and the combination with a
``ConcurrencyLimiter`` (which would wait for ever) is refused with the fix named."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from ray import tune

from experiments.moasha import MOASHAScheduler, keeps

pytestmark = pytest.mark.timeout(180)

T = "training_iteration"

# Five trials on one front at a rung, and a sixth on it too, squeezed between two of them.
FRONT = [(1.0, -1.0), (2.0, -2.0), (3.0, -3.0), (4.0, -4.0), (5.0, -5.0)]
SQUEEZED = (2.9, -2.95)  # nobody dominates it; its crowding distance is the smallest


def test_keep_front_continues_a_front_member_the_paper_order_stops() -> None:
    assert not keeps(FRONT, SQUEEZED, 3)  # the paper's order alone: top third only
    assert keeps(FRONT, SQUEEZED, 3, keep_front=True)
    dominated = (2.9, -3.5)  # (2, -2) and (3, -3) dominate it
    assert not keeps(FRONT, dominated, 3, keep_front=True)
    assert MOASHAScheduler(["a", "b"], ["max", "max"])._keep_front  # the scheduler's default


# (accuracy at epoch e = base + slope * e, cost), run in this order, one at a time. At rung 1
# (reduction factor 2) a dominates b and d, which pause; c is cheaper than a and continues; d
# (which dominates b) overtakes a by epoch 2, b never does and pauses again at rung 2.
SPECS = [
    {"name": "a", "base": 50.0, "slope": 1.0, "cost": 10.0},
    {"name": "b", "base": 40.0, "slope": 1.0, "cost": 20.0},
    {"name": "c", "base": 45.0, "slope": 1.0, "cost": 5.0},
    {"name": "d", "base": 40.0, "slope": 10.0, "cost": 15.0},
]


def _trainable(config: dict) -> None:
    """Reports epochs 1..4 with a checkpoint holding the epoch; goes on from a checkpoint."""
    spec = config["spec"]
    start = 0
    if (ckpt := tune.get_checkpoint()) is not None:
        with ckpt.as_directory() as d:
            start = json.loads(Path(d, "epoch.json").read_text())["epoch"]
    for epoch in range(start + 1, 5):
        with Path(config["log"]).open("a") as f:
            f.write(f"{spec['name']} {epoch}\n")
        with tempfile.TemporaryDirectory() as d:
            Path(d, "epoch.json").write_text(json.dumps({"epoch": epoch}))
            acc = spec["base"] + spec["slope"] * epoch
            tune.report(
                {"acc": acc, "cost": spec["cost"]},
                checkpoint=tune.Checkpoint.from_directory(d),
            )


def _tuner(tmp_path: Path, scheduler, **tune_config) -> tune.Tuner:
    log = tmp_path / "epochs.log"
    return tune.Tuner(
        tune.with_resources(_trainable, {"cpu": 2}),  # the whole 2-CPU Ray: one at a time
        param_space={"spec": tune.grid_search(SPECS), "log": str(log)},
        tune_config=tune.TuneConfig(scheduler=scheduler, **tune_config),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="pause", verbose=0),
    )


def _scheduler(pause: bool) -> MOASHAScheduler:
    return MOASHAScheduler(
        ["acc", "cost"], ["max", "min"], max_t=4, grace_period=1, reduction_factor=2, pause=pause
    )


def test_paused_trials_resume_from_their_checkpoint_once_the_searcher_is_finished(
    tmp_path: Path, ray_local
) -> None:
    results = _tuner(tmp_path, _scheduler(pause=True)).fit()
    assert not results.errors
    trained = [tuple(line.split()) for line in (tmp_path / "epochs.log").read_text().splitlines()]
    # Each epoch of each trial trained once: a resumed trial went on from its checkpoint.
    assert sorted(trained) == sorted({(s["name"], str(e)) for s in SPECS for e in range(1, 5)})
    # b and d waited at rung 1 (a stopping MO-ASHA ends both there: tests/test_moasha.py's
    # rule) while the searcher still had c to give; with no budget to end the search, every
    # trial reached max_t.
    assert trained[:4] == [("a", "1"), ("a", "2"), ("a", "3"), ("a", "4")]
    assert trained[4] == ("b", "1") and trained[5] == ("c", "1")
    assert sorted(r.metrics[T] for r in results) == [4, 4, 4, 4]
    # The best paused trial resumed first: d is a layer ahead of b at rung 1 (it dominates b).
    after = [name for name, epoch in trained if int(epoch) > 1 and name in "bd"]
    assert after[0] == "d", " ".join(a + b for a, b in trained)


def test_pausing_behind_a_concurrency_limiter_is_refused(tmp_path: Path, ray_local) -> None:
    with pytest.raises(Exception, match="max_concurrent_trials"):
        _tuner(tmp_path, _scheduler(pause=True), max_concurrent_trials=1).fit()
