"""The peer of `benchmarks/search_efficiency.py`: Syne Tune 0.16's `MOASHA` on the same recorded
table, replayed through Syne Tune's own simulator (`UserBlackboxBackend` over a
`BlackboxTabular`, `SimulatorCallback`, simulated time), one worker, as its docs show.

Optional: `pip install -e ".[bench]"` (syne-tune==0.16.0 and huggingface_hub, which its
blackbox-repository package imports). Without it, `available()` says why and the benchmark
skips the peer.

The table becomes a blackbox with one categorical hyperparameter, the table's config id, so
MOASHA draws configurations from the same 60 (with replacement: its `suggest` samples the space
on every call, seeded through numpy's global generator, which is seeded here). Its objectives
are minimised together (`do_minimize=True`): minus the validation accuracy, and the parameter
count. The simulator's delays are set to zero so simulated time is the recorded compute; its
stop criterion is that time (`max_wallclock_time`), the same budget the Ray replays get.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import time

from benchmarks.replay_runs import Settings, Trajectory
from lrunet import metrics as M

METHOD = "syne-tune moasha"
NEG_ACC = "neg_val_acc"
ELAPSED = "elapsed_time"
FIDELITY = "epoch"


def available() -> str | None:
    """None when Syne Tune's simulator can run here, else the reason (one line)."""
    try:
        import syne_tune  # noqa: F401
        from syne_tune.blackbox_repository.simulated_tabular_backend import (  # noqa: F401
            UserBlackboxBackend,
        )
    except ImportError as e:
        return f"{e} (pip install -e '.[bench]' for syne-tune==0.16.0)"
    return None


def blackbox(table):
    """The table as a `BlackboxTabular`: config id -> per-epoch (-acc, params, elapsed)."""
    import numpy as np
    import pandas as pd
    from syne_tune.blackbox_repository.blackbox_tabular import BlackboxTabular
    from syne_tune.config_space import choice, randint

    n, epochs = len(table.configs), table.epochs
    values = np.zeros((n, 1, epochs, 3))
    for cid in range(n):
        elapsed = 0.0
        for e, row in enumerate(table.curve(cid)):
            elapsed += float(row[M.EPOCH_SECONDS])
            values[cid, 0, e] = (-float(row[M.VAL_ACC]), float(row[M.PARAMS]), elapsed)
    # a second, constant column: with pandas 3 the blackbox's lookup of a one-column index fails
    return BlackboxTabular(
        hyperparameters=pd.DataFrame({"config_id": list(range(n)), "table": ["t"] * n}),
        configuration_space={"config_id": choice(list(range(n))), "table": choice(["t"])},
        fidelity_space={FIDELITY: randint(1, epochs)},
        objectives_evaluations=values,
        fidelity_values=np.arange(1, epochs + 1),
        objectives_names=[NEG_ACC, M.PARAMS, ELAPSED],
    )


def run_syne(table, seed: int, s: Settings) -> Trajectory:
    """One MOASHA search of Syne Tune's simulator on `table` until `s.budget_s` of simulated
    (= recorded) compute; the reports in simulated-time order as a `Trajectory`."""
    import numpy as np
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.backend.simulator_backend.simulator_backend import SimulatorConfig
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
    from syne_tune.blackbox_repository.simulated_tabular_backend import UserBlackboxBackend
    from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA

    logging.getLogger("syne_tune").setLevel(logging.ERROR)
    bb = blackbox(table)
    zero = SimulatorConfig(0.0, 0.0, 0.0, 0.0, 0.0)
    backend = UserBlackboxBackend(
        blackbox=bb, elapsed_time_attr=ELAPSED, seed=0, simulator_config=zero
    )
    scheduler = MOASHA(
        config_space=bb.configuration_space,
        metrics=[NEG_ACC, M.PARAMS],
        do_minimize=True,
        time_attr=FIDELITY,
        max_t=s.max_t,
        grace_period=s.grace,
        reduction_factor=s.reduction_factor,
        random_seed=seed,
    )
    np.random.seed(seed)  # MOASHA.suggest samples through numpy's global generator
    callback = SimulatorCallback()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="syne-tune-") as folder:
        old = os.environ.get("SYNETUNE_FOLDER")
        os.environ["SYNETUNE_FOLDER"] = folder
        try:
            tuner = Tuner(
                trial_backend=backend,
                scheduler=scheduler,
                stop_criterion=StoppingCriterion(max_wallclock_time=s.budget_s),
                n_workers=1,
                sleep_time=0,
                callbacks=[callback],
                results_update_interval=1e9,
                print_update_interval=1e9,
                save_tuner=False,
                tuner_name=f"moasha-{seed}",
            )
            with contextlib.redirect_stdout(io.StringIO()):  # its banner and a line per trial
                tuner.run()
        finally:
            if old is None:
                os.environ.pop("SYNETUNE_FOLDER", None)
            else:
                os.environ["SYNETUNE_FOLDER"] = old
    df = callback.dataframe().sort_values("st_tuner_time", kind="stable")
    log = Trajectory(METHOD, seed, wall_s=time.perf_counter() - t0)
    compute = 0.0
    for row in df.itertuples(index=False):
        r = row._asdict()
        cid, epoch = int(r["config_config_id"]), int(r[FIDELITY])
        compute += float(table.curve(cid)[epoch - 1][M.EPOCH_SECONDS])
        log.reports.append((compute, cid, epoch, -float(r[NEG_ACC]), float(r[M.PARAMS])))
    return log
