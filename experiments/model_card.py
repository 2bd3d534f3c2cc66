"""The MODEL_CARD.md text of an export folder (`model_card`): what the network is and shares,
its counts and accuracies, the input it takes (shape, dtype, scaling, how the stored images were
made from the dataset's files, what the graph does to them), where it came from, how the export
was checked (and how many test images each file gets right), and how to load it with plain torch
(torch.export first) or onnxruntime. Written by `experiments.export.export_model`.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping
from typing import Any

from experiments.export import (
    CONFIG_FILE,
    FORMATS,
    ONNX_FILE,
    ONNX_INPUT,
    ONNX_OUTPUT,
    PT2_FILE,
    TORCHSCRIPT_FILE,
    WEIGHTS_FILE,
)
from lrunet import metrics as M
from lrunet.config import LruNetConfig
from lrunet.registry import family_of

CHECK_LABELS = {"pt2": PT2_FILE, "onnx": "ONNX Runtime", "torchscript": "TorchScript"}


def _describe_network(model_cfg: Any, c: int, h: int, w: int, dataset: str) -> str:
    """The card's first sentences: what the network is and what it shares."""
    if isinstance(model_cfg, LruNetConfig):
        reuse = ", ".join(str(n) for n in model_cfg.reuse)
        sharing = f"{model_cfg.sharing} weights"
        if model_cfg.share_k:
            sharing = f"one pair per {model_cfg.share_k} consecutive passes"
        if model_cfg.regulator:
            g = model_cfg.regulator
            sharing += (
                f", an unshared {'dense' if g == 1 else f'{g}-group'} 1x1 regulator per pass"
            )
        return (
            f'A Layer Reuse Network (LruNet; Köpüklü et al. 2019, "Convolutional Neural Networks '
            f'with Layer Reuse") classifying {c}-channel {h}x{w} images into '
            f"{model_cfg.num_classes} classes, trained on **{dataset}**. Each of its four stages "
            f"applies one shared depthwise 3x3 + grouped pointwise 1x1 pair N times (N per stage: "
            f"{reuse}; width {model_cfg.width:g}x, pointwise groups {model_cfg.groups}, shuffle "
            f'"{model_cfg.shuffle}", {sharing}, {model_cfg.depth} convolution layers on the '
            "forward path)."
        )
    family = family_of(model_cfg)
    details = "; ".join(" ".join(line.split()) for line in family.details(model_cfg))
    return (
        f"A {family.tag} network ({family.summary}) classifying {c}-channel {h}x{w} images "
        f"into {model_cfg.num_classes} classes, trained on **{dataset}**"
        + (f" ({details})." if details else ".")
    )


def _what_the_graph_does(h: int, w: int, pad: int) -> str:
    if pad:
        return (
            f"zero-pads the {h}x{w} input by {pad} pixels on every side, to the "
            f"{h + 2 * pad}x{w + 2 * pad} geometry the network was trained at (as the "
            "evaluation did), then runs the network"
        )
    return "runs the network on the input as given (no resize, no padding, no normalisation)"


def _test_sentence(info: Mapping[str, Any]) -> str:
    """How the test accuracy can be reproduced from the files alone (the per-format counts)."""
    test = info.get("test")
    if not test:
        return ""
    n, correct = int(test["images"]), test["correct"]
    eager = int(correct["eager"])
    files = [(FORMATS[k], int(v)) for k, v in correct.items() if k in FORMATS]
    same = [f"`{f}`" for f, v in files if v == eager]
    text = (
        f" Test accuracy: the eager model classifies {eager:,} of the {n:,} test images right, "
        "fed as described under Input."
    )
    if same:
        text += f" So do {', '.join(same)}, on the same inputs."
    for f, v in files:
        if v != eager:
            text += f" `{f}` gets {v:,} right ({100.0 * v / max(n, 1):.2f} %)."
    return text


def _prepare_snippet(inp: Mapping[str, Any], c: int, h: int, w: int) -> str:
    """Python that turns one of the dataset's image files into the model's input (image folders:
    the loader's own steps), or '' for a dataset whose files are not images."""
    mode = inp.get("pil_mode")
    if not mode:
        return ""
    resize = ""
    if inp.get("resize"):
        resize = (
            f"\nif image.size != ({w}, {h}):  # as the loader did (not inside the graph)\n"
            f"    image = image.resize(({w}, {h}), Image.Resampling.{inp['resize'].upper()})"
        )
    layout = "[None, None]" if c == 1 else ".transpose(2, 0, 1)[None]"
    return f"""
## Prepare an image
```python
import numpy as np
from PIL import Image
image = Image.open("test/<class>/<file>.png").convert("{mode}"){resize}
x = np.asarray(image, dtype=np.float32){layout} / 255  # (1, {c}, {h}, {w}), in [0, 1]
```
"""


def model_card(model_cfg: Any, info: Mapping[str, Any]) -> str:
    """The MODEL_CARD.md text for an export described by `info` (the config.yaml contents)."""
    metrics = info.get("metrics") or {}
    counts = info["counts"]
    inp = info["input"]
    shape = inp["shape"]
    c, h, w = shape[1:]
    dataset = info.get("dataset", "unknown")

    def acc(key: str, values: Mapping[str, Any]) -> str:
        v = values.get(key)
        return f"{float(v):.2f} %" if isinstance(v, (int, float)) and math.isfinite(v) else "n/a"

    source = info.get("source") or {}
    src = ", ".join(f"{k} `{v}`" for k, v in source.items()) or "not recorded"
    val = acc(M.VAL_ACC, metrics)
    trial_metrics = info.get("trial_metrics") or {}
    if val == "n/a" and M.VAL_ACC in trial_metrics:
        val = acc(M.VAL_ACC, trial_metrics) + " (the search trial's)"
    test_acc = acc(M.TEST_ACC, metrics)
    if info.get("test"):
        t = info["test"]
        test_acc += f" ({int(t['correct']['eager']):,} of {int(t['images']):,} test images)"
    checks = info["checks"]
    intro = _describe_network(model_cfg, c, h, w, dataset)
    pad = int(inp.get("pad", 0))
    if pad:
        intro += (
            f" The exported model zero-pads its {h}x{w} input by {pad} pixels on every side, to "
            f"the {h + 2 * pad}x{w + 2 * pad} geometry it was trained at, before the network "
            "(as the evaluation did); feed it the dataset's own images."
        )
    input_text = (
        f"A float32 tensor (batch, {c}, {h}, {w}), any batch size, values in [0, 1]: "
        f"{inp['images']}. Scaling: {inp['normalisation']}. Inside the exported graph the model "
        f"{_what_the_graph_does(h, w, pad)}; nothing else is done to the input."
    )
    provenance = (
        "Validation accuracy is measured on the search's held-out split of the training data; "
        "test accuracy on the dataset's official test split, at export."
    )
    if "retrain_epochs" in source:
        provenance += (
            f" These weights were retrained from scratch for {source['retrain_epochs']} epoch(s) "
            "on the full training set with the trial's recipe."
        )
    diffs = ", ".join(
        f"{checks[f'{k}_max_abs_diff']:.2g} ({label})"
        for k, label in CHECK_LABELS.items()
        if f"{k}_max_abs_diff" in checks
    )
    provenance += (
        " The exported files were checked against the eager PyTorch model on a real batch and on "
        f"one image: max abs difference {diffs}, tolerance {checks['atol']:g}."
    )
    provenance += _test_sentence(info)
    return f"""# {info["name"]}

{textwrap.fill(intro, 99)}

| | |
|---|---|
| parameters | {counts["params"]:,} |
| MFLOPs (paper convention, {h}x{w}) | {counts["mflops"]:.2f} |
| validation accuracy | {val} |
| test accuracy | {test_acc} |
| input | float32 tensor (batch, {c}, {h}, {w}); batch size is free |
| normalisation | {inp["normalisation"]} |
| output | (batch, {model_cfg.num_classes}) class scores (ReLU'd logits; argmax = class) |
| source | {src} |

## Input
{textwrap.fill(input_text, 99)}

{textwrap.fill(provenance, 99)}
{_prepare_snippet(inp, c, h, w)}
## Files
- `{PT2_FILE}`: a `torch.export` program (the primary PyTorch format), needs only `torch`.
- `{ONNX_FILE}`: ONNX (input `{ONNX_INPUT}`, output `{ONNX_OUTPUT}`, dynamic batch axis).
- `{TORCHSCRIPT_FILE}`: TorchScript, needs only `torch` (deprecated in torch 2.14; kept while
  torch still loads it).
- `{WEIGHTS_FILE}`: the state dict for this project's `lrunet.build_model("{info["name"]}")`.
- `{CONFIG_FILE}`: architecture, training recipe, input, provenance, metrics, checks.

## Load with plain torch
```python
import torch
model = torch.export.load("{PT2_FILE}").module()  # already in eval mode; do not call .eval()
x = torch.rand(8, {c}, {h}, {w})  # images as pixels / 255 (see Input)
with torch.no_grad():
    classes = model(x).argmax(1)
```
TorchScript, while torch still reads it (it warns that TorchScript is deprecated):
```python
model = torch.jit.load("{TORCHSCRIPT_FILE}")
```

## Load with onnxruntime
```python
import numpy as np
import onnxruntime as ort
session = ort.InferenceSession("{ONNX_FILE}", providers=["CPUExecutionProvider"])
x = np.random.rand(8, {c}, {h}, {w}).astype(np.float32)  # images as pixels / 255 (see Input)
classes = session.run(["{ONNX_OUTPUT}"], {{"{ONNX_INPUT}": x}})[0].argmax(1)
```
"""
