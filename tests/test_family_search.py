"""Every command for every kind of family, end to end: a search over a DACNN space and one over
a Table 7 baseline on a local Ray with a real SQLite MLflow store (trials tagged and
parametrised with their family), `launch.py pareto` on each, `launch.py export --pareto` of each
front (TorchScript and ONNX checked against eager by the exporter), and `launch.py train` of a
small DACNN and MobileNetV2-0.25x on real Fashion-MNIST, exported and checked the same way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from experiments import tracking
from experiments.search import SearchOptions, run_search
from tests.conftest import ROOT, write_space
from trainables.data import DEBIAN_FASHION_MNIST

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DACNN_SPACE = """\
description: tiny DACNN search on digits, for tests
dataset: digits
model:
  family: dacnn
  body: {choice: [vgg, res]}
  stages: 2
  blocks_1: 1
  blocks_2: {randint: [1, 2]}
  width: {choice: [8, 12]}
  scope: {choice: [width, none]}
recipe:
  lr: 0.05
  batch_size: 64
  schedule: cosine
training:
  max_epochs: 1
  num_samples: 3
"""
BASELINE_SPACE = """\
description: tiny MobileNetV2 search on digits, for tests
dataset: digits
model:
  family: mobilenetv2
  width: {choice: [0.125, 0.25]}
recipe:
  lr: 0.05
  batch_size: 64
  schedule: cosine
training:
  max_epochs: 1
  num_samples: 2
"""


def _launch(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def searches(tmp_path_factory, ray_local):
    d = tmp_path_factory.mktemp("families")
    uri = f"sqlite:///{d / 'mlflow.db'}"
    results = {}
    for family, text in (("dacnn", DACNN_SPACE), ("mobilenetv2", BASELINE_SPACE)):
        space = write_space(d, text, name=f"{family}.yaml")
        results[family] = run_search(
            SearchOptions(
                space=str(space),
                tracking_uri=uri,
                storage_path=str(d / "ray"),
                experiment_name=f"fam-{family}",
                max_concurrent=2,
                seed=3,
                verbose=0,
            )
        )
    return d, uri, results


@pytest.mark.parametrize("family", ["dacnn", "mobilenetv2"])
def test_trials_carry_their_family(searches, family):
    _, uri, results = searches
    client = tracking.client_for(uri)
    result = results[family]
    exp = client.get_experiment_by_name(result.experiment_name)
    runs = tracking.trial_runs(client, result.parent_run_id, exp.experiment_id)
    assert runs and all(r.data.tags["status"] == "completed" for r in runs)
    tag = {"dacnn": "-DACNN-", "mobilenetv2": "MobileNetV2-"}[family]
    for r in runs:
        assert r.data.tags["family"] == family and r.data.params["family"] == family
        assert tag in r.data.tags["arch"] and r.info.run_name == r.data.tags["arch"]
        assert float(r.data.metrics["params"]) > 0
    assert len(result.front.members) >= 1
    parent = client.get_run(result.parent_run_id)
    assert parent.data.tags["family"] == family and parent.data.params["family"] == family


@pytest.mark.parametrize("family", ["dacnn", "mobilenetv2"])
def test_pareto_and_export_of_a_family_front(searches, family):
    d, uri, results = searches
    result = results[family]
    exp = f"fam-{family}"
    front = json.loads(
        _launch("pareto", "--experiment", exp, "--tracking-uri", uri, "--json", cwd=d).stdout
    )
    out = d / f"export-{family}"
    _launch(
        "export", "--experiment", exp, "--pareto", "--out", str(out), "--tracking-uri", uri, cwd=d
    )
    folders = sorted(p.name for p in out.iterdir())
    assert folders and len(folders) == len(result.front.members), (folders, front)
    for name in folders:
        info = yaml.safe_load((out / name / "config.yaml").read_text())
        assert info["family"] == family and info["name"] == name
        assert info["checks"]["torchscript_max_abs_diff"] <= info["checks"]["atol"]
        assert info["checks"]["onnx_max_abs_diff"] <= info["checks"]["atol"]
        assert (out / name / "model.onnx").stat().st_size > 0


@pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(),
    reason="real Fashion-MNIST is not installed (apt-get install -y dataset-fashion-mnist)",
)
@pytest.mark.parametrize("arch", ["1.2.2-DACNN-vgg16", "MobileNetV2-0.25x"])
def test_train_cli_then_export_of_a_family(arch, tmp_path):
    import torch

    from experiments.export import export_model
    from lrunet.recipe import Recipe
    from trainables.checkpoint import load_model
    from trainables.data import load_dataset

    ckpt = tmp_path / "model.pt"
    proc = _launch(
        "train", arch, "--dataset", "fashionmnist", "--epochs", "1", "--subset", "1000",
        "--val-fraction", "0.02", "--batch-size", "128", "--out", str(ckpt), cwd=tmp_path,
    )  # fmt: skip
    assert f"{arch} on fashionmnist" in proc.stdout and "val acc" in proc.stdout
    # not a terminal: no per-batch bar, one line per epoch
    assert "\r" not in proc.stdout + proc.stderr
    assert [line for line in proc.stdout.splitlines() if line.startswith("epoch ")] == [
        next(line for line in proc.stdout.splitlines() if line.startswith("epoch 1/1"))
    ]
    model, state = load_model(ckpt)
    assert model.cfg.name == arch and state["epoch"] == 1
    data = load_dataset("fashionmnist")
    example = data.test_x[:16].float() / 255
    folder = export_model(
        model.cfg,
        model.state_dict(),
        tmp_path / "out",
        recipe=Recipe(**state["recipe"]),
        metadata={"dataset": "fashionmnist"},
        example=example,
        input_pad=data.info.eval_pad,
    )
    info = yaml.safe_load((folder / "config.yaml").read_text())
    assert info["checks"]["onnx_max_abs_diff"] <= 1e-4
    assert info["checks"]["torchscript_max_abs_diff"] <= 1e-4
    scripted = torch.jit.load(str(folder / "model.torchscript.pt"))
    with torch.no_grad():
        padded = torch.nn.functional.pad(example, (2, 2, 2, 2))
        assert torch.allclose(scripted(example), model(padded), atol=1e-4)
