"""The replay trainable: a Ray Tune trial that reports a recorded learning curve instead of
training (`launch.py --replay TABLE`, tables from `launch.py record`).

Everything around it is the real thing: the search's searcher proposes the configuration, the
scheduler reads every report and may stop the trial, the MLflow callback logs the run, its tags
and metrics, the front is computed from the completed runs. The trial looks its configuration up
in the table (by canonical architecture name and recipe, `curve_key`), and for each recorded
epoch sleeps that epoch's recorded seconds divided by the time scale, then reports the epoch's
recorded metrics under the keys a training trial reports (`epoch_seconds` stays the recorded,
uncompressed time), plus the node it ran on. It stops at the table's epoch count, or earlier at
the run's `max_epochs`.

A replayed trial's checkpoint holds no model, only `lrunet.json` with its epoch (written every
`checkpoint_every` epochs of the run settings and at the last one, as a training trial's): a
trial paused by a scheduler, or restarted after a failure, goes on from the epoch after it. A
completed run holds no model file to export. Ray is imported only when a trial runs.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lrunet import metrics as M
from trainables.trainable import (
    CHECKPOINT_META,
    NODE_ID,
    _checkpoint_epoch,
    _node_id,
    split_run_config,
)


def curve_key(flat: Mapping[str, Any], geometry: Mapping[str, int]) -> str:
    """What identifies a configuration in a table: its canonical architecture name and recipe
    (so `reuse: 2` and `reuse_1..4: 2` are one configuration). ValueError for a config no family
    can build (the message names the knob)."""
    from lrunet.recipe import split_trial_config

    cfg, recipe = split_trial_config(dict(flat), **geometry)
    rec = {
        k: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
        for k, v in recipe.to_dict().items()
    }
    return json.dumps({"arch": cfg.name, "recipe": rec}, sort_keys=True, default=str)


def replay_curve(
    config: dict[str, Any],
    *,
    curves: Mapping[str, Sequence[Mapping[str, float]]],
    geometry: Mapping[str, int],
    time_scale: float,
) -> None:
    """Ray Tune function trainable (bind `curves`, `geometry`, `time_scale` with
    `tune.with_parameters`): report the recorded curve of `config`, epoch by epoch."""
    from ray import tune

    flat, run = split_run_config(config)
    key = curve_key(flat, geometry)
    if key not in curves:  # the search checks coverage before it starts: only a changed table
        raise ValueError(f"{json.loads(key)['arch']} is not in the replayed table ({key})")
    curve = curves[key]
    last = min(run.max_epochs or len(curve), len(curve))
    arch, node = json.loads(key)["arch"], _node_id()
    for row in curve[resumed_epoch(tune.get_checkpoint()) : last]:
        time.sleep(max(0.0, float(row[M.EPOCH_SECONDS])) / time_scale)
        epoch = int(row[M.EPOCH])
        result = {**row, M.EPOCH: epoch, NODE_ID: node, "training_iteration": epoch}
        acc = f"  val acc {row[M.VAL_ACC]:.2f}%" if M.VAL_ACC in row else ""
        print(f"{arch} epoch {epoch}/{last} (replayed){acc}", flush=True)
        if epoch % run.checkpoint_every and epoch != last:
            tune.report(result)
            continue
        with tempfile.TemporaryDirectory(prefix="lrunet-replay-") as d:
            Path(d, CHECKPOINT_META).write_text(json.dumps({"epoch": epoch}))
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(d))


def resumed_epoch(checkpoint) -> int:
    """The epoch a replayed trial's checkpoint holds (0: none, start at epoch 1), read as a
    training trial's is (`trainables.trainable._checkpoint_epoch`)."""
    if checkpoint is None:
        return 0
    epoch = _checkpoint_epoch(checkpoint)
    if epoch is None:
        raise ValueError(f"{checkpoint.path}: no readable {CHECKPOINT_META} in the checkpoint")
    return epoch


def make_replay_trainable(
    curves: Mapping[str, Sequence[Mapping[str, float]]],
    geometry: Mapping[str, int],
    time_scale: float,
    cpus_per_trial: float = 1,
    gpus_per_trial: float = 0,
):
    """`replay_curve` bound to a table's curves (shipped once through Ray's object store), with
    per-trial resources, ready for `tune.Tuner`."""
    from ray import tune

    if not time_scale > 0:
        raise ValueError(f"--time-scale {time_scale}: must be > 0 (e.g. 100: 100x faster)")
    bound = tune.with_parameters(
        replay_curve,
        curves={k: [dict(r) for r in v] for k, v in curves.items()},
        geometry=dict(geometry),
        time_scale=float(time_scale),
    )
    return tune.with_resources(bound, {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
