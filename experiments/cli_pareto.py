"""`python launch.py pareto --experiment NAME [--json]`: the front, recomputed from MLflow.

Printed: the overall front (with each member's family), each family's own front, who wins
where (the best family per params band) and both hypervolumes (raw, and normalised to the
reference box). `--json` holds the same: `front`, `by_family`, `who_wins`, `hypervolume`,
`hypervolume_normalised` (null when an objective has no known ideal value)."""

from __future__ import annotations

import argparse
import json
import os

from experiments import tracking
from experiments.front import load_front
from experiments.front_tables import (
    family_fronts_table,
    front_table,
    hypervolume_line,
    who_wins_note,
    who_wins_table,
)
from experiments.who_wins import who_wins, who_wins_records


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
    bands = who_wins(front.rows, front.metrics, front.modes)
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
                    "ideal_point": front.ideal_point,
                    "hypervolume_normalised": (
                        None if front.ideal_point is None else front.hypervolume_normalised
                    ),
                    "by_family": {
                        fam: [front.record(r) for r in rows]
                        for fam, rows in front.by_family().items()
                    },
                    "who_wins": who_wins_records(bands),
                    "who_wins_note": who_wins_note(front, bands),
                },
                indent=2,
            )
        )
    else:
        print(f"{args.experiment} / {parent.info.run_name} ({parent.info.run_id})")
        print(front_table(front, hypervolume=False))
        print(f"\nper family:\n{family_fronts_table(front)}")
        print(f"\n{who_wins_table(front, bands)}")
        print(f"\n{hypervolume_line(front)}")
    return 0
