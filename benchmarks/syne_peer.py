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


def audit(log: Trajectory, s: Settings) -> dict[str, int]:
    """Syne Tune's rung decisions in `log`, recomputed from its reports in order: `matched` counts
    those its `Bracket` rule (the non-dominated sort's ordering read as ranks) reproduces, and of
    the decisions with at least one trial recorded at the rung, `differ` those where the
    newcomer's own place in that ordering would have decided otherwise (`stopped_kept`: stopped,
    though its place keeps it; `kept_stopped`: the reverse)."""
    import numpy as np
    from syne_tune.optimizer.schedulers.multiobjective.non_dominated_priority import (
        nondominated_sort,
    )

    from experiments.moasha import rung_milestones

    rungs = {int(m): [] for m in rung_milestones(s.grace, s.max_t, s.reduction_factor)}
    last = [e for _, e in log.epochs_per_trial()]
    out = dict.fromkeys(("decisions", "matched", "compared", "differ", "stopped_kept"), 0)
    out["kept_stopped"] = 0
    trial = -1
    for _, _, e, acc, p in log.reports:
        trial += e == 1
        if e not in rungs or e >= s.max_t:
            continue
        recorded, misread, own = rungs[e], False, False
        if recorded:
            order = np.array(nondominated_sort(np.array([*recorded, (-acc, p)]), dim=0))
            misread = bool(
                np.searchsorted(np.sort(order), order)[-1] / len(order) > 1 / s.reduction_factor
            )
            own = bool(
                np.flatnonzero(order == len(recorded))[0] / len(order) > 1 / s.reduction_factor
            )
            out["compared"] += 1
            out["differ"] += misread != own
            out["stopped_kept"] += misread and not own
            out["kept_stopped"] += own and not misread
        out["decisions"] += 1
        out["matched"] += misread == (last[trial] == e)
        recorded.append((-acc, p))
    return out
