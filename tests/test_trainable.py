"""The Ray Tune trainable: run settings, and real Tune trials that report every epoch and resume
from their checkpoint after their worker process is killed."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from lrunet import metrics as M
from lrunet.recipe import TRIAL_KEYS
from trainables.trainable import RUN_KEY, RunSpec, build_trainer, split_run_config

REPO = Path(__file__).resolve().parents[1]


def test_split_run_config():
    flat, spec = split_run_config(
        {"reuse": 2, "lr": 0.05, RUN_KEY: {"dataset": "digits", "subset": 100}, "_run/cpus": 1}
    )
    assert flat == {"reuse": 2, "lr": 0.05} and set(flat) <= set(TRIAL_KEYS)
    assert spec == RunSpec(dataset="digits", subset=100, cpus=1)
    _, default = split_run_config({"reuse": 1})
    assert default == RunSpec()


@pytest.mark.parametrize(
    "run, message",
    [
        ({"datset": "digits"}, r"unknown _run key\(s\) \['datset'\]"),
        ({"subset": 0}, "_run.subset: expected a positive integer"),
        ({"max_epochs": 5}, "_run.max_epochs: 5 exceeds the recipe's epochs"),
        ({"val_fraction": 1.5}, r"_run.val_fraction: expected a number in \[0, 1\)"),
    ],
)
def test_bad_run_settings_are_named(run, message):
    with pytest.raises(ValueError, match=message):
        build_trainer({"reuse": 1, "epochs": 2, RUN_KEY: run})


def test_unknown_knob_is_named():
    with pytest.raises(ValueError, match="did you mean 'reuse'"):
        build_trainer({"reuses": 1, RUN_KEY: {"dataset": "digits"}})


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_tune_trial_killed_after_epoch_k_resumes_from_its_checkpoint(ray_local, tmp_path):
    """Two identical trials; the worker of one is SIGKILLed after it reports epoch 1. Tune restarts
    it from its checkpoint, and its epoch 2 equals the uninterrupted trial's epoch 2."""
    from ray import tune

    from trainables.trainable import make_trainable

    k = 1
    reports: dict[str, list[dict]] = {}
    killed: dict[str, int] = {}

    class KillAfterEpochK(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            reports.setdefault(trial.trial_id, []).append(dict(result))

        def on_trial_save(self, iteration, trials, trial, **info):
            # Tune registers a reported checkpoint in a separate "save" step: kill only after it
            result = trial.last_result
            if not killed and result[M.EPOCH] == k:
                killed[trial.trial_id] = result["pid"]
                os.kill(result["pid"], signal.SIGKILL)

    param_space = {
        "reuse": 1,
        "batch_size": 32,
        "epochs": 2,
        "seed": tune.grid_search([7, 7]),
        RUN_KEY: {"dataset": "digits", "subset": 320, "cpus": 1},
    }
    tuner = tune.Tuner(
        make_trainable(cpus_per_trial=1),
        param_space=param_space,
        run_config=tune.RunConfig(
            name="resume",
            storage_path=str(tmp_path),
            callbacks=[KillAfterEpochK()],
            failure_config=tune.FailureConfig(max_failures=1),
            verbose=0,
        ),
    )
    grid = tuner.fit()
    assert not grid.errors, grid.errors
    assert len(killed) == 1 and len(reports) == 2
    victim = next(iter(killed))
    survivor = next(t for t in reports if t != victim)
    epochs_victim = [r[M.EPOCH] for r in reports[victim]]
    assert epochs_victim == [1, 2], (
        "the restarted trial must continue at epoch 2, not redo epoch 1"
    )
    assert reports[victim][1]["pid"] != killed[victim]  # epoch 2 ran in a new process
    ours, theirs = reports[victim][1], reports[survivor][1]
    for key in (M.VAL_ACC, M.VAL_LOSS, M.TRAIN_LOSS, M.TRAIN_ACC, M.LR):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-6), key
    for r in reports[victim] + reports[survivor]:
        assert {M.VAL_ACC, M.PARAMS, M.MFLOPS, M.IMAGES_PER_SEC, M.EPOCH_SECONDS} <= set(r)
    assert all((Path(res.checkpoint.path) / "checkpoint.pt").is_file() for res in grid)


def _digits_trainer():
    trainer, _ = build_trainer(
        {"reuse": 1, "width": 0.25, "batch_size": 64, "epochs": 3, RUN_KEY: {"subset": 256}},
        cpus=1,
    )
    return trainer


def test_resume_takes_the_newest_readable_checkpoint_and_names_what_tune_missed(tmp_path):
    """After a driver crash Tune may restore a trial from an older checkpoint than its worker
    wrote (or from one already deleted): the trainable loads the newest readable one, and the
    epochs after Tune's are the ones to report again, not to train again."""
    from ray import tune

    from trainables.trainable import CHECKPOINT_FILE, resume_trainer, write_checkpoint

    trainer = _digits_trainer()
    folders = []
    for epoch in (1, 2, 3):
        trainer.train_epoch()
        folders.append(write_checkpoint(trainer, tmp_path / f"checkpoint_00000{epoch - 1}"))
    # the newest one was cut short by the crash
    data = (folders[2] / CHECKPOINT_FILE).read_bytes()
    (folders[2] / CHECKPOINT_FILE).write_bytes(data[: len(data) // 2])
    ckpt = [tune.Checkpoint.from_directory(str(f)) for f in folders]

    fresh = _digits_trainer()
    assert resume_trainer(fresh, ckpt[0], ckpt) == 1  # Tune knew epoch 1 ...
    assert fresh.epoch == 2  # ... epoch 2 is on the storage, epoch 3 is unreadable
    assert [r[M.EPOCH] for r in fresh.history] == [1, 2]
    assert fresh.history[1][M.EPOCH_SECONDS] == trainer.history[1][M.EPOCH_SECONDS]

    fresh = _digits_trainer()
    assert resume_trainer(fresh, ckpt[1], ckpt[:1]) == 2 and fresh.epoch == 2  # Tune is newest

    shutil.rmtree(folders[0])  # Tune's checkpoint was deleted (num_to_keep) after a newer one
    fresh = _digits_trainer()
    assert resume_trainer(fresh, ckpt[0], ckpt[1:]) == 0 and fresh.epoch == 2

    fresh = _digits_trainer()
    assert resume_trainer(fresh, None, []) == 0 and fresh.epoch == 0  # a new trial

    with pytest.raises(RuntimeError, match="no checkpoint of this trial could be read"):
        resume_trainer(_digits_trainer(), ckpt[2], [ckpt[0], ckpt[2]])


def test_a_trial_logs_one_line_per_epoch():
    from lrunet import metrics as M
    from trainables.trainable import epoch_line

    m = {M.EPOCH: 2, M.TRAIN_LOSS: 0.5, M.VAL_ACC: 81.234, M.EPOCH_SECONDS: 3.2,
         M.IMAGES_PER_SEC: 410.7}  # fmt: skip
    line = epoch_line("1-LruNet-1x", m, 3)
    assert line == "1-LruNet-1x epoch 2/3  train loss 0.5000  val acc 81.23%  3.2 s  411 images/s"
    assert "\n" not in line and "\r" not in line
