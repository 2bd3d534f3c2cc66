"""Images/s of one LruNet training step: the project's model against a straightforward restatement.

One step is forward, cross-entropy, backward and an SGD step (momentum 0.9, weight decay 5e-4, the
recipe's optimizer) on a fixed random CIFAR-shaped batch. The project's model
(`lrunet.model.LruNet`) runs the way the trainer runs it on this device
(`lrunet.model.prepare_for_device`: channels_last, the CPU fast path of `lrunet.fast`); the
yardstick is `benchmarks.reference_net.ReferenceLruNet`, the paper's ops in the paper's order on
contiguous tensors. Before timing, the weights of one are copied into the other and their outputs
and gradients are compared (train and eval mode); the run stops if they differ.

Timing: warm-up steps, then `--steps` timed steps per model, interleaved step by step (A B C A B
C ...) so that every model sees the same load; each figure is batch / median step time, with the
interquartile range of the per-step rates beside it. Ratios from one run are what to compare: on a
shared machine a load spike slows single steps, which the median discards.

    python benchmarks/train_step.py              # 1-, 8-, 14-LruNet-1x, batch 128, 2 threads
    python benchmarks/train_step.py --quick --models 14
    python benchmarks/train_step.py --ablations  # also channels_last alone, fast path on NCHW
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.reference_net import ReferenceLruNet  # noqa: E402
from lrunet.config import LruNetConfig  # noqa: E402
from lrunet.model import LruNet, memory_format_for, prepare_for_device  # noqa: E402


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


class Contender:
    """A model, the layout its inputs take, and its own optimizer."""

    def __init__(self, label: str, model: nn.Module, memory_format: torch.memory_format) -> None:
        self.label = label
        self.model = model.to(memory_format=memory_format).train()
        self.memory_format = memory_format
        self.opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        self.times: list[float] = []

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x = x.contiguous(memory_format=self.memory_format)  # the trainer converts every batch
        self.opt.zero_grad(set_to_none=True)
        F.cross_entropy(self.model(x), y).backward()
        self.opt.step()

    def timed_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        start = time.perf_counter()
        self.step(x, y)
        self.times.append(time.perf_counter() - start)

    def rate(self, batch: int) -> tuple[float, float, float]:
        """Images/s at the median step time, and at the 75th and 25th percentile times."""
        q1, median, q3 = statistics.quantiles(self.times, n=4, method="inclusive")
        return batch / median, batch / q3, batch / q1


def plain_path(model: LruNet) -> LruNet:
    """The same LruNet with its blocks on the reference pass (ablation: channels_last alone)."""
    for s in range(1, 5):
        block = getattr(model, f"stage{s}")
        block.forward = block.forward_plain
    return model


def check_same_function(ref: nn.Module, fast: nn.Module, cfg: LruNetConfig) -> str:
    """Outputs and all parameter gradients of `fast` equal `ref`'s (train and eval mode)."""
    fmt = memory_format_for("cpu")
    torch.manual_seed(123)
    x = torch.rand(16, cfg.in_channels, cfg.input_size, cfg.input_size)
    report = []
    for train in (True, False):
        results = []
        for model, inp in ((ref, x), (fast, x.contiguous(memory_format=fmt))):
            model.train(train)
            model.zero_grad(set_to_none=True)
            torch.manual_seed(7)  # the same dropout mask
            out = model(inp)
            out.pow(2).mean().backward()
            grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
            results.append((out.detach(), grads))
        (out_r, g_r), (out_f, g_f) = results
        out_err = ((out_r - out_f).abs().max() / out_r.abs().max()).item()
        g_scale = max(g.abs().max().item() for g in g_r.values())
        g_err = max((g_r[n] - g_f[n]).abs().max().item() for n in g_r) / g_scale
        mode = "train" if train else "eval"
        # float32: ~1e-6 for outputs; gradients ~1e-3 at most (a pre-activation within rounding
        # of zero can fall on the other side of a ReLU); a wrong channel gives ~1
        if out_err > 1e-4 or g_err > 1e-2 or g_r.keys() != g_f.keys():
            raise SystemExit(
                f"{cfg.name}: the models differ in {mode} mode (output {out_err:.1e}, "
                f"gradients {g_err:.1e} relative); not timing them"
            )
        report.append(f"{mode}: output {out_err:.1e}, gradients {g_err:.1e}")
    ref.zero_grad(set_to_none=True)
    fast.zero_grad(set_to_none=True)
    return "; ".join(report)


def contenders(cfg: LruNetConfig, ablations: bool) -> list[Contender]:
    torch.manual_seed(0)
    ref = ReferenceLruNet(cfg)
    fast = LruNet(cfg)
    fast.load_state_dict(ref.state_dict(), strict=True)
    fast = prepare_for_device(fast, "cpu")
    print(f"  same function: {check_same_function(ref, fast, cfg)}")
    out = [
        Contender("reference (eager, NCHW)", ref, torch.contiguous_format),
        Contender("LruNet (fast path, channels_last)", fast, memory_format_for("cpu")),
    ]
    if ablations:
        variants: list[tuple[str, Callable[[], nn.Module], torch.memory_format]] = [
            ("reference, channels_last", lambda: ReferenceLruNet(cfg), torch.channels_last),
            ("LruNet fast path, NCHW", lambda: LruNet(cfg), torch.contiguous_format),
            (
                "LruNet plain path, channels_last",
                lambda: plain_path(LruNet(cfg)),
                torch.channels_last,
            ),
        ]
        for label, make, fmt in variants:
            model = make()
            model.load_state_dict(ref.state_dict())
            out.append(Contender(label, model, fmt))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="1,8,14", help="reuse counts N of N-LruNet-1x (1,8,14)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per model")
    p.add_argument("--steps", type=int, default=10, help="timed steps per model")
    p.add_argument("--quick", action="store_true", help="1 warm-up step, 3 timed steps")
    p.add_argument(
        "--ablations",
        action="store_true",
        help="also time channels_last alone, the fast path on NCHW, the plain path on NHWC",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.warmup, args.steps = 1, 3
    try:
        reuses = [int(n) for n in args.models.split(",")]
    except ValueError:
        p.error(f"--models: expected comma-separated integers, got {args.models!r}")

    torch.set_num_threads(args.threads)
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, mkldnn {torch.backends.mkldnn.is_available()}"
    )
    print(
        f"batch {args.batch}, 3x32x32, warm-up {args.warmup}, {args.steps} timed steps per "
        f"model (median), load average at start: {load()}"
    )
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (args.batch,), generator=gen)
    summary = []
    for n in reuses:
        cfg = LruNetConfig(reuse=n)
        print(f"{cfg.name}:")
        models = contenders(cfg, args.ablations)
        for m in models:
            for _ in range(args.warmup):
                m.step(x, y)
        for _ in range(args.steps):
            for m in models:
                m.timed_step(x, y)
        base = models[0].rate(args.batch)[0]
        for m in models:
            rate, lo, hi = m.rate(args.batch)
            print(
                f"  {m.label:36s} {rate:8.1f} images/s (IQR {lo:.1f}-{hi:.1f})  "
                f"{rate / base:5.2f}x"
            )
        summary.append((cfg.name, base, models[1].rate(args.batch)[0]))
    print(f"load average at end: {load()}")
    print("\nmodel           reference img/s   LruNet img/s   speed-up")
    for name, base, fast in summary:
        print(f"{name:15s} {base:15.1f} {fast:14.1f} {fast / base:9.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
