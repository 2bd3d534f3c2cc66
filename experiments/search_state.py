"""What a search records about itself on its MLflow parent run, and reads back for `--resume`:
its params, space file and command line (`log_parent`), and `STATE_FILE`, the JSON holding the
space, overrides, storage folder and options the interrupted search ran with."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments import tracking
from lrunet.io import first_line
from lrunet.objectives import budget_keys
from search_spaces.spec import SearchSpec

if TYPE_CHECKING:
    from experiments.search import SearchOptions

STATE_FILE = "lrunet_search.json"  # beside Ray's experiment state: what --resume needs


def space_file(spec: SearchSpec) -> str:
    from search_spaces.loader import resolve_space

    return str(resolve_space(spec.path if os.path.exists(spec.path) else spec.name)[0])


def log_parent(
    client, parent_id: str, o: SearchOptions, spec: SearchSpec, storage_dir: str
) -> None:
    params = {
        "space": spec.name,
        "family": spec.family,
        "dataset": spec.dataset,
        "searcher": o.searcher,
        "scheduler": o.scheduler,
        "max_epochs": spec.training.max_epochs,
        "grace_epochs": spec.training.grace_epochs,
        "reduction_factor": spec.training.reduction_factor,
        "num_samples": spec.training.num_samples,
        "subset": spec.training.subset,
        "objectives": ",".join(spec.metrics),
        "modes": ",".join(spec.modes),
        "reference_point": ",".join(repr(float(x)) for x in spec.reference_point),
        **{key: spec.budgets.limits.get(key) for key in budget_keys()},
        "measure": json.dumps(spec.measure, sort_keys=True) if spec.measure else None,
        "cpus_per_trial": o.cpus_per_trial,
        "gpus_per_trial": o.gpus_per_trial,
        "seed": o.seed,
        "time_budget_s": o.time_budget_s,
        "storage_dir": storage_dir,
    }
    for k, v in params.items():
        client.log_param(parent_id, k, str(v))
    client.log_artifact(parent_id, space_file(spec), "space")
    cmd = " ".join(shlex.quote(a) for a in (o.argv or [sys.argv[0], *sys.argv[1:]]))
    client.log_text(
        parent_id, f"cd {shlex.quote(os.getcwd())}\n{sys.executable} {cmd}\n", "command.txt"
    )
    client.set_tag(parent_id, "command", cmd[:5000])


def write_state(client, parent_id: str, state: dict[str, Any]) -> None:
    client.log_text(parent_id, json.dumps(state, indent=2, default=str), STATE_FILE)


def resume_state(client, experiment_name: str) -> dict[str, Any]:
    exp = tracking.find_experiment(client, experiment_name)
    parent = tracking.latest_parent_run(client, exp.experiment_id)
    if parent is None:
        raise ValueError(f"experiment {experiment_name!r} has no search to resume")
    if parent.data.tags.get("search_status") == "finished":
        raise ValueError(
            f"the newest search of {experiment_name!r} ({parent.info.run_name}) "
            "already finished; start a new one with --space"
        )
    import tempfile

    try:
        with tempfile.TemporaryDirectory(prefix="lrunet-resume-") as d:
            local = client.download_artifacts(parent.info.run_id, STATE_FILE, d)
            text = Path(local).read_text()
    except Exception as e:
        raise ValueError(
            f"search run {parent.info.run_id} has no readable {STATE_FILE} "
            f"({first_line(e)[:120]}); it cannot be resumed, "
            "start a new search with --space"
        ) from None
    state = json.loads(text)
    if not Path(state["space_path"]).is_file():
        raise FileNotFoundError(
            f"the search's space file {state['space_path']} is gone; restore it to resume"
        )
    return state
