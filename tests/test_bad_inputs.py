"""Every bad input a user can give `launch.py` ends the same way: exit code 2, one line on stderr
that names the problem and the fix, no traceback, and no Ray started.

The corpus is tests/bad_inputs/: `cases.yaml` (one case per line of flags: datasets, paths,
architecture names, tracking URIs, cluster addresses, unwritable output folders) and the files it
uses (search-space YAML given to the search command itself, corrupt and truncated checkpoints; a
checkpoint that would run code when unpickled is written by the test). Each case runs
`python launch.py ...` in a subprocess with its own RAY_TMPDIR: Ray creates
`$RAY_TMPDIR/ray/session_*` whenever it starts (test_fault_tolerance checks that on a real
search), so an absent folder means no Ray process was started.
"""

from __future__ import annotations

import ast
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from experiments import tracking
from tests.conftest import ROOT

BAD = ROOT / "tests" / "bad_inputs"
PWNED = "/tmp/lrunet-pwned"  # what the code-carrying inputs would create if they ever ran


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    says: tuple[str, ...]  # fragments the message must contain: the problem, and the fix
    within_s: float | None = None  # a time limit: such cases run alone, not side by side


def _cases() -> list[Case]:
    with open(BAD / "cases.yaml") as f:
        table = yaml.safe_load(f)
    return [Case(c["id"], tuple(c["argv"]), tuple(c["says"]), c.get("within_s")) for c in table]


CASES = _cases()


class _Exploit:
    """Unpickling this runs a shell command: `torch.load(weights_only=True)` must refuse it."""

    def __reduce__(self):
        return (os.system, (f"touch {PWNED}",))


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    ray_started: bool


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    """`runner(case) -> Outcome`: the case's command, with its placeholders filled in."""
    tmp = tmp_path_factory.mktemp("bad_inputs")
    store = tmp / "mlflow.db"
    tracking.client_for(f"sqlite:///{store}").search_experiments()  # an existing, empty store
    torch.save({"net": _Exploit()}, tmp / "pickled_code.pt")
    Path(PWNED).unlink(missing_ok=True)
    silent = socket.socket()  # accepts connections, never answers: a hung server
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    values = {
        "bad": str(BAD),
        "tmp": str(tmp),
        "store": str(store),
        "closed": str(_closed_port()),
        "silent": str(silent.getsockname()[1]),
    }

    def run(case: Case) -> Outcome:
        ray_tmp = tempfile.mkdtemp(prefix="lrbad-", dir="/tmp")
        env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("RAY_ADDRESS", None)
        env.pop("MLFLOW_TRACKING_URI", None)
        argv = [a.format(**values) for a in case.argv]
        t0 = time.monotonic()
        p = subprocess.run(
            [sys.executable, str(ROOT / "launch.py"), *argv],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        seconds = time.monotonic() - t0
        started = (Path(ray_tmp) / "ray").exists()
        if not started:
            os.rmdir(ray_tmp)
        return Outcome(p.returncode, p.stdout, p.stderr, seconds, started)

    yield run
    silent.close()


@pytest.fixture(scope="module")
def outcomes(runner) -> dict[str, Outcome]:
    """The untimed cases, two at a time (most of a case is Python starting up)."""
    pooled = [c for c in CASES if c.within_s is None]
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip([c.id for c in pooled], pool.map(runner, pooled), strict=True))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # free once closed: nothing listens there


def test_corpus_is_large_and_distinct():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)
    assert len({c.argv for c in CASES}) == len(CASES)
    files = {p.name for p in BAD.iterdir()} - {"cases.yaml"}
    used = {Path(a).name for c in CASES for a in c.argv if a.startswith("{bad}/")}
    assert files == used, f"corpus files without a case: {files - used}"


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_exits_2_with_one_line(case: Case, runner, outcomes: dict[str, Outcome]):
    o = runner(case) if case.within_s is not None else outcomes[case.id]
    lines = [ln for ln in o.stderr.splitlines() if ln.strip()]
    assert o.returncode == 2, (o.returncode, o.stderr[-3000:])
    assert len(lines) == 1, o.stderr[-3000:]
    assert re.match(r"launch\.py( [a-z-]+)?: error: ", lines[0]), lines[0]
    assert "Traceback" not in o.stderr + o.stdout
    for fragment in case.says:
        assert fragment in lines[0], (fragment, lines[0])
    assert not o.ray_started, "a Ray session was started"
    if case.within_s is not None:  # timed from the command line, Python's start included
        assert o.seconds < case.within_s, f"took {o.seconds:.1f} s"
    assert not os.path.exists(PWNED), "an input ran code"


# --- what the tool reads and writes: grep-like checks over the source ----------------------------
SOURCES = sorted(
    p
    for d in ("launch.py", "lrunet", "trainables", "experiments", "search_spaces", "benchmarks")
    for p in ([ROOT / d] if d.endswith(".py") else (ROOT / d).rglob("*.py"))
)
# pickle is only for files that are pickles by definition, and never for weights or checkpoints
PICKLE_ALLOWED = {
    "trainables/formats.py",  # the official CIFAR-10/100 batches are Python pickles
    "experiments/searchers.py",  # Tune's searcher state, written by the searcher itself
}


def _calls(module: str, names: set[str]):
    """(file, call) for every `module.name(...)` call in the project's source."""
    for path in SOURCES:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in names
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == module
            ):
                yield path.relative_to(ROOT).as_posix(), node


def test_every_torch_load_is_weights_only():
    calls = list(_calls("torch", {"load"}))
    assert calls, "no torch.load found: the scan is broken"
    for where, call in calls:
        kw = {k.arg: k.value for k in call.keywords}
        flag = kw.get("weights_only")
        assert isinstance(flag, ast.Constant) and flag.value is True, f"{where}:{call.lineno}"


def test_yaml_is_only_read_with_safe_loaders():
    assert list(_calls("yaml", {"safe_load"})), "no yaml.safe_load found: the scan is broken"
    unsafe = {"load", "load_all", "full_load", "full_load_all", "unsafe_load", "unsafe_load_all"}
    for where, call in _calls("yaml", unsafe | {"compose", "parse"}):
        loader = {k.arg: k.value for k in call.keywords}.get("Loader")
        assert loader is not None and "Safe" in ast.unparse(loader), f"{where}:{call.lineno}"


def test_pickle_is_never_used_for_weights():
    used = {where for where, _ in _calls("pickle", {"load", "loads", "Unpickler"})}
    used |= {where for where, _ in _calls("cloudpickle", {"load", "loads"})}
    assert used <= PICKLE_ALLOWED, used - PICKLE_ALLOWED


@pytest.mark.parametrize(
    "name", ["..", ".", "../../etc", "/etc/passwd", ".hidden", "a/../../b", "~root", "", "a\x00b"]
)
def test_output_names_stay_inside_their_folder(name: str, tmp_path):
    from experiments.export import check_export_name
    from experiments.search import _slug

    root = tmp_path.resolve()
    folder = (root / _slug(name)).resolve()  # the search's folder under --storage-path
    assert folder.parent == root and not folder.name.startswith("."), folder
    with pytest.raises(ValueError, match="not a safe folder name"):
        check_export_name(name)  # export refuses such a name instead of rewriting it


def test_local_ray_has_no_dashboard_and_hints_bind_loopback():
    """A local Ray starts without its dashboard (Ray's own ports cannot be bound to loopback in
    Ray 2.60: they are protected by Ray's token authentication instead, see README "Running on a
    cluster");
    every `mlflow server` / `mlflow ui` command the tool prints or documents binds 127.0.0.1."""
    inits = list(_calls("ray", {"init"}))
    local = [c for w, c in inits if not any(k.arg == "address" for k in c.keywords)]
    assert local, "no local ray.init found: the scan is broken"
    for call in local:
        kw = {k.arg: k.value for k in call.keywords}
        assert isinstance(kw.get("include_dashboard"), ast.Constant)
        assert kw["include_dashboard"].value is False
    commands = 0
    for path in [*SOURCES, ROOT / "README.md"]:
        if not path.exists():
            continue
        text = path.read_text()
        for m in re.finditer(r"mlflow (server|ui)\b", text):
            command = text[m.start() : m.start() + 400].split("\n\n")[0]  # up to a blank line
            if re.search(r"--(port|backend-store-uri|artifacts-destination)\b", command):
                commands += 1
                where = f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}"
                assert "--host 127.0.0.1" in command, f"{where}: {command}"
    assert commands >= 3
