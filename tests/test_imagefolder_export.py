"""An image folder end to end, as a new user meets it: a folder of 28x28 greyscale digits (PNG
files) searched with no geometry in the space, the front exported, and the exported files checked
outside the project on the raw PNG files against the card.

The folder is scikit-learn's 8x8 digits upsampled to 28x28 with PIL and saved as PNGs: 40 train
and 10 test images per class. The search (2 trials, 3 epochs, FIFO) runs on the `ray_local`
fixture with a real sqlite MLflow store; `launch.py export --pareto` runs as a user would, without
--data-dir (the search's folder is recorded in its state). Then a process that cannot import this
project reads every test PNG with PIL + numpy (/255) and classifies it with torch alone
(`torch.export.load(...).module()` and TorchScript) and with onnxruntime alone: each must get
exactly as many right as the card says.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from experiments.search import SearchOptions, folder_geometry, run_search
from search_spaces.loader import load_space
from search_spaces.schema import SpaceError
from tests.conftest import ROOT
from trainables import data as D
from trainables.imagefolder import describe_stored_images

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TRAIN_PER_CLASS, TEST_PER_CLASS = 40, 10

SPACE = """\
description: a tiny search on an image folder; classes, channels and size come from the folder
dataset: imagefolder
model:
  reuse_1: 1
  reuse_2: 1
  reuse_3: 1
  reuse_4: {choice: [1, 2]}
  width: {choice: [0.25, 0.5]}
  groups: 2
recipe:
  lr: 0.1
  batch_size: 32
  schedule: cosine
training:
  max_epochs: 3
  grace_epochs: 3
  num_samples: 2
"""


def _digit_pngs(root: Path, size: tuple[int, int] = (28, 28), odd: dict | None = None) -> Path:
    """sklearn's digits upsampled to `size` with PIL, as root/{train,test}/<digit>/*.png;
    `odd` maps (split, class, index) -> another size, for a folder of mixed sizes."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    pixels = (d.images * (255.0 / 16.0)).round().clip(0, 255).astype(np.uint8)
    seen: dict[int, int] = {}
    for img, label in zip(pixels, d.target):
        i = seen.get(int(label), 0)
        seen[int(label)] = i + 1
        if i >= TRAIN_PER_CLASS + TEST_PER_CLASS:
            continue
        split, j = ("train", i) if i < TRAIN_PER_CLASS else ("test", i - TRAIN_PER_CLASS)
        side = (odd or {}).get((split, int(label), j), size)
        path = root / split / str(label) / f"{j:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img, mode="L").resize(side, Image.Resampling.BILINEAR).save(path)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return _digit_pngs(tmp_path_factory.mktemp("digits28") / "data")


def _space(tmp: Path, text: str = SPACE, name: str = "if.yaml") -> str:
    path = tmp / name
    path.write_text(text)
    return str(path)


# --- the geometry comes from the folder -------------------------------------------------------


def test_space_without_geometry_takes_it_from_the_folder(folder, tmp_path):
    geometry = folder_geometry(str(folder))
    spec = load_space(_space(tmp_path), geometry_from_data=geometry)
    assert spec.geometry == {"num_classes": 10, "in_channels": 1, "input_size": 28}
    assert spec.costs.params[0] > 0  # counted at the folder's geometry
    # --dataset imagefolder on a space written for another dataset: the same
    digits = _space(tmp_path, SPACE.replace("dataset: imagefolder", "dataset: digits"), "d.yaml")
    over = load_space(digits, {"dataset": "imagefolder"}, geometry_from_data=geometry)
    assert over.dataset == "imagefolder" and over.geometry == spec.geometry
    # without the folder (check-space) such a space says where its geometry comes from
    with pytest.raises(SpaceError, match="takes its classes, channels and size from its folder"):
        load_space(_space(tmp_path))


def test_a_given_input_size_is_honoured_or_refused_never_replaced(folder, tmp_path):
    from trainables.trainable import RUN_KEY, build_trainer

    geometry = folder_geometry(str(folder))
    text = SPACE.replace("dataset: imagefolder", "dataset: {name: imagefolder, input_size: 28}")
    spec = load_space(_space(tmp_path, text), geometry_from_data=geometry)
    assert spec.geometry["input_size"] == 28
    # the trial's own path (what the Ray trainable builds) trains a 28x28 model on 28x28 images
    run = {"dataset": "imagefolder", "data_dir": str(folder), "max_epochs": 1}
    trainer, _ = build_trainer({**spec.sample(0), RUN_KEY: run})
    assert trainer.cfg.input_size == 28 and trainer.train_x.shape[-2:] == (28, 28)
    assert "val_acc" in trainer.train_epoch()

    wrong = SPACE.replace("dataset: imagefolder", "dataset: {name: imagefolder, input_size: 32}")
    with pytest.raises(ValueError, match="every image under .* is 28x28; images of one size"):
        load_space(_space(tmp_path, wrong), geometry_from_data=geometry)
    classes = SPACE.replace("dataset: imagefolder", "dataset: {name: imagefolder, num_classes: 5}")
    with pytest.raises(SpaceError, match="num_classes: 5 but the folder has num_classes 10"):
        load_space(_space(tmp_path, classes), geometry_from_data=geometry)


def test_a_folder_of_mixed_sizes_is_resized_to_its_most_common_size_and_says_so(tmp_path):
    from experiments.export import export_model
    from lrunet.recipe import Recipe
    from lrunet.registry import build_model, parse_name

    odd = {("train", 3, 0): (32, 32), ("test", 3, 0): (32, 32), ("test", 5, 1): (24, 30)}
    mixed = _digit_pngs(tmp_path / "mixed", odd=odd)
    geometry = folder_geometry(str(mixed))
    spec = load_space(_space(tmp_path), geometry_from_data=geometry)
    assert spec.geometry["input_size"] == 28
    data = D.load_dataset("imagefolder", mixed)
    assert data.info.resized_from == ((24, 30), (32, 32))
    # a space's input_size is honoured: the trials read the mixed folder resized to it
    text = SPACE.replace("dataset: imagefolder", "dataset: {name: imagefolder, input_size: 32}")
    sized = load_space(_space(tmp_path, text), geometry_from_data=geometry)
    assert sized.geometry["input_size"] == 32
    from trainables.trainable import build_trainer

    flat = {**sized.sample(0), "_run": {"dataset": "imagefolder", "data_dir": str(mixed),
                                        "input_size": 32, "cpus": 1}}  # fmt: skip
    trainer, _ = build_trainer(flat)
    assert trainer.cfg.input_size == 32 and trainer.train_x.shape[-2:] == (32, 32)

    # the card of a model trained on it names the resize, which is not in the graph
    cfg = parse_name("1-LruNet-0.25x", **data.geometry)
    torch.manual_seed(0)
    x = data.test_x.float() / 255
    folder = export_model(
        cfg,
        build_model(cfg).state_dict(),
        tmp_path / "out",
        recipe=Recipe(epochs=1),
        example=x[:16],
        test=(x, data.test_y),
        images=describe_stored_images(data),
        metadata={"dataset": "imagefolder"},
    )
    info = yaml.safe_load((folder / "config.yaml").read_text())
    assert info["input"]["resized_from"] == [[24, 30], [32, 32]]
    assert info["input"]["resize"] == "bilinear" and info["input"]["pil_mode"] == "L"
    card = (folder / "MODEL_CARD.md").read_text()
    flat = " ".join(card.split())
    assert "(sizes seen, width x height: 24x30, 32x32) resized to 28x28" in flat
    assert "this resize is not in the exported graph" in flat
    assert "image = image.resize((28, 28), Image.Resampling.BILINEAR)" in card


def test_train_cli_infers_the_folder(folder, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), "train", "1-LruNet-0.25x", "--dataset",
         "imagefolder", "--data-dir", str(folder), "--epochs", "1", "--out",
         str(tmp_path / "m.pt")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1-LruNet-0.25x on imagefolder" in proc.stdout and "at 28x28" in proc.stdout


# --- search, export, and the files alone on the raw PNGs --------------------------------------

STANDALONE = """
import importlib.util, json, os, sys
from pathlib import Path
# a machine that never heard of this project: undo the hooks of its editable install
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in str(f.__module__)]
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != os.environ["LRUNET_REPO"]]
for mod in ("lrunet", "experiments", "trainables", "search_spaces"):
    assert importlib.util.find_spec(mod) is None, mod
import numpy as np
from PIL import Image
kind, export, data = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
classes = sorted(p.name for p in (data / "train").iterdir() if p.is_dir())
xs, ys = [], []
for label, c in enumerate(classes):
    for f in sorted((data / "test" / c).glob("*.png")):
        xs.append(np.asarray(Image.open(f).convert("L"), dtype=np.float32)[None] / 255)
        ys.append(label)
x, y = np.stack(xs), np.array(ys)
out = {}
if kind == "torch":
    import torch
    program = torch.export.load(str(export / "model.pt2")).module()
    scripted = torch.jit.load(str(export / "model.torchscript.pt"))
    with torch.no_grad():
        for name, model in (("pt2", program), ("torchscript", scripted)):
            out[name] = int((model(torch.from_numpy(x)).argmax(1).numpy() == y).sum())
else:
    import onnxruntime as ort
    s = ort.InferenceSession(str(export / "model.onnx"), providers=["CPUExecutionProvider"])
    out["onnx"] = int((s.run(["logits"], {"input": x})[0].argmax(1) == y).sum())
    assert "torch" not in sys.modules
out["images"] = len(y)
print(json.dumps(out))
"""


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MLFLOW_"))}
    env["PYTHONNOUSERSITE"] = "1"
    env["LRUNET_REPO"] = os.path.realpath(ROOT)
    return env


def _standalone(tmp: Path, kind: str, export: Path, data: Path) -> dict[str, int]:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "standalone.py").write_text(STANDALONE)
    proc = subprocess.run(
        [sys.executable, "standalone.py", kind, str(export), str(data)],
        cwd=tmp,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_search_export_and_the_exported_files_alone_on_the_raw_pngs(folder, tmp_path, ray_local):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_search(
        SearchOptions(
            space=_space(tmp_path),
            data_dir=str(folder),
            scheduler="fifo",
            tracking_uri=uri,
            storage_path=str(tmp_path / "ray"),
            experiment_name="imagefolder-nas",
            max_concurrent=2,
            verbose=0,
        )
    )
    assert result.front.members

    out = tmp_path / "exports"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), "export", "--experiment", "imagefolder-nas",
         "--pareto", "--out", str(out), "--tracking-uri", uri],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    exports = sorted(p for p in out.iterdir() if p.is_dir())
    assert exports
    n_test = 10 * TEST_PER_CLASS
    for export in exports:
        info = yaml.safe_load((export / "config.yaml").read_text())
        assert info["dataset"] == "imagefolder" and info["architecture"]["input_size"] == 28
        assert info["architecture"]["in_channels"] == 1
        assert info["input"]["shape"] == [-1, 1, 28, 28] and info["input"]["resized_from"] == []
        assert (export / "model.pt2").stat().st_size > 0
        card = (export / "MODEL_CARD.md").read_text()
        flat = " ".join(card.split())
        assert "float32 tensor (batch, 1, 28, 28)" in flat and "values in [0, 1]" in flat
        assert "at their own 28x28 size (no resize)" in flat
        assert 'convert("L")' in card
        m = re.search(r"\| test accuracy \| ([\d.]+) % \(([\d,]+) of ([\d,]+) test images\)", card)
        assert m, card
        card_acc, card_right, card_n = float(m[1]), int(m[2].replace(",", "")), int(m[3])
        assert card_n == n_test and info["test"]["images"] == n_test
        assert card_acc == pytest.approx(100.0 * card_right / n_test, abs=0.005)
        assert info["test"]["correct"] == dict.fromkeys(
            ("eager", "pt2", "onnx", "torchscript"), card_right
        )
        # the exported files alone, on the PNG files as they are, give exactly the card's count
        got = {
            **_standalone(tmp_path / "elsewhere", "torch", export, folder),
            **_standalone(tmp_path / "elsewhere", "onnx", export, folder),
        }
        assert got == {"pt2": card_right, "torchscript": card_right, "onnx": card_right,
                       "images": n_test}  # fmt: skip
