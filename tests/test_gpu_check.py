"""`benchmarks/gpu_check.py` runs end to end on the CPU and writes a complete, passing report.

The script's purpose is the GPU; this machine has none, so the test drives its `--device cpu`
mode (the same code with small models and step counts) in a subprocess, as a user would, and
checks the JSON it writes; `--device cuda` without CUDA must stop at once with one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
SECTIONS = ("correctness", "speed", "real_data", "sharing")


def _run(*args: str, timeout: float, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gpu_check") / "g.json"
    # CUDA hidden: the run is the same on a machine that has a GPU
    proc = _run(
        "--device", "cpu", "--quick", "--out", str(out), timeout=240, CUDA_VISIBLE_DEVICES=""
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "skipped: no CUDA" in proc.stdout  # the CUDA-only comparisons say so
    return json.loads(out.read_text())


def test_report_has_every_section_and_passes(report):
    assert report["passed"] is True
    for key in SECTIONS:
        assert report[key]["status"] in ("ran", "skipped"), (key, report[key])
    for key in ("correctness", "speed", "sharing"):  # these always run on a CPU
        assert report[key]["status"] == "ran", report[key]
    assert report["machine"]["device"] == "cpu"
    assert report["forbidden_modules_loaded"] == []


def test_correctness_entries_carry_errors_tolerances_and_pass(report):
    corr = report["correctness"]
    checks = corr["checks"]
    models = set(report["plan"]["models"])
    assert {c["model"] for c in checks} == models
    kinds = {c["comparison"] for c in checks}
    assert {
        "float64 channels_last vs contiguous",
        "float32 channels_last vs contiguous",
        "bf16 autocast vs float32",
        "fp16 autocast vs float32",
    } <= kinds
    for c in checks:
        tol = c["tolerance"]
        assert c["passed"] is True, c
        assert c["finite"] is True
        assert 0 <= c["logits_rel_l2"] <= tol["logits_rel_l2"], c
        if tol["grad_rel_l2"] is not None:
            assert 0 <= c["grad_rel_l2"] <= tol["grad_rel_l2"], c
        lo, hi = tol["grad_alignment"]
        assert lo <= c["grad_alignment"] <= hi, c
    # float64 is the strict check: two ways of computing one function, rounding apart
    for c in checks:
        if c["comparison"].startswith("float64"):
            assert c["logits_rel_l2"] < 1e-9 and c["grad_rel_l2"] < 1e-9, c
    assert set(corr["tolerances"]) == {"float64", "float32", "bf16", "fp16"}
    # without CUDA the cuda-vs-cpu comparisons are listed as skipped, with the reason
    assert {s["comparison"] for s in corr["skipped"]} == {
        "float64 cuda vs cpu",
        "float32 cuda vs cpu",
    }
    assert all(s["reason"] == "no CUDA" for s in corr["skipped"])


def test_speed_entries_carry_positive_rates(report):
    speed = report["speed"]
    entries = speed["entries"]
    plan = report["plan"]
    expected = {(m, b) for m in plan["models"] for b in plan["speed_batches"]}
    assert {(e["model"], e["batch"]) for e in entries} == expected
    assert {(e["mode"], e["precision"].startswith("fp32 NCHW")) for e in entries} == {
        ("train", False),
        ("train", True),
        ("infer", False),
    }
    for e in entries:
        assert e["images_per_s"] > 0, e
        lo, hi = e["iqr"]
        assert 0 < lo <= e["images_per_s"] <= hi, e
    assert all(e["vs_fp32_nchw"] > 0 for e in entries if "vs_fp32_nchw" in e)


def test_real_data_ran_or_says_why(report):
    real = report["real_data"]
    if real["status"] == "skipped":
        assert real["reason"].startswith("no fashionmnist data")
        return
    assert real["train_images"] > 0 and real["val_images"] > 0
    assert real["images_per_s"] > 0
    assert 0 <= real["val_acc"] <= 100


def test_sharing_reports_totals_and_ratios(report):
    runs = report["sharing"]["runs"]
    assert [r["processes"] for r in runs] == list(report["plan"]["share_procs"])
    for r in runs:
        assert r["total_images_per_s"] > 0
        assert len(r["per_process_images_per_s"]) == r["processes"]
        assert all(v > 0 for v in r["per_process_images_per_s"])
    assert runs[0]["total_vs_1"] == pytest.approx(1.0)


def test_cuda_without_cuda_exits_2_with_one_line(tmp_path):
    out = tmp_path / "g.json"
    proc = _run("--device", "cuda", "--out", str(out), timeout=120, CUDA_VISIBLE_DEVICES="")
    assert proc.returncode == 2
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert lines == [
        "no CUDA device: run on a GPU machine, or --device cpu to exercise the script"
    ]
    assert not out.exists()


def test_import_loads_no_ray_mlflow_or_optuna():
    """Importing the script and building every model its GPU run builds loads none of them (and
    the names of the GPU run, which cannot run here, all exist)."""
    code = (
        "import sys; sys.path.insert(0, 'benchmarks'); import gpu_check as g; "
        "[g.build(n) for p in (g.GPU_PLAN, g.QUICK_PLAN, g.CPU_PLAN) "
        "for n in {*p.models, p.real_model, p.share_model}]; "
        "bad = [m for m in ('ray', 'mlflow', 'optuna') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
