"""The model against the paper: exact counts (Tables 2, 4, 5, 6), forward/backward on every
preset and random configs, the name grammar, validation errors, and the `describe` command."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lrunet.config import SHUFFLE_VARIANTS, LruNetConfig, canonical_name, parse_name
from lrunet.counting import count, count_by_hooks
from lrunet.model import LruNet, channel_shuffle, shuffle_permutation, swap_shuffle
from lrunet.reference import REFERENCE_GEOMETRY

ROOT = Path(__file__).resolve().parents[1]
NS = [1, 2, 4, 6, 8, 10, 12, 14, 16]

# (params, paper MFLOPs) from LRUNET_SPEC.md §2; the paper's Table 6 stops at N=12.
TABLE2 = dict(
    zip(
        NS,
        [
            (131402, 3.47),
            (137162, 6.30),
            (148682, 11.97),
            (160202, 17.63),
            (171722, 23.29),
            (183242, 28.95),
            (194762, 34.61),
            (206282, 40.27),
            (217802, 45.93),
        ],
    )
)
TABLE5 = dict(
    zip(
        NS,
        [
            (513956, 10.44),
            (525476, 19.77),
            (548516, 38.44),
            (571556, 57.10),
            (594596, 75.76),
            (617636, 94.42),
            (640676, 113.08),
            (663716, 131.74),
            (686756, 150.40),
        ],
    )
)
TABLE6 = dict(
    zip(
        NS[:7],
        [
            (130250, 2.85),
            (136010, 5.40),
            (147530, 10.50),
            (159050, 15.61),
            (170570, 20.71),
            (182090, 25.81),
            (193610, 30.92),
        ],
    )
)
PAPER_ROWS = (
    [("cifar10", f"{n}-LruNet-1x", *TABLE2[n]) for n in TABLE2]
    + [("cifar100", f"{n}-LruNet-2x", *TABLE5[n]) for n in TABLE5]
    + [("fashionmnist", f"{n}-LruNet-1x", *TABLE6[n]) for n in TABLE6]
)


def test_paper_has_25_rows():
    assert len(PAPER_ROWS) == 25


@pytest.mark.parametrize("dataset,name,params,mflops", PAPER_ROWS)
def test_paper_tables_exact(dataset, name, params, mflops):
    cfg = parse_name(name, **REFERENCE_GEOMETRY[dataset])
    c = count(cfg)
    assert c.params == params
    assert f"{c.mflops:.2f}" == f"{mflops:.2f}"
    assert LruNet(cfg).num_params() == params


@pytest.mark.parametrize(
    "dataset,name",
    [
        ("cifar10", "1-LruNet-1x"),
        ("cifar10", "14-LruNet-1x"),
        ("cifar100", "14-LruNet-2x"),
        ("fashionmnist", "10-LruNet-1x"),
    ],
)
def test_analytic_counts_equal_hook_counts(dataset, name):
    cfg = parse_name(name, **REFERENCE_GEOMETRY[dataset])
    assert count(cfg) == count_by_hooks(LruNet(cfg))


def test_table7_conv_params():
    assert count(parse_name("14-LruNet-1x")).conv_params == 125_002
    assert count(parse_name("14-LruNet-2x", num_classes=100)).conv_params == 501_284
    fm = REFERENCE_GEOMETRY["fashionmnist"]
    assert count(parse_name("10-LruNet-1x", **fm)).conv_params == 123_850


@pytest.mark.parametrize("n,params", [(8, 901_962), (14, 1_562_442)])
def test_table4_untied(n, params):
    cfg = parse_name(f"{n}-LruNet-1x-untied")
    assert count(cfg).params == params
    assert LruNet(cfg).num_params() == params
    assert cfg.depth == {8: 67, 14: 115}[n]


def test_conv_params_do_not_grow_with_reuse_when_tied():
    conv = {count(LruNetConfig(reuse=n)).conv_params for n in (1, 3, 9, 16)}
    assert len(conv) == 1
    untied = [count(LruNetConfig(reuse=n, sharing="untied")).conv_params for n in (1, 2)]
    assert untied[1] > untied[0]


def test_tied_block_has_one_conv_pair():
    m = LruNet(LruNetConfig(reuse=5))
    convs = [n for n, mod in m.stage3.named_modules() if isinstance(mod, torch.nn.Conv2d)]
    assert convs == ["dw", "pw"]
    assert len(m.stage3.dw_bn_list) == 5 and len(m.stage3.pw_bn_list) == 5


# --- forward / backward --------------------------------------------------------------------------


def _random_configs(k: int, seed: int = 0) -> list[LruNetConfig]:
    rng = random.Random(seed)
    out = []
    while len(out) < k:
        try:
            out.append(
                LruNetConfig(
                    reuse=tuple(rng.randint(1, 3) for _ in range(4)),
                    width=rng.choice([0.25, 0.5, 0.75, 1.0, 1.5, 2.0]),
                    groups=rng.choice([1, 2, 4, 8]),
                    shuffle=rng.choice(SHUFFLE_VARIANTS),
                    dropout=rng.choice([0.0, 0.3, 0.5]),
                    sharing=rng.choice(["tied", "untied"]),
                    num_classes=rng.choice([10, 100]),
                    in_channels=rng.choice([1, 3]),
                )
            )
        except ValueError:
            continue
    return out


PRESETS = [parse_name(f"{n}-LruNet-1x") for n in (1, 2, 4)] + [
    parse_name("1-LruNet-2x", num_classes=100),
    parse_name("2-LruNet-1x-untied"),
]


@pytest.mark.parametrize("cfg", PRESETS + _random_configs(8), ids=lambda c: c.name)
@pytest.mark.parametrize("size", [28, 32])
def test_forward_and_every_param_gets_gradient(cfg, size):
    torch.manual_seed(0)
    model = LruNet(cfg.replace(input_size=size))
    x = torch.rand(4, cfg.in_channels, size, size)
    out = model(x)
    assert out.shape == (4, cfg.num_classes)
    # the reference's ReLU on the class maps: logits are never negative
    assert (out >= 0).all()
    # logsumexp reaches every logit, including those the final ReLU zeroes on this batch
    (out.logsumexp(1).sum() + out.sum()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    zero = [n for n, p in model.named_parameters() if not p.grad.abs().sum() > 0]
    assert len(zero) <= 2, zero  # the final conv rows of a class ReLU'd to 0 on every sample


# --- shuffles ------------------------------------------------------------------------------------


def test_swap_shuffle_is_the_reference_permutation():
    c = 64
    perm = shuffle_permutation(LruNetConfig(), c)
    assert perm == [c // 2 + k if i % 2 == 0 else k for k in range(c // 2) for i in (0, 1)]
    assert all(perm[i] != i for i in range(c))  # no fixed point (paper's reason for the swap)


@pytest.mark.parametrize(
    "c,order_swap,order_plain", [(64, 12, 6), (128, 14, 7), (256, 16, 8), (512, 18, 9)]
)
def test_shuffle_orders(c, order_swap, order_plain):
    def order(f):
        x = torch.arange(c, dtype=torch.float32).view(1, c, 1, 1)
        y, k = f(x), 1
        while not torch.equal(y, x):
            y, k = f(y), k + 1
        return k

    assert order(swap_shuffle) == order_swap
    assert order(lambda t: channel_shuffle(t, 2)) == order_plain


def test_one_reuse_never_shuffles():
    torch.manual_seed(0)
    a = LruNet(parse_name("1-LruNet-1x")).eval()
    b = LruNet(parse_name("1-LruNet-1x-snone")).eval()
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(a(x), b(x))


# --- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "14-LruNet-1x",
        "1-LruNet-2x",
        "2.4.8.14-LruNet-1x",
        "8-LruNet-0.5x-g4-splain-d0.3-untied",
        "3-LruNet-1.5x-snone",
        "1-LruNet-1x-d0",
    ],
)
def test_canonical_names_parse_and_format_back(name):
    assert parse_name(name).name == name


def test_lenient_spellings_are_canonicalised():
    assert canonical_name("14-lrunet-1.0X") == "14-LruNet-1x"
    assert canonical_name("8.8.8.8-LruNet-1x-g8-sswap-d0.5-tied") == "8-LruNet-1x"


@pytest.mark.parametrize("cfg", _random_configs(40, seed=1), ids=lambda c: c.name)
def test_every_config_round_trips_through_its_name(cfg):
    geometry = dict(
        num_classes=cfg.num_classes, in_channels=cfg.in_channels, input_size=cfg.input_size
    )
    assert parse_name(cfg.name, **geometry) == cfg


def test_config_dict_round_trip():
    cfg = parse_name("2.4.8.14-LruNet-2x-g4-sgroup", num_classes=100)
    assert LruNetConfig.from_dict(cfg.to_dict()) == cfg


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(groups=3), "groups"),
        (dict(groups=0), "groups"),
        (dict(reuse=0), "reuse"),
        (dict(reuse=(1, 2, 3)), "reuse"),
        (dict(reuse=(1, 2, 0, 4)), "reuse"),
        (dict(shuffle="zigzag"), "shuffle"),
        (dict(sharing="half"), "sharing"),
        (dict(width=0.01), "width"),
        (dict(width=-1), "width"),
        (dict(dropout=1.0), "dropout"),
        (dict(width=0.5, groups=64), "groups"),
        (dict(width=3 / 64, groups=1, shuffle="swap"), "shuffle"),
        (dict(num_classes=0), "num_classes"),
    ],
)
def test_invalid_configs_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}:"):
        LruNetConfig(**kwargs)


def test_invalid_messages_list_allowed_values():
    with pytest.raises(ValueError, match="swap, plain, group, none"):
        LruNetConfig(shuffle="zigzag")
    with pytest.raises(ValueError, match=r"\[1, 2, 4, 8, 16, 32, 64\]"):
        LruNetConfig(groups=3)


@pytest.mark.parametrize(
    "name",
    [
        "14-LruNet",
        "LruNet-1x",
        "14-ResNet-1x",
        "1.2-LruNet-1x",
        "14-LruNet-1x-q3",
        "14-LruNet-1x-g4-g8",
        "14-LruNet-1x-szig",
    ],
)
def test_unparsable_names(name):
    with pytest.raises(ValueError):
        parse_name(name)


def test_general_width_stem_rule():
    # 1x and 2x are the reference's (64-wide stem, tiled for 2x); others use a stem of F1
    assert LruNetConfig(width=1).stem_width == 64
    assert LruNetConfig(width=2).stem_width == 64 and LruNetConfig(width=2).stage_widths[0] == 128
    assert LruNetConfig(width=1.5).stem_width == 96
    assert LruNetConfig(width=0.5).stem_width == 32


# --- CLI -----------------------------------------------------------------------------------------


def _launch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_describe_json():
    p = _launch("describe", "14-LruNet-1x", "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d == {
        "name": "14-LruNet-1x",
        "params": 206282,
        "conv_params": 125002,
        "macs": 35497984,
        "mflops": pytest.approx(40.26888),
    }
    p = _launch("describe", "10-LruNet-1x", "--dataset", "fashionmnist", "--json")
    assert json.loads(p.stdout)["params"] == 182090


@pytest.mark.parametrize("arch", ["14-LruNet", "3-LruNet-1x-g5", "0-LruNet-1x", "1-LruNet-1x-sx"])
def test_describe_bad_arch_is_one_line_exit_2(arch):
    p = _launch("describe", arch)
    assert p.returncode == 2
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr and "error:" in lines[0]
