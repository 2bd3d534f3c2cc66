"""Images/s of one training step: the project's model against a straightforward restatement.

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

Other families (`--models` also takes architecture names): the project's model is
`lrunet.registry.build_model(name)` run as the trainer runs it (`prepare_for_device(model, "cpu")`,
channels_last batches); the yardstick is a straightforward eager restatement on NCHW tensors
(`benchmarks.reference_dacnn.ReferenceDacnn` for DACNN, `benchmarks.reference_baselines.
ReferenceMobileNetV2` for MobileNetV2), its weights copied into the project's model through a
state-dict key map. They are checked twice before timing, outputs and every gradient in train and
eval mode: in float64 (the same function: ~1e-13 relative) and in float32 as timed (rounding only:
the two layouts' kernels round differently, which train-mode BN amplifies in the first layers'
gradients up to ~2e-2 relative in the deep nets; a wrong op or channel gives ~1). DACNN ResNets
(0.5-1.3 GMACs per image) default to batch 32, everything else to 128; `--batch` sets all.
`--ablations` adds, for these, the layouts swapped and an eval-forward group (the DACNN folds its
conv -> BN pairs in eval mode; "module by module" is that net without the folding).

`--cpu-time --threads 1` times by CPU time (nearly immune to other jobs' load); `--keep-heap` makes
glibc malloc keep freed memory for the whole process (see `keep_heap`), to measure what fresh
pages cost every step.

    python benchmarks/train_step.py              # 1-, 8-, 14-LruNet-1x, batch 128, 2 threads
    python benchmarks/train_step.py --quick --models 14
    python benchmarks/train_step.py --ablations  # also channels_last alone, fast path on NCHW
    python benchmarks/train_step.py --models 2.2.2.2-DACNN-res128,2.2.3.3.3-DACNN-vgg128-relubn-b,\
2.2.2.2-DACNN-res64d-rot-b,MobileNetV2-0.25x     # DACNN and a Table 7 baseline, ~2-10 min
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import cpu_name, load  # noqa: E402
from benchmarks.reference_net import ReferenceLruNet  # noqa: E402
from lrunet import registry  # noqa: E402
from lrunet.config import LruNetConfig  # noqa: E402
from lrunet.model import LruNet, memory_format_for, prepare_for_device  # noqa: E402

DACNN_RES_BATCH = 32  # default batch of DACNN ResNets (0.5-1.3 GMACs per image)


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

    clock = staticmethod(time.perf_counter)  # `--cpu-time`: time.process_time

    def timed_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        start = self.clock()
        self.step(x, y)
        self.times.append(self.clock() - start)

    def rate(self, batch: int) -> tuple[float, float, float]:
        """Images/s at the median step time, and at the 75th and 25th percentile times."""
        q1, median, q3 = statistics.quantiles(self.times, n=4, method="inclusive")
        return batch / median, batch / q3, batch / q1


class EvalContender(Contender):
    """Inference: one eval-mode forward under no_grad (running statistics; the DACNN folds its
    conv -> BN pairs there)."""

    def __init__(self, label: str, model: nn.Module, memory_format: torch.memory_format) -> None:
        super().__init__(label, model, memory_format)
        self.model.eval()

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.no_grad():
            self.model(x.contiguous(memory_format=self.memory_format))


def module_by_module(model: nn.Module) -> nn.Module:
    """`model` with every `forward_plain` in place of its forward (ablation: DACNN without the
    eval-mode BN folding; what `lrunet.counting.count_by_hooks` runs)."""
    for m in model.modules():
        if hasattr(m, "forward_plain"):
            m.forward = m.forward_plain
    return model


def keep_heap() -> str:
    """glibc malloc: serve every allocation from the heap and never hand it back (`mallopt`), so
    that the large activations of a step reuse pages instead of mmap-ing and page-faulting fresh
    ones each step. Process-wide: it speeds up every contender."""
    import ctypes

    m_trim_threshold, m_mmap_max = -1, -4
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(m_mmap_max, 0) and libc.mallopt(m_trim_threshold, 2**31 - 1)
    except (OSError, AttributeError):
        ok = 0
    return "on (mallopt M_MMAP_MAX=0, M_TRIM_THRESHOLD=2^31-1)" if ok else "unavailable"


def plain_path(model: LruNet) -> LruNet:
    """The same LruNet with its blocks on the reference pass (ablation: channels_last alone)."""
    for s in range(1, 5):
        block = getattr(model, f"stage{s}")
        block.forward = block.forward_plain
    return model


def check_same_function(
    ref: nn.Module,
    fast: nn.Module,
    label: str,
    shape: tuple[int, int, int],
    names: dict[str, str] | None = None,
    dtype: torch.dtype = torch.float32,
    tol: tuple[float, float] = (1e-4, 1e-2),
    batch: int = 16,
) -> str:
    """Outputs and all parameter gradients of `fast` equal `ref`'s (train and eval mode).

    `shape` is one input's (channels, height, width); `names` maps `ref`'s parameter names to
    `fast`'s (the identity when omitted). Another `dtype` than float32 runs on copies of the
    models in that dtype; `tol` is the largest relative difference allowed for the outputs and
    for the gradients."""
    fmt = memory_format_for("cpu")
    if dtype != torch.float32:
        ref, fast = copy.deepcopy(ref).to(dtype), copy.deepcopy(fast).to(dtype)
    torch.manual_seed(123)
    x = torch.rand(batch, *shape, dtype=dtype)
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
        if names is not None:
            g_r = {names[n]: g for n, g in g_r.items()}
        out_err = ((out_r - out_f).abs().max() / out_r.abs().max()).item()
        g_scale = max(g.abs().max().item() for g in g_r.values())
        same_keys = g_r.keys() == g_f.keys()
        g_err = (
            max((g_r[n] - g_f[n]).abs().max().item() for n in g_r) / g_scale if same_keys else 1
        )
        mode = "train" if train else "eval"
        # float32: ~1e-6 for outputs; gradients ~1e-3 at most (a pre-activation within rounding
        # of zero can fall on the other side of a ReLU); a wrong channel gives ~1
        if out_err > tol[0] or g_err > tol[1] or not same_keys:
            raise SystemExit(
                f"{label}: the models differ in {mode} mode (output {out_err:.1e}, "
                f"gradients {g_err:.1e} relative"
                + ("" if same_keys else ", different parameters")
                + "); not timing them"
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
    shape = (cfg.in_channels, cfg.input_size, cfg.input_size)
    print(f"  same function: {check_same_function(ref, fast, cfg.name, shape)}")
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


def reference_for(cfg) -> tuple[nn.Module, dict[str, str]]:
    """The straightforward restatement of `cfg`'s network and its state-dict key map (reference
    key -> project key)."""
    family = registry.family_of(cfg).name
    if family == "dacnn":
        from benchmarks.reference_dacnn import ReferenceDacnn

        ref = ReferenceDacnn(cfg)
        return ref, ref.key_map
    if family == "mobilenetv2":
        from benchmarks.reference_baselines import ReferenceMobileNetV2

        ref = ReferenceMobileNetV2(cfg)
        return ref, {k: k for k in ref.state_dict()}
    raise SystemExit(
        f"{cfg.name}: no straightforward restatement of family {family!r} to time it against "
        "(LruNet reuse counts, DACNN and MobileNetV2 names have one)"
    )


def family_contenders(cfg, ablations: bool) -> tuple[list[Contender], list[Contender]]:
    """The project's model as the trainer runs it against the eager restatement on NCHW; with
    `ablations`, also the layouts swapped, and an eval-forward group (the reference, the project,
    the project module by module)."""
    torch.manual_seed(0)
    ref, key_map = reference_for(cfg)

    def project() -> nn.Module:
        model = registry.build_model(cfg)
        model.load_state_dict({key_map[k]: v for k, v in ref.state_dict().items()}, strict=True)
        return model

    fast = prepare_for_device(project(), "cpu")
    shape = (cfg.in_channels, cfg.input_size, cfg.input_size)
    names = {n: key_map[n] for n, _ in ref.named_parameters()}
    # float64 (batch 8): the same function to ~1e-13. float32 (batch 16, as timed): the layouts'
    # kernels round differently, and a deep net with train-mode BN amplifies it in the gradients
    # of its first layers (MobileNetV2: ~1e-2 relative, 1e-13 in float64); a wrong op gives ~1
    same = check_same_function(ref, fast, cfg.name, shape, names, torch.float64, (1e-9, 1e-9), 8)
    print(f"  same function, float64: {same}")
    same = check_same_function(ref, fast, cfg.name, shape, names, tol=(1e-3, 5e-2))
    print(f"  float32 rounding:       {same}")
    out = [
        Contender("reference (eager, NCHW)", ref, torch.contiguous_format),
        Contender("project (channels_last)", fast, memory_format_for("cpu")),
    ]
    if ablations:
        ref_cl, _ = reference_for(cfg)
        ref_cl.load_state_dict(ref.state_dict())
        out.append(Contender("reference, channels_last", ref_cl, torch.channels_last))
        out.append(Contender("project, NCHW", project(), torch.contiguous_format))
        # eval: copies of the trained-for-one-check models (non-trivial running statistics)
        fmt = memory_format_for("cpu")
        evals = [
            EvalContender("reference (eager, NCHW)", copy.deepcopy(ref), torch.contiguous_format),
            EvalContender("project (channels_last)", copy.deepcopy(fast), fmt),
        ]
        if any(hasattr(m, "forward_plain") for m in fast.modules()):
            plain = module_by_module(copy.deepcopy(fast))
            evals.append(EvalContender("project, module by module", plain, fmt))
        return out, evals
    return out, []


def default_batch(cfg) -> int:
    if registry.family_of(cfg).name == "dacnn" and cfg.body == "res":
        return DACNN_RES_BATCH
    return 128


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--models",
        default="1,8,14",
        help="comma-separated: reuse counts N of N-LruNet-1x, or architecture names of other "
        "families (DACNN, MobileNetV2), e.g. 14,2.2.2.2-DACNN-res128,MobileNetV2-0.25x",
    )
    p.add_argument(
        "--batch",
        type=int,
        default=None,
        help=f"batch size (default 128; {DACNN_RES_BATCH} for DACNN ResNets)",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per model")
    p.add_argument("--steps", type=int, default=10, help="timed steps per model")
    p.add_argument("--quick", action="store_true", help="1 warm-up step, 3 timed steps")
    p.add_argument(
        "--cpu-time",
        action="store_true",
        help="time steps by the process's CPU time instead of wall time (with --threads 1: "
        "images per CPU-second, nearly immune to other jobs' load)",
    )
    p.add_argument(
        "--keep-heap",
        action="store_true",
        help="glibc malloc keeps freed memory (no mmap/page faults per step; all contenders)",
    )
    p.add_argument(
        "--ablations",
        action="store_true",
        help="also time channels_last alone, the fast path on NCHW, the plain path on NHWC "
        "(other families: the reference on channels_last, the project on NCHW)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.warmup, args.steps = 1, 3
    models: list[LruNetConfig | object] = []
    for item in (m.strip() for m in args.models.split(",")):
        if item.isdigit():
            models.append(LruNetConfig(reuse=int(item)))
            continue
        try:
            models.append(registry.parse_name(item))
        except ValueError as e:
            p.error(f"--models: {item!r} is neither a reuse count nor an architecture name: {e}")

    torch.set_num_threads(args.threads)
    heap = keep_heap() if args.keep_heap else None
    if args.cpu_time:
        Contender.clock = staticmethod(time.process_time)
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, mkldnn {torch.backends.mkldnn.is_available()}"
    )
    batches = {args.batch or default_batch(cfg) for cfg in models}
    batch_text = "/".join(map(str, sorted(batches, reverse=True)))
    print(
        f"batch {batch_text}, 3x32x32, warm-up {args.warmup}, {args.steps} timed steps per "
        f"model (median), load average at start: {load()}"
    )
    if heap:
        print(f"heap kept: {heap}")
    if args.cpu_time:
        print("clock: process CPU time (images per CPU-second)")
    summary = []
    for cfg in models:
        batch = args.batch or default_batch(cfg)
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(batch, cfg.in_channels, cfg.input_size, cfg.input_size, generator=gen)
        y = torch.randint(0, cfg.num_classes, (batch,), generator=gen)
        print(f"{cfg.name}:" if len(batches) == 1 else f"{cfg.name} (batch {batch}):")
        if isinstance(cfg, LruNetConfig):
            groups = [contenders(cfg, args.ablations)]
        else:
            groups = [g for g in family_contenders(cfg, args.ablations) if g]
        for i, contestants in enumerate(groups):
            if i:
                print("  eval forward (no_grad, running statistics):")
            for m in contestants:
                for _ in range(args.warmup):
                    m.step(x, y)
            for _ in range(args.steps):
                for m in contestants:
                    m.timed_step(x, y)
            base = contestants[0].rate(batch)[0]
            for m in contestants:
                rate, lo, hi = m.rate(batch)
                print(
                    f"  {m.label:36s} {rate:8.1f} images/s (IQR {lo:.1f}-{hi:.1f})  "
                    f"{rate / base:5.2f}x"
                )
            if not i:
                summary.append((cfg.name, base, contestants[1].rate(batch)[0]))
        del groups
    print(f"load average at end: {load()}")
    width = max(15, *(len(name) for name, *_ in summary))
    label = "LruNet" if all(isinstance(c, LruNetConfig) for c in models) else "project"
    print(f"\n{'model':{width}s} reference img/s {label:>8s} img/s   speed-up")
    for name, base, fast in summary:
        print(f"{name:{width}s} {base:15.1f} {fast:14.1f} {fast / base:9.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
