"""Inference latency of an architecture, measured on a named target (issue #16).

Latency depends on the architecture, not on the weights, so it is measured before training, on a
model with random weights, in eval mode (BatchNorm folded, as the exported model computes) and
under `torch.inference_mode()`, on a contiguous float32 NCHW input (what the exported model
takes). Targets (`TARGETS`):

    cpu1     torch on the CPU, one intra-op thread (the previous thread count is restored after)
    cpu      torch on the CPU, `threads` intra-op threads (default: torch's current count)
    ort-cpu  ONNX Runtime on the graph `lrunet.onnx_file.write_onnx` exports (the `model.onnx`
             of an export folder), CPUExecutionProvider, all graph optimisations (ORT folds BN),
             sequential execution with `threads` intra-op threads, default 1: one thread is the
             deployment this number stands for (a phone or MCU core) and it is the setting that
             stays steady on a machine shared with training trials
    cuda     torch on the trial's GPU, fp32, synchronised around every sample; ValueError
             without CUDA

How: warm-up calls (at least `WARMUP_CALLS` and `WARMUP_SECONDS`), then a number of calls per
sample calibrated so a sample lasts about `SAMPLE_SECONDS` (a single call of a small network is
too short to time reliably), then samples in blocks of `BLOCK` until the running median is stable
(its relative change below `TOLERANCE` over `STABLE_BLOCKS` consecutive blocks, after at least
`MIN_SAMPLES`) or `max_seconds` have passed (`Latency.stable` is False then). A sample's time
divided by its calls is one per-call time; the result is their median and interquartile range.
Samples are timed by the wall clock, or with `clock="cpu"` by the calling thread's CPU time
(`CLOCKS`: single-threaded targets only), which other processes on a shared machine barely move
(benchmarks/latency.py; benchmarks/RESULTS.md, "Inference latency").

This module imports torch only; `onnxruntime` is imported lazily, inside the ort-cpu path.
"""

from __future__ import annotations

import copy
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lrunet import metrics as M

TARGETS = ("cpu1", "cpu", "ort-cpu", "cuda")
LATENCY_KEYS = (  # the metric names are lrunet.metrics'
    M.LATENCY_MS,  # median ms per forward pass at batch 1
    M.LATENCY_IQR_MS,  # its interquartile range
    M.LATENCY_BATCH_MS,  # median ms per forward pass of one batch of `batch_size`
    M.LATENCY_BATCH_IQR_MS,
    M.LATENCY_SECONDS,  # wall seconds the whole measurement cost, ONNX export included
)
DEFAULT_MAX_SECONDS = 10.0  # per batch size: the cap of the stopping rule
WARMUP_CALLS = 3
WARMUP_SECONDS = 0.05
SAMPLE_SECONDS = 0.005  # aimed-at duration of one timed sample (perf_counter resolves ~100 ns)
BLOCK = 10  # samples per block of the stopping rule
MIN_SAMPLES = 30
TOLERANCE = 0.02  # relative change of the running median between consecutive blocks
STABLE_BLOCKS = 2  # consecutive blocks under TOLERANCE that end the measurement
# what times a sample: "wall" (time.perf_counter, the latency a user waits for, the default) or
# "cpu" (time.thread_time, the calling thread's CPU time: immune to other processes taking the
# cores, so steady on a shared machine; single-threaded work only: cpu1, or cpu / ort-cpu at
# one thread, where it equals the wall time of an idle machine)
CLOCKS = ("wall", "cpu")


@dataclass(frozen=True)
class Latency:
    """One measurement: median and IQR in milliseconds per forward pass of one batch."""

    target: str
    batch_size: int
    median_ms: float
    iqr_ms: float
    samples: int  # timed samples taken
    calls_per_sample: int  # forward passes per sample
    threads: int  # intra-op threads (cuda: the host's torch threads)
    seconds: float  # wall seconds the measurement cost (export and warm-up included)
    stable: bool  # the stopping rule converged before max_seconds
    clock: str = "wall"  # what timed the samples (CLOCKS)


def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    target: str,
    batch_size: int = 1,
    *,
    threads: int | None = None,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    clock: str = "wall",
) -> Latency:
    """Median latency of `model` on `target` for one batch of `batch_size` inputs of shape
    `input_shape` (C, H, W). The model is put in eval mode (its mode is restored after; on cuda
    a copy is moved to the GPU). `clock`: see `CLOCKS`."""
    return measure_batches(
        model,
        input_shape,
        target,
        (batch_size,),
        threads=threads,
        max_seconds=max_seconds,
        clock=clock,
    )[0]


def measure_config(
    cfg: Any, target: str, batch_size: int, *, threads: int | None = None, clock: str = "wall"
) -> dict[str, float]:
    """The `LATENCY_KEYS` of a family config on `target`, at batch 1 and at `batch_size`, at the
    config's geometry (`cfg.in_channels`, `cfg.input_size`), random weights.

    Memoised per process on (cfg, target, batch_size, threads, clock): a Ray worker reused across
    trials measures an architecture once, and the same dict object comes back (do not mutate
    it)."""
    key = (cfg, target, batch_size, threads, clock)
    if key in _MEMO:
        return _MEMO[key]
    from lrunet.registry import build_model  # the registry imports no torch at its import

    _check_target(target)
    _check_batch_size(batch_size)
    _check_clock(clock, target, threads)
    t0 = time.perf_counter()
    # the weights do not matter; seeded anyway, so a run repeats exactly, on a forked RNG so a
    # trial measured before training keeps its own random stream
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(cfg)
    shape = (int(cfg.in_channels), int(cfg.input_size), int(cfg.input_size))
    sizes = (1,) if batch_size == 1 else (1, batch_size)
    found = measure_batches(model, shape, target, sizes, threads=threads, clock=clock)
    one, batch = found[0], found[-1]
    out = {
        "latency_ms": one.median_ms,
        "latency_iqr_ms": one.iqr_ms,
        "latency_batch_ms": batch.median_ms,
        "latency_batch_iqr_ms": batch.iqr_ms,
        "latency_seconds": time.perf_counter() - t0,
    }
    _MEMO[key] = out
    return out


_MEMO: dict[tuple, dict[str, float]] = {}


# --- the measurement itself ------------------------------------------------------------------


def measure_batches(
    model: nn.Module,
    input_shape: Sequence[int],
    target: str,
    batch_sizes: Sequence[int],
    *,
    threads: int | None = None,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    clock: str = "wall",
) -> list[Latency]:
    """`measure_latency` for each of `batch_sizes` in turn (a size may repeat: the benchmark's
    repeated measurements), sharing one set-up of the target (one ONNX export for all). The
    first Latency's `seconds` include the set-up, the others' their own timing only."""
    _check_target(target)
    shape = _check_shape(input_shape)
    for b in batch_sizes:
        _check_batch_size(b)
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise ValueError(f"threads: expected an integer >= 1 or None, got {threads!r}")
    if not (isinstance(max_seconds, (int, float)) and max_seconds > 0):
        raise ValueError(f"max_seconds: expected a number > 0, got {max_seconds!r}")
    _check_clock(clock, target, threads)
    if target == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "target 'cuda': CUDA is not available on this machine (torch "
            f"{torch.__version__}); use cpu1, cpu or ort-cpu"
        )
    timer = time.thread_time if clock == "cpu" else time.perf_counter
    was_training = model.training
    model.eval()
    try:
        start = time.perf_counter()
        out = []
        with _runner(model, shape, target, threads) as (make_call, used_threads):
            for b in batch_sizes:
                sync = torch.cuda.synchronize if target == "cuda" else _no_sync
                median, iqr, n, per, stable = _time_calls(make_call(b), sync, max_seconds, timer)
                out.append(
                    Latency(
                        target=target,
                        batch_size=b,
                        median_ms=median * 1e3,
                        iqr_ms=iqr * 1e3,
                        samples=n,
                        calls_per_sample=per,
                        threads=used_threads,
                        seconds=time.perf_counter() - start,
                        stable=stable,
                        clock=clock,
                    )
                )
                start = time.perf_counter()  # the next batch size pays no set-up again
        return out
    finally:
        model.train(was_training)


@contextmanager
def _runner(
    model: nn.Module, shape: tuple[int, int, int], target: str, threads: int | None
) -> Iterator[tuple[Callable[[int], Callable[[], Any]], int]]:
    """Yield (make_call(batch_size) -> a no-argument forward pass, intra-op threads used)."""
    previous = torch.get_num_threads()
    want = 1 if target == "cpu1" else (threads or previous)
    try:
        if target in ("cpu1", "cpu"):
            torch.set_num_threads(want)

            def make_call(b: int) -> Callable[[], Any]:
                x = _input(b, shape)
                return lambda: model(x)

            with torch.inference_mode():
                yield make_call, want
        elif target == "cuda":
            gpu = copy.deepcopy(model).to("cuda", dtype=torch.float32)

            def make_cuda_call(b: int) -> Callable[[], Any]:
                x = _input(b, shape).to("cuda")
                return lambda: gpu(x)

            with torch.inference_mode():
                yield make_cuda_call, previous
            del gpu
            torch.cuda.empty_cache()
        else:
            with tempfile.TemporaryDirectory(prefix="lrunet-latency-") as tmp:
                yield (
                    _ort_runner(model, shape, Path(tmp) / "model.onnx", threads or 1),
                    (threads or 1),
                )
    finally:
        torch.set_num_threads(previous)


def _ort_runner(
    model: nn.Module, shape: tuple[int, int, int], path: Path, threads: int
) -> Callable[[int], Callable[[], Any]]:
    import onnxruntime as ort  # only this target needs it

    from lrunet.onnx_file import ONNX_INPUT, ONNX_OUTPUT, write_onnx

    with torch.no_grad():
        write_onnx(model, _input(2, shape), path)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def make_call(b: int) -> Callable[[], Any]:
        feed = {ONNX_INPUT: _input(b, shape).numpy()}
        return lambda: session.run([ONNX_OUTPUT], feed)

    return make_call


def _input(batch: int, shape: tuple[int, int, int]) -> torch.Tensor:
    """A contiguous float32 NCHW batch in [0, 1), from a generator of its own (the caller's
    random stream is left alone)."""
    g = torch.Generator().manual_seed(batch)
    return torch.rand(batch, *shape, dtype=torch.float32, generator=g).contiguous()


def _no_sync() -> None:
    pass


def _time_calls(
    call: Callable[[], Any],
    sync: Callable[[], None],
    max_seconds: float,
    clock: Callable[[], float] = time.perf_counter,
    wall: Callable[[], float] | None = None,
) -> tuple[float, float, int, int, bool]:
    """(median s per call, IQR s, samples, calls per sample, stable) by the stopping rule;
    `sync()` waits for queued device work (torch.cuda.synchronize on cuda). `clock` times the
    calls, `wall` (default: `clock`) the warm-up and the cap; the tests drive the rule with a
    clock of their own."""
    wall = wall or clock
    start = wall()
    warm: list[float] = []
    while len(warm) < WARMUP_CALLS or wall() - start < WARMUP_SECONDS:
        sync()
        t = clock()
        call()
        sync()
        warm.append(clock() - t)
        if wall() - start > max_seconds / 4 and len(warm) >= 2:
            break
    per_call = statistics.median(warm[1:]) if len(warm) > 1 else warm[0]
    calls = max(1, math.ceil(SAMPLE_SECONDS / max(per_call, 1e-9)))
    times: list[float] = []
    medians: list[float] = []
    stable = False
    while True:
        sync()
        t = clock()
        for _ in range(calls):
            call()
        sync()
        times.append((clock() - t) / calls)
        if len(times) >= MIN_SAMPLES and len(times) % BLOCK == 0:
            medians.append(statistics.median(times))
            recent = medians[-(STABLE_BLOCKS + 1) :]
            if len(recent) == STABLE_BLOCKS + 1 and all(
                abs(b - a) <= TOLERANCE * a for a, b in zip(recent, recent[1:])
            ):
                stable = True
                break
        if wall() - start > max_seconds:
            break
    return statistics.median(times), _iqr(times), len(times), calls, stable


def _iqr(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[2] - q[0]


# --- argument checks (before anything is built or timed) ---------------------------------------


def _check_target(target: str) -> None:
    if target not in TARGETS:
        raise ValueError(f"unknown latency target {target!r}; choose one of {', '.join(TARGETS)}")


def _check_clock(clock: str, target: str, threads: int | None) -> None:
    if clock not in CLOCKS:
        raise ValueError(f"unknown latency clock {clock!r}; choose one of {', '.join(CLOCKS)}")
    one_thread = target == "cpu1" or (
        target in ("cpu", "ort-cpu")
        and (threads == 1 or (threads is None and (target == "ort-cpu" or _torch_threads() == 1)))
    )
    if clock == "cpu" and not one_thread:
        raise ValueError(
            f"clock 'cpu' times the calling thread only: use it with cpu1, or cpu / ort-cpu "
            f"with threads=1 (target {target!r}, threads {threads!r}); or clock 'wall'"
        )


def _torch_threads() -> int:
    return torch.get_num_threads()


def _check_batch_size(b: int) -> None:
    if isinstance(b, bool) or not isinstance(b, int) or b < 1:
        raise ValueError(f"batch_size: expected an integer >= 1, got {b!r}")


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    if (
        len(tuple(shape)) != 3
        or any(isinstance(v, bool) or not isinstance(v, int) for v in shape)
        or min(shape) < 1
    ):
        raise ValueError(
            f"input_shape: expected (channels, height, width) of positive integers, got {shape!r}"
        )
    return tuple(shape)  # type: ignore[return-value]
