"""What a finished search prints: its front, and how to open it in the MLflow UI and export it."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from experiments.front_tables import front_table

if TYPE_CHECKING:
    from experiments.search import SearchResult


def front_url(base: str, experiment_id: str, first_metric: str) -> str:
    """The MLflow UI's runs table of an experiment, filtered to the front and sorted by the first
    objective (MLflow 3 opens experiments on another tab and hides filtered children under their
    collapsed parent otherwise)."""
    query = (
        "workflowType=machine_learning&searchFilter=tags.pareto%20%3D%20%27true%27"
        f"&orderByKey=metrics.%60{first_metric}%60&orderByAsc=false"
    )
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"


def summary(result: SearchResult) -> str:
    f = result.front
    local = not result.tracking_uri.startswith("http")
    base = "http://127.0.0.1:5000" if local else result.tracking_uri
    lines = [
        "",
        f"Pareto front of {result.experiment_name} ({', '.join(f.metrics)}):",
        "",
        front_table(f),
        "",
        f"search finished in {result.elapsed_s / 60:.1f} min; "
        f"{result.infeasible} proposal(s) rejected as over budget before training",
        "Open it in the MLflow UI:",
    ]
    if local:
        lines.append(
            f"  mlflow ui --backend-store-uri {shlex.quote(result.tracking_uri)} "
            "--host 127.0.0.1 --port 5000"
        )
    lines += [
        f"  then {front_url(base, result.experiment_id, f.metrics[0])}"
        if local
        else f"  {front_url(base, result.experiment_id, f.metrics[0])}",
        f"Export the front:  python launch.py export --experiment "
        f"{shlex.quote(result.experiment_name)} --pareto --out exports "
        f"--tracking-uri {shlex.quote(result.tracking_uri)}",
    ]
    return "\n".join(lines)
