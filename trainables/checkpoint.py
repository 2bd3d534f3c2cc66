"""Checkpoint files: written atomically, read with `torch.load(..., weights_only=True)`.

A checkpoint is a dict of tensors and plain Python values (no pickled classes), so it loads without
executing code. Its "format" key identifies it; "config" is `LruNetConfig.to_dict()`, so the model
can be rebuilt from the file alone (`load_model`). A file that cannot be read (truncated, corrupt,
not a checkpoint) raises ValueError naming it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from lrunet.config import LruNetConfig
from lrunet.model import LruNet

CHECKPOINT_FORMAT = "lrunet-trainer/1"


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write `state` to `path` atomically (a temp file in the same folder, then os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` (tensors on the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, disallowed global: all mean "unusable"
        raise ValueError(
            f"checkpoint {path} is corrupt or truncated and cannot be loaded "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from e
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"checkpoint {path} is not an LruNet trainer checkpoint (format {found!r}, expected "
            f"{CHECKPOINT_FORMAT!r})"
        )
    return state


def load_model(path: str | os.PathLike) -> tuple[LruNet, dict[str, Any]]:
    """The trained model of a checkpoint (CPU, eval mode) and the checkpoint dict itself."""
    state = load_checkpoint(path)
    model = LruNet(LruNetConfig.from_dict(state["config"]))
    model.load_state_dict(state["model"])
    return model.eval(), state
