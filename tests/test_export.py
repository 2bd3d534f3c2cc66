"""Export of trained LruNets: standalone torch.export (pt2), ONNX and TorchScript files, the CLI
over a real MLflow store.

The standalone test loads the exported files in subprocesses that cannot import this project
(no PYTHONPATH, cwd elsewhere) and classifies the real digits test split; the CLI tests build a
real sqlite MLflow store laid out as the search writes it (a parent run per launch, nested trial
runs with tags, params, metrics and a `model/model.pt` artifact) and run `launch.py export`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from experiments.export import (
    CARD_FILE,
    EXPORT_FILES,
    ExportCheckError,
    check_export_name,
    export_model,
)
from experiments.model_file import load_model_file, save_model_file
from lrunet import metrics as M
from lrunet.config import parse_name
from lrunet.counting import count
from lrunet.model import LruNet
from lrunet.recipe import Recipe, flat_trial_config
from trainables.data import load_dataset

ROOT = Path(__file__).resolve().parents[1]
RECIPE = Recipe(lr=0.05, batch_size=64, epochs=2, schedule="constant")


def _train(arch: str, steps: int, seed: int = 0):
    """A few SGD steps of `arch` on digits; returns (cfg, eval-mode model, dataset)."""
    data = load_dataset("digits")
    cfg = parse_name(arch, **data.geometry)
    torch.manual_seed(seed)
    model = LruNet(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(data.train_x), (64,), generator=g)
        loss = F.cross_entropy(model(data.train_x[idx].float() / 255), data.train_y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return cfg, model.eval(), data


def _accuracy(model, data) -> float:
    with torch.no_grad():
        pred = model(data.test_x.float() / 255).argmax(1)
    return 100.0 * int((pred == data.test_y).sum()) / len(data.test_y)


@pytest.fixture(scope="module")
def trained():
    return _train("1-LruNet-0.5x", steps=30)


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MLFLOW_"))}
    env["PYTHONNOUSERSITE"] = "1"
    env["LRUNET_REPO"] = os.path.realpath(ROOT)
    return env


STANDALONE = """
import importlib.util, json, os, sys
# a machine that never heard of this project: undo the hooks of its editable install (`pip
# install -e .` puts a finder on sys.meta_path and may put the checkout on sys.path)
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in str(f.__module__)]
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != os.environ["LRUNET_REPO"]]
import numpy as np
for mod in ("lrunet", "experiments", "trainables"):
    assert importlib.util.find_spec(mod) is None, mod
x = np.load("x.npy"); y = np.load("y.npy")
if sys.argv[1] == "pt2":
    import torch
    model = torch.export.load(sys.argv[2]).module()
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(1).numpy()
elif sys.argv[1] == "torchscript":
    import torch
    model = torch.jit.load(sys.argv[2])
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(1).numpy()
elif sys.argv[1] == "onnx":
    import onnxruntime as ort
    s = ort.InferenceSession(sys.argv[2], providers=["CPUExecutionProvider"])
    pred = s.run(["logits"], {"input": x})[0].argmax(1)
    assert "torch" not in sys.modules
else:
    import mlflow
    mlflow.set_tracking_uri(sys.argv[3])
    pred = mlflow.pyfunc.load_model(sys.argv[2]).predict(x).argmax(1)
print(json.dumps({"acc": 100.0 * float((pred == y).mean())}))
"""


def _standalone_accuracy(tmp: Path, data, kind: str, target: str, uri: str = "") -> float:
    """Accuracy on the digits test split from a process that cannot import this project."""
    tmp.mkdir(parents=True, exist_ok=True)
    np.save(tmp / "x.npy", (data.test_x.float() / 255).numpy())
    np.save(tmp / "y.npy", data.test_y.numpy())
    (tmp / "standalone.py").write_text(STANDALONE)
    proc = subprocess.run(
        [sys.executable, "standalone.py", kind, target, uri],
        cwd=tmp,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])["acc"]


@pytest.mark.timeout(300)
def test_exported_files_classify_like_the_eager_model_without_the_project(trained, tmp_path):
    cfg, model, data = trained
    eager = _accuracy(model, data)
    assert eager > 30.0, "the model should have learned something in 30 steps"
    example = data.test_x[:64].float() / 255
    folder = export_model(
        cfg,
        model.state_dict(),
        tmp_path / "out",
        recipe=RECIPE,
        example=example,
        metadata={
            "dataset": "digits",
            "metrics": {M.VAL_ACC: 77.5, M.TEST_ACC: eager},
            "source": {"experiment": "unit", "run_id": "r1"},
        },
    )
    assert folder == tmp_path / "out" / "1-LruNet-0.5x"
    assert sorted(p.name for p in folder.iterdir()) == sorted(EXPORT_FILES)
    assert [p.name for p in (tmp_path / "out").iterdir()] == [folder.name]  # no temp leftovers

    info = yaml.safe_load((folder / "config.yaml").read_text())
    assert info["architecture"] == cfg.to_dict()
    assert info["recipe"] == RECIPE.to_dict()
    assert info["source"] == {"experiment": "unit", "run_id": "r1"}
    assert info["metrics"][M.TEST_ACC] == pytest.approx(eager)
    assert info["checks"]["onnx_max_abs_diff"] <= 1e-4
    assert info["checks"]["pt2_max_abs_diff"] <= 1e-4
    counts = count(cfg)
    assert info["counts"]["params"] == counts.params == model.num_params()
    card = (folder / CARD_FILE).read_text()
    for text in (
        f"{counts.params:,}",
        f"{counts.mflops:.2f}",
        "77.50 %",
        f"{eager:.2f} %",
        "torch.jit.load",
        "onnxruntime",
        "pixels / 255",
        "(batch, 1, 32, 32)",
    ):
        assert text in card, text
    weights = torch.load(folder / "weights.pt", weights_only=True)
    assert weights.keys() == model.state_dict().keys()

    # the primary PyTorch format is torch.export's, shown first; TorchScript stays
    assert "model.pt2" in card and card.index("torch.export.load") < card.index("torch.jit.load")

    # the same accuracy from torch alone and from onnxruntime alone, outside the project
    pt2 = _standalone_accuracy(tmp_path / "elsewhere", data, "pt2", str(folder / "model.pt2"))
    assert pt2 == pytest.approx(eager, abs=1e-9)
    ts = _standalone_accuracy(
        tmp_path / "elsewhere", data, "torchscript", str(folder / "model.torchscript.pt")
    )
    onnx = _standalone_accuracy(tmp_path / "elsewhere", data, "onnx", str(folder / "model.onnx"))
    assert ts == pytest.approx(eager, abs=1e-9)
    assert onnx == pytest.approx(eager, abs=1e-9)


@pytest.mark.timeout(300)
def test_failed_check_leaves_previous_export_untouched_and_no_partial_folder(trained, tmp_path):
    cfg, model, data = trained
    out = tmp_path / "out"
    good = data.test_x[:16].float() / 255
    folder = export_model(
        cfg,
        model.state_dict(),
        out,
        recipe=RECIPE,
        example=good,
        metadata={"metrics": {M.VAL_ACC: 1.0}},
    )
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    # a NaN in the batch makes the check fail after every file was written
    bad = good.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ExportCheckError, match="differs from the eager model"):
        export_model(
            cfg,
            model.state_dict(),
            out,
            recipe=RECIPE,
            example=bad,
            metadata={"metrics": {M.VAL_ACC: 2.0}},
        )
    assert [p.name for p in out.iterdir()] == [folder.name]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before

    # a successful re-export replaces the folder as a whole, leaving nothing else behind
    export_model(
        cfg,
        model.state_dict(),
        out,
        recipe=RECIPE,
        example=good,
        metadata={"metrics": {M.VAL_ACC: 3.0}},
    )
    assert [p.name for p in out.iterdir()] == [folder.name]
    assert yaml.safe_load((folder / "config.yaml").read_text())["metrics"][M.VAL_ACC] == 3.0


@pytest.mark.timeout(300)
def test_input_padding_is_inside_the_exported_model(trained, tmp_path):
    """Fashion-MNIST style: 28x28 images, evaluated zero-padded to the 32x32 training geometry."""
    import onnxruntime as ort

    cfg, model, data = trained
    raw = data.test_x[:64, :, 2:30, 2:30].float() / 255  # 28x28 images
    folder = export_model(
        cfg,
        model.state_dict(),
        tmp_path,
        recipe=RECIPE,
        example=raw,
        input_pad=2,
        metadata={"dataset": "padded"},
    )
    with torch.no_grad():
        want = model(F.pad(raw, (2, 2, 2, 2)))
        got_ts = torch.jit.load(str(folder / "model.torchscript.pt"))(raw)
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1:] == [1, 28, 28]
    got_onnx = session.run(["logits"], {"input": raw.numpy()})[0]
    assert (got_ts - want).abs().max() <= 1e-4
    assert np.abs(got_onnx - want.numpy()).max() <= 1e-4
    info = yaml.safe_load((folder / "config.yaml").read_text())
    assert info["input"]["shape"] == [-1, 1, 28, 28] and info["input"]["pad"] == 2
    weights = torch.load(folder / "weights.pt", weights_only=True)
    assert weights.keys() == model.state_dict().keys()  # the bare network's, no wrapper prefix
    assert "zero-pads its 28x28 input by 2" in " ".join((folder / CARD_FILE).read_text().split())


@pytest.mark.timeout(300)
def test_pt2_has_a_free_batch_axis_and_the_test_split_is_counted_per_file(trained, tmp_path):
    """model.pt2 loads with torch alone into a module taking any batch size; given the test
    split, every exported file classifies it and the card states the count."""
    cfg, model, data = trained
    x = data.test_x.float() / 255
    folder = export_model(
        cfg,
        model.state_dict(),
        tmp_path,
        recipe=RECIPE,
        example=x[:32],
        test=(x, data.test_y),
        metadata={"dataset": "digits", "metrics": {M.TEST_ACC: -1.0}},
    )
    program = torch.export.load(str(folder / "model.pt2")).module()
    with torch.no_grad():
        for n in (1, 3, 100):
            assert (program(x[:n]) - model(x[:n])).abs().max() <= 1e-4
        right = int((model(x).argmax(1) == data.test_y).sum())
    info = yaml.safe_load((folder / "config.yaml").read_text())
    assert info["test"] == {
        "images": len(data.test_y),
        "correct": {"eager": right, "pt2": right, "onnx": right, "torchscript": right},
    }
    # the test accuracy is the one measured on the exported inputs, not the caller's number
    assert info["metrics"][M.TEST_ACC] == pytest.approx(100.0 * right / len(data.test_y))
    assert info["input"]["range"] == [0.0, 1.0] and info["input"]["dtype"] == "float32"
    card = " ".join((folder / CARD_FILE).read_text().split())
    assert f"({right:,} of {len(data.test_y):,} test images)" in card
    assert "So do `model.pt2`, `model.onnx`, `model.torchscript.pt`" in card
    assert "runs the network on the input as given (no resize, no padding" in card
    with pytest.raises(ValueError, match="test: expected images shaped"):
        export_model(
            cfg,
            model.state_dict(),
            tmp_path / "bad",
            recipe=RECIPE,
            example=x[:8],
            test=(x[:, :, :28, :28], data.test_y),
            metadata={},
        )


def test_export_names_cannot_escape_the_output_folder():
    for ok in ("14-LruNet-1x", "2.4.8.14-LruNet-1.25x-g4-snone-d0.7-untied"):
        assert check_export_name(ok) == ok
    for bad in ("../x", "a/b", "..", ".", ".hidden", "", "a\\b", "x/../../etc", "1..2-LruNet"):
        with pytest.raises(ValueError, match="not a safe folder name"):
            check_export_name(bad)


def test_model_file_round_trips_and_corruption_names_the_file(tmp_path):
    cfg = parse_name("2.1.1.3-LruNet-0.25x-snone", num_classes=10, in_channels=1, input_size=32)
    state = LruNet(cfg).state_dict()
    path = save_model_file(
        tmp_path / "model.pt", cfg, RECIPE, state, "digits", {M.VAL_ACC: 91.5, M.PARAMS: 1234}
    )
    raw = torch.load(path, weights_only=True)  # the contract: plain torch, weights_only
    assert set(raw) == {"state_dict", "config", "recipe", "dataset", "metrics"}
    mf = load_model_file(path)
    assert mf.model_cfg == cfg and mf.recipe == RECIPE and mf.dataset == "digits"
    assert mf.metrics == {M.VAL_ACC: 91.5, M.PARAMS: 1234.0}
    assert all(torch.equal(mf.state_dict[k], v) for k, v in state.items())
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]

    blob = path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="truncated.pt' is corrupt, truncated"):
        load_model_file(truncated)
    other = tmp_path / "other.pt"
    torch.save({"net": state}, other)
    with pytest.raises(ValueError, match="other.pt is not an LruNet model file"):
        load_model_file(other)


# --- the CLI over a real MLflow store ---------------------------------------------------------


def _log_trial(
    client,
    exp_id: str,
    parent: str,
    cfg,
    *,
    status: str,
    pareto: bool,
    val_acc: float,
    model=None,
    tmp: Path,
) -> str:
    """One trial run laid out as the search writes it."""
    from mlflow.entities import Metric, Param

    arch = cfg.name
    run = client.create_run(
        exp_id,
        run_name=arch,
        tags={
            "mlflow.parentRunId": parent,
            "lrunet.role": "trial",
            "trial_id": arch,
            "arch": arch,
            "status": status,
            "stopped_at_epoch": "2",
            "pareto": str(pareto).lower(),
            "pareto_rank": "1" if pareto else "2",
            "dataset": "digits",
        },
    )
    rid = run.info.run_id
    params = {
        **flat_trial_config(cfg, RECIPE),
        "dataset": "digits",
        "num_classes": 10,
        "in_channels": 1,
        "input_size": 32,
    }
    client.log_batch(rid, params=[Param(k, str(v)) for k, v in params.items()])
    c = count(cfg)
    for epoch in (1, 2):
        client.log_batch(
            rid,
            metrics=[
                Metric(M.VAL_ACC, val_acc - (2 - epoch), 0, epoch),
                Metric(M.PARAMS, c.params, 0, epoch),
                Metric(M.MFLOPS, c.mflops, 0, epoch),
            ],
        )
    if model is not None:
        d = tmp / rid
        d.mkdir(parents=True)
        save_model_file(
            d / "model.pt", cfg, RECIPE, model.state_dict(), "digits", {M.VAL_ACC: val_acc}
        )
        client.log_artifact(rid, str(d / "model.pt"), "model")
    client.set_terminated(rid, "FINISHED" if status == "completed" else "KILLED")
    return rid


@pytest.fixture(scope="module")
def store(trained, tmp_path_factory):
    """A sqlite store with one launch: a front member, a dominated trial, a stopped one and a
    'completed' one whose upload never happened."""
    import mlflow

    tmp = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    exp_id = client.create_experiment("digits-nas", artifact_location=str(tmp / "artifacts"))
    parent = client.create_run(exp_id, run_name="search", tags={"lrunet.role": "search"})
    parent = parent.info.run_id
    cfg_a, model_a, _ = trained
    cfg_b, model_b, _ = _train("1-LruNet-0.25x", steps=5, seed=1)
    runs = {
        "front": _log_trial(
            client,
            exp_id,
            parent,
            cfg_a,
            status="completed",
            pareto=True,
            val_acc=80.0,
            model=model_a,
            tmp=tmp,
        ),
        "dominated": _log_trial(
            client,
            exp_id,
            parent,
            cfg_b,
            status="completed",
            pareto=False,
            val_acc=40.0,
            model=model_b,
            tmp=tmp,
        ),
        "stopped": _log_trial(
            client,
            exp_id,
            parent,
            parse_name("4-LruNet-0.5x", **GEO),
            status="stopped_early",
            pareto=False,
            val_acc=20.0,
            tmp=tmp,
        ),
        "no_artifact": _log_trial(
            client,
            exp_id,
            parent,
            parse_name("2-LruNet-0.5x", **GEO),
            status="completed",
            pareto=False,
            val_acc=10.0,
            tmp=tmp,
        ),
    }
    client.set_terminated(parent, "FINISHED")
    return {
        "uri": uri,
        "client": client,
        "exp_id": exp_id,
        "runs": runs,
        "tmp": tmp,
        "archs": {"front": cfg_a.name, "dominated": cfg_b.name},
    }


GEO = {"num_classes": 10, "in_channels": 1, "input_size": 32}


def _popen(*args: str, cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "LRUNET_DEBUG"}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "launch.py"), "export", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait(proc: subprocess.Popen, timeout: float = 300) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _launch(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return _wait(_popen(*args, cwd=cwd), timeout)


def _assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("launch.py export: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.mark.timeout(600)
def test_cli_exports_front_registers_it_and_pyfunc_loads_it_standalone(store, trained, tmp_path):
    import mlflow

    _, model, data = trained
    arch = store["archs"]["front"]
    proc = _launch(
        "--experiment",
        "digits-nas",
        "--pareto",
        "--out",
        str(tmp_path / "out"),
        "--register",
        "--tracking-uri",
        store["uri"],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [p.name for p in (tmp_path / "out").iterdir()] == [arch]  # only the front member
    info = yaml.safe_load((tmp_path / "out" / arch / "config.yaml").read_text())
    assert info["source"]["run_id"] == store["runs"]["front"]
    assert info["metrics"][M.VAL_ACC] == 80.0
    assert info["metrics"][M.TEST_ACC] == pytest.approx(_accuracy(model, data))

    client = mlflow.MlflowClient(store["uri"])
    alias = "front-" + arch.replace(".", "_")
    version = client.get_model_version_by_alias("lrunet-digits-nas", alias)
    assert client.get_model_version_by_alias("lrunet-digits-nas", "arch-" + arch.replace(".", "_"))
    assert version.tags["arch"] == arch
    exported_run = client.get_run(version.run_id)
    assert exported_run.data.tags["export_of"] == store["runs"]["front"]

    mlflow.set_tracking_uri(store["uri"])
    x = (data.test_x[:32].float() / 255).numpy()
    got = mlflow.pyfunc.load_model(f"models:/lrunet-digits-nas@{alias}").predict(x)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert np.abs(got - want).max() <= 1e-4
    by_version = _standalone_accuracy(
        tmp_path / "elsewhere",
        data,
        "pyfunc",
        f"models:/lrunet-digits-nas/{version.version}",
        store["uri"],
    )
    assert by_version == pytest.approx(_accuracy(model, data), abs=1e-9)


@pytest.mark.timeout(300)
def test_cli_top_k_picks_completed_trials_by_val_acc(store, tmp_path):
    proc = _launch(
        "--experiment",
        "digits-nas",
        "--top",
        "5",
        "--out",
        str(tmp_path / "out"),
        "--tracking-uri",
        store["uri"],
        cwd=tmp_path,
    )
    # the third completed trial by val_acc has no model artifact: a one-line error, no export
    _assert_one_line_error(proc, store["runs"]["no_artifact"], "model/model.pt")
    assert not list((tmp_path / "out").iterdir())

    proc = _launch(
        "--experiment",
        "digits-nas",
        "--top",
        "2",
        "--out",
        str(tmp_path / "out"),
        "--tracking-uri",
        store["uri"],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(store["archs"].values())


@pytest.mark.timeout(300)
def test_cli_errors_are_one_line_and_exit_2(store, tmp_path):
    uri, runs = store["uri"], store["runs"]
    out = str(tmp_path / "out")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cases = {  # argv -> fragments of the one-line error; run side by side (startup dominates)
        ("--experiment", "nope", "--pareto", "--out", out, "--tracking-uri", uri): (
            "'nope' does not exist",
            "digits-nas",
        ),
        (
            "--experiment",
            "digits-nas",
            "--run-id",
            runs["stopped"],
            "--out",
            out,
            "--tracking-uri",
            uri,
        ): ("never finished", "stopped_early"),
        (
            "--experiment",
            "digits-nas",
            "--run-id",
            runs["no_artifact"],
            "--out",
            out,
            "--tracking-uri",
            uri,
        ): ("no model/model.pt artifact",),
        # unwritable output: checked first, even before the experiment lookup
        (
            "--experiment",
            "nope",
            "--pareto",
            "--out",
            str(blocker / "sub"),
            "--tracking-uri",
            uri,
        ): ("not writable", str(blocker)),
        (
            "--experiment",
            "digits-nas",
            "--pareto",
            "--out",
            out,
            "--tracking-uri",
            f"http://127.0.0.1:{port}",
        ): ("unreachable",),
        (
            "--experiment",
            "digits-nas",
            "--pareto",
            "--out",
            out,
            "--tracking-uri",
            f"sqlite:///{tmp_path / 'missing.db'}",
        ): ("does not exist",),
    }
    procs = {argv: _popen(*argv, cwd=tmp_path) for argv in cases}
    for argv, proc in procs.items():
        _assert_one_line_error(_wait(proc), *cases[argv])
    assert not list((tmp_path / "out").iterdir())
    assert not (tmp_path / "missing.db").exists()  # no empty store created as a side effect


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only folder")
@pytest.mark.timeout(120)
def test_cli_read_only_output_folder_exits_2(store, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    _assert_one_line_error(
        _launch(
            "--experiment",
            "digits-nas",
            "--pareto",
            "--out",
            str(ro),
            "--tracking-uri",
            store["uri"],
            cwd=tmp_path,
        ),
        "not writable",
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cli_retrain_trains_from_scratch_logs_a_run_and_exports(store, tmp_path):
    import mlflow

    front = store["runs"]["front"]
    proc = _launch(
        "--experiment",
        "digits-nas",
        "--run-id",
        front,
        "--retrain-epochs",
        "1",
        "--out",
        str(tmp_path / "out"),
        "--tracking-uri",
        store["uri"],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    arch = store["archs"]["front"]
    info = yaml.safe_load((tmp_path / "out" / arch / "config.yaml").read_text())
    retrain_id = info["source"]["retrain_run_id"]
    assert info["source"]["run_id"] == front and info["source"]["retrain_epochs"] == 1
    card = " ".join((tmp_path / "out" / arch / CARD_FILE).read_text().split())  # unwrapped
    assert "retrained from scratch for 1 epoch(s)" in card and "(the search trial's)" in card

    client = mlflow.MlflowClient(store["uri"])
    run = client.get_run(retrain_id)
    assert run.info.experiment_id == store["exp_id"] and run.info.status == "FINISHED"
    assert run.data.tags["retrain_of"] == front and run.data.tags["arch"] == arch
    assert run.data.tags["lrunet.role"] == "retrain"
    assert "mlflow.parentRunId" not in run.data.tags  # not mistaken for a trial of the launch
    assert run.data.params["epochs"] == "1"
    assert run.data.metrics[M.TEST_ACC] == pytest.approx(info["metrics"][M.TEST_ACC])
    assert [a.path for a in client.list_artifacts(retrain_id, "model")] == ["model/model.pt"]
    # the retrained weights are new ones, not the trial's
    trial = load_model_file(Path(store["tmp"]) / front / "model.pt").state_dict
    exported = torch.load(tmp_path / "out" / arch / "weights.pt", weights_only=True)
    assert not torch.equal(exported["classifier.4.weight"], trial["classifier.4.weight"])
