"""`python launch.py import-reference CKPT --out FILE`: an authors' checkpoint, in our format."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from lrunet.counting import count
from lrunet.io import save_torch
from lrunet.reference import load_reference


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint", help="a released .t7 checkpoint (dict with 'net', 'acc', 'epoch')"
    )
    parser.add_argument("--out", required=True, help="output file (.pt)")
    parser.add_argument(
        "--dropout",
        type=float,
        default=None,
        help="dropout of the trained net (not stored; default 0.7 for 100 classes, else 0.5)",
    )


def save_weights(path: str | os.PathLike, payload: dict) -> Path:
    """Write the converted weights atomically, after checking the destination."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(21, "output is a directory, give a file name", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(path.parent, os.W_OK):
        raise PermissionError(13, "output folder is not writable", str(path.parent))
    return save_torch(payload, path)


def run(args: argparse.Namespace) -> int:
    model, meta = load_reference(args.checkpoint, dropout=args.dropout)
    cfg = model.cfg
    payload = {
        "state_dict": model.state_dict(),
        "config": cfg.to_dict(),
        "source": {"checkpoint": os.path.basename(args.checkpoint), **meta},
    }
    out = save_weights(args.out, payload)
    c = count(cfg)
    print(
        f"{cfg.name}: {c.params:,} params, {c.mflops:.2f} MFLOPs; reference accuracy "
        f"{meta.get('acc')} at epoch {meta.get('epoch')} -> {out}"
    )
    return 0
