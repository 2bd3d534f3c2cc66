"""The DACNN family (lrunet/families/dacnn.py): the release's counts (DACNN_SPEC.md §2, §5.2), the
analytic counts against hooks, the name grammar, knobs, sharing, regulators and gradients."""

from __future__ import annotations

import random

import pytest
import torch

from lrunet import registry
from lrunet.counting import count_by_hooks
from lrunet.families._dacnn_net import DacnnNet
from lrunet.families.dacnn import (
    KNOBS,
    PRESETS,
    DacnnConfig,
    count,
    dead_params,
    details,
    from_knobs,
    parse_name,
    to_knobs,
)

# DACNN_SPEC.md §5.2 (params at 10 / 100 classes, MACs at 10, 3x32x32), plus the -release rows
# of its notes; the spec's "effective" counts are the plain names, its "unique" ones -release.
TABLE = [
    ("2.2.3.3.3-DACNN-vgg128-relubn-b", 155_786, 167_396, 267_191_552),
    ("2.2.3.3.3-DACNN-vgg64d-u2-b-release", 4_697_930, 4_744_100, 313_201_664),
    ("2.2.3.3.3-DACNN-vgg64d-u2-b", 4_698_954, 4_745_124, 313_201_664),
    ("2.2.2.2-DACNN-res128", 156_554, 168_164, 805_700_864),
    ("3.4.6.3-DACNN-res128", 160_650, 172_260, 1_338_901_760),
    ("3.4.6.3-DACNN-res128-release", 164_746, 176_356, 1_338_901_760),
    ("2.2.2.2-DACNN-res64d-rot-b", 4_872_074, 4_918_244, 555_422_720),
    ("3.4.6.3-DACNN-res64d-rot-b", 4_879_498, 4_925_668, 1_159_402_496),
    ("3.4.6.3-DACNN-res64d-rot-b-release", 6_286_218, 6_332_388, 1_159_402_496),
    ("2.2.2.2-DACNN-res64d-rot-b-reg", 5_568_394, 5_614_564, 588_977_152),
    ("3.4.6.3-DACNN-res64d-rot-b-reg", 6_136_970, 6_183_140, 1_226_511_360),
    # the [2,2,2,2] release nets (spec §2 "unique"): dead modules included
    ("2.2.2.2-DACNN-res128-release", 158_602, 170_212, 805_700_864),
    ("2.2.2.2-DACNN-res64d-rot-b-release", 5_717_642, 5_763_812, 555_422_720),
    ("2.2.2.2-DACNN-res64d-rot-b-reg-release", 5_717_642, 5_763_812, 588_977_152),
]
# DACNN_SPEC.md §2, LruNet-convention FLOPs at 10 classes (dead modules never run)
FLOPS = [
    ("2.2.3.3.3-DACNN-vgg128-relubn-b", 268_446_080),
    ("2.2.3.3.3-DACNN-vgg64d-u2-b-release", 314_152_448),
    ("3.4.6.3-DACNN-res128-release", 1_342_947_072),
    ("3.4.6.3-DACNN-res128", 1_342_947_072),
    ("3.4.6.3-DACNN-res64d-rot-b-release", 1_162_599_424),
    ("3.4.6.3-DACNN-res64d-rot-b", 1_162_599_424),
    ("3.4.6.3-DACNN-res64d-rot-b-reg", 1_230_158_848),
]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(("name", "p10", "p100", "macs"), TABLE)
def test_release_counts_exact(name, p10, p100, macs):
    c10, c100 = count(parse_name(name)), count(parse_name(name, num_classes=100))
    assert (c10.params, c100.params, c10.macs) == (p10, p100, macs)


@pytest.mark.parametrize(("name", "flops"), FLOPS)
def test_release_flops_exact(name, flops):
    assert count(parse_name(name)).flops == flops


def test_hand_worked_vgg_flops():
    # vgg_Fix_BN: MACs + 3 per conv/BN output + 4 per 2x2 pool output + 128 average-pool inputs
    outs = 128 * (2 * 32**2 + 2 * 16**2 + 3 * 8**2 + 3 * 4**2 + 3 * 2**2)
    pools = 128 * (16**2 + 8**2 + 4**2 + 2**2 + 1)
    assert 267_191_552 + 3 * outs + 4 * pools + 128 == 268_446_080


def test_table_names_are_canonical():
    """The §5.2 table's spellings are the canonical names (-reg after -b); the grammar line's order
    (-reg before -rot) parses to the same config."""
    for name, *_ in TABLE:
        assert parse_name(name).name == name
    assert set(PRESETS) >= {name for name, *_ in TABLE[:11]}
    assert parse_name("2.2.2.2-DACNN-res64d-reg-rot-b").name == "2.2.2.2-DACNN-res64d-rot-b-reg"


@pytest.mark.parametrize("name", PRESETS)
def test_presets_hooks_equal_analytic(name):
    cfg = parse_name(name)
    assert cfg.name == name
    assert count_by_hooks(DacnnNet(cfg)) == count(cfg)


def random_config(rng: random.Random, **geometry) -> DacnnConfig:
    """A random valid small config."""
    while True:
        body = rng.choice(("vgg", "res"))
        stages = rng.randint(1, 5)
        width = rng.choice((2, 4, 6, 8))
        kw = dict(
            layout=tuple(rng.randint(1, 3) for _ in range(stages)),
            body=body,
            width=width,
            doubling=rng.random() < 0.5,
            scope=rng.choice(("width", "stage", "none", "g1", "g2", "g3")),
            untied_stages=rng.randint(0, stages),
            regulator=rng.choice((0, 0, 1, 2, 3)),
            rot=body == "res" and rng.random() < 0.5,
            relubn=rng.random() < 0.5,
            bias=rng.random() < 0.5,
            release=rng.random() < 0.4,
        )
        try:
            return DacnnConfig(**kw, **geometry)
        except ValueError:  # e.g. regulator groups that do not divide the width
            continue


@pytest.mark.parametrize("size", [28, 32])
@pytest.mark.parametrize("channels", [1, 3])
def test_random_configs_hooks_equal_analytic(size, channels):
    rng = random.Random(size * 10 + channels)
    for _ in range(20):
        cfg = random_config(rng, in_channels=channels, input_size=size, num_classes=7)
        assert count_by_hooks(DacnnNet(cfg)) == count(cfg), cfg.name
        assert parse_name(cfg.name, in_channels=channels, input_size=size, num_classes=7) == cfg


def test_fashion_mnist_sizes():
    cfg = parse_name("1.1.1.1.1-DACNN-vgg8d", in_channels=1, input_size=28)
    assert cfg.stage_sizes == (28, 14, 7, 4, 2, 1)
    assert DacnnNet(cfg)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_names_round_trip_and_case():
    rng = random.Random(0)
    for name in [*PRESETS, *(random_config(rng).name for _ in range(50))]:
        cfg = parse_name(name)
        assert cfg.name == name and parse_name(cfg.name) == cfg
        assert parse_name(name.upper()) == cfg == parse_name(name.lower())
        assert DacnnConfig.from_dict(cfg.to_dict()) == cfg
        assert from_knobs(to_knobs(cfg)) == cfg
        assert registry.config_from_dict(registry.config_to_dict(cfg)) == cfg
    assert parse_name("2.2-DACNN-res8-twidth-u0-reg1").name == "2.2-DACNN-res8-reg"
    # options in any order parse; the canonical order is fixed
    assert parse_name("1.1-dacnn-RES16D-b-rot-tg2-u1").name == "1.1-DACNN-res16d-tg2-u1-rot-b"
    assert (
        parse_name("1-DACNN-res8-release-reg2-relubn").name == "1-DACNN-res8-relubn-reg2-release"
    )


def test_registry():
    cfg = registry.parse_name("2.2.2.2-DACNN-res128", num_classes=10)
    assert cfg == DacnnConfig() and registry.get_family("dacnn").config is DacnnConfig
    assert registry.count(cfg) == count(cfg)
    model = registry.build_model("1.1.1-DACNN-vgg16", num_classes=3, input_size=8)
    assert model.cfg.num_classes == 3 and model(torch.zeros(1, 3, 8, 8)).shape == (1, 3)
    assert all(key in KNOBS for key in to_knobs(cfg))
    assert (
        registry.config_from_knobs({"family": "dacnn", "body": "vgg", "width": 16}).body == "vgg"
    )
    assert any("kernel" in line for line in details(parse_name(PRESETS[-3])))


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("2.2-DACNN-res64-foo", ["-t<scope>", "-reg", "-release"]),
        ("2.2-DACNN-res0", ["width", ">= 1"]),
        ("2.2-DACNN-res", ["width", "res128"]),
        ("2.2-DACNN-64", ["body", "vgg, res"]),
        ("2.2-DACNN-res12.5", ["width", "'12.5'", "res128", "res64d"]),
        ("2.2-DACNN-res64-tfoo", ["scope", "width, stage, none", "g<k>"]),
        ("2.2-DACNN-res64-u3", ["untied_stages", "0..2"]),
        ("2.2-DACNN-mobile64", ["body", "vgg, res"]),
        ("2.2-DACNN-vgg64-rot", ["rot", "res"]),
        ("2.2-DACNN-res12-reg5", ["regulator", "[1, 2, 3, 4, 6, 12]"]),
        ("2.x-DACNN-res64", ["layout"]),
        ("2.0-DACNN-res64", ["layout", "1..64"]),
        ("2.2-DACNN-res64-rot-rot", ["twice"]),
        ("2.2-DACNN-res64-reg0", ["-reg<g>"]),
    ],
)
def test_bad_names(name, words):
    with pytest.raises(ValueError) as err:
        parse_name(name)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_bad_configs_and_knobs():
    with pytest.raises(ValueError, match="bias: expected True or False"):
        DacnnConfig(bias=1)
    with pytest.raises(ValueError, match="pass only"):
        parse_name("2.2-DACNN-res64", bias=True)
    with pytest.raises(ValueError, match="no knob"):
        from_knobs({"reuse": 3})
    with pytest.raises(ValueError, match="rot: 'yes' is not one of off, on"):
        from_knobs({"rot": "yes"})
    with pytest.raises(ValueError, match="at most 5"):
        to_knobs(parse_name("1.1.1.1.1.1-DACNN-res8"))


def test_from_knobs_layout():
    assert from_knobs({}).layout == (2, 2, 2, 2)
    assert from_knobs({"blocks_5": 3}).layout == (2, 2, 2, 2, 3)
    v = {"stages": 2, "blocks_1": 1, "blocks_2": 4, "blocks_3": 9, "scope": "group"}
    cfg = from_knobs(v, num_classes=100)
    assert (cfg.layout, cfg.scope, cfg.num_classes) == ((1, 4), "g2", 100)
    assert from_knobs({**v, "group_size": 3, "scope": "stage"}).scope == "stage"


def test_monotone_knobs():
    rng = random.Random(5)
    fam = registry.get_family("dacnn")
    checked = 0
    for _ in range(40):
        base = to_knobs(random_config(rng))
        for knob in fam.monotone:
            up = {**base, knob: base[knob] + 1}
            try:
                a, b = count(from_knobs(base)), count(from_knobs(up))
            except ValueError:  # e.g. -u past the last stage
                continue
            checked += 1
            for field in ("params", "conv_params", "macs", "flops"):
                assert getattr(b, field) >= getattr(a, field), (knob, from_knobs(base).name)
    assert checked > 100


GRAD_NAMES = [
    "2.1.2-DACNN-res8d-reg2-rot-relubn-b-release",
    "2.1.2-DACNN-res8d-rot-b-release",
    "1.2.1-DACNN-res8-tg2-u1-reg-release",
    "2.2.1.2-DACNN-vgg4d-u1-reg2-b-release",
    "1.2.2-DACNN-vgg8-tstage-relubn-reg",
    "2.2.2-DACNN-res8d-tnone",
]


@pytest.mark.parametrize("name", GRAD_NAMES)
def test_every_live_parameter_gets_a_gradient(name):
    cfg = parse_name(name, input_size=16, num_classes=5)
    torch.manual_seed(0)
    net = DacnnNet(cfg)
    x = torch.randn(2, 3, 16, 16)
    out = net(x)
    out.square().sum().backward()
    dead = dead_params(cfg)
    names = {n for n, _ in net.named_parameters()}
    assert dead <= names and bool(dead) == (cfg.release and cfg.body == "res")
    for n, p in net.named_parameters():
        assert (p.grad is None) == (n in dead), n
    # channels_last in, the same numbers out (eval: no batch statistics)
    net.eval()
    with torch.no_grad():
        a = net(x)
        b = net.to(memory_format=torch.channels_last)(
            x.contiguous(memory_format=torch.channels_last)
        )
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize(
    "name", ["2.2.2-DACNN-res8d-reg-rot-b", "2.2-DACNN-res8-reg4-relubn", "2.3.2-DACNN-vgg8d-reg2"]
)
def test_regulators_start_as_identity(name):
    with_reg = parse_name(name, input_size=16)
    plain = with_reg.replace(regulator=0)
    torch.manual_seed(1)
    a = DacnnNet(plain).eval()
    b = DacnnNet(with_reg).eval()
    missing, unexpected = b.load_state_dict(a.state_dict(), strict=False)
    assert not unexpected and missing and all("regulator" in k for k in missing)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(a(x), b(x), atol=1e-6)


def test_shared_kernel_is_one_tensor():
    counts = [count(parse_name(f"{n}.{n}.{n}-DACNN-res16-b", input_size=8)) for n in (1, 2, 4)]
    assert len({c.conv_params for c in counts}) == 1  # one 16->16 kernel whatever the depth
    assert counts[1].params - counts[0].params == 3 * 2 * (2 * 16)  # 3 blocks x 2 new BNs
    net = DacnnNet(parse_name("3.3.3-DACNN-res16-b", input_size=8))
    assert len(net.kernels) == 1 and len(list(net.parameters())) == len(net.state_dict()) - len(
        [k for k in net.state_dict() if "running" in k or "num_batches" in k]
    )
    calls = []
    net.kernels[0].register_forward_hook(lambda m, i, o: calls.append(1))
    net(torch.zeros(1, 3, 8, 8))
    assert len(calls) == 18  # 9 blocks x 2 convs, one module
    # -tstage: one per stage; -tg2: ceil(6 / 2) per stage; -tnone: one per use; -u1 unties stage 1
    for scope, kernels in (("-tstage", 3), ("-tg2", 9), ("-tg4", 6), ("-tnone", 18), ("-u1", 7)):
        assert len(DacnnNet(parse_name(f"3.3.3-DACNN-res16{scope}")).kernels) == kernels
    # anchoring crosses stage boundaries at equal width (Mix_Net: the 512 kernel in stages 4-5)
    mix = DacnnNet(parse_name("2.2.3.3.3-DACNN-vgg64d-u2-b"))
    assert [k.out_channels for k in mix.kernels] == [64, 128, 256, 512]


def test_rotation_is_a_cyclic_shift():
    from lrunet.families._dacnn_net import rotate

    x = torch.arange(5.0).view(1, 5, 1, 1)
    assert rotate(x).flatten().tolist() == [1, 2, 3, 4, 0]
    assert rotate(x, 2).flatten().tolist() == [2, 3, 4, 0, 1]
