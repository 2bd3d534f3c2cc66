"""The MODEL_CARD.md text of an export folder (`model_card`): what the network is and shares,
its counts and accuracies, where it came from, how the export was checked, and how to load it
with plain torch or onnxruntime. Written by `experiments.export.export_model`.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping
from typing import Any

from experiments.export import (
    CONFIG_FILE,
    ONNX_FILE,
    ONNX_INPUT,
    ONNX_OUTPUT,
    TORCHSCRIPT_FILE,
    WEIGHTS_FILE,
)
from lrunet import metrics as M
from lrunet.config import LruNetConfig
from lrunet.registry import family_of


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


def model_card(model_cfg: Any, info: Mapping[str, Any]) -> str:
    """The MODEL_CARD.md text for an export described by `info` (the config.yaml contents)."""
    metrics = info.get("metrics") or {}
    counts = info["counts"]
    shape = info["input"]["shape"]
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
    checks = info["checks"]
    intro = _describe_network(model_cfg, c, h, w, dataset)
    pad = int(info["input"].get("pad", 0))
    if pad:
        intro += (
            f" The exported model zero-pads its {h}x{w} input by {pad} pixels on every side, to "
            f"the {h + 2 * pad}x{w + 2 * pad} geometry it was trained at, before the network "
            "(as the evaluation did); feed it the dataset's own images."
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
    provenance += (
        " The exported files were checked against the eager PyTorch model on a real batch: max "
        f"abs difference {checks['torchscript_max_abs_diff']:.2g} (TorchScript) and "
        f"{checks['onnx_max_abs_diff']:.2g} (ONNX Runtime), tolerance {checks['atol']:g}."
    )
    return f"""# {info["name"]}

{textwrap.fill(intro, 99)}

| | |
|---|---|
| parameters | {counts["params"]:,} |
| MFLOPs (paper convention, {h}x{w}) | {counts["mflops"]:.2f} |
| validation accuracy | {val} |
| test accuracy | {acc(M.TEST_ACC, metrics)} |
| input | float32 tensor (batch, {c}, {h}, {w}); batch size is free |
| normalisation | {info["input"]["normalisation"]} |
| output | (batch, {model_cfg.num_classes}) class scores (ReLU'd logits; argmax = class) |
| source | {src} |

{textwrap.fill(provenance, 99)}

## Files
- `{TORCHSCRIPT_FILE}`: TorchScript, needs only `torch`.
- `{ONNX_FILE}`: ONNX (input `{ONNX_INPUT}`, output `{ONNX_OUTPUT}`, dynamic batch axis).
- `{WEIGHTS_FILE}`: the state dict for this project's `lrunet.build_model("{info["name"]}")`.
- `{CONFIG_FILE}`: architecture, training recipe, provenance, metrics.

## Load with plain torch
```python
import torch
model = torch.jit.load("{TORCHSCRIPT_FILE}")
x = torch.rand(8, {c}, {h}, {w})  # images as pixels / 255
with torch.no_grad():
    classes = model(x).argmax(1)
```

## Load with onnxruntime
```python
import numpy as np
import onnxruntime as ort
session = ort.InferenceSession("{ONNX_FILE}", providers=["CPUExecutionProvider"])
x = np.random.rand(8, {c}, {h}, {w}).astype(np.float32)  # images as pixels / 255
classes = session.run(["{ONNX_OUTPUT}"], {{"{ONNX_INPUT}": x}})[0].argmax(1)
```
"""
