"""The Ray side of a search: joining or starting Ray, and what the nodes can host.

`init_ray` joins the cluster at --address (or RAY_ADDRESS), switching on token authentication
when a token is at hand (`token_auth_if_available`), else starts a local Ray; `check_reachable`
fails fast when nothing listens at a HOST:PORT address. `local_offer` and `check_resources`
refuse a search whose trials no node can host, before any run is created; `ray_session` holds
Ray for one search, and `default_concurrency` is how many trials the cluster's resources run
at once when --max-concurrent is not given. `experiments.search` drives these.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from lrunet.io import first_line

if TYPE_CHECKING:
    from experiments.search import SearchOptions


def _ray_token_available() -> bool:
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return True
    return (Path.home() / ".ray" / "auth_token").is_file()


def token_auth_if_available() -> None:
    """RAY_AUTH_MODE=token when unset and a token is at hand (see `init_ray`)."""
    if "RAY_AUTH_MODE" in os.environ or not _ray_token_available():
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    if "ray" in sys.modules:  # Ray caches its config when imported: refresh it, as Ray does
        try:
            from ray._raylet import Config

            Config.initialize("")
        except (ImportError, AttributeError):
            pass


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast when nothing listens at a HOST:PORT cluster address (Ray itself keeps retrying
    for minutes)."""
    import socket

    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not port.isdigit() or not host:
        return  # "auto", a bare host...: left to Ray
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise ConnectionError(
            f"cannot join the Ray cluster at {address!r}: nothing answers on {host}:{port} "
            f"({e.strerror or e}); start the head with "
            f"'RAY_AUTH_MODE=token ray start --head --port {port}' "
            '(README, "Running on a cluster") or drop --address to run locally'
        ) from None


def init_ray(address: str | None, cpus_hint: float) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS), else start a local Ray.

    A local Ray has no dashboard and uses Ray's token authentication (Ray's default for a new
    local cluster). When joining a cluster with a token at hand (~/.ray/auth_token,
    RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH) and RAY_AUTH_MODE unset, token mode is switched on:
    without it the driver would be refused by a token-protected cluster.
    """
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    if address:
        token_auth_if_available()
        try:
            ray.init(address=address, log_to_driver=True)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ConnectionError(
                f"cannot join the Ray cluster at {address!r} "
                f"({first_line(e)[:200]}); start it with "
                "'RAY_AUTH_MODE=token ray start --head', copy the head's ~/.ray/auth_token to "
                "this machine, or drop --address to run locally"
            ) from None
    else:
        ray.init(include_dashboard=False, log_to_driver=True)


def local_offer() -> tuple[float, float]:
    """(CPUs, GPUs) a local Ray would offer: this process's CPUs, torch's visible GPUs."""
    import torch

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return float(cpus or 1), float(torch.cuda.device_count())


def check_resources(
    cpus_per_trial: float,
    gpus_per_trial: float,
    cluster: bool,
    offers: list[tuple[float, float]] | None = None,
) -> None:
    """ValueError naming what the nodes have when no node can host one trial. `offers`: (CPUs,
    GPUs) per node; default: the alive nodes of the Ray this process is connected to."""
    if offers is None:
        import ray

        offers = [
            (n["Resources"].get("CPU", 0.0), n["Resources"].get("GPU", 0.0))
            for n in ray.nodes()
            if n.get("Alive")
        ]
    where = "node of the cluster" if cluster else "node (this machine)"
    have = "; ".join(f"{c:g} CPUs, {g:g} GPUs" for c, g in offers) or "no node"
    if gpus_per_trial > max((g for _, g in offers), default=0.0):
        fix = "or 0 to train on CPUs" if not any(g for _, g in offers) else "or add GPU nodes"
        raise ValueError(
            f"--gpus-per-trial {gpus_per_trial:g}: no {where} offers that many GPUs ({have}); "
            f"lower --gpus-per-trial, {fix}"
        )
    if cpus_per_trial > max((c for c, _ in offers), default=0.0):
        raise ValueError(
            f"--cpus-per-trial {cpus_per_trial:g}: no {where} offers that many CPUs ({have}); "
            "lower --cpus-per-trial"
        )


@contextlib.contextmanager
def ray_session(o: SearchOptions) -> Iterator[None]:
    """Ray for the search: joined or started here; a local Ray started here is stopped on the
    way out (not by an atexit hook after the summary is printed), one the caller started is not."""
    import ray

    started = not ray.is_initialized()
    init_ray(o.address, o.cpus_per_trial)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def default_concurrency(o: SearchOptions) -> int:
    import ray

    res = ray.cluster_resources()
    by_cpu = int(res.get("CPU", 1) // o.cpus_per_trial) or 1
    if o.gpus_per_trial > 0:
        return max(1, min(by_cpu, int(res.get("GPU", 0) // o.gpus_per_trial)))
    return max(1, by_cpu)
