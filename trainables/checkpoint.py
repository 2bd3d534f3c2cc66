"""Checkpoint files: written atomically, read with `torch.load(..., weights_only=True)`.

A checkpoint is a dict of tensors and plain Python values (no pickled classes), so it loads without
executing code. Its "format" key identifies it; "config" is `lrunet.registry.config_to_dict(cfg)`
(the family and its config), so the model can be rebuilt from the file alone (`load_model`). A
file that cannot be read (truncated, corrupt, not a checkpoint) raises ValueError naming it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lrunet.io import load_torch, save_torch
from lrunet.registry import build_model, config_from_dict

CHECKPOINT_FORMAT = "lrunet-trainer/1"


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write `state` to `path` atomically (a temp file in the same folder, then os.replace)."""
    return save_torch(state, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` (tensors on the CPU)."""
    state = load_torch(path, "checkpoint", "resume from an earlier checkpoint or retrain")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"checkpoint {path} is not an LruNet trainer checkpoint (format {found!r}, expected "
            f"{CHECKPOINT_FORMAT!r})"
        )
    return state


def load_model(path: str | os.PathLike) -> tuple[Any, dict[str, Any]]:
    """The trained model of a checkpoint (CPU, eval mode) and the checkpoint dict itself."""
    state = load_checkpoint(path)
    model = build_model(config_from_dict(state["config"]))
    model.load_state_dict(state["model"])
    return model.eval(), state
