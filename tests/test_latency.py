"""lrunet.latency: every target measures a real model, the stopping rule behaves, the memo holds,
and `describe --latency` prints the keys. The machine running these is shared and loaded, so no
assertion here is a tight timing: lower bounds from busy-waits, generous ratios otherwise."""

from __future__ import annotations

import json
import math
import random
import time

import pytest
import torch
from torch import nn

import launch
from lrunet import latency as L
from lrunet.datasets import DATASETS
from lrunet.registry import parse_name

SHAPE = (3, 16, 16)


def tiny() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )


class Spin(nn.Module):
    """A forward pass that takes `ms` of wall time, however loaded the machine is."""

    def __init__(self, ms: float) -> None:
        super().__init__()
        self.seconds = ms / 1e3
        self.lin = nn.Linear(SHAPE[0], 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        end = time.perf_counter() + self.seconds
        while time.perf_counter() < end:
            pass
        return self.lin(x.mean((2, 3)))


def conv_net() -> nn.Module:
    """About 7 MMACs per image at 3x32x32: a call is real work, not dispatch."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )


# ort-cpu is timed on the CPU clock here (its wall clock: the describe test below), which also
# checks that ONNX Runtime at one thread computes on the calling thread
@pytest.mark.parametrize("target,clock", [("cpu1", "wall"), ("cpu", "wall"), ("ort-cpu", "cpu")])
def test_every_cpu_target_measures_a_model_and_restores_its_state(target, clock):
    model = conv_net().train()
    threads = torch.get_num_threads()
    got = L.measure_latency(model, (3, 32, 32), target, 2, max_seconds=3.0, clock=clock)
    assert got.target == target and got.batch_size == 2 and got.clock == clock
    for v in (got.median_ms, got.seconds):
        assert math.isfinite(v) and v > 0
    assert math.isfinite(got.iqr_ms) and got.iqr_ms >= 0
    assert got.samples >= 1 and got.calls_per_sample >= 1
    assert got.threads == (threads if target == "cpu" else 1)
    assert model.training, "the model's mode is restored"
    assert torch.get_num_threads() == threads, "torch's thread count is restored"
    if clock == "cpu":  # work done on another thread would cost this one microseconds
        torch1 = L.measure_latency(model, (3, 32, 32), "cpu1", 2, max_seconds=3.0, clock="cpu")
        assert got.median_ms > 0.1 * torch1.median_ms, (got, torch1)


def test_threads_are_passed_to_the_cpu_target():
    assert L.measure_latency(tiny(), SHAPE, "cpu", threads=1, max_seconds=1.0).threads == 1


def test_cuda_target_is_measured_or_refused_clearly():
    if torch.cuda.is_available():
        got = L.measure_latency(tiny(), SHAPE, "cuda", 8, max_seconds=3.0)
        assert got.median_ms > 0 and got.target == "cuda"
    else:
        with pytest.raises(ValueError, match="CUDA is not available.*cpu1, cpu or ort-cpu"):
            L.measure_latency(tiny(), SHAPE, "cuda")


def test_bad_arguments_are_refused_before_anything_is_timed():
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="unknown latency target 'gpu'; choose one of cpu1, cpu"):
        L.measure_latency(Spin(500), SHAPE, "gpu")
    cfg = parse_name("1-LruNet-0.25x", **DATASETS["cifar10"].geometry)
    with pytest.raises(ValueError, match="ort-cpu, cuda"):
        L.measure_config(cfg, "onnx", 1)
    with pytest.raises(ValueError, match="batch_size"):
        L.measure_latency(Spin(500), SHAPE, "cpu1", 0)
    with pytest.raises(ValueError, match="input_shape"):
        L.measure_latency(Spin(500), (16, 16), "cpu1")
    with pytest.raises(ValueError, match="threads"):
        L.measure_latency(Spin(500), SHAPE, "cpu", threads=0)
    assert time.perf_counter() - t0 < 0.4, "nothing was run (a call of Spin(500) takes 0.5 s)"


class Clock:
    """A clock that moves only when a call says how long it took: the stopping rule on exact
    numbers, whatever the machine's load."""

    def __init__(self, durations) -> None:
        self.now = 0.0
        self.durations = iter(durations)

    def __call__(self) -> float:
        return self.now

    def call(self) -> None:
        self.now += next(self.durations)


def _rule(durations, max_seconds: float = 10.0):
    clock = Clock(durations)
    return L._time_calls(clock.call, lambda: None, max_seconds, clock)


def test_constant_calls_stop_as_soon_as_the_rule_allows_with_no_spread():
    median, iqr, samples, calls, stable = _rule(iter(lambda: 0.002, None))
    assert median == pytest.approx(0.002) and iqr == pytest.approx(0.0, abs=1e-12)
    assert calls == 3  # ceil(5 ms / 2 ms): a sample lasts about SAMPLE_SECONDS
    # medians after 30, 40 and 50 samples agree: two stable blocks after the minimum
    assert stable and samples == L.MIN_SAMPLES + L.STABLE_BLOCKS * L.BLOCK


def test_noisy_calls_give_the_median_and_a_spread():
    rng = random.Random(0)
    median, iqr, samples, calls, stable = _rule(iter(lambda: rng.uniform(1e-3, 3e-3), None))
    assert stable and samples >= L.MIN_SAMPLES
    assert median == pytest.approx(2e-3, rel=0.1)
    assert 0 < iqr < 1e-3  # a sample averages `calls` draws of U(1, 3) ms (IQR of one: 1 ms)


def test_a_drifting_time_is_never_stable_and_the_cap_ends_it():
    steps = (1e-3 * 1.01**i for i in range(10**6))  # each call 1 % slower: the median moves
    median, iqr, samples, calls, stable = _rule(steps, max_seconds=2.0)
    assert not stable and iqr > 0
    assert samples > L.MIN_SAMPLES  # the cap, not the minimum, ended it


def test_a_real_busy_wait_is_timed_at_least_as_long_as_it_is():
    got = L.measure_latency(Spin(2.0), SHAPE, "cpu1", max_seconds=2.0)
    assert got.median_ms >= 2.0  # a busy-wait cannot be shorter
    assert got.median_ms < 40.0, got  # loaded machine: the median only has to be sane
    assert got.iqr_ms >= 0 and got.samples >= 1


def test_the_time_cap_ends_an_unfinished_measurement():
    got = L.measure_latency(Spin(60.0), SHAPE, "cpu1", max_seconds=0.5)
    assert not got.stable and got.samples < L.MIN_SAMPLES
    assert got.seconds < 0.5 + 3 * 0.06 + 0.5, got  # the cap, the sample running then, slack
    assert got.median_ms >= 60.0


def test_two_runs_of_a_cheap_model_agree_within_a_generous_bound():
    model = tiny()
    a = L.measure_latency(model, SHAPE, "cpu1", max_seconds=2.0).median_ms
    b = L.measure_latency(model, SHAPE, "cpu1", max_seconds=2.0).median_ms
    assert max(a, b) / min(a, b) < 3.0, (a, b)


def test_measure_config_returns_the_keys_and_memoises_per_architecture():
    cfg = parse_name("1-LruNet-0.25x", **DATASETS["fashionmnist"].geometry)
    got = L.measure_config(cfg, "cpu1", 4)
    assert tuple(got) == L.LATENCY_KEYS
    assert all(math.isfinite(v) and v > 0 for k, v in got.items() if "iqr" not in k)
    assert got["latency_seconds"] > 0
    t0 = time.perf_counter()
    assert L.measure_config(cfg, "cpu1", 4) is got
    assert time.perf_counter() - t0 < 0.05, "the second call measured again"
    assert L.measure_config(cfg, "cpu1", 4, threads=1) is not got  # another key, measured


@pytest.mark.parametrize("target", ["cpu1", "ort-cpu"])
def test_describe_latency_json_prints_the_latency_of_the_target(target, capsys):
    argv = ["describe", "1-LruNet-0.25x", "--dataset", "fashionmnist", "--latency", "--json"]
    assert launch.main([*argv, "--target", target, "--batch-size", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["name"] == "1-LruNet-0.25x" and out["params"] > 0
    assert out["latency_target"] == target and out["latency_batch_size"] == 2
    assert out["latency_clock"] == "wall"
    for key in L.LATENCY_KEYS:
        assert math.isfinite(out[key]) and out[key] >= 0
    assert out["latency_ms"] > 0 and out["latency_batch_ms"] > 0


def test_describe_latency_text_and_errors(capsys):
    argv = ["describe", "1-LruNet-0.25x", "--dataset", "fashionmnist", "--latency"]
    assert launch.main(argv) == 0
    assert "latency " in capsys.readouterr().out
    assert launch.main(["describe", "1-LruNet-0.25x", "--latency", "--target", "tpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "'tpu' is not a latency target; choose one of cpu1, cpu, ort-cpu, cuda" in err
    assert len(err.splitlines()) == 1
    assert launch.main(["describe", "1-LruNet-0.25x", "--target", "cpu"]) == 2
    assert "need --latency" in capsys.readouterr().err


def test_the_cpu_clock_times_a_busy_wait_and_refuses_threaded_targets():
    spin = L.measure_latency(Spin(2.0), SHAPE, "cpu1", max_seconds=2.0, clock="cpu")
    assert spin.clock == "cpu" and 0 < spin.median_ms <= 2.5  # CPU time of a 2 ms wall spin
    for target, threads in (("cpu", 2), ("ort-cpu", 2), ("cuda", None)):
        with pytest.raises(ValueError, match="clock 'cpu' times the calling thread only"):
            L.measure_latency(tiny(), SHAPE, target, threads=threads, clock="cpu")
    with pytest.raises(ValueError, match="unknown latency clock 'gpu'; choose one of wall, cpu"):
        L.measure_latency(tiny(), SHAPE, "cpu1", clock="gpu")


def test_measuring_leaves_the_callers_random_stream_alone():
    cfg = parse_name("1-LruNet-0.25x", **DATASETS["fashionmnist"].geometry)
    model = tiny()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    L.measure_config(cfg, "cpu1", 1, clock="cpu")  # builds a model, draws inputs
    L.measure_latency(model, SHAPE, "cpu1", max_seconds=0.5)
    assert torch.equal(torch.rand(3), expected), "a trial's seeded stream moved"
