"""GPU check: is the CUDA training path right, how fast is it, and how does it share one GPU.

The trainer's GPU path (`lrunet.fast.prepare_for_device`, `memory_format_for`, `autocast_for`;
`trainables.loop.Trainer`: SGD momentum 0.9, weight decay 5e-4, cross-entropy on `out.float()`,
a GradScaler under fp16; cuDNN autotuning) has not run on a GPU yet. This script checks it in
four sections, prints what it measures and writes it all to a JSON file (`--out`); planned for
well under 5 minutes on one GPU (not yet timed on one: none was available where it was written).

1. correctness: one training step (forward, cross-entropy, backward) of each model on one fixed
   batch of 32, BatchNorm in training mode, dropout off (its mask is drawn differently per
   device and dtype), from the same weights: float64 and float32 (TF32 off) channels_last
   against contiguous, CUDA (the plain pass) against the CPU (its fast path), and bf16 and fp16
   autocast (fp16 through a GradScaler) against float32. Measured: the relative L2 error of the
   logits and of the flattened gradient vector, and the gradient's alignment; the tolerances
   are `TOLS`, with the reasons for each beside it.
2. speed: training and inference images/s of each model at batch 128 and 512 on random
   CIFAR-shaped data, the trainer's way (channels_last + autocast) and, for training, plain
   float32 NCHW (TF32 as torch's defaults leave it) beside it.
3. real data: one epoch of 8-LruNet-1x on a subset of a dataset if one is found (`--dataset`,
   `--data-dir`; Fashion-MNIST also in Debian's /usr/share/datasets/fashion-mnist), batches
   augmented on the device as the trainer does them; validation accuracy and images/s. Where
   it is not installed, its four idx .gz files (30 MB) copied into data/ (git-ignored, the
   default data folder) are found.
4. sharing: 1, 2 and 4 processes (torch.multiprocessing spawn) training 8-LruNet-1x at batch 128
   on the one GPU at once, as `--gpus-per-trial 0.5 / 0.25` would place trials: total and
   per-process images/s, and their ratios to one process.

Timing: warm-up steps, then `repeats` runs of `steps` steps, each run bracketed by
`torch.cuda.synchronize`; a figure is images / median run time, with the interquartile range of
the runs' rates, the contenders of one batch size interleaved run by run.

`--device cpu` exercises the script where there is no GPU (`tests/test_gpu_check.py`): one
thread (other jobs stall OpenMP's barriers), one small model per family, batch 8, a step or
three; bf16 is checked with CPU autocast, fp16 on the first model only (the CPU's fp16
convolutions are slow reference kernels), and the comparisons that need CUDA print "skipped:
no CUDA". Torch only: no Ray, MLflow or Optuna, at import or in use.

    python benchmarks/gpu_check.py --out gpu_check.json     # on a GPU machine
    python benchmarks/gpu_check.py --quick                   # fewer steps, a first look
    python benchmarks/gpu_check.py --device cpu --quick      # exercise the script (~30 s)

Exit status: 0 when every correctness check passed and no section raised, 1 otherwise, 2 for
bad arguments or `--device cuda` on a machine without CUDA.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import statistics
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lrunet.fast import autocast_for, memory_format_for, prepare_for_device  # noqa: E402
from lrunet.io import atomic_write_bytes, check_writable_dir, first_line  # noqa: E402
from lrunet.recipe import Recipe  # noqa: E402
from lrunet.registry import build_model, parse_name  # noqa: E402
from trainables.augment import augment_batch  # noqa: E402
from trainables.data import VAL_FRACTION, load_dataset, pad_for_eval, split_indices  # noqa: E402

CIFAR = {"num_classes": 10, "in_channels": 3, "input_size": 32}
FORBIDDEN = ("ray", "mlflow", "optuna")
SPEED_RECIPE = Recipe(lr=0.01)  # random labels: a small step keeps the weights tame
NO_CUDA = "no CUDA device: run on a GPU machine, or --device cpu to exercise the script"


@dataclass(frozen=True)
class Tol:
    """Largest relative L2 errors allowed (None: reported, not gated) and the range the gradient
    alignment <g, g_ref> / <g_ref, g_ref> must fall in (1: the reference's gradient)."""

    logits: float
    grads: float | None
    align: tuple[float, float]


# Why these numbers. Measured with these comparisons on the CPU (its fast path, CPU autocast for
# bf16 and fp16), batch 8 and 32, the five GPU models; the GPU's kernels round differently, but
# by the same amounts per operation:
# * float64: one function computed two ways differs by rounding only, 1e-13 to 1e-15; a wrong
#   channel, layout or op gives ~1. This is the strict check.
# * float32 (TF32 off): logits agree to 2e-6..5e-5 (MobileNetV2-0.25x the most: train-mode BN on
#   its near-constant channels amplifies rounding). Gradients are not smooth in the rounding: a
#   pre-activation within rounding of 0 lands on the other side of a ReLU and moves the whole
#   flattened gradient by ~1/sqrt(units in that layer): 1e-6..5e-3 for LruNet and DACNN, 2.2e-2
#   for MobileNetV2 (3.3e-2 at batch 256), alignment within 1.1e-3 of 1.
# * bf16 autocast (8-bit mantissa, rounding 4e-3): logits 6e-3 (DACNN) to 3.8e-2 (14-LruNet),
#   0.14 for MobileNetV2-0.25x. Gradients at initialisation are dominated by such ReLU flips and
#   by BN amplifying the rounding of near-constant channels: relative L2 0.1-0.4 for LruNet and
#   DACNN (alignment 0.92-0.99), 1.1 for MobileNetV2-0.25x (alignment 0.37-0.43). No L2 bound
#   under that of an unrelated vector (1.4) separates right from wrong there, so bf16 and fp16
#   gradients are gated by their alignment, which still catches a zero, sign-flipped, unrelated
#   or unscaled (GradScaler) gradient; section 3 shows whether autocast training learns.
# * fp16 autocast + GradScaler (10-bit mantissa, 8x finer): logits 5e-4..5e-3, MobileNetV2
#   2.5e-2; gradients 0.06-0.5 relative L2, MobileNetV2's alignment 0.83-0.85.
TOLS = {
    "float64": Tol(1e-9, 1e-9, (1 - 1e-9, 1 + 1e-9)),
    "float32": Tol(1e-3, 1e-1, (0.99, 1.01)),
    "bf16": Tol(0.25, None, (0.2, 1.5)),
    "fp16": Tol(0.1, None, (0.5, 1.5)),
}


@dataclass(frozen=True)
class Plan:
    """How much of everything to run: one for a GPU, one for `--quick`, one for the CPU."""

    models: tuple[str, ...]
    check_batch: int
    speed_batches: tuple[int, ...]
    warmup: int
    repeats: int
    steps: int
    real_model: str
    real_train: int
    real_val: int | None  # None: the whole validation split
    real_batch: int
    share_model: str
    share_procs: tuple[int, ...]
    share_batch: int
    share_warmup: int
    share_steps: int


MODELS = (
    "1-LruNet-1x",
    "8-LruNet-1x",
    "14-LruNet-1x",
    "2.2.2.2-DACNN-res128",
    "MobileNetV2-0.25x",
)
GPU_PLAN = Plan(
    models=MODELS,
    check_batch=32,
    speed_batches=(128, 512),
    warmup=10,
    repeats=5,
    steps=10,
    real_model="8-LruNet-1x",
    real_train=10_000,
    real_val=None,
    real_batch=128,
    share_model="8-LruNet-1x",
    share_procs=(1, 2, 4),
    share_batch=128,
    share_warmup=10,
    share_steps=100,
)
QUICK_PLAN = replace(
    GPU_PLAN, warmup=3, repeats=3, steps=3, real_train=2000, real_val=1000, share_steps=20
)
# The CPU exercises the script: one model per family (a small DACNN), tiny batches and counts.
CPU_PLAN = replace(
    GPU_PLAN,
    models=("MobileNetV2-0.25x", "1-LruNet-1x", "1.1.1.1-DACNN-res16"),
    check_batch=8,
    speed_batches=(8,),
    warmup=1,
    repeats=3,
    steps=1,
    real_model="1-LruNet-1x",
    real_train=256,
    real_val=256,
    real_batch=32,
    share_model="1-LruNet-1x",
    share_procs=(1, 2),
    share_batch=8,
    share_warmup=1,
    share_steps=3,
)


# --- helpers -------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype `autocast_for(device)` casts to (None: no autocast, the CPU)."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def dtype_name(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))


def build(name: str, geometry: dict[str, int] = CIFAR, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(parse_name(name, **geometry))


def rates(times: list[float], images: int) -> dict[str, float]:
    """Images/s at the median run time and at the quartile times (the IQR of the rates)."""
    if len(times) < 2:
        return {"images_per_s": images / times[0], "iqr": [images / times[0]] * 2}
    q1, median, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return {"images_per_s": images / median, "iqr": [images / q3, images / q1]}


@contextlib.contextmanager
def fp32_exact() -> Iterator[None]:
    """TF32 off (cuDNN convolutions, matmuls) for the duration: a float32 reference is float32."""
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def machine(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            sms=props.multi_processor_count,
            capability=f"{props.major}.{props.minor}",
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            bf16=torch.cuda.is_bf16_supported(),
        )
    info["autocast"] = dtype_name(amp_dtype(device))
    return info


def skipped(reason: str) -> dict[str, str]:
    print(f"  skipped: {reason}")
    return {"status": "skipped", "reason": reason}


# --- 1. correctness ------------------------------------------------------------------------------


def one_step(
    base: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    device: torch.device,
    dtype: torch.dtype,
    fmt: torch.memory_format,
    amp: torch.dtype | None = None,
) -> dict[str, Any]:
    """Logits and the flattened gradient (float64, on the CPU) of one training step of a copy of
    `base`; fp16 autocast goes through a GradScaler, its gradients unscaled as the optimizer
    would see them (a step with inf/NaN is skipped and retried at the lowered scale)."""
    model = copy.deepcopy(base).to(device=device, dtype=dtype, memory_format=fmt).train()
    xb = x.to(device=device, dtype=dtype).contiguous(memory_format=fmt)
    yb = y.to(device)
    cast = torch.autocast(device.type, dtype=amp) if amp else contextlib.nullcontext()
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # only for the scaler's unscale_
    extra: dict[str, Any] = {}
    for attempt in range(30):
        opt.zero_grad(set_to_none=True)
        with cast:
            out = model(xb)
            loss = F.cross_entropy(out.float(), yb)
        if scaler is None:
            loss.backward()
            break
        extra["grad_scale"] = scaler.get_scale()
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        if all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters()):
            extra["skipped_steps"] = attempt
            break
        scaler.step(opt)  # skipped: inf/NaN found
        scaler.update()  # lowers the scale
    grads = [
        (p.grad if p.grad is not None else torch.zeros_like(p)).detach().flatten()
        for p in model.parameters()
    ]
    return {
        "logits": out.detach().double().cpu(),
        "grads": torch.cat(grads).double().cpu(),
        "loss": loss.item(),
        **extra,
    }


def compare(run: dict[str, Any], ref: dict[str, Any], tol: Tol) -> dict[str, Any]:
    """Relative L2 errors and gradient alignment of `run` against `ref`; whether `tol` holds."""

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()

    g, g_ref = run["grads"], ref["grads"]
    finite = bool(torch.isfinite(run["logits"]).all() and torch.isfinite(g).all())
    out = {
        "logits_rel_l2": rel(run["logits"], ref["logits"]),
        "grad_rel_l2": rel(g, g_ref),
        "grad_alignment": ((g @ g_ref) / (g_ref @ g_ref).clamp_min(1e-300)).item(),
        "loss": run["loss"],
        "loss_ref": ref["loss"],
        "finite": finite,
        "tolerance": {
            "logits_rel_l2": tol.logits,
            "grad_rel_l2": tol.grads,
            "grad_alignment": list(tol.align),
        },
    }
    out.update({k: run[k] for k in ("grad_scale", "skipped_steps") if k in run})
    lo, hi = tol.align
    out["passed"] = bool(
        finite
        and out["logits_rel_l2"] <= tol.logits
        and (tol.grads is None or out["grad_rel_l2"] <= tol.grads)
        and lo <= out["grad_alignment"] <= hi
    )
    return out


def check_correctness(dev: torch.device, plan: Plan) -> dict[str, Any]:
    cpu, cuda = torch.device("cpu"), dev.type == "cuda"
    cl, nchw = torch.channels_last, torch.contiguous_format
    checks: list[dict[str, Any]] = []
    skips: list[dict[str, str]] = []
    amps = [("bf16", torch.bfloat16), ("fp16", torch.float16)]
    print(
        "  relative L2 errors of the logits and of the flattened gradient (tolerance), gradient "
        "alignment <g, g_ref> / <g_ref, g_ref> (range)"
    )
    for i, name in enumerate(plan.models):
        base = build(name)
        for m in base.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0  # the mask is drawn differently per device and dtype
        gen = torch.Generator().manual_seed(1)
        x = torch.rand(plan.check_batch, 3, 32, 32, generator=gen)
        y = torch.randint(0, 10, (plan.check_batch,), generator=gen)
        # (label, precision, candidate, reference); a run is (device, dtype, layout, autocast)
        pairs = []
        for p, dt in (("float64", torch.float64), ("float32", torch.float32)):
            pairs.append((f"{p} channels_last vs contiguous", p, (dev, dt, cl), (dev, dt, nchw)))
            if cuda:
                pairs.append((f"{p} cuda vs cpu", p, (dev, dt, cl), (cpu, dt, cl)))
            elif i == 0:
                why = "--device cpu" if torch.cuda.is_available() else "no CUDA"
                skips.append({"comparison": f"{p} cuda vs cpu", "reason": why})
        for p, dt in amps:
            if cuda or p == "bf16" or i == 0:  # CPU fp16 kernels are slow: first model only
                pairs.append(
                    (
                        f"{p} autocast vs float32",
                        p,
                        (dev, torch.float32, cl, dt),
                        (dev, torch.float32, cl),
                    )
                )
        runs: dict[tuple, dict[str, Any]] = {}
        with fp32_exact():
            for label, p, cand, ref in pairs:
                entry = {"model": name, "comparison": label, "batch": plan.check_batch}
                try:
                    for key in (cand, ref):
                        if key not in runs:
                            runs[key] = one_step(base, x, y, *key)
                except Exception as e:  # noqa: BLE001 - one broken kernel must not stop the rest
                    traceback.print_exc()
                    entry.update(error=first_line(e), tolerance=asdict(TOLS[p]), passed=False)
                    checks.append(entry)
                    print(f"  {name:20s} {label:34s} ERROR: {first_line(e)}")
                    continue
                entry.update(compare(runs[cand], runs[ref], TOLS[p]))
                checks.append(entry)
                t = entry["tolerance"]
                gt = "-" if t["grad_rel_l2"] is None else f"{t['grad_rel_l2']:g}"
                print(
                    f"  {name:20s} {label:34s} logits {entry['logits_rel_l2']:.1e} "
                    f"(<= {t['logits_rel_l2']:g})  grads {entry['grad_rel_l2']:.1e} (<= {gt})"
                    f"  align {entry['grad_alignment']:.4f} ({t['grad_alignment'][0]:.10g}.."
                    f"{t['grad_alignment'][1]:.10g})  " + ("ok" if entry["passed"] else "FAILED")
                )
    for s in skips:
        print(f"  {s['comparison']}: skipped: {s['reason']}")
    return {
        "status": "ran",
        "metric": "relative L2 error ||a - b|| / ||b|| of the logits and of the flattened "
        "gradient vector of all parameters; alignment <g, g_ref> / <g_ref, g_ref>",
        "setup": "one training step, BN in training mode, dropout off, same weights and batch "
        "(3x32x32 uniform, 10 classes); TF32 off; autocast runs on channels_last",
        "tolerances": {k: asdict(v) for k, v in TOLS.items()},
        "checks": checks,
        "skipped": skips,
        "passed": all(c["passed"] for c in checks),
    }


# --- 2. speed ------------------------------------------------------------------------------------


def sgd_step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    cast: Callable[[], contextlib.AbstractContextManager],
    x: torch.Tensor,
    y: torch.Tensor,
) -> torch.Tensor:
    """One step as `trainables.loop.Trainer.train_epoch` takes it; returns the loss."""
    with cast():
        loss = F.cross_entropy(model(x).float(), y)
    opt.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    else:
        loss.backward()
        opt.step()
    return loss


def trainer_setup(model: nn.Module, dev: torch.device, recipe: Recipe):
    """`model` on `dev` the trainer's way, its SGD (the recipe's lr, momentum, weight decay),
    the GradScaler when autocast is fp16, and the autocast."""
    model = prepare_for_device(model, dev)
    opt = torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
    )
    scaler = torch.amp.GradScaler("cuda") if amp_dtype(dev) == torch.float16 else None
    return model, opt, scaler, lambda: autocast_for(dev)


class Contender:
    """One model stepped one way on a fixed random batch: training or inference, the trainer's
    way (channels_last + autocast) or, for `plain`, float32 NCHW with no autocast."""

    def __init__(self, name: str, mode: str, batch: int, dev: torch.device, plain: bool = False):
        self.name, self.mode, self.batch, self.dev, self.plain = name, mode, batch, dev, plain
        model = build(name)
        if plain:
            self.model, fmt = model.to(dev), torch.contiguous_format
            self.opt = torch.optim.SGD(
                self.model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4
            )
            self.scaler, self.cast = None, contextlib.nullcontext
        else:
            self.model, self.opt, self.scaler, self.cast = trainer_setup(model, dev, SPEED_RECIPE)
            fmt = memory_format_for(dev)
        self.model.train(mode == "train")
        self.x = torch.rand(batch, 3, 32, 32, device=dev).contiguous(memory_format=fmt)
        self.y = torch.randint(0, 10, (batch,), device=dev)
        self.times: list[float] = []

    def step(self) -> None:
        if self.mode == "train":
            sgd_step(self.model, self.opt, self.scaler, self.cast, self.x, self.y)
            return
        with torch.inference_mode(), self.cast():
            self.model(self.x)

    def run(self, steps: int, timed: bool = True) -> None:
        sync(self.dev)
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step()
        sync(self.dev)
        if timed:
            self.times.append(time.perf_counter() - t0)


def check_speed(dev: torch.device, plan: Plan) -> dict[str, Any]:
    torch.backends.cudnn.benchmark = True  # as trainables.device.select_device sets it
    amp = dtype_name(amp_dtype(dev))
    ways = (("train", False), ("train", True), ("infer", False))  # (mode, plain)
    entries, by = [], {}
    for batch in plan.speed_batches:
        group = [
            Contender(n, mode, batch, dev, plain) for n in plan.models for mode, plain in ways
        ]
        for c in group:
            c.run(plan.warmup, timed=False)
        for _ in range(plan.repeats):  # interleaved: every contender sees the same conditions
            for c in group:
                c.run(plan.steps)
        for c in group:
            precision = "fp32 NCHW" if c.plain else f"channels_last, {amp}"
            entry = {"model": c.name, "batch": batch, "mode": c.mode, "precision": precision}
            entry.update(rates(c.times, plan.steps * batch))
            entries.append(entry)
            by[c.name, batch, c.mode, c.plain] = entry
        del group
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    print(f"  images/s (IQR); the trainer's way is channels_last + autocast ({amp})")
    for name in plan.models:
        for batch in plan.speed_batches:
            tr, plain = by[name, batch, "train", False], by[name, batch, "train", True]
            inf = by[name, batch, "infer", False]
            tr["vs_fp32_nchw"] = tr["images_per_s"] / plain["images_per_s"]
            inf["vs_train"] = inf["images_per_s"] / tr["images_per_s"]
            print(
                f"  {name:20s} batch {batch:4d}  train {tr['images_per_s']:9.1f} "
                f"({tr['iqr'][0]:.0f}-{tr['iqr'][1]:.0f}), {tr['vs_fp32_nchw']:4.2f}x fp32 NCHW's "
                f"{plain['images_per_s']:.1f}; infer {inf['images_per_s']:9.1f} "
                f"({inf['vs_train']:.1f}x train)"
            )
    return {
        "status": "ran",
        "data": "random 3x32x32, 10 classes, on the device",
        "warmup": plan.warmup,
        "repeats": plan.repeats,
        "steps_per_repeat": plan.steps,
        "entries": entries,
    }


# --- 3. real data --------------------------------------------------------------------------------


def check_real_data(dev: torch.device, plan: Plan, dataset: str, data_dir: str | None):
    try:
        data = load_dataset(dataset, data_dir)
    except (FileNotFoundError, ValueError, ConnectionError) as e:
        return skipped(f"no {dataset} data: {first_line(e)}")
    info, recipe = data.info, Recipe()
    available = len(split_indices(data.train_y, VAL_FRACTION)[0])
    train_idx, val_idx = split_indices(data.train_y, VAL_FRACTION, min(plan.real_train, available))
    val_idx = val_idx[: plan.real_val] if plan.real_val else val_idx
    train_x, train_y = data.train_x[train_idx].to(dev), data.train_y[train_idx].to(dev)
    val_x, val_y = pad_for_eval(data.train_x[val_idx], info).to(dev), data.train_y[val_idx].to(dev)
    torch.backends.cudnn.benchmark = True
    model, opt, scaler, cast = trainer_setup(build(plan.real_model, info.geometry), dev, recipe)
    fmt = memory_format_for(dev)
    gen = torch.Generator().manual_seed(recipe.seed)
    bs, n = plan.real_batch, len(train_x)
    perm = torch.randperm(n, generator=gen).to(dev)
    sync(dev)
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=dev)
    for b in range(n // bs):  # the last partial batch is dropped
        idx = perm[b * bs : (b + 1) * bs]
        x = augment_batch(
            train_x[idx].float().div_(255), gen, out_size=info.train_size, flip=info.flip
        ).contiguous(memory_format=fmt)
        loss_sum += sgd_step(model, opt, scaler, cast, x, train_y[idx]).detach()
    sync(dev)
    seconds = time.perf_counter() - t0
    model.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(val_x), 500):
            x = val_x[i : i + 500].float().div_(255).contiguous(memory_format=fmt)
            with autocast_for(dev):
                correct += (model(x).argmax(1) == val_y[i : i + 500]).sum().item()
    steps = n // bs
    out = {
        "status": "ran",
        "dataset": data.name,
        "source": data.source,
        "model": plan.real_model,
        "epochs": 1,
        "batch": bs,
        "lr": recipe.lr,
        "train_images": steps * bs,
        "val_images": len(val_x),
        "train_loss": (loss_sum / max(steps, 1)).item(),
        "val_acc": 100.0 * correct / max(len(val_x), 1),
        "chance_acc": 100.0 / info.num_classes,
        "train_seconds": seconds,
        "images_per_s": steps * bs / seconds,
        "precision": dtype_name(amp_dtype(dev)),
    }
    print(
        f"  {plan.real_model} on {out['train_images']} {data.name} images (batch {bs}, lr "
        f"{recipe.lr}, augmented): train loss {out['train_loss']:.3f}, val acc "
        f"{out['val_acc']:.1f} % on {out['val_images']} (chance {out['chance_acc']:.0f} %), "
        f"{out['images_per_s']:.1f} images/s (the whole epoch, its first steps included)"
    )
    return out


# --- 4. sharing one GPU --------------------------------------------------------------------------


def _share_worker(rank: int, dev_name: str, plan: Plan, barrier: Any, queue: Any) -> None:
    """One process of the sharing test: warm up, wait for the others, time `share_steps`."""
    dev = torch.device(dev_name)
    torch.backends.cudnn.benchmark = True  # as the trainer's select_device sets it
    if dev.type == "cpu":
        torch.set_num_threads(1)  # one core per process, as a CPU trial would get
    c = Contender(plan.share_model, "train", plan.share_batch, dev)
    c.run(plan.share_warmup, timed=False)
    barrier.wait(timeout=600)
    sync(dev)
    t0 = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
    c.run(plan.share_steps)
    queue.put((rank, t0, time.perf_counter()))


def check_sharing(dev: torch.device, plan: Plan) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    images = plan.share_steps * plan.share_batch
    runs = []
    for n in plan.share_procs:
        barrier, queue = ctx.Barrier(n), ctx.SimpleQueue()
        mp.spawn(_share_worker, args=(str(dev), plan, barrier, queue), nprocs=n, join=True)
        spans = [queue.get() for _ in range(n)]
        per = [images / (t1 - t0) for _, t0, t1 in sorted(spans)]
        wall = max(t1 for *_, t1 in spans) - min(t0 for _, t0, _ in spans)
        runs.append(
            {
                "processes": n,
                "total_images_per_s": n * images / wall,
                "per_process_images_per_s": per,
                "mean_per_process_images_per_s": statistics.fmean(per),
            }
        )
    one = next((r for r in runs if r["processes"] == 1), runs[0])
    for r in runs:
        r["total_vs_1"] = r["total_images_per_s"] / one["total_images_per_s"]
        r["per_process_vs_1"] = r["mean_per_process_images_per_s"] / one["total_images_per_s"]
        share = f"{1 / r['processes']:g} of the device each"
        print(
            f"  {r['processes']} process(es) ({share}): total {r['total_images_per_s']:.1f} "
            f"images/s ({r['total_vs_1']:.2f}x one), per process "
            f"{r['mean_per_process_images_per_s']:.1f} ({r['per_process_vs_1']:.2f}x)"
        )
    return {
        "status": "ran",
        "model": plan.share_model,
        "batch": plan.share_batch,
        "steps": plan.share_steps,
        "warmup": plan.share_warmup,
        "precision": f"channels_last, {dtype_name(amp_dtype(dev))}",
        "runs": runs,
    }


# --- main ----------------------------------------------------------------------------------------


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    p.add_argument("--quick", action="store_true", help="fewer steps and images, a first look")
    p.add_argument("--out", default="gpu_check.json", help="the JSON report (default %(default)s)")
    p.add_argument(
        "--models",
        default=None,
        help="comma-separated architecture names "
        f"(default {','.join(MODELS)}; on the CPU {','.join(CPU_PLAN.models)})",
    )
    p.add_argument("--dataset", default="fashionmnist", help="for section 3 (default %(default)s)")
    p.add_argument("--data-dir", default=None, help="where the dataset is (trainables.data)")
    p.add_argument(
        "--sections",
        default="correctness,speed,real_data,sharing",
        help="comma-separated subset to run (default: all four)",
    )
    return p


SECTIONS = ("correctness", "speed", "real_data", "sharing")


def main(argv: list[str] | None = None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    try:
        dev = torch.device(args.device)
    except RuntimeError:
        dev = torch.device("meta")
    if dev.type not in ("cuda", "cpu"):
        parser.error(f"--device: {args.device!r} is not cuda, cuda:N or cpu")
    with warnings.catch_warnings():  # a broken driver warns: the one line below says it all
        warnings.simplefilter("ignore")
        cuda_ok = torch.cuda.is_available()
    if dev.type == "cuda" and not cuda_ok:
        print(NO_CUDA, file=sys.stderr)
        return 2
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    plan = CPU_PLAN if dev.type == "cpu" else QUICK_PLAN if args.quick else GPU_PLAN
    if args.models:
        names = tuple(m.strip() for m in args.models.split(",") if m.strip())
        try:
            for n in names:
                parse_name(n, **CIFAR)
        except ValueError as e:
            parser.error(f"--models: {e}")
        plan = replace(plan, models=names)
    sections = [s.strip() for s in args.sections.split(",")]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(
            f"--sections: unknown {', '.join(unknown)}; choose from {', '.join(SECTIONS)}"
        )
    try:
        check_writable_dir(Path(args.out).resolve().parent)  # before minutes of work
    except OSError as e:
        parser.error(f"--out: {e}")
    if dev.type == "cpu":
        torch.set_num_threads(1)  # a busy machine stalls OpenMP barriers of 2+ threads

    report: dict[str, Any] = {
        "script": "benchmarks/gpu_check.py",
        "format": 1,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": args.quick,
        "machine": machine(dev),
        "plan": asdict(plan),
    }
    m = report["machine"]
    if dev.type == "cuda":
        where = f"{m['gpu']}, {m['gpu_memory_gib']} GiB, CUDA {m['cuda']}, cuDNN {m['cudnn']}"
    else:
        where = f"CPU {m['cpu']}, {m['cpus']} CPUs, {torch.get_num_threads()} threads"
    print(f"machine: {where}, torch {m['torch']}, autocast {m['autocast']}")
    t_start = time.perf_counter()
    run = {
        "correctness": (
            "1. correctness (one training step)",
            lambda: check_correctness(dev, plan),
        ),
        "speed": ("2. speed (images/s, medians)", lambda: check_speed(dev, plan)),
        "real_data": (
            "3. real data (one epoch)",
            lambda: check_real_data(dev, plan, args.dataset, args.data_dir),
        ),
        "sharing": ("4. sharing one device (spawned processes)", lambda: check_sharing(dev, plan)),
    }
    for key in SECTIONS:
        title, fn = run[key]
        print(f"\n{title}:")
        if key not in sections:
            report[key] = skipped("not in --sections")
            continue
        t0 = time.perf_counter()
        try:
            report[key] = fn()
        except Exception as e:  # noqa: BLE001 - report it, run the other sections
            traceback.print_exc()
            print(f"  ERROR: {first_line(e)}")
            report[key] = {"status": "error", "error": first_line(e)}
        report[key]["seconds"] = round(time.perf_counter() - t0, 1)
        print(f"  ({report[key]['seconds']} s)")
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    report["forbidden_modules_loaded"] = [n for n in FORBIDDEN if n in sys.modules]
    corr = report["correctness"]
    errors = [k for k in SECTIONS if report[k]["status"] == "error"]
    report["passed"] = bool(
        corr.get("passed", True) and not errors and not report["forbidden_modules_loaded"]
    )
    atomic_write_bytes(args.out, (json.dumps(report, indent=1) + "\n").encode())
    failed = [
        f"{c['model']}: {c['comparison']}" for c in corr.get("checks", []) if not c["passed"]
    ]
    print(
        f"\n{'passed' if report['passed'] else 'FAILED'} in {report['seconds']} s; wrote "
        f"{args.out}" + (f"; failed: {'; '.join(failed)}" if failed else "")
    )
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
