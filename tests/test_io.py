"""lrunet.io's atomic writes: the file appears whole, with the mode a plain open() would give it
under the process's umask (not mkstemp's owner-only 0600), and no temp file is left behind,
also when the temp file is written in another folder."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lrunet.io import atomic_write_bytes

pytestmark = pytest.mark.timeout(30)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_an_atomic_write_gets_the_mode_open_would_give(tmp_path: Path) -> None:
    path = atomic_write_bytes(tmp_path / "sub" / "table.csv", b"a,b\n1,2\n")
    assert path.read_bytes() == b"a,b\n1,2\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()
    plain = tmp_path / "plain.csv"
    plain.write_bytes(b"x")
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["table.csv"]


def test_the_temp_file_can_live_outside_the_target_folder(tmp_path: Path) -> None:
    watched, aside = tmp_path / "watched", tmp_path / "aside"
    aside.mkdir()
    atomic_write_bytes(watched / "state.json", b"{}", aside)
    atomic_write_bytes(watched / "state.json", b'{"v": 2}', aside)
    assert (watched / "state.json").read_text() == '{"v": 2}'
    assert [p.name for p in watched.iterdir()] == ["state.json"] and not list(aside.iterdir())
