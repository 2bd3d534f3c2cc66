"""The CPU fast path of an LruBlock pass, and the device helpers the trainer and benchmarks share.

It computes the same function as the plain pass in `lrunet.model.LruBlock` (LRUNET_SPEC.md §1),
up to float rounding, with the same parameters and the same BatchNorm running-statistics updates.
What changes is how, measured on a 2-core AVX-512 CPU (benchmarks/RESULTS.md):

* The depthwise 3x3 with channel multiplier 2 (F -> 2F, groups F) falls to a slow oneDNN kernel
  (about 1 GMAC/s). It is computed as two multiplier-1 depthwise convolutions, one with the even
  and one with the odd output filters: y_even = dw(x; w[0::2]) and y_odd = dw(x; w[1::2]).
* The 2F-channel tensor is never assembled: BN_dw runs on each half with the matching half of
  its parameters, and the grouped pointwise conv is the sum of two grouped convs whose weights
  are the even and odd input columns of the pw weight (group j of the pw conv reads dw channels
  2c and 2c + 1 for the input channels c of group j, i.e. the same groups in each half).
* In eval mode both BatchNorms are affine maps and are folded into the conv weights.
* A regulator (`-reg[<g>]`, DACNN_SPEC.md §5.1) is applied as its own 1x1 conv to the BN_pw
  output, before the residual add, in both modes (folding it into pw would densify the grouped
  pw whenever the regulator mixes groups).
* The channel shuffle is a single copy that keeps the memory layout (channels_last stays
  channels_last), instead of a flip, a transpose and a reshape.

Weight slices and folds are differentiable tensor ops, so gradients reach the shared weights
exactly as in the plain pass. On a GPU the plain pass runs (cuDNN's depthwise kernels have no such
cliff); channels_last and mixed precision are what pays there.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

_EVEN = slice(0, None, 2)
_ODD = slice(1, None, 2)


# --- device helpers ---------------------------------------------------------------------------


def memory_format_for(device: str | torch.device) -> torch.memory_format:
    """The activation layout LruNet is fastest in on `device`: channels_last on CPU and CUDA.

    Measured: about 2x over NCHW for the depthwise and grouped convolutions (spec "Measured CPU
    speed"); on GPUs channels_last is what cuDNN's tensor-core kernels want.
    """
    kind = torch.device(device).type
    return torch.channels_last if kind in ("cpu", "cuda") else torch.contiguous_format


def prepare_for_device(model: nn.Module, device: str | torch.device) -> nn.Module:
    """Move `model` to `device` in the layout its fast path wants; feed it inputs converted with
    `x.to(device, memory_format=memory_format_for(device))`."""
    return model.to(device=torch.device(device), memory_format=memory_format_for(device))


def autocast_for(device: str | torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision where it pays: bf16 (or fp16) autocast on CUDA, nothing on the CPU (fp32:
    bf16 would change the numbers, and the CPU step is bound by memory traffic, not FLOPs)."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


# --- the pass -----------------------------------------------------------------------------------


def _shuffle_copy(x: torch.Tensor, variant: str, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        xn = x.permute(0, 2, 3, 1)  # a view: (b, h, w, c), contiguous
        if variant == "swap":
            out = torch.stack([xn[..., c // 2 :], xn[..., : c // 2]], -1)
        else:
            out = xn.unflatten(-1, (groups, c // groups)).transpose(-1, -2).contiguous()
        return out.view(b, h, w, c).permute(0, 3, 1, 2)
    if variant == "swap":
        return torch.stack([x[:, c // 2 :], x[:, : c // 2]], 2).view(b, c, h, w)
    return x.unflatten(1, (groups, c // groups)).transpose(1, 2).reshape(b, c, h, w)


def _unshuffle_copy(g: torch.Tensor, variant: str, groups: int) -> torch.Tensor:
    """The inverse permutation: x[C/2 + k] = out[2k], x[k] = out[2k + 1] for "swap"; the
    interleave with C/groups groups undoes the one with `groups` groups."""
    c = g.shape[1]
    if variant == "swap":
        return torch.cat([g[:, 1::2], g[:, 0::2]], 1)
    return _shuffle_copy(g, "group", c // groups)


class _Shuffle(torch.autograd.Function):
    """Backward is the inverse permutation, one copy. Autograd's own backward of the stacked
    slices zero-fills and copies twice per slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, variant: str, groups: int) -> torch.Tensor:
        ctx.variant, ctx.groups = variant, groups
        return _shuffle_copy(x, variant, groups)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _unshuffle_copy(grad, ctx.variant, ctx.groups), None, None


def shuffle(x: torch.Tensor, variant: str, groups: int) -> torch.Tensor:
    """The between-pass channel shuffle as one copy, in the input's memory layout.

    "swap": out[2k] = x[C/2 + k], out[2k + 1] = x[k]; "plain"/"group": ShuffleNet's interleave
    with `groups` groups (2 for "plain"); "none": x itself.
    """
    if variant == "none":
        return x
    if torch.is_grad_enabled() and x.requires_grad:
        return _Shuffle.apply(x, variant, groups)
    return _shuffle_copy(x, variant, groups)


def _momentum(bn: nn.BatchNorm2d) -> float:
    """nn.BatchNorm2d.forward's bookkeeping: count the batch, return the running-average factor."""
    if not (bn.training and bn.track_running_stats):
        return 0.0
    bn.num_batches_tracked.add_(1)
    if bn.momentum is None:
        return 1.0 / float(bn.num_batches_tracked)
    return bn.momentum


def _bn_halves(bn: nn.BatchNorm2d, y0: torch.Tensor, y1: torch.Tensor):
    """BN over the 2F dw channels, applied to the even (y0) and odd (y1) channels separately,
    with the running statistics updated in place exactly as one call on all 2F would."""
    momentum = _momentum(bn)
    training = bn.training or bn.running_mean is None
    outs = []
    for y, half in ((y0, _EVEN), (y1, _ODD)):
        # contiguous copies: the strided views take a slower BN kernel
        rm = bn.running_mean[half].clone() if bn.running_mean is not None else None
        rv = bn.running_var[half].clone() if bn.running_var is not None else None
        weight = bn.weight[half].contiguous() if bn.weight is not None else None
        bias = bn.bias[half].contiguous() if bn.bias is not None else None
        outs.append(F.batch_norm(y, rm, rv, weight, bias, training, momentum, bn.eps))
        if bn.training and rm is not None:
            bn.running_mean[half] = rm
            bn.running_var[half] = rv
    return outs


def _bn(bn: nn.BatchNorm2d, z: torch.Tensor) -> torch.Tensor:
    momentum = _momentum(bn)
    training = bn.training or bn.running_mean is None
    return F.batch_norm(
        z, bn.running_mean, bn.running_var, bn.weight, bn.bias, training, momentum, bn.eps
    )


def bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BN as y * scale + shift (differentiable in weight and bias)."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    shift = -bn.running_mean * scale
    if bn.weight is not None:
        scale = scale * bn.weight
        shift = shift * bn.weight
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale, shift


def train_pass(
    x: torch.Tensor,
    dw_w: tuple[torch.Tensor, torch.Tensor],
    pw_w: tuple[torch.Tensor, torch.Tensor],
    groups: int,
    bn_dw: nn.BatchNorm2d,
    bn_pw: nn.BatchNorm2d,
    reg: nn.Conv2d | None = None,
) -> torch.Tensor:
    """relu(reg(BN_pw(pw(BN_dw(dw(x))))) + x) with batch statistics, from the split weights
    (no `reg`: the identity)."""
    c = x.shape[1]
    y0 = F.conv2d(x, dw_w[0], padding=1, groups=c)
    y1 = F.conv2d(x, dw_w[1], padding=1, groups=c)
    y0, y1 = _bn_halves(bn_dw, y0, y1)
    z = F.conv2d(y0, pw_w[0], groups=groups) + F.conv2d(y1, pw_w[1], groups=groups)
    t = _bn(bn_pw, z)
    if reg is not None:
        t = F.conv2d(t, reg.weight, groups=reg.groups)
    return torch.relu_(t.add_(x))


def eval_pass(
    x: torch.Tensor,
    dw_weight: torch.Tensor,
    pw_weight: torch.Tensor,
    groups: int,
    bn_dw: nn.BatchNorm2d,
    bn_pw: nn.BatchNorm2d,
    reg: nn.Conv2d | None = None,
) -> torch.Tensor:
    """The same pass with running statistics: both BNs folded into the convolutions."""
    c = x.shape[1]
    s1, b1 = bn_affine(bn_dw)  # over the 2F dw channels
    s2, b2 = bn_affine(bn_pw)  # over the F pw channels
    dw = dw_weight * s1.view(-1, 1, 1, 1)
    pw = pw_weight * s2.view(-1, 1, 1, 1)
    # pw(b1) per output channel: group j's rows times the dw shifts of group j's inputs
    k = pw_weight.shape[1]
    pw_b1 = torch.bmm(pw.view(groups, -1, k), b1.view(groups, k, 1)).flatten()
    y0 = F.conv2d(x, dw[_EVEN], padding=1, groups=c)
    y1 = F.conv2d(x, dw[_ODD], padding=1, groups=c)
    z = F.conv2d(y0, pw[:, _EVEN], pw_b1 + b2, groups=groups)
    z = z.add_(F.conv2d(y1, pw[:, _ODD], groups=groups))
    if reg is not None:
        z = F.conv2d(z, reg.weight, groups=reg.groups)
    return torch.relu_(z.add_(x))


def block_forward(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """All passes of an `LruBlock` on the CPU fast path (see the module docstring)."""
    groups = block.pair(0)[1].groups
    regs = getattr(block, "reg_list", None)
    split: dict[int, tuple] = {}

    for i in range(block.reuse):
        dw, pw = block.pair(i)
        dw_weight, pw_weight = dw.weight, pw.weight
        bn_dw, bn_pw = block.dw_bn_list[i], block.pw_bn_list[i]
        reg = regs[i] if regs is not None else None
        batch_stats = bn_dw.training or bn_dw.running_mean is None
        if batch_stats or bn_pw.training or bn_pw.running_mean is None:
            key = i // block.share
            if key not in split:  # shared weights are sliced once per forward, not once per pass
                split[key] = (
                    (dw_weight[_EVEN], dw_weight[_ODD]),
                    (pw_weight[:, _EVEN], pw_weight[:, _ODD]),
                )
            dw_w, pw_w = split[key]
            x = train_pass(x, dw_w, pw_w, groups, bn_dw, bn_pw, reg)
        else:
            x = eval_pass(x, dw_weight, pw_weight, groups, bn_dw, bn_pw, reg)
        if i < block.reuse - 1:
            x = shuffle(x, block.shuffle, block.shuffle_groups)
    return x
