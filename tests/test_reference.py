"""The authors' released checkpoints: imported strictly, scored on the real Fashion-MNIST test set
the way the spec describes (28x28, pixels / 255, no normalisation, eval mode), and converted by
`launch.py import-reference`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lrunet.config import LruNetConfig
from lrunet.counting import count
from lrunet.reference import load_reference

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT.parent / "shared" / "reference" / "pretrained"
needs_pretrained = pytest.mark.skipif(
    not PRETRAINED.is_dir(),
    reason=f"the authors' checkpoints are not beside this checkout ({PRETRAINED}); they ship with "
    "the team's shared/ folder, not with the repository",
)

# file -> (architecture, params, accuracy the checkpoint records)
CHECKPOINTS = {
    "cifar10-lru1-ckpt-08391.t7": ("1-LruNet-1x", 131_402, 83.91),
    "cifar10-lru14-ckpt-08934.t7": ("14-LruNet-1x", 206_282, 89.34),
    "cifar100-lru1-2x-ckpt-06322.t7": ("1-LruNet-2x-d0.7", 513_956, 63.22),
    "cifar100-lru14-2x-ckpt-06884.t7": ("14-LruNet-2x-d0.7", 663_716, 68.84),
    "fashionmnist-lru1-ckpt-09117.t7": ("1-LruNet-1x", 130_250, 91.17),
    "fashionmnist-lru10-ckpt-09346.t7": ("10-LruNet-1x", 182_090, 93.46),
}


@needs_pretrained
@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_every_checkpoint_imports_strictly(name):
    model, meta = load_reference(PRETRAINED / name)
    arch, params, acc = CHECKPOINTS[name]
    assert model.cfg.name == arch
    assert model.num_params() == params == count(model.cfg).params
    assert meta["acc"] == pytest.approx(acc)


@pytest.fixture(scope="module")
def fashion_test():
    from trainables.data import DEBIAN_FASHION_MNIST, load_dataset

    try:
        data = load_dataset("fashionmnist")
    except FileNotFoundError as e:
        pytest.skip(f"real Fashion-MNIST is not installed ({DEBIAN_FASHION_MNIST}): {e}")
    assert data.test_x.shape == (10_000, 1, 28, 28)
    return data


@needs_pretrained
@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    "name,expected",
    [("fashionmnist-lru1-ckpt-09117.t7", 91.17), ("fashionmnist-lru10-ckpt-09346.t7", 93.46)],
)
def test_fashionmnist_checkpoints_score_their_published_accuracy(fashion_test, name, expected):
    from trainables.device import DeviceSetup
    from trainables.loop import evaluate_model

    torch.set_num_threads(2)
    model, _ = load_reference(PRETRAINED / name)
    # 28x28 as the reference tests, pixels / 255, no normalisation; channels_last only for speed
    setup = DeviceSetup(torch.device("cpu"), channels_last=True)
    model = model.to(memory_format=torch.channels_last)
    acc, _ = evaluate_model(model, fashion_test.test_x, fashion_test.test_y, setup, 1000)
    assert round(acc, 2) == expected


@needs_pretrained
def test_import_reference_command(tmp_path):
    src = PRETRAINED / "fashionmnist-lru1-ckpt-09117.t7"
    out = tmp_path / "lru1.pt"
    p = subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), "import-reference", str(src), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert "1-LruNet-1x" in p.stdout and "91.17" in p.stdout
    saved = torch.load(out, weights_only=True)
    cfg = LruNetConfig.from_dict(saved["config"])
    ref, _ = load_reference(src)
    assert cfg == ref.cfg
    from lrunet.model import LruNet

    model = LruNet(cfg).eval()
    model.load_state_dict(saved["state_dict"], strict=True)
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04truncated"])
def test_corrupt_checkpoint_is_one_line_exit_2(tmp_path, content):
    bad = tmp_path / "bad.t7"
    bad.write_bytes(content)
    p = subprocess.run(
        [
            sys.executable,
            str(ROOT / "launch.py"),
            "import-reference",
            str(bad),
            "--out",
            str(tmp_path / "x.pt"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert "corrupt" in p.stderr and not (tmp_path / "x.pt").exists()
