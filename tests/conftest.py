"""Shared fixtures: a local Ray instance for the tests that need one, and small search spaces."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Ray's token auth and usage stats are irrelevant to a local test cluster.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")

DIGITS_SPACE = """\
description: a tiny search on scikit-learn's digits, for tests
dataset: digits
model:
  reuse_1: {randint: [1, 2]}
  reuse_2: 1
  reuse_3: {randint: [1, 2]}
  reuse_4: 1
  width: {choice: [0.125, 0.25, 0.5]}
  groups: {choice: [2, 4]}
  dropout: 0.1
recipe:
  lr: {loguniform: [1e-4, 0.2]}
  batch_size: 64
  schedule: cosine
objectives:
  - {metric: val_acc, mode: max}
  - {metric: params, mode: min}
training:
  max_epochs: 3
  grace_epochs: 1
  reduction_factor: 2
  num_samples: 6
"""

# Three families in one search (a family choice with one knob block each), small enough to train
# in seconds on digits.
MIXED_SPACE = """\
description: a tiny search across three families on digits, for tests
dataset: digits
model:
  family: {choice: [lrunet, dacnn, mobilenetv2]}
  lrunet:
    reuse_1: {randint: [1, 2]}
    reuse_2: 1
    reuse_3: 1
    reuse_4: {randint: [1, 2]}
    width: {choice: [0.125, 0.25]}
    groups: 2
    share_k: {choice: [0, 1]}
  dacnn:
    body: vgg
    stages: 2
    blocks_1: 1
    blocks_2: {randint: [1, 2]}
    width: {choice: [8, 12]}
    scope: {choice: [width, none]}
  mobilenetv2:
    width: {choice: [0.125, 0.25]}
recipe:
  lr: {loguniform: [0.02, 0.2]}
  batch_size: 64
  schedule: cosine
training:
  max_epochs: 2
  grace_epochs: 1
  reduction_factor: 2
  num_samples: 6
"""


@pytest.fixture(autouse=True)
def _no_leaked_tracking_uri():
    """`mlflow.set_tracking_uri` also sets MLFLOW_TRACKING_URI, which every later subprocess would
    inherit: undo it after each test."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


@pytest.fixture(scope="module")
def ray_local():
    """A local 2-CPU Ray for one test module (any instance left by another module is replaced),
    whose workers import this checkout's packages."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": pythonpath}},
    )
    yield ray
    ray.shutdown()


def write_space(
    folder: Path, text: str = DIGITS_SPACE, name: str = "digits_tiny.yaml", **replace: str
) -> Path:
    for old, new in replace.items():
        text = text.replace(old, new)
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path
