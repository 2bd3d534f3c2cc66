"""The Table 7 baselines (lrunet.families.mobilenet, .shufflenet) against the LruNet paper: the
12 rows exact (params and conv+linear params, LRUNET_SPEC.md "Table 7 — baselines"), analytic
counts equal to hook counts, forward + backward on every preset, the name grammars and their
errors, knobs."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch

from lrunet.counting import count_by_hooks
from lrunet.families import mobilenet, shufflenet
from lrunet.families._shufflenet import channel_shuffle
from lrunet.families.mobilenet import MobileNetV2Config
from lrunet.families.shufflenet import SHUFFLENETV2_TABLE, ShuffleNetConfig, ShuffleNetV2Config
from lrunet.registry import (
    build_model,
    canonical_name,
    config_from_dict,
    config_from_knobs,
    config_to_dict,
    config_to_knobs,
    count,
    get_family,
    parse_name,
)

CONFIGS = (*mobilenet.CONFIGS, *shufflenet.CONFIGS)
FAMILIES = [get_family(c.TAG.lower()) for c in CONFIGS]
PRESETS = [p for f in FAMILIES for p in f.presets]
GEOMETRY = {
    "CIFAR-10": dict(num_classes=10, in_channels=3, input_size=32),
    "CIFAR-100": dict(num_classes=100, in_channels=3, input_size=32),
    "F-MNIST": dict(num_classes=10, in_channels=1, input_size=28),
}
# (dataset, model, params, conv+linear params) as the reference's constructors measure them
TABLE7 = [
    ("CIFAR-10", "ShuffleNet-0.5x-g3", 228565, 216697),
    ("CIFAR-10", "ShuffleNetV2-0.25x", 211082, 205066),
    ("CIFAR-10", "MobileNet-0.25x", 215642, 210170),
    ("CIFAR-10", "MobileNetV2-0.25x", 249122, 238674),
    ("CIFAR-100", "ShuffleNet-0.75x-g3", 559633, 541837),
    ("CIFAR-100", "ShuffleNetV2-0.75x", 568408, 559004),
    ("CIFAR-100", "MobileNet-0.4x", 567217, 558495),
    ("CIFAR-100", "MobileNetV2-0.4x", 603248, 588268),
    ("F-MNIST", "ShuffleNet-0.5x-g3", 228349, 216481),
    ("F-MNIST", "ShuffleNetV2-0.25x", 210650, 204634),
    ("F-MNIST", "MobileNet-0.25x", 215498, 210026),
    ("F-MNIST", "MobileNetV2-0.25x", 248978, 238530),
]


def test_table7_has_12_baseline_rows_all_presets():
    assert len(TABLE7) == 12
    assert {name for _, name, *_ in TABLE7} <= set(PRESETS)


@pytest.mark.parametrize("dataset, name, params, conv_params", TABLE7)
def test_table7_exact(dataset, name, params, conv_params):
    c = count(parse_name(name, **GEOMETRY[dataset]))
    assert (c.params, c.conv_params) == (params, conv_params)


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("classes, channels, size", [(10, 3, 32), (100, 1, 32), (10, 1, 28)])
def test_analytic_counts_equal_hook_counts(name, classes, channels, size):
    cfg = parse_name(name, num_classes=classes, in_channels=channels, input_size=size)
    assert count(cfg) == count_by_hooks(build_model(cfg))


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("channels, size", [(3, 32), (1, 28)])
def test_forward_and_every_param_gets_gradient(name, channels, size):
    torch.manual_seed(0)
    cfg = parse_name(name, num_classes=7, in_channels=channels, input_size=size)
    model = build_model(cfg)
    assert model.cfg == cfg
    out = model(torch.rand(2, channels, size, size))
    assert out.shape == (2, 7)
    torch.nn.functional.cross_entropy(out, torch.tensor([1, 5])).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize(
    "name, last",
    [
        ("MobileNet-0.5x", 512),
        ("MobileNetV2-1.5x", 1920),  # last channel scales only for w > 1
        ("ShuffleNet-1x-g8", 1536),
        ("ShuffleNet-0.25x-g3", 240),
        ("ShuffleNetV2-2x", 2048),
    ],
)
def test_widths_outside_table7_build_and_count(name, last):
    cfg = parse_name(name, in_channels=1, input_size=28)
    model = build_model(cfg)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert next(m for m in model.modules() if isinstance(m, torch.nn.Linear)).in_features == last
    assert count(cfg) == count_by_hooks(model)


@pytest.mark.parametrize("size", [1, 7, 40])
def test_any_input_size_runs(size):
    for name in (
        "MobileNet-0.25x",
        "MobileNetV2-0.25x",
        "ShuffleNet-0.5x-g3",
        "ShuffleNetV2-0.25x",
    ):
        cfg = parse_name(name, input_size=size)
        model = build_model(cfg).eval()
        assert model(torch.rand(1, 3, size, size)).shape == (1, 10)
        assert count(cfg) == count_by_hooks(model)


def test_channel_shuffle_interleaves_groups():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]


# --- counts along the knobs --------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES[:3], ids=lambda f: f.name)
def test_counts_non_decreasing_in_width(family):
    fields = ("params", "conv_params", "macs", "flops")
    for extra in [{"groups": 3}, {"groups": 8}] if family.name == "shufflenet" else [{}]:
        counts = []
        for k in range(1, 721):  # widths k/240 up to 3 (1/3 is the narrowest g8)
            try:
                counts.append(count(family.config(width=k / 240, **extra)))
            except ValueError:
                continue  # a width the channel rules forbid
        assert len(counts) >= 3
        for a, b in zip(counts, counts[1:]):
            assert all(getattr(b, f) >= getattr(a, f) for f in fields), (a, b)


def test_monotone_only_where_every_width_builds():
    assert get_family("mobilenet").monotone == get_family("mobilenetv2").monotone == ("width",)
    # a ShuffleNet range's corners may not build: the search-space checks enumerate its grid
    assert get_family("shufflenet").monotone == get_family("shufflenetv2").monotone == ()
    family = get_family("shufflenet")
    widths = family.grid_values("width", 0.25, 1.0)
    assert {0.25, 0.5, 0.75, 1.0} <= set(widths) and min(widths) == 0.25 and max(widths) == 1.0
    for w in widths:
        assert any(_builds(w, g) for g in (3, 8)), w
    assert not _builds(0.6, 3) and 0.6 not in widths
    assert family.grid_values("groups", 3, 8) == [3, 8]


def _builds(width: float, groups: int) -> bool:
    try:
        ShuffleNetConfig(width=width, groups=groups)
    except ValueError:
        return False
    return True


def test_shufflenetv2_counts_grow_along_its_table():
    counts = [count(ShuffleNetV2Config(width=w)) for w in sorted(SHUFFLENETV2_TABLE)]
    for a, b in zip(counts, counts[1:]):
        assert all(getattr(b, f) > getattr(a, f) for f in ("params", "conv_params", "macs"))


# --- names, dicts, knobs -------------------------------------------------------------------------


@pytest.mark.parametrize("name", PRESETS)
def test_preset_names_round_trip(name):
    cfg = parse_name(name, num_classes=100)
    assert cfg.name == name
    assert parse_name(cfg.name, num_classes=100) == cfg
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert config_from_knobs(config_to_knobs(cfg), num_classes=100) == cfg
    assert cfg.replace(in_channels=1).in_channels == 1


@pytest.mark.parametrize(
    "lenient, canonical",
    [
        ("mobilenet-0.250X", "MobileNet-0.25x"),
        ("MOBILENETV2-1.0x", "MobileNetV2-1x"),
        ("shufflenet-0.50x", "ShuffleNet-0.5x-g3"),  # no -g: the reference's default g3
        ("ShuffleNet-1x-G8", "ShuffleNet-1x-g8"),
        (" shufflenetv2-1.50x ", "ShuffleNetV2-1.5x"),
    ],
)
def test_lenient_spellings_are_canonicalised(lenient, canonical):
    assert canonical_name(lenient) == canonical


@pytest.mark.parametrize(
    "name, allowed",
    [
        ("ShuffleNetV2-0.3x", "allowed widths: 0.25, 0.5, 0.75, 1, 1.5, 2"),
        ("ShuffleNet-0.5x-g5", "not one of 3, 8"),
        ("ShuffleNet-0.5x-g8", "widths that work with g8 include 1, 2"),
        ("ShuffleNet-0.1x-g3", "widths that work with g3 include 0.125, 0.15, 0.25"),
        ("ShuffleNet-1x-s2", "ShuffleNet names take only -g3 or -g8"),
        ("ShuffleNet-1x-g3-g8", "ShuffleNet names take only -g3 or -g8"),
        ("MobileNet-1x-g3", "MobileNet names take no options"),
        ("MobileNetV2-1x-untied", "MobileNetV2 names take no options"),
        ("MobileNet-0.01x", "width >= 1/32"),
        ("MobileNetV2-0.05x", "width >= 1/16"),
        ("MobileNetV2-x", "expected MobileNetV2-<width>x"),
    ],
)
def test_bad_names_name_the_allowed_values(name, allowed):
    with pytest.raises(ValueError, match=re.escape(allowed)):
        parse_name(name)


def test_geometry_is_not_spelled_twice():
    with pytest.raises(ValueError, match="given both"):
        parse_name("ShuffleNet-1x-g3", groups=8)


def test_knobs():
    cfg = config_from_knobs({"family": "shufflenetv2", "width": "0.75"}, num_classes=100)
    assert cfg == parse_name("ShuffleNetV2-0.75x", num_classes=100)
    assert config_from_knobs({"family": "shufflenetv2", "width": 0.75}, num_classes=100) == cfg
    assert config_to_knobs(cfg) == {"family": "shufflenetv2", "width": "0.75"}
    assert get_family("shufflenetv2").knobs["width"].names == (
        "0.25",
        "0.5",
        "0.75",
        "1",
        "1.5",
        "2",
    )
    assert get_family("shufflenetv2").monotone == ()  # categorical: enumerated, not cornered
    for bad in ("0.3", "wide"):
        with pytest.raises(ValueError, match="0.25, 0.5, 0.75, 1, 1.5, 2"):
            config_from_knobs({"family": "shufflenetv2", "width": bad})
    assert config_to_knobs(ShuffleNetConfig(width=1.0, groups=8)) == {
        "family": "shufflenet",
        "width": 1.0,
        "groups": 8,
    }
    with pytest.raises(ValueError, match="widths that work with g8"):
        config_from_knobs({"family": "shufflenet", "width": 0.5, "groups": 8})
    with pytest.raises(ValueError, match="no knob"):
        config_from_knobs({"family": "mobilenet", "reuse": 4})
    with pytest.raises(ValueError, match="unknown MobileNetV2Config field"):
        MobileNetV2Config.from_dict({"width": 1.0, "dropout": 0.1})


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_registry_entries(family):
    assert family.tag == family.config.TAG
    assert "no weight sharing (the no-reuse reference)" in family.summary
    cfg = parse_name(family.presets[0])
    lines = family.details(cfg)
    assert any(line.startswith("depth") for line in lines)
    assert any(line.startswith("widths") for line in lines)
    assert family.dead_params(cfg) == set()


def test_families_import_without_torch():
    code = (
        "import sys, lrunet.families.mobilenet, lrunet.families.shufflenet; "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
