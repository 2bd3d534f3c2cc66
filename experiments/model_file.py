"""A trial's model file, the `model/model.pt` artifact of a finished trial: `save_model_file`
writes it (weights, model config, recipe, dataset, metrics) and `load_model_file` reads it back
as a `ModelFile`, the starting point of an export or a retrain.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lrunet.io import load_torch, save_torch
from lrunet.recipe import Recipe
from lrunet.registry import config_from_dict, config_to_dict

MODEL_FILE_KEYS = ("state_dict", "config", "recipe", "dataset", "metrics")


@dataclass(frozen=True)
class ModelFile:
    """The contents of a trial's `model/model.pt`."""

    model_cfg: Any  # a registered family's config
    recipe: Recipe
    state_dict: dict[str, torch.Tensor]
    dataset: str
    metrics: dict[str, float]


def save_model_file(
    path: str | os.PathLike,
    model_cfg: Any,
    recipe: Recipe,
    state_dict: Mapping[str, torch.Tensor],
    dataset: str,
    metrics: Mapping[str, float],
) -> Path:
    """Write a trial's model file atomically: tensors and plain types only, so it loads with
    `torch.load(path, weights_only=True)`."""
    path = Path(path)
    payload = {
        "state_dict": {k: v.detach().cpu().clone() for k, v in state_dict.items()},
        "config": config_to_dict(model_cfg),
        "recipe": recipe.to_dict(),
        "dataset": str(dataset),
        "metrics": {str(k): float(v) for k, v in metrics.items()},
    }
    save_torch(payload, path)
    return path


def load_model_file(path: str | os.PathLike) -> ModelFile:
    """Read a file written by `save_model_file`. A corrupt, truncated or foreign file raises
    ValueError naming the file."""
    path = Path(path)
    raw = load_torch(path, "model file", "re-run the trial or pick another run")
    if not isinstance(raw, dict) or set(raw) != set(MODEL_FILE_KEYS):
        keys = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        raise ValueError(
            f"model file {path} is not an LruNet model file: expected keys "
            f"{list(MODEL_FILE_KEYS)}, got {keys}"
        )
    try:
        cfg = config_from_dict(raw["config"])
        recipe = Recipe(**raw["recipe"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"model file {path} holds an invalid config: {e}") from None
    state = raw["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"model file {path}: 'state_dict' is not a dict of tensors")
    return ModelFile(cfg, recipe, state, str(raw["dataset"]), dict(raw["metrics"]))
