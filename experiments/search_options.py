"""What a search is asked to do (`SearchOptions`, from `launch.py`'s flags or the Python API),
what it returns (`SearchResult`), and the checks of those options that need no Ray: the flags
themselves, their merge into the space file, a measurement's device, and pausing's limits. They
run before Ray starts (`experiments.search.run_search`)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from experiments.front import Front
from search_spaces.loader import GeometryFromData
from search_spaces.spec import SearchSpec

SCHEDULERS = ("auto", "asha", "moasha", "fifo")


@dataclass
class SearchOptions:
    space: str | None = None
    resume: str | None = None
    dataset: str | None = None
    data_dir: str | None = None
    num_samples: int | None = None
    max_epochs: int | None = None
    grace_epochs: int | None = None
    reduction_factor: float | None = None
    subset: int | None = None
    searcher: str = "random"
    scheduler: str = "auto"
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    max_failures: int = 2
    address: str | None = None
    storage_path: str | None = None
    tracking_uri: str | None = None
    experiment_name: str | None = None
    seed: int = 0
    verbose: int = 1
    argv: list[str] = field(default_factory=list)
    # merged into the space file like the flags above (`launch.py reproduce --epochs` shortens
    # the recipe's epochs with the budget)
    space_overrides: dict[str, Any] = field(default_factory=dict)
    # a metric to maximise: each trial keeps its best checkpoint by it beside its last
    # (`launch.py reproduce` scores the validation-selected checkpoint on the test set)
    keep_best: str | None = None
    # a recorded learning-curve table the trials replay instead of training (`experiments.replay`)
    replay: str | None = None
    time_scale: float = 100.0
    # end the search after this many seconds; MO-ASHA then pauses the trials it would stop and
    # resumes the best once the searcher is finished (`experiments.moasha`, pause=True)
    time_budget_s: float | None = None


@dataclass
class SearchResult:
    experiment_name: str
    parent_run_id: str
    tracking_uri: str
    storage_dir: str
    front: Front
    infeasible: int
    elapsed_s: float
    experiment_id: str = ""


def merged_overrides(o: SearchOptions, geometry: GeometryFromData | None = None) -> dict[str, Any]:
    """CLI flags as overrides of the space file, validated like the file itself (`geometry`:
    what completes an image folder's geometry, `folder_geometry`)."""
    training = {
        k: v
        for k, v in (
            ("max_epochs", o.max_epochs),
            ("grace_epochs", o.grace_epochs),
            ("reduction_factor", o.reduction_factor),
            ("num_samples", o.num_samples),
            ("subset", o.subset),
        )
        if v is not None
    }
    if o.max_epochs is not None and o.grace_epochs is None and o.space:
        # a shorter budget than the file's grace period: shrink the grace period with it
        from search_spaces.loader import load_space as _load

        grace = _load(o.space, geometry_from_data=geometry).training.grace_epochs
        if grace > o.max_epochs:
            training["grace_epochs"] = o.max_epochs
    out: dict[str, Any] = copy.deepcopy(o.space_overrides)
    if training:
        out["training"] = {**out.get("training", {}), **training}
    if o.dataset:
        out["dataset"] = o.dataset
    return out


def check_flags(o: SearchOptions) -> None:
    from experiments.searchers import SEARCHERS

    if o.searcher not in SEARCHERS:
        raise ValueError(f"--searcher {o.searcher!r}: choose one of {', '.join(SEARCHERS)}")
    if o.scheduler not in SCHEDULERS:
        raise ValueError(f"--scheduler {o.scheduler!r}: choose one of {', '.join(SCHEDULERS)}")
    if not o.cpus_per_trial > 0:
        raise ValueError(f"--cpus-per-trial {o.cpus_per_trial}: must be > 0")
    if o.gpus_per_trial < 0:
        raise ValueError(f"--gpus-per-trial {o.gpus_per_trial}: must be >= 0")
    if o.max_concurrent is not None and o.max_concurrent < 1:
        raise ValueError(f"--max-concurrent {o.max_concurrent}: must be >= 1")
    if o.max_failures < 0:
        raise ValueError(f"--max-failures {o.max_failures}: must be >= 0")
    if o.time_budget_s is not None and not o.time_budget_s > 0:
        raise ValueError(f"--time-budget {o.time_budget_s:g} s: must be > 0 (e.g. 90m, 2h)")


def scheduler_kind(o: SearchOptions, spec: SearchSpec) -> str:
    """The scheduler a search runs: `--scheduler`, with auto = MO-ASHA for several objectives
    and ASHA for one."""
    if o.scheduler != "auto":
        return o.scheduler
    return "moasha" if len(spec.objectives) > 1 else "asha"


def pauses(o: SearchOptions, spec: SearchSpec) -> bool:
    """Whether the search's MO-ASHA pauses trials (a time budget: `experiments.moasha`)."""
    return scheduler_kind(o, spec) == "moasha" and o.time_budget_s is not None


def check_pausing(o: SearchOptions, spec: SearchSpec) -> None:
    if pauses(o, spec) and o.max_concurrent is not None:
        raise ValueError(
            f"--max-concurrent {o.max_concurrent} with --time-budget: MO-ASHA pauses trials "
            "then, and paused trials would hold the limit's slots; drop --max-concurrent and "
            "bound concurrency with --cpus-per-trial / --gpus-per-trial"
        )


def check_measure_device(spec: SearchSpec, gpus_per_trial: float) -> None:
    """A measurement on the trial's GPU needs trials that get one (before any compute)."""
    target = spec.measure.get("latency", {}).get("target")
    if target == "cuda" and not gpus_per_trial:
        raise ValueError(
            f"{spec.name}: measure.latency.target is cuda, but trials get no GPU; pass "
            "--gpus-per-trial 1 (or a fraction), or measure on cpu1, cpu or ort-cpu"
        )


RESUMED_OPTIONS = (
    "searcher",
    "scheduler",
    "cpus_per_trial",
    "gpus_per_trial",
    "max_concurrent",
    "max_failures",
    "seed",
    "replay",
    "time_scale",
    "time_budget_s",
)
