"""Files that matter, written and read one way: atomically, and without unpickling code.

Every checkpoint, weight file and cache in this project is a dict of tensors and plain Python
values, saved with `save_torch` (a temp file in the same folder, fsync, then rename, so a crash
never leaves a half-written file) and read with `load_torch` (`torch.load(weights_only=True)`; a
missing file is a FileNotFoundError and an unreadable one a ValueError naming it and the fix).
Importing this module does not import torch (the driver's MLflow code uses `first_line`).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

# The process's umask, read once (os.umask can only be read by setting it): mkstemp makes its
# temp files 0600, and a renamed temp file would keep that, owner-only on a shared machine.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write_bytes(
    path: str | os.PathLike, data: bytes, tmp_dir: str | os.PathLike | None = None
) -> Path:
    """Write `data` to `path` via a temp file and `os.replace`. The temp file goes in `tmp_dir`
    (same filesystem; default: `path`'s folder), e.g. outside a folder another process copies
    while we write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    where = path.parent if tmp_dir is None else Path(tmp_dir)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=where)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # as open() would have made it
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def save_torch(obj: Any, path: str | os.PathLike) -> Path:
    """`torch.save` to `path` atomically."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_torch(
    path: str | os.PathLike, what: str = "checkpoint", fix: str = "re-create it"
) -> Any:
    """`torch.load(path, weights_only=True)` on the CPU, with one-line errors.

    `what` names the file in messages ("checkpoint", "model file", ...), `fix` says what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist (check the path)")
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, disallowed global: all mean "unusable"
        raise ValueError(
            f"{what} {str(path)!r} is corrupt, truncated or not a weights-only torch file "
            f"({first_line(e)[:160]}); {fix}"
        ) from None


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty), for
    one-line errors and log lines."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def check_writable_dir(out_dir: str | os.PathLike) -> Path:
    """Create `out_dir` if needed and prove it is writable by creating and removing a file.

    Raises PermissionError / NotADirectoryError with the folder named. Call it before heavy work.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output folder {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise PermissionError(
            f"output folder {out} is not writable ({e.strerror or e}); pick another --out"
        ) from None
    return out
