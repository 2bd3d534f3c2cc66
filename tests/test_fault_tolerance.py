"""Fault tolerance end to end, through `launch.py` in subprocesses with a real local Ray and a real
MLflow store: a trial worker killed with SIGKILL, the driver killed with SIGKILL and `--resume`d,
a trial whose loss becomes NaN, and the tracking server going away mid-run.

Each search gets its own short RAY_TMPDIR, so its Ray processes can be told apart from any other
Ray on the machine (and the ones a killed driver leaves behind are ended by pid, nothing else).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from experiments import tracking
from experiments.search import SearchOptions, run_search
from lrunet import metrics as M
from tests import mlflow_server as servers
from tests.conftest import ROOT, write_space

LAUNCH = str(ROOT / "launch.py")


# --- helpers shared with test_cluster.py ---------------------------------------------------------
def short_tmpdir(prefix: str = "lrft-") -> str:
    """A short folder for RAY_TMPDIR (Ray's socket paths must stay under 107 characters)."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def ray_tmp_dir():
    """A short RAY_TMPDIR for one test, its Ray processes ended and its files removed after
    (the `ray_tmp` fixture, shared with test_cluster.py)."""
    d = short_tmpdir()
    yield d
    end_processes(pids_with(d))
    shutil.rmtree(d, ignore_errors=True)


_ray_tmp_fixture = pytest.fixture(ray_tmp_dir, name="ray_tmp")


def cli_env(ray_tmp: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        RAY_TMPDIR=ray_tmp,
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONUNBUFFERED="1",
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="2",
        **extra,
    )
    env.pop("RAY_ADDRESS", None)
    return env


def pids_with(text: str) -> list[int]:
    """Processes whose command line contains `text` (e.g. a search's RAY_TMPDIR)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if text.encode() in (d / "cmdline").read_bytes():
                    out.append(int(d.name))
            except OSError:
                continue
    return out


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def end_processes(pids: list[int], timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL, exactly these processes."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + timeout
        while time.time() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.3)
        pids = [p for p in pids if Path(f"/proc/{p}").exists() and not _zombie(p)]
        if not pids:
            return


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def wait_for(cond: Callable[[], object], timeout: float, what: str, proc=None, every=0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = cond()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the search exited ({proc.returncode}) before {what}")
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def trial_runs(uri: str, experiment: str) -> list:
    """Trial runs (not infeasible records) of the experiment's newest search."""
    client = tracking.client_for(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return [
        r
        for r in client.search_runs([exp.experiment_id], "tags.trial_id != ''", max_results=1000)
        if r.data.tags.get(tracking.ROLE_TAG) == tracking.TRIAL_ROLE
    ]


def steps_logged(uri: str, experiment: str) -> dict[str, list[int]]:
    client = tracking.client_for(uri)
    return {
        r.data.tags["trial_id"]: [
            m.step for m in client.get_metric_history(r.info.run_id, M.VAL_ACC)
        ]
        for r in trial_runs(uri, experiment)
    }


def search_cmd(space: Path, d: Path, *extra: str) -> list[str]:
    """The search command line, against a store created up front (the test reads it while the
    search runs, and two processes must not create one SQLite store at once)."""
    tracking.client_for(f"sqlite:///{d / 'mlflow.db'}").search_experiments()
    return [
        sys.executable,
        LAUNCH,
        "--space",
        str(space),
        "--tracking-uri",
        f"sqlite:///{d / 'mlflow.db'}",
        "--storage-path",
        str(d / "ray"),
        "--experiment-name",
        "ft",
        "--scheduler",
        "fifo",
        "--quiet",
        *extra,
    ]


def assert_clean_history(client, run, epochs: int, max_recomputed: int = 0) -> None:
    """One value per epoch for every metric, epochs 1..N, and at most `max_recomputed` epochs
    computed twice."""
    for key in (M.VAL_ACC, M.TRAIN_LOSS, M.PARAMS):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        assert sorted(steps) == list(range(1, epochs + 1)), (run.data.tags["trial_id"], key, steps)
    recomputed = int(run.data.tags.get(tracking.RECOMPUTED_TAG, 0))
    assert recomputed <= max_recomputed, run.data.tags


def final_checkpoint(storage: Path, trial_id: str) -> dict:
    """The newest checkpoint a trial left on the storage."""
    from trainables.checkpoint import load_checkpoint
    from trainables.trainable import CHECKPOINT_FILE

    states = [
        load_checkpoint(f)
        for f in storage.glob(f"**/trial_{trial_id}/checkpoint_*/{CHECKPOINT_FILE}")
    ]
    assert states, f"no checkpoint of trial {trial_id} under {storage}"
    return max(states, key=lambda s: s["epoch"])


# --- tests ---------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_trial_worker_sigkill_is_retried_from_its_checkpoint(tmp_path, ray_tmp):
    space = write_space(tmp_path, **{"max_epochs: 3": "max_epochs: 4"})
    uri, rt = f"sqlite:///{tmp_path / 'mlflow.db'}", ray_tmp
    log = open(tmp_path / "search.log", "w")
    cmd = search_cmd(space, tmp_path, "--num-samples", "1")
    p = subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(rt), stdout=log, stderr=subprocess.STDOUT)
    try:

        def mid_trial():
            for tid, steps in steps_logged(uri, "ft").items():
                if 1 <= len(steps) < 4:
                    return tid, len(steps)
            return None

        victim, _ = wait_for(mid_trial, 150, "a trial's first epoch", p)
        workers = [
            pid
            for pid in descendants(p.pid)
            if cmdline(pid).startswith("ray::") and "ImplicitFunc" in cmdline(pid)
        ]
        assert len(workers) == 1, [cmdline(x) for x in descendants(p.pid)]
        time.sleep(0.3)  # into the next epoch
        os.kill(workers[0], signal.SIGKILL)
        killed_at = time.time()
        done_epochs = len(steps_logged(uri, "ft")[victim])  # the retry needs seconds to start
        assert p.wait(timeout=240) == 0, (tmp_path / "search.log").read_text()[-3000:]
    finally:
        if p.poll() is None:
            p.kill()
        end_processes(pids_with(rt))

    client = tracking.client_for(uri)
    runs = {r.data.tags["trial_id"]: r for r in trial_runs(uri, "ft")}
    assert list(runs) == [victim]  # one run for the trial: the retry wrote into the same run
    for run in runs.values():
        assert run.info.status == "FINISHED"
        assert run.data.tags[tracking.STATUS_TAG] == tracking.COMPLETED
        assert_clean_history(client, run, 4)
    tags = runs[victim].data.tags
    assert tags[tracking.RETRIES_TAG] == "1", tags
    assert tags["last_retry_reason"].startswith("The actor died"), tags
    # the retry resumed after the epochs already done: theirs are the values logged before the
    # kill, every later epoch came from the retry
    history = client.get_metric_history(runs[victim].info.run_id, M.VAL_ACC)
    history = sorted(history, key=lambda m: m.step)
    assert 1 <= done_epochs < 4
    assert all(m.timestamp <= killed_at * 1000 for m in history[:done_epochs])
    assert all(m.timestamp > killed_at * 1000 for m in history[done_epochs:])


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_driver_sigkill_then_resume_finishes_every_trial_once(tmp_path, ray_tmp):
    # 3 epochs per trial; TPE (its Optuna study must come back) behind a budget that rejects
    # some proposals (their records must not be written twice when proposals are replayed)
    space = write_space(tmp_path, **{"training:": "budgets: {max_params: 12000}\ntraining:"})
    uri, rt = f"sqlite:///{tmp_path / 'mlflow.db'}", ray_tmp
    env = cli_env(rt)
    log = open(tmp_path / "search.log", "w")
    cmd = search_cmd(
        space, tmp_path, "--num-samples", "3", "--max-concurrent", "2", "--searcher", "tpe"
    )
    p = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        before = wait_for(
            lambda: (lambda s: s if any(len(v) >= 2 for v in s.values()) else None)(
                steps_logged(uri, "ft")
            ),
            180,
            "a trial's second epoch",
            p,
            every=0.3,
        )
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        killed_at = time.time()
        before = steps_logged(uri, "ft")  # what MLflow held when the driver died
        assert any(Path(rt, "ray").glob("session_2*")), (
            "the search started no Ray under RAY_TMPDIR (the no-Ray checks rely on it)"
        )
        # Ray's processes share the driver's fate (stragglers are ended after the test)
        try:
            wait_for(lambda: not pids_with(rt), 30, "Ray to exit")
        except AssertionError:
            pass
    finally:
        if p.poll() is None:
            p.kill()

    client = tracking.client_for(uri)
    assert any(r.info.status == "RUNNING" for r in trial_runs(uri, "ft"))  # left by the kill
    resumed = subprocess.run(
        [sys.executable, LAUNCH, "--resume", "ft", "--tracking-uri", uri, "--quiet"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=330,
    )
    end_processes(pids_with(rt))
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "Pareto front of ft" in resumed.stdout

    exp = client.get_experiment_by_name("ft")
    every_run = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in every_run if r.data.tags.get(tracking.ROLE_TAG) == tracking.PARENT_ROLE]
    children = [r for r in every_run if r.data.tags.get(tracking.ROLE_TAG) == tracking.TRIAL_ROLE]
    trials = [r for r in children if r.data.tags["status"] != tracking.INFEASIBLE]
    infeasible = [r for r in children if r.data.tags["status"] == tracking.INFEASIBLE]
    assert len(parents) == 1 and len(trials) == 3, [r.data.tags for r in every_run]
    assert len(parents) + len(trials) + len(infeasible) == len(every_run)
    hashes = [r.data.tags["config_hash"] for r in infeasible]
    assert len(hashes) == len(set(hashes)), "an infeasible proposal was recorded twice"
    assert parents[0].info.status == "FINISHED"
    assert parents[0].data.tags["search_status"] == "finished"
    assert not [r for r in every_run if r.info.status == "RUNNING"]
    interrupted = 0
    for run in trials:
        assert run.info.status == "FINISHED" and run.data.tags["status"] == tracking.COMPLETED
        assert_clean_history(client, run, 3)
        tid = run.data.tags["trial_id"]
        done = before.get(tid, [])
        # independent of the tracker's own count: the final checkpoint's lineage trained each
        # epoch MLflow held before the kill exactly when MLflow says (epoch_seconds is a
        # wall-clock measurement, so a recomputed epoch would not match it)
        lineage = final_checkpoint(tmp_path / "ray", tid)["history"]
        assert [r[M.EPOCH] for r in lineage] == [1, 2, 3], tid
        logged = {
            m.step: m.value for m in client.get_metric_history(run.info.run_id, M.EPOCH_SECONDS)
        }
        for epoch in done:
            assert lineage[epoch - 1][M.EPOCH_SECONDS] == pytest.approx(logged[epoch]), (
                f"trial {tid}: epoch {epoch} was trained again after the resume"
            )
        history = sorted(
            client.get_metric_history(run.info.run_id, M.VAL_ACC), key=lambda m: m.step
        )
        # epochs finished before the kill kept their values; the rest came after the resume
        assert all(m.timestamp <= killed_at * 1000 for m in history[: len(done)])
        assert all(m.timestamp > killed_at * 1000 for m in history[len(done) :])
        interrupted += 0 < len(done) < 3
    assert interrupted >= 1  # a trial really continued from its checkpoint mid-way


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_nan_trial_fails_with_its_reason_and_stays_off_the_front(tmp_path, ray_local):
    space = write_space(
        tmp_path,
        **{
            "{loguniform: [1e-4, 0.2]}": "{choice: [0.05, 0.1, 1e6]}",
            "reuse_1: {randint: [1, 2]}": "reuse_1: 1",
            "reuse_3: {randint: [1, 2]}": "reuse_3: 1",
            "width: {choice: [0.125, 0.25, 0.5]}": "width: 0.25",
            "groups: {choice: [2, 4]}": "groups: 2",
        },
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_search(
        SearchOptions(
            space=str(space),
            num_samples=3,  # the whole grid: one trial per lr
            scheduler="fifo",
            max_failures=1,
            max_concurrent=2,
            tracking_uri=uri,
            storage_path=str(tmp_path / "ray"),
            experiment_name="nan",
            verbose=0,
        )
    )
    client = tracking.client_for(uri)
    runs = trial_runs(uri, "nan")
    assert len(runs) == 3
    failed = [r for r in runs if float(r.data.params["lr"]) == 1e6]
    good = [r for r in runs if float(r.data.params["lr"]) != 1e6]
    assert len(failed) == 1
    for r in failed:
        tags = r.data.tags
        assert r.info.status == "FAILED" and tags[tracking.STATUS_TAG] == tracking.FAILED
        assert tags["failure_reason"].startswith("FloatingPointError: training loss became"), tags
        assert "lower the learning rate" in tags["failure_reason"]
        assert tags[tracking.RETRIES_TAG] == "1"  # retried once (max_failures=1), then failed
    for r in good:
        assert r.info.status == "FINISHED" and r.data.tags[tracking.STATUS_TAG] == "completed"
        assert_clean_history(client, r, 3)
    members = {m.run_id for m in result.front.members}
    assert members and not members & {r.info.run_id for r in failed}
    # the front is exactly the non-dominated completed trials (maximise val_acc, minimise params)
    pts = {r.info.run_id: (r.data.metrics["val_acc"], r.data.metrics["params"]) for r in good}
    expected = {
        a
        for a, (acc, par) in pts.items()
        if not any(b[0] >= acc and b[1] <= par and b != (acc, par) for b in pts.values())
    }
    assert members == expected


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_tracking_server_outage_mid_run_loses_no_metric(tmp_path, ray_tmp):
    server, url = servers.start(tmp_path, log_name="server1.log", db="server.db")
    port = int(url.rsplit(":", 1)[1])
    space = write_space(tmp_path, **{"max_epochs: 3": "max_epochs: 5"})
    rt = ray_tmp
    cmd = search_cmd(space, tmp_path, "--num-samples", "2", "--max-concurrent", "2")
    cmd[cmd.index("--tracking-uri") + 1] = url
    log = open(tmp_path / "search.log", "w")
    p = subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(rt), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(
            lambda: any(len(v) >= 1 for v in steps_logged(url, "ft").values()),
            180,
            "a first epoch on the server",
            p,
        )
        servers.stop(server, sigs=(signal.SIGKILL,))  # the server crashes
        down_at = time.time()
        time.sleep(8)  # trials go on training and reporting into the void
        server, _ = servers.start(tmp_path, port, log_name="server2.log", db="server.db")
        up_at = time.time()
        assert p.wait(timeout=300) == 0, (tmp_path / "search.log").read_text()[-3000:]
    finally:
        if p.poll() is None:
            p.kill()
        end_processes(pids_with(rt))
    try:
        client = tracking.client_for(url)
        runs = trial_runs(url, "ft")
        assert len(runs) == 2
        logged_late = 0
        for run in runs:
            assert run.info.status == "FINISHED", run.data.tags
            assert_clean_history(client, run, 5)
            for m in client.get_metric_history(run.info.run_id, M.VAL_ACC):
                logged_late += down_at * 1000 < m.timestamp < up_at * 1000
        assert logged_late >= 1  # some epochs were reported while the server was down
        assert "MLflow unreachable" in (tmp_path / "search.log").read_text()
    finally:
        servers.stop(server)
