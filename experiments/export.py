"""Export a trained network (any registered family) as a standalone model: a torch.export program
(`model.pt2`, the primary PyTorch format), ONNX, TorchScript, weights and config, checked against
the eager model; and its registration in MLflow.

A search winner has to leave the platform: the folder written by `export_model` is loadable with
torch alone (`torch.export.load(path).module()`, or `torch.jit.load` while torch still reads
TorchScript) or onnxruntime alone, without this project on the path. The exported graph takes the
dataset's stored images as float32 pixels / 255 at their stored size and does inside itself what
evaluation did to them (Fashion-MNIST's zero padding, `PadInput`); what the loader did to the
files before (an image folder's resize, the digits' upsampling) is stated on the card. Every
export is checked before it is declared done (each format's output matches the eager model within
`atol` on a real batch and on one image) and lands atomically: it is built in a hidden temp
folder inside `out_dir` and renamed into place only after the checks pass. Given the test split,
each format classifies it and the card states the counts, so its test accuracy can be reproduced
from the files alone.

Also here: `register_export`, the only function that touches MLflow. The folder's MODEL_CARD.md
text is `experiments.model_card`; the trial-side model file an export starts from (`model/model.pt`
of a finished trial) is `experiments.model_file`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from lrunet import metrics as M
from lrunet.io import check_writable_dir
from lrunet.onnx_file import ONNX_INPUT, ONNX_OUTPUT, write_onnx
from lrunet.recipe import Recipe, flat_trial_config
from lrunet.registry import build_model, count, family_of

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "weights.pt"
PT2_FILE = "model.pt2"
TORCHSCRIPT_FILE = "model.torchscript.pt"
ONNX_FILE = "model.onnx"
CARD_FILE = "MODEL_CARD.md"
EXPORT_FILES = (CONFIG_FILE, WEIGHTS_FILE, PT2_FILE, TORCHSCRIPT_FILE, ONNX_FILE, CARD_FILE)
# the exported formats, primary first: key in config.yaml's checks and test counts -> file
FORMATS = {"pt2": PT2_FILE, "onnx": ONNX_FILE, "torchscript": TORCHSCRIPT_FILE}
DEFAULT_ATOL = 1e-4
TEST_BATCH = 500  # test images per forward pass when the formats classify the test split
PYFUNC_CODE = Path(__file__).with_name("pyfunc_torchscript.py")

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# --- export ----------------------------------------------------------------------------------


class PadInput(torch.nn.Module):
    """Zero-pads the input by `pad` on every side, then runs `model`."""

    def __init__(self, model: torch.nn.Module, pad: int) -> None:
        super().__init__()
        self.model = model
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.pad
        return self.model(torch.nn.functional.pad(x, (p, p, p, p)))


class ExportCheckError(RuntimeError):
    """An exported file does not reproduce the eager model; nothing was written."""


def check_export_name(name: str) -> str:
    """Return `name` if it is a safe single folder name: no separators, no `..`, no leading dot."""
    if (
        not isinstance(name, str)
        or not _SAFE_NAME.match(name)
        or ".." in name
        or os.sep in name
        or (os.altsep and os.altsep in name)
    ):
        raise ValueError(
            f"export name {name!r} is not a safe folder name: use letters, digits, '.', '_' and "
            "'-' only, starting with a letter or digit, and no '..'"
        )
    return name


def export_model(
    model_cfg: Any,
    state_dict: Mapping[str, torch.Tensor],
    out_dir: str | os.PathLike,
    *,
    recipe: Recipe,
    metadata: Mapping[str, Any],
    example: torch.Tensor,
    input_pad: int = 0,
    atol: float = DEFAULT_ATOL,
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
    images: Mapping[str, Any] | None = None,
) -> Path:
    """Export one model to `out_dir/<canonical name>/` and return that folder.

    `metadata` is free-form provenance written to config.yaml; the keys `dataset` (str),
    `metrics` (metric name -> number, e.g. val_acc, test_acc) and `normalisation` (str) are also
    used by the model card. `example` is a real input batch (B, C, H, W) of the dataset's images
    in the model's input normalisation; it fixes the exported spatial size and is used for the
    checks. `input_pad` zero-pads every side of the input inside the exported model, as the
    evaluation did (`trainables.data.pad_for_eval`: Fashion-MNIST's 28x28 images are seen at the
    32x32 training geometry), so users feed the dataset's own images.

    `test` is (images, labels): the test split exactly as the exported model takes it (like
    `example`). The eager model and every exported file classify it; the counts go to config.yaml
    (`test`) and the card, and the eager count becomes `metrics.test_acc`. `images` says how the
    stored images were made from the dataset's files
    (`trainables.imagefolder.describe_stored_images`: description, pil_mode, resized_from,
    resize), for the card.
    """
    from experiments.model_card import model_card  # imported here: it reads this module's names

    name = check_export_name(model_cfg.name)
    out = check_writable_dir(out_dir)
    if example.ndim != 4 or tuple(example.shape[1:2]) != (model_cfg.in_channels,):
        raise ValueError(
            f"example: expected a batch shaped (B, {model_cfg.in_channels}, H, W), "
            f"got {tuple(example.shape)}"
        )
    if isinstance(input_pad, bool) or not isinstance(input_pad, int) or input_pad < 0:
        raise ValueError(f"input_pad: expected an integer >= 0, got {input_pad!r}")
    net = build_model(model_cfg)
    net.load_state_dict(dict(state_dict), strict=True)
    net.eval()
    model = PadInput(net, input_pad).eval() if input_pad else net
    example = example.detach().to(torch.float32).cpu().contiguous()

    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=out))
    try:
        weights = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        torch.save(weights, tmp / WEIGHTS_FILE)
        _write_pt2(model, example, tmp / PT2_FILE)
        _write_torchscript(model, example, tmp / TORCHSCRIPT_FILE)
        write_onnx(model, example, tmp / ONNX_FILE)
        diffs = verify_export(model, tmp, example, atol=atol)
        counts = _counts(model_cfg, net, int(example.shape[-1]))
        described = dict(images or {})
        info: dict[str, Any] = {
            "name": name,
            "family": family_of(model_cfg).name,
            "architecture": model_cfg.to_dict(),
            "recipe": recipe.to_dict(),
            "trial_config": flat_trial_config(model_cfg, recipe),
            "input": {
                "shape": [-1, *map(int, example.shape[1:])],
                "dtype": "float32",
                "range": [0.0, 1.0],
                "pad": input_pad,
                "normalisation": metadata.get("normalisation", "pixels / 255, no mean/std"),
                "images": described.pop("description", "the dataset's images, as stored"),
                **_plain(described),
            },
            "counts": counts,
            "checks": {"atol": atol, **diffs},
            **{k: _plain(v) for k, v in metadata.items()},
        }
        if test is not None:
            images_t, labels = test
            if tuple(images_t.shape[1:]) != tuple(example.shape[1:]) or len(images_t) != len(
                labels
            ):
                raise ValueError(
                    f"test: expected images shaped (N, {', '.join(map(str, example.shape[1:]))}) "
                    f"and N labels, got {tuple(images_t.shape)} and {tuple(labels.shape)}"
                )
            correct = count_correct(model, tmp, images_t, labels)
            info["test"] = {"images": len(labels), "correct": correct}
            info["metrics"] = {
                **(info.get("metrics") or {}),
                M.TEST_ACC: 100.0 * correct["eager"] / max(len(labels), 1),
            }
        (tmp / CONFIG_FILE).write_text(yaml.safe_dump(info, sort_keys=False), encoding="utf-8")
        (tmp / CARD_FILE).write_text(model_card(model_cfg, info), encoding="utf-8")
        final = out / name
        _swap_into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load_exported(folder: str | os.PathLike) -> dict[str, Any]:
    """Each exported file of `folder` loaded as a function of a float32 batch -> logits, keyed as
    `FORMATS` (pt2 first). TorchScript's load deprecation warning is silenced here only."""
    import onnxruntime as ort

    folder = Path(folder)
    program = torch.export.load(str(folder / PT2_FILE)).module()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.load(str(folder / TORCHSCRIPT_FILE), map_location="cpu")
    session = ort.InferenceSession(str(folder / ONNX_FILE), providers=["CPUExecutionProvider"])

    def onnx(batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run([ONNX_OUTPUT], {ONNX_INPUT: batch.numpy()})[0])

    return {"pt2": program, "onnx": onnx, "torchscript": scripted}


def verify_export(
    model: torch.nn.Module, folder: Path, example: torch.Tensor, *, atol: float = DEFAULT_ATOL
) -> dict[str, float]:
    """Compare model.pt2, ONNX Runtime and TorchScript against the eager model on `example` and on
    its first image alone (the batch axis must be dynamic). Raises ExportCheckError past `atol`."""
    runners = load_exported(folder)
    worst = {f"{k}_max_abs_diff": 0.0 for k in runners}
    with torch.no_grad():
        for batch in (example, example[:1]):
            ref = model(batch)
            for kind, run in runners.items():
                key = f"{kind}_max_abs_diff"
                got = run(batch)
                if got.shape != ref.shape:
                    raise ExportCheckError(
                        f"{kind} output shape {tuple(got.shape)} != eager "
                        f"{tuple(ref.shape)} for a batch of {len(batch)}"
                    )
                diff = float((got - ref).abs().max())
                if not diff <= atol:  # also catches NaN
                    raise ExportCheckError(
                        f"{kind} output differs from the eager model by {diff:.3g} "
                        f"(max abs) on a batch of {len(batch)}; tolerance {atol:g}"
                    )
                worst[key] = max(worst[key], diff)
    return worst


def count_correct(
    model: torch.nn.Module, folder: Path, images: torch.Tensor, labels: torch.Tensor
) -> dict[str, int]:
    """Test images each of the eager model and the exported files of `folder` classify right
    (`images` as the exported model takes them)."""
    images = images.detach().to(torch.float32).cpu().contiguous()
    labels = labels.cpu()
    runners = {"eager": model, **load_exported(folder)}
    correct = dict.fromkeys(runners, 0)
    with torch.no_grad():
        for i in range(0, len(images), TEST_BATCH):
            x, y = images[i : i + TEST_BATCH], labels[i : i + TEST_BATCH]
            for kind, run in runners.items():
                correct[kind] += int((run(x).argmax(1) == y).sum())
    return correct


# --- MLflow registration ---------------------------------------------------------------------


def sanitise_alias(text: str) -> str:
    """An MLflow alias fragment: every character outside [A-Za-z0-9_-] becomes '_' (canonical
    architecture names contain no '_', so distinct names stay distinct)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def registered_model_name(experiment: str) -> str:
    """One registered model per experiment: `lrunet-<experiment>` (the search's default experiment
    names, `lrunet-<space>`, are kept as they are)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", experiment)
    return name if name.startswith("lrunet-") else f"lrunet-{name}"


@dataclass(frozen=True)
class Registration:
    name: str
    version: str
    aliases: tuple[str, ...]
    run_id: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def register_export(
    folder: str | os.PathLike,
    *,
    experiment_name: str,
    aliases: Sequence[str] = (),
    run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    tracking_uri: str | None = None,
) -> Registration:
    """Log an export folder to MLflow as a pyfunc model and register it as a new version of
    `registered_model_name(experiment_name)`, setting `aliases` on that version.

    The pyfunc wraps the torch.export program (`model.pt2`) through models-from-code
    (`pyfunc_torchscript.py` is copied into the model), so
    `mlflow.pyfunc.load_model("models:/<name>@<alias>")` needs only mlflow, torch and numpy.
    The model and the export files are logged into `run_id` if given (e.g. a retrain run), else
    into a new run `export-<arch>` of the experiment.
    """
    import mlflow
    import numpy as np
    from mlflow.models import infer_signature

    folder = Path(folder)
    info = yaml.safe_load((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    arch = info["name"]
    for alias in aliases:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", alias) or re.fullmatch(r"v\d+|latest", alias):
            raise ValueError(f"alias {alias!r}: use [A-Za-z0-9_-] and not 'latest' or 'v<digits>'")
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        raise ValueError(f"MLflow experiment {experiment_name!r} does not exist")
    if run_id is None:
        run = client.create_run(
            experiment.experiment_id,
            run_name=f"export-{arch}",
            tags={"arch": arch, **(tags or {})},
        )
        run_id = run.info.run_id
    program = torch.export.load(str(folder / PT2_FILE)).module()
    shape = info["input"]["shape"]
    x = np.zeros((2, *shape[1:]), dtype=np.float32)
    with torch.no_grad():
        y = program(torch.from_numpy(x)).numpy()
    signature = infer_signature(x, y)
    name = registered_model_name(experiment_name)
    previous_uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        # MLflow's advice on type hints and input examples does not apply to a tensor model
        with mlflow.start_run(run_id=run_id), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            mlflow.log_artifacts(str(folder), artifact_path="export")
            logged = mlflow.pyfunc.log_model(
                name="pyfunc",
                python_model=str(PYFUNC_CODE),
                artifacts={"pt2": str(folder / PT2_FILE)},
                signature=signature,
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy"],
                registered_model_name=name,
            )
    finally:
        mlflow.set_tracking_uri(previous_uri)
    version = str(logged.registered_model_version)
    for alias in aliases:
        client.set_registered_model_alias(name, alias, version)
    client.set_model_version_tag(name, version, "arch", arch)
    return Registration(name, version, tuple(aliases), run_id)


# --- helpers ---------------------------------------------------------------------------------


def _write_pt2(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    # torch.export, the current format (TorchScript is deprecated in torch 2.14): the model is
    # traced in eval mode with a free batch axis; `.module()` of the loaded program needs torch
    # alone (and must not be put in .eval(): it is already, and refuses the call)
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.export.export(model, (example,), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(path))


def _write_torchscript(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    # trace, not script: the reuse loop indexes ModuleLists with a loop variable, which script
    # rejects; traced shapes stay symbolic in the batch dimension (checked in verify_export).
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example)
    traced.save(str(path))


def _counts(cfg: Any, model: torch.nn.Module, input_size: int) -> dict[str, Any]:
    """Analytic counts at the dataset's image size, the paper's convention (Fashion-MNIST at 28x28
    even though the network sees it padded to 32x32)."""
    import dataclasses

    c = count(dataclasses.replace(cfg, input_size=input_size))
    have = sum(p.numel() for p in model.parameters())
    if c.params != have:
        raise ExportCheckError(f"the analytic count says {c.params} params, the model has {have}")
    return {
        "params": int(c.params),
        "conv_params": int(c.conv_params),
        "macs": int(c.macs),
        "mflops": float(c.mflops),
    }


def _swap_into_place(new: Path, final: Path) -> None:
    """Rename `new` to `final`; an existing `final` is renamed away first and deleted after."""
    old = None
    if final.exists() or final.is_symlink():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
    try:
        os.replace(new, final)
    except BaseException:
        if old is not None:
            os.replace(old, final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()


def _plain(v: Any) -> Any:
    """Make a metadata value yaml.safe_dump-able (tuples -> lists, numbers -> float/int)."""
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, (str, bool, int, float)) or v is None:
        return v
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        return v.item()
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    return str(v)
