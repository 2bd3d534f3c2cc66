"""Where a trial computes: a CUDA GPU when it was given one, otherwise the CPU.

On a GPU: mixed precision (bf16 autocast where supported, else fp16 autocast with a GradScaler),
channels_last and cuDNN autotuning. On the CPU: fp32, channels_last (it doubles LruNet's speed on
the depthwise and grouped convolutions, LRUNET_SPEC.md "Measured CPU speed") and
`torch.set_num_threads` equal to the CPUs the trial was given. Ray hides the GPUs of a trial that
asked for none by setting CUDA_VISIBLE_DEVICES to "", so "auto" never takes a GPU it was not given.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DeviceSetup:
    device: torch.device
    amp_dtype: torch.dtype | None = None  # autocast dtype; None: full fp32
    channels_last: bool = True
    threads: int | None = None  # torch CPU threads set for this process (None: untouched)

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def needs_grad_scaler(self) -> bool:
        return self.amp_dtype == torch.float16

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def describe(self) -> str:
        if self.is_cuda:
            name = torch.cuda.get_device_name(self.device)
            amp = str(self.amp_dtype).removeprefix("torch.") if self.amp_dtype else "fp32"
            return f"{self.device} ({name}, {amp})"
        return f"cpu ({torch.get_num_threads()} threads, fp32)"


def gpu_assigned() -> bool:
    """True when CUDA works and this process may use a GPU (CUDA_VISIBLE_DEVICES is not "")."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return False
    return torch.cuda.is_available()


def select_device(
    device: str | torch.device = "auto",
    threads: int | None = None,
    *,
    amp: bool = True,
    channels_last: bool = True,
) -> DeviceSetup:
    """Pick and configure the device. `device` is "auto", "cpu", "cuda" or "cuda:N".

    `threads` (the trial's CPUs) sets torch's intra-op threads when running on the CPU.
    """
    spec = str(device)
    if spec == "auto":
        spec = "cuda" if gpu_assigned() else "cpu"
    try:
        dev = torch.device(spec)
    except RuntimeError as e:
        raise ValueError(f"device: {device!r} is not 'auto', 'cpu', 'cuda' or 'cuda:N'") from e
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise ValueError(f"threads: expected a positive integer, got {threads!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device: {device!r} requested but CUDA is not available here; use 'auto' or 'cpu'"
            )
        torch.backends.cudnn.benchmark = True
        amp_dtype = None
        if amp:
            amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return DeviceSetup(dev, amp_dtype, channels_last, None)
    if dev.type != "cpu":
        raise ValueError(f"device: {device!r} is not supported; use 'auto', 'cpu' or 'cuda'")
    if threads is not None:
        torch.set_num_threads(threads)
    return DeviceSetup(dev, None, channels_last, threads)
