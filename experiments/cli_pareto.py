"""`python launch.py pareto --experiment NAME [--json]`: the front, recomputed from MLflow."""

from __future__ import annotations

import argparse
import json
import os

from experiments import tracking
from experiments.front import front_table, load_front


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", required=True, help="MLflow experiment name")
    parser.add_argument("--run-id", help="a search's parent run (default: the newest search)")
    parser.add_argument("--tracking-uri", help="MLflow store (default: sqlite:///./mlflow.db)")
    parser.add_argument("--json", action="store_true", help="print the front as JSON")


def run(args: argparse.Namespace) -> int:
    uri = (
        args.tracking_uri
        or os.environ.get("MLFLOW_TRACKING_URI")
        or tracking.default_tracking_uri()
    )
    if uri.startswith("sqlite:///") and not os.path.exists(uri.removeprefix("sqlite:///")):
        raise FileNotFoundError(
            f"no MLflow store at {uri}; run a search first or pass --tracking-uri"
        )
    tracking.check_tracking_uri(uri)
    client = tracking.client_for(uri)
    front, parent = load_front(client, args.experiment, parent_run_id=args.run_id)
    if args.json:
        print(
            json.dumps(
                {
                    "experiment": args.experiment,
                    "parent_run_id": parent.info.run_id,
                    "objectives": dict(zip(front.metrics, front.modes)),
                    "reference_point": front.reference_point,
                    "hypervolume": front.hypervolume,
                    "front": front.to_records(),
                },
                indent=2,
            )
        )
    else:
        print(f"{args.experiment} / {parent.info.run_name} ({parent.info.run_id})")
        print(front_table(front))
    return 0
