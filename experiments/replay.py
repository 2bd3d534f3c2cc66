"""`launch.py --replay TABLE`: a search whose trials replay a recorded learning-curve table
(`experiments.curve_table`, written by `launch.py record`) through the real Ray Tune loop,
schedulers, searchers and MLflow tracking (the trainable is `trainables.replay`).

Without `--space` the search runs the table's own recorded space. Before Ray starts, the space is
checked against the table: the same dataset and training subset, no more epochs than were
recorded, a finite space, and every configuration it can produce (within its budgets) in the
table; otherwise a one-line error names what is missing and the fix.

Decisions are reproducible: the searchers are seeded and, unless `--max-concurrent` says
otherwise, a replay runs one trial at a time, so the scheduler sees every report in the same
order on every run with the same seed. With several trials at once their reports interleave by
wall-clock time, which a loaded machine can reorder. With `--time-budget` (MO-ASHA pauses) the
trials' resources bound concurrency instead: `--cpus-per-trial` equal to the machine's CPUs
keeps one at a time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from experiments.curve_table import CurveTable, load_table

if TYPE_CHECKING:
    from experiments.search import SearchOptions
    from search_spaces.spec import SearchSpec

REPLAY_TAG = "replay_table"  # on the parent run: the table a replayed search read
DEFAULT_TIME_SCALE = 100.0


def prepare_replay(o: SearchOptions) -> CurveTable | None:
    """The table of `o.replay` (None without one); fills in the table's own space when `o`
    names none, and one trial at a time when `o` sets no concurrency."""
    if not o.replay:
        return None
    if not o.time_scale > 0:
        raise ValueError(f"--time-scale {o.time_scale}: must be > 0 (e.g. 100: 100x faster)")
    table = load_table(o.replay)
    if not o.space:
        o.space = str(table.space_file())
    if o.max_concurrent is None and o.time_budget_s is None:
        o.max_concurrent = 1  # with a time budget MO-ASHA pauses: resources bound concurrency
    return table


def check_covered(table: CurveTable, spec: SearchSpec) -> None:
    """ValueError, naming the first gap, unless every trial `spec` can run is in `table`."""
    where = f"--replay {table.path}"
    fix = "omit --space to search the table's own space, or record a table that covers it"
    if spec.dataset != table.dataset:
        raise ValueError(f"{where} was recorded on {table.dataset}, not {spec.dataset}; {fix}")
    subset = table.provenance.get("subset")
    if spec.training.subset != subset:
        raise ValueError(
            f"{where} was recorded on a training subset of {subset}, not "
            f"{spec.training.subset}; {fix}"
        )
    if spec.training.max_epochs > table.epochs:
        raise ValueError(
            f"{where} holds {table.epochs} epochs per configuration, fewer than max_epochs "
            f"{spec.training.max_epochs}; pass --max-epochs {table.epochs} or less"
        )
    if not spec.is_grid:
        raise ValueError(
            f"{where}: space {spec.name} is continuous, a table holds finitely many "
            f"configurations; {fix}"
        )
    if spec.num_configs > len(table.configs):
        raise ValueError(
            f"{where}: space {spec.name} has {spec.num_configs:,} configurations, the table "
            f"{len(table.configs)}; {fix}"
        )
    for flat in spec.grid():
        if spec.check_budget(flat) is not None:
            continue  # never trained: the searcher is told it is infeasible
        try:
            table.lookup(flat)
        except KeyError:
            from lrunet.recipe import split_trial_config

            cfg, recipe = split_trial_config(flat, **spec.geometry)
            raise ValueError(
                f"{where} has no curve for {cfg.name} with recipe {recipe.to_dict()} "
                f"(space {spec.name}); {fix}"
            ) from None


def replay_trainable(o: SearchOptions, table: CurveTable):
    """The Ray trainable that replays `table` at `o.time_scale` with `o`'s trial resources."""
    from trainables.replay import curve_key, make_replay_trainable

    curves = {curve_key(c, table.geometry): table.curve(i) for i, c in enumerate(table.configs)}
    return make_replay_trainable(
        curves, table.geometry, o.time_scale, o.cpus_per_trial, o.gpus_per_trial
    )
