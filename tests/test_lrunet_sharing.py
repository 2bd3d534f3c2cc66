"""LruNet's sharing extensions (DACNN_SPEC.md §5.1): `-k<k>` (passes share a dw+pw pair in groups
of k) and `-reg[<g>]` (an unshared, identity-initialised 1x1 regulator per pass). Closed-form
counts, analytic against hook counts, the name grammar, validation, the identity init, gradients,
the CPU fast path against the plain pass, and the registry entry."""

from __future__ import annotations

import math
import random

import pytest
import torch

from lrunet.config import SHUFFLE_VARIANTS, LruNetConfig, canonical_name, parse_name
from lrunet.counting import count, count_by_hooks
from lrunet.families import lrunet as family
from lrunet.model import LruBlock, LruNet


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- counts --------------------------------------------------------------------------------------

P = (2_176, 6_400, 20_992, 74_752)  # one dw+pw pair per stage at CIFAR-10 1x
BN = (384, 768, 1_536, 3_072)  # the two BNs of one pass per stage (5,760 in all)


def _closed_form_params(reuse: tuple[int, ...], k: int) -> int:
    """21,322 + sum_s ceil(N_s / k) P_s + 5,760 N, the BN term per stage for unequal N_s."""
    pairs = sum(math.ceil(n / k) * p for n, p in zip(reuse, P))
    return 21_322 + pairs + sum(n * b for n, b in zip(reuse, BN))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 14, 16])
@pytest.mark.parametrize("k", [1, 2, 3, 7, "N"])
def test_closed_form_params_and_macs_do_not_depend_on_k(n, k):
    k = n if k == "N" else k
    cfg = LruNetConfig(reuse=n, share_k=k)
    c, tied = count(cfg), count(LruNetConfig(reuse=n))
    assert c.params == _closed_form_params((n,) * 4, k)
    assert c.macs == tied.macs and c.flops == tied.flops
    assert c.params - c.conv_params == tied.params - tied.conv_params  # the BNs are per pass
    assert LruNet(cfg).num_params() == c.params


def test_closed_form_end_points():
    for n in (1, 4, 14):
        assert count(LruNetConfig(reuse=n, share_k=n)).params == 125_642 + 5_760 * n
    assert count(parse_name("8-LruNet-1x-k1")).params == 901_962
    reuse = (2, 4, 8, 14)
    for k in (1, 2, 3, 7, 13):
        assert count(LruNetConfig(reuse=reuse, share_k=k)).params == _closed_form_params(reuse, k)


@pytest.mark.parametrize("n", [1, 2, 8, 14])
@pytest.mark.parametrize(
    "option,params,macs", [("reg", 348_160, 7_340_032), ("reg8", 43_520, 917_504)]
)
def test_regulator_cost_per_pass(n, option, params, macs):
    base = count(parse_name(f"{n}-LruNet-1x"))
    c = count(parse_name(f"{n}-LruNet-1x-{option}"))
    assert c.params - base.params == params * n
    assert c.conv_params - base.conv_params == params * n
    assert c.macs - base.macs == macs * n
    # FLOPs: MACs + 1 per output element (no BN): 64*16^2 + 128*8^2 + 256*4^2 + 512*4^2 = 36,864
    assert c.flops - base.flops == (macs + 36_864) * n


def test_dense_regulators_at_14_passes():
    c = count(parse_name("14-LruNet-1x-reg"))
    assert c.params - 206_282 == 4_874_240  # "4.87 M params to a 206 k net"


def _random_configs(k: int, seed: int) -> list[LruNetConfig]:
    rng = random.Random(seed)
    out = []
    while len(out) < k:
        try:
            out.append(
                LruNetConfig(
                    reuse=tuple(rng.randint(1, 5) for _ in range(4)),
                    width=rng.choice([0.25, 0.5, 0.75, 1.0]),
                    groups=rng.choice([1, 2, 4, 8]),
                    shuffle=rng.choice(SHUFFLE_VARIANTS),
                    dropout=rng.choice([0.0, 0.3, 0.5]),
                    share_k=rng.choice([0, 1, 2, 3, 4]),
                    regulator=rng.choice([0, 1, 2, 4, 8, 16]),
                    num_classes=rng.choice([10, 100]),
                    in_channels=rng.choice([1, 3]),
                )
            )
        except ValueError:
            continue
    return out


@pytest.mark.parametrize("cfg", _random_configs(10, seed=3), ids=lambda c: c.name)
@pytest.mark.parametrize("size", [28, 32])
def test_analytic_counts_equal_hook_counts(cfg, size):
    cfg = cfg.replace(input_size=size)
    assert count(cfg) == count_by_hooks(LruNet(cfg))


def test_pass_i_uses_pair_i_div_k():
    model = LruNet(parse_name("5.3.1.2-LruNet-0.25x-k2-reg"))
    calls: dict[str, int] = {}
    handles = [
        m.register_forward_hook(lambda m, i, o, n=n: calls.__setitem__(n, calls.get(n, 0) + 1))
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Conv2d) and n.startswith("stage")
    ]
    for m in model.modules():
        if isinstance(m, LruBlock):
            m.forward = m.forward_plain
    model.eval()(torch.zeros(1, 3, 32, 32))
    for h in handles:
        h.remove()
    assert {n: c for n, c in calls.items() if ".dw_list." in n} == {
        "stage1.dw_list.0": 2,
        "stage1.dw_list.1": 2,
        "stage1.dw_list.2": 1,
        "stage2.dw_list.0": 2,
        "stage2.dw_list.1": 1,
        "stage3.dw_list.0": 1,
        "stage4.dw_list.0": 2,
    }
    regs = {n: c for n, c in calls.items() if ".reg_list." in n}
    assert len(regs) == 5 + 3 + 1 + 2 and set(regs.values()) == {1}


def test_state_dict_keys():
    sd = LruNet(parse_name("5-LruNet-1x-k2-reg8")).state_dict()
    assert "stage1.dw.weight" not in sd and "stage1.pw.weight" not in sd
    assert {k for k in sd if k.startswith("stage3.dw_list.")} == {
        f"stage3.dw_list.{i}.weight" for i in range(3)
    }
    assert {k for k in sd if k.startswith("stage3.pw_list.")} == {
        f"stage3.pw_list.{i}.weight" for i in range(3)
    }
    assert tuple(sd["stage4.reg_list.4.weight"].shape) == (512, 64, 1, 1)
    assert "stage4.reg_list.5.weight" not in sd
    dense = LruNet(parse_name("2-LruNet-1x-reg")).state_dict()
    assert tuple(dense["stage2.reg_list.1.weight"].shape) == (128, 128, 1, 1)
    assert "stage2.dw.weight" in dense  # tied keys stay the reference's
    untied = LruNet(parse_name("3-LruNet-1x-untied-reg")).state_dict()
    assert "stage2.dw_list.2.weight" in untied and "stage2.reg_list.2.weight" in untied


# --- names and validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "14-LruNet-1x-k7",
        "14-LruNet-1x-k2",
        "14-LruNet-1x-reg",
        "14-LruNet-1x-reg8",
        "8-LruNet-1x-untied-reg4",
        "2.4.8.14-LruNet-1.5x-g4-snone-d0.3-k3-reg2",
        "2.4.8.14-LruNet-1x-k8",
    ],
)
def test_canonical_names_parse_and_format_back(name):
    assert parse_name(name).name == name


@pytest.mark.parametrize(
    "name,canonical",
    [
        ("8-LruNet-1x-k1", "8-LruNet-1x-untied"),
        ("8-LruNet-1x-untied-k1", "8-LruNet-1x-untied"),
        ("14-LruNet-1x-k16", "14-LruNet-1x"),
        ("14-LruNet-1x-k14", "14-LruNet-1x"),
        ("2.4.8.14-LruNet-1x-k14", "2.4.8.14-LruNet-1x"),
        ("14-lrunet-1.0X-K7-REG8", "14-LruNet-1x-k7-reg8"),
        ("14-LruNet-1x-reg8-k7", "14-LruNet-1x-k7-reg8"),
        ("14-LruNet-1x-reg1", "14-LruNet-1x-reg"),
        ("14-LruNet-1x-tied-k7", "14-LruNet-1x-k7"),
        ("1-LruNet-1x-k1", "1-LruNet-1x-untied"),
    ],
)
def test_lenient_spellings_are_canonicalised(name, canonical):
    assert canonical_name(name) == canonical


def test_equal_networks_compare_equal():
    assert LruNetConfig(reuse=14, share_k=16) == LruNetConfig(reuse=14)
    assert LruNetConfig(reuse=14, share_k=1) == LruNetConfig(reuse=14, sharing="untied")
    assert LruNetConfig(reuse=14, sharing="untied", share_k=1).share_k == 0
    assert LruNetConfig(reuse=(2, 4, 8, 14), share_k=8).share_k == 8
    assert LruNetConfig(reuse=(2, 4, 8, 14), share_k=8).stage_pairs == (1, 1, 1, 2)
    assert LruNetConfig(reuse=5, share_k=2).stage_pairs == (3, 3, 3, 3)
    assert LruNetConfig(reuse=5, sharing="untied").stage_pairs == (5, 5, 5, 5)
    assert LruNetConfig(reuse=5).stage_pairs == (1, 1, 1, 1)


@pytest.mark.parametrize("cfg", _random_configs(30, seed=4), ids=lambda c: c.name)
def test_every_config_round_trips_through_its_name_and_dict(cfg):
    geometry = dict(
        num_classes=cfg.num_classes, in_channels=cfg.in_channels, input_size=cfg.input_size
    )
    assert parse_name(cfg.name, **geometry) == cfg
    assert LruNetConfig.from_dict(cfg.to_dict()) == cfg
    assert family.from_knobs(family.to_knobs(cfg), **geometry) == cfg


def test_old_config_dicts_still_load():
    old = {k: v for k, v in LruNetConfig().to_dict().items() if k not in ("share_k", "regulator")}
    assert LruNetConfig.from_dict(old) == LruNetConfig()


@pytest.mark.parametrize(
    "name,match",
    [
        ("14-LruNet-1x-k0", r"-k<k> with k >= 1"),
        ("14-LruNet-1x-kx", r"-k<k> with k >= 1"),
        ("14-LruNet-1x-reg0", r"-reg<g> with g >= 1"),
        ("14-LruNet-1x-regx", r"-reg<g> with g >= 1"),
        ("14-LruNet-1x-reg3", r"^regulator: .*\[1, 2, 4, 8, 16, 32, 64\]"),
        ("14-LruNet-0.75x-reg32", r"^regulator: .*\[1, 2, 3, 4, 6, 8, 12, 16, 24, 48\]"),
        ("14-LruNet-1x-untied-k2", r"^share_k: 2 .*untied.*allowed"),
        ("14-LruNet-1x-k2-untied", r"^share_k: 2 .*untied.*allowed"),
        ("14-LruNet-1x-k2-k3", r"given twice"),
        ("14-LruNet-1x-reg-reg8", r"given twice"),
    ],
)
def test_bad_names_raise_naming_the_allowed_values(name, match):
    with pytest.raises(ValueError, match=match):
        parse_name(name)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(share_k=-1), "share_k"),
        (dict(share_k=2.0), "share_k"),
        (dict(share_k=True), "share_k"),
        (dict(share_k=2, sharing="untied"), "share_k"),
        (dict(regulator=-1), "regulator"),
        (dict(regulator=3), "regulator"),
        (dict(regulator="8"), "regulator"),
    ],
)
def test_invalid_configs_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}:.*allowed"):
        LruNetConfig(**kwargs)


# --- the network ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["3-LruNet-1x-reg", "1.2.3.2-LruNet-0.5x-k2-reg4", "2-LruNet-1x-untied-reg8"]
)
@pytest.mark.parametrize("fast_path", [True, False])
def test_regulators_are_the_identity_at_init(name, fast_path):
    cfg = parse_name(name)
    torch.manual_seed(0)
    with_reg = LruNet(cfg)
    without = LruNet(cfg.replace(regulator=0))
    missing, unexpected = without.load_state_dict(with_reg.state_dict(), strict=False)
    assert not missing and unexpected and all(".reg_list." in k for k in unexpected)
    for n, p in with_reg.named_parameters():
        if ".reg_list." in n:
            cpg = p.shape[1]  # out channel o reads in-group channel o % cpg, weight 1
            expected = torch.zeros_like(p)
            for o in range(p.shape[0]):
                expected[o, o % cpg] = 1
            assert torch.equal(p.detach(), expected), n
    if not fast_path:
        for m in [*with_reg.modules(), *without.modules()]:
            if isinstance(m, LruBlock):
                m.forward = m.forward_plain
    x = torch.rand(3, 3, 32, 32)
    for train in (True, False):
        torch.manual_seed(1)
        a = with_reg.train(train)(x)
        torch.manual_seed(1)
        b = without.train(train)(x)
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_regulators_are_reset_by_reset_parameters():
    model = LruNet(parse_name("2-LruNet-0.5x-reg2"))
    reg = model.stage2.reg_list[1].weight
    with torch.no_grad():
        reg.normal_()
    model.reset_parameters()
    assert torch.equal(reg.detach(), torch.nn.init.dirac_(torch.empty_like(reg), groups=2))


PRESETS = [
    "2-LruNet-1x-k1",
    "3-LruNet-1x-k2",
    "2-LruNet-1x-reg",
    "3-LruNet-1x-k2-reg8",
    "1.2.3.4-LruNet-0.5x-g4-sgroup-k3-reg4",
]


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("size", [28, 32])
def test_forward_and_every_param_gets_gradient(name, size):
    torch.manual_seed(0)
    cfg = parse_name(name, input_size=size)
    model = LruNet(cfg)
    x = torch.rand(4, 3, size, size)
    out = model(x)
    assert out.shape == (4, 10) and (out >= 0).all()
    (out.logsumexp(1).sum() + out.sum()).backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None]
    zero = [n for n, p in model.named_parameters() if not p.grad.abs().sum() > 0]
    assert len(zero) <= 2, zero
    for n, p in model.named_parameters():
        if any(kind in n for kind in (".dw_list.", ".pw_list.", ".reg_list.")):
            assert p.grad.abs().sum() > 0, n


# --- the CPU fast path against the plain pass ----------------------------------------------------

FAST_CONFIGS = [
    "3-LruNet-1x-k2",
    "5.3.1.2-LruNet-0.5x-k2",
    "3-LruNet-0.5x-reg",
    "4-LruNet-0.5x-k3-reg8",
    "1.2.3.4-LruNet-0.5x-g4-sgroup-k3-reg4",
    "3-LruNet-0.5x-untied-reg2",
    "3-LruNet-0.5x-snone-k2-reg",
]


def _plain_copy(model: LruNet) -> LruNet:
    plain = LruNet(model.cfg).to(next(model.parameters()).dtype)
    plain.load_state_dict(model.state_dict(), strict=True)
    for m in plain.modules():
        if isinstance(m, LruBlock):
            m.forward = m.forward_plain
    return plain


def _run(model: torch.nn.Module, x: torch.Tensor, train: bool):
    model.train(train)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    out = model(x)
    weights = torch.linspace(-1.0, 1.0, out.numel(), dtype=out.dtype).view_as(out)
    (out * weights).sum().backward()
    return out.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", FAST_CONFIGS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_fast_path_equals_plain_pass_float64(name, layout):
    cfg = parse_name(name, input_size=28)
    torch.manual_seed(0)
    fast_model = LruNet(cfg).to(torch.float64)
    with torch.no_grad():  # non-trivial BNs and regulators, so a mixed-up channel shows
        for n, t in fast_model.state_dict().items():
            if n.endswith(("running_mean", "bias")) and t.is_floating_point():
                t.uniform_(-0.5, 0.5)
            elif n.endswith(("running_var", "weight")) and t.dim() == 1:
                t.uniform_(0.5, 1.5)
            elif ".reg_list." in n:
                t.add_(torch.randn_like(t) * 0.1)
    plain = _plain_copy(fast_model)
    torch.manual_seed(2)
    x = torch.rand(4, 3, 28, 28, dtype=torch.float64)
    xf = x
    if layout == "channels_last":
        fast_model = fast_model.to(memory_format=torch.channels_last)
        xf = x.contiguous(memory_format=torch.channels_last)
    for train in (True, False):
        mode = "train" if train else "eval"
        out_plain, g_plain = _run(plain, x, train)
        out_fast, g_fast = _run(fast_model, xf, train)
        scale = out_plain.abs().max().item()
        torch.testing.assert_close(out_fast, out_plain, rtol=1e-9, atol=1e-9 * scale)
        assert g_plain.keys() == g_fast.keys()
        gscale = max(g.abs().max().item() for g in g_plain.values())
        for n in g_plain:
            torch.testing.assert_close(
                g_fast[n], g_plain[n], rtol=1e-9, atol=1e-9 * gscale, msg=f"{name} {mode} {n}"
            )
        sd_plain, sd_fast = plain.state_dict(), fast_model.state_dict()
        for n, t in sd_plain.items():
            if "running" in n:
                torch.testing.assert_close(sd_fast[n], t, rtol=1e-9, atol=1e-9)
            elif "num_batches" in n:
                assert torch.equal(t, sd_fast[n]), n


def test_fast_path_is_taken():
    model = LruNet(parse_name("4-LruNet-1x-k2-reg8")).eval()
    with torch.no_grad():
        for reg in model.stage1.reg_list:
            reg.weight.add_(torch.randn_like(reg.weight) * 0.1)
    x = torch.rand(2, 64, 16, 16)
    fast_out = model.stage1(x)
    plain_out = model.stage1.forward_plain(x)
    torch.testing.assert_close(fast_out, plain_out, rtol=1e-4, atol=1e-5)
    assert not torch.equal(fast_out, plain_out)  # folded BNs: different rounding, same function


# --- the registry entry --------------------------------------------------------------------------


def test_registry_entry():
    assert {"share_k", "regulator"} <= set(family.MODEL_KEYS) <= set(family.KNOBS)
    assert family.KNOBS["share_k"].type is int and family.KNOBS["share_k"].lo == 0
    assert family.KNOBS["regulator"].type is int and family.KNOBS["regulator"].lo == 0
    assert family.FAMILY.grammar.endswith("[-untied][-k<k>][-reg[<g>]]")
    for preset in ("14-LruNet-1x-k7", "14-LruNet-1x-reg8"):
        assert preset in family.FAMILY.presets
    for preset in family.FAMILY.presets:
        assert parse_name(preset).name == preset
    cfg = family.from_knobs({"reuse": 14, "share_k": 7, "regulator": 8})
    assert cfg.name == "14-LruNet-1x-k7-reg8"
    assert family.to_knobs(cfg)["share_k"] == 7 and family.to_knobs(cfg)["regulator"] == 8
    text = "\n".join(family.FAMILY.details(cfg))
    assert "[2, 2, 2, 2]" in text and "56" in text and "8 groups" in text
    text = "\n".join(family.FAMILY.details(parse_name("8-LruNet-1x")))
    assert "one dw+pw pair per stage" in text and "regulator    none" in text
