"""Import of the authors' released checkpoints (okankop/CNN-layer-reuse, MIT).

A released checkpoint is `{"net": state_dict, "acc": best test accuracy, "epoch": best epoch}`,
the state dict's keys prefixed with `module.` (DataParallel) and without BN `num_batches_tracked`
buffers (older torch). `LruNet` uses the reference's module names, so after stripping the prefix
the weights load strictly. The config is inferred from the tensor shapes: width from the stage-1
width, reuse from the number of BatchNorms per stage, groups from the pointwise weight, classes
and input channels from the classifier and the stem.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from lrunet.config import NUM_STAGES, LruNetConfig
from lrunet.datasets import DATASETS
from lrunet.io import first_line, load_torch
from lrunet.model import LruNet

# Geometry the authors trained each dataset at (LRUNET_SPEC.md §3); counted at eval geometry.
REFERENCE_GEOMETRY = {n: DATASETS[n].geometry for n in ("cifar10", "cifar100", "fashionmnist")}


def load_checkpoint_file(path: str | os.PathLike) -> dict[str, Any]:
    """A released checkpoint as a dict (one-line errors for missing or corrupt files)."""
    obj = load_torch(path, "checkpoint", "re-download or re-create it")
    if not isinstance(obj, dict):
        raise ValueError(f"checkpoint {str(path)!r} holds a {type(obj).__name__}, not a dict")
    return obj


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("module."): v for k, v in state.items()}


def infer_reference_config(
    state: dict[str, torch.Tensor], dropout: float = 0.5, input_size: int | None = None
) -> LruNetConfig:
    """The `LruNetConfig` whose network has exactly the tensors of a reference state dict."""
    state = _strip_prefix(state)
    try:
        stem = state["features.0.weight"]
        f1 = state["stage1.pw.weight"].shape[0]
        groups = 2 * f1 // state["stage1.pw.weight"].shape[1]
        reuse = []
        for s in range(1, NUM_STAGES + 1):
            n = 0
            while f"stage{s}.dw_bn_list.{n}.weight" in state:
                n += 1
            reuse.append(n)
        num_classes = state["classifier.4.weight"].shape[0]
    except KeyError as e:
        raise ValueError(
            f"not an LruNet reference state dict: missing {e.args[0]!r} "
            "(expected keys such as 'module.stage1.dw.weight')"
        ) from None
    in_ch = stem.shape[1]
    if input_size is None:
        input_size = 28 if in_ch == 1 else 32
    return LruNetConfig(
        reuse=tuple(reuse),
        width=f1 / 64,
        groups=groups,
        dropout=dropout,
        num_classes=num_classes,
        in_channels=in_ch,
        input_size=input_size,
    )


def load_reference(
    path: str | os.PathLike, dropout: float | None = None, input_size: int | None = None
) -> tuple[LruNet, dict[str, Any]]:
    """Build the matching LruNet and load a released checkpoint into it, strictly.

    Returns the model (eval mode) and the checkpoint's metadata (`acc`, `epoch`). Dropout is not
    stored in the checkpoint: the paper's 0.7 is assumed for 100 classes, 0.5 otherwise.
    """
    ckpt = load_checkpoint_file(path)
    if "net" not in ckpt:
        raise ValueError(
            f"{str(path)!r} is not a reference checkpoint: it has no 'net' entry "
            f"(keys: {sorted(ckpt)[:5]})"
        )
    state = _strip_prefix(ckpt["net"])
    cfg = infer_reference_config(state, 0.5, input_size)
    if dropout is None:
        dropout = 0.7 if cfg.num_classes == 100 else 0.5
    cfg = cfg.replace(dropout=dropout)
    model = LruNet(cfg)
    own = model.state_dict()
    # BN step counters postdate the reference's torch; they do not affect the computation.
    for k, v in own.items():
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = v
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{str(path)!r} does not match {cfg.name}: {first_line(e)}") from None
    model.eval()
    meta = {
        k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in ckpt.items() if k != "net"
    }
    return model, meta
