"""The fast model computes the straightforward network's function (LRUNET_SPEC.md §1).

`lrunet.model.LruNet` takes `lrunet.fast` on the CPU (split depthwise, split BN, folded eval BNs,
one-copy shuffle). Every test here copies one set of weights into it and into
`benchmarks.reference_net.ReferenceLruNet`, the plain restatement, and compares outputs, the
gradient of every parameter and the BatchNorm running statistics, in train and eval mode, in the
contiguous and the channels_last layout.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.reference_net import ReferenceLruNet
from lrunet import fast
from lrunet.config import LruNetConfig, parse_name
from lrunet.model import (
    LruNet,
    build_model,
    channel_shuffle,
    memory_format_for,
    prepare_for_device,
    swap_shuffle,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors: one thread is faster, and immune to OpenMP stalls on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


CONFIGS = [
    "1-LruNet-1x",
    "3-LruNet-1x",
    "8-LruNet-1x",
    "1.2.3.2-LruNet-1x",
    "2-LruNet-0.5x",
    "2-LruNet-2x-d0.7",
    "3-LruNet-1x-g4",
    "3-LruNet-1x-splain",
    "3-LruNet-1x-sgroup",
    "3-LruNet-1x-snone",
    "3-LruNet-0.5x-g4-sgroup",
    "3-LruNet-1x-untied",
]


def _pair(cfg: LruNetConfig) -> tuple[ReferenceLruNet, LruNet]:
    torch.manual_seed(0)
    ref = ReferenceLruNet(cfg)
    # non-trivial BN parameters and running statistics, so that a mixed-up channel shows
    with torch.no_grad():
        for name, t in ref.state_dict().items():
            if name.endswith(("running_mean", "bias")) and t.is_floating_point():
                t.uniform_(-0.5, 0.5)
            elif name.endswith(("running_var", "weight")) and t.dim() == 1:
                t.uniform_(0.5, 1.5)
    fast_model = LruNet(cfg)
    fast_model.load_state_dict(ref.state_dict(), strict=True)
    return ref, fast_model


def _run(model: torch.nn.Module, x: torch.Tensor, train: bool) -> tuple[torch.Tensor, dict]:
    model.train(train)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # the same dropout mask for both
    out = model(x)
    # a loss that weights every logit differently, so every gradient path is exercised
    weights = torch.linspace(-1.0, 1.0, out.numel()).view_as(out)
    (out * weights).sum().backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    return out.detach(), grads


def _close(a: torch.Tensor, b: torch.Tensor, what: str, scale: float | None = None) -> None:
    """Equal up to float rounding, relative to `scale` (default: a's largest magnitude)."""
    scale = a.abs().max().item() if scale is None else scale
    tol = 1e-9 if a.dtype == torch.float64 else 1e-2
    torch.testing.assert_close(b, a, rtol=tol, atol=tol * scale, msg=lambda m: f"{what}: {m}")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_fast_model_matches_reference_float64(name: str, layout: str) -> None:
    """In float64 rounding is ~1e-16, so agreement to 1e-9 leaves no room for a misplaced
    channel, a wrong BN slice or a missed running-statistics update."""
    _compare(name, layout, torch.float64)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["14-LruNet-1x", "3-LruNet-2x-untied"])
def test_fast_model_matches_reference_float32_channels_last(name: str) -> None:
    """The trainer's setting. In float32 a pre-activation within rounding of 0 can land on the
    other side of a ReLU, so gradients agree only to ~1e-3 of their scale (measured <= 2.4e-3)."""
    _compare(name, "channels_last", torch.float32)


def _compare(name: str, layout: str, dtype: torch.dtype) -> None:
    size = 28 if "0.5x" in name else 32
    cfg = parse_name(name, input_size=size)
    ref, fast_model = _pair(cfg)
    ref, fast_model = ref.to(dtype), fast_model.to(dtype)
    torch.manual_seed(2)
    x = torch.rand(4, 3, size, size, dtype=dtype)
    xf = x
    if layout == "channels_last":
        fast_model = fast_model.to(memory_format=torch.channels_last)
        xf = x.contiguous(memory_format=torch.channels_last)
    for train in (True, False):
        mode = "train" if train else "eval"
        out_ref, g_ref = _run(ref, x, train)
        out_fast, g_fast = _run(fast_model, xf, train)
        _close(out_ref, out_fast, f"{name} {mode} output")
        assert g_ref.keys() == g_fast.keys()
        # one scale for all gradients: in train mode BN_dw's bias gradient is zero in exact
        # arithmetic (BN_pw removes any per-channel shift), so it is pure rounding noise
        scale = max(g.abs().max().item() for g in g_ref.values())
        for n in g_ref:
            _close(g_ref[n], g_fast[n], f"{name} {mode} grad {n}", scale)
        # the running statistics moved identically (train) or not at all (eval)
        sd_ref, sd_fast = ref.state_dict(), fast_model.state_dict()
        for n, t in sd_ref.items():
            if "running" in n:
                _close(t, sd_fast[n], f"{name} after {mode}: buffer {n}")
            elif "num_batches" in n:
                assert torch.equal(t, sd_fast[n]), n


def test_fast_path_is_taken_and_differs_from_plain_only_by_rounding() -> None:
    """The CPU forward is lrunet.fast's, and agrees with the module's own plain path."""
    cfg = parse_name("4-LruNet-1x")
    model = LruNet(cfg).eval()
    x = torch.rand(2, 64, 16, 16)
    fast_out = model.stage1(x)
    plain_out = model.stage1.forward_plain(x)
    torch.testing.assert_close(fast_out, plain_out, rtol=1e-4, atol=1e-5)
    assert not torch.equal(fast_out, plain_out)  # folded BNs: different rounding, same function


def test_state_dict_keys_and_shapes_match_the_reference() -> None:
    for name in ("14-LruNet-1x", "2-LruNet-2x", "3-LruNet-1x-untied", "1.2.3.4-LruNet-0.5x-g4"):
        cfg = parse_name(name)
        ref_sd = ReferenceLruNet(cfg).state_dict()
        sd = build_model(cfg).state_dict()
        assert list(sd) == list(ref_sd), name
        assert {k: v.shape for k, v in sd.items()} == {k: v.shape for k, v in ref_sd.items()}
    sd = build_model("14-LruNet-1x").state_dict()
    for key, shape in [
        ("features.0.weight", (64, 3, 3, 3)),
        ("stage4.dw.weight", (1024, 1, 3, 3)),
        ("stage4.pw.weight", (512, 128, 1, 1)),
        ("stage4.dw_bn_list.13.running_var", (1024,)),
        ("stage1.pw_bn_list.13.num_batches_tracked", ()),
        ("classifier.0.weight", (256, 64, 1, 1)),
        ("classifier.4.bias", (10,)),
    ]:
        assert tuple(sd[key].shape) == shape, key
    untied = build_model("3-LruNet-1x-untied").state_dict()
    assert "stage2.dw_list.2.weight" in untied and "stage2.pw_list.0.weight" in untied
    assert "stage2.dw.weight" not in untied


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize(("variant", "groups"), [("swap", 2), ("plain", 2), ("group", 8)])
def test_one_copy_shuffle_is_the_reference_shuffle(variant, groups, layout) -> None:
    x = torch.randn(3, 64, 5, 5).contiguous(memory_format=layout)
    expected = swap_shuffle(x) if variant == "swap" else channel_shuffle(x, groups)
    out = fast.shuffle(x, variant, groups)
    assert torch.equal(out, expected)
    assert out.is_contiguous(memory_format=layout)
    assert fast.shuffle(x, "none", groups) is x


def test_device_helpers() -> None:
    assert memory_format_for("cpu") == torch.channels_last
    model = prepare_for_device(LruNet(parse_name("1-LruNet-1x")), "cpu")
    w = model.features[0].weight
    assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
    with fast.autocast_for("cpu"):
        assert model(torch.rand(2, 3, 32, 32)).dtype == torch.float32


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize(("variant", "groups"), [("swap", 2), ("plain", 2), ("group", 8)])
def test_one_copy_shuffle_gradient_is_the_inverse_permutation(variant, groups, layout) -> None:
    x = torch.randn(3, 64, 5, 5, dtype=torch.float64).contiguous(memory_format=layout)
    x.requires_grad_(True)
    torch.autograd.gradcheck(lambda t: fast.shuffle(t, variant, groups), (x,))
    grad = torch.randn(3, 64, 5, 5, dtype=torch.float64)
    (g_fast,) = torch.autograd.grad(fast.shuffle(x, variant, groups), x, grad)
    ref = swap_shuffle(x) if variant == "swap" else channel_shuffle(x, groups)
    (g_ref,) = torch.autograd.grad(ref, x, grad)
    assert torch.equal(g_fast, g_ref)
