"""Tests driven by the family registry (as timm's tests/test_models.py is by its model registry):
every registered preset of every family, at every dataset geometry of the paper, builds, runs
forward and backward, gives every parameter a gradient (except a family's documented dead ones),
counts analytically what forward hooks measure, and round-trips its name and config dict. Also:
the registry's own rules, and `launch.py describe` giving the published counts exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json

import pytest
import torch
import torch.nn.functional as F

import launch
from lrunet.counting import count_by_hooks
from lrunet.datasets import DATASETS
from lrunet.registry import (
    Family,
    build_model,
    config_from_dict,
    config_to_dict,
    count,
    family_of,
    get_family,
    list_families,
    parse_name,
    presets,
    register_family,
)

GEOMETRIES = ("cifar10", "cifar100", "fashionmnist", "svhn")
PRESETS = presets()

# DACNN_SPEC.md §5.2: name -> (params at 10 classes, at 100 classes, MACs at 10 classes, 3x32x32)
DACNN_TABLE = {
    "2.2.3.3.3-DACNN-vgg128-relubn-b": (155_786, 167_396, 267_191_552),
    "2.2.3.3.3-DACNN-vgg64d-u2-b-release": (4_697_930, 4_744_100, 313_201_664),
    "2.2.3.3.3-DACNN-vgg64d-u2-b": (4_698_954, 4_745_124, 313_201_664),
    "2.2.2.2-DACNN-res128": (156_554, 168_164, 805_700_864),
    "3.4.6.3-DACNN-res128": (160_650, 172_260, 1_338_901_760),
    "3.4.6.3-DACNN-res128-release": (164_746, 176_356, 1_338_901_760),
    "2.2.2.2-DACNN-res64d-rot-b": (4_872_074, 4_918_244, 555_422_720),
    "3.4.6.3-DACNN-res64d-rot-b": (4_879_498, 4_925_668, 1_159_402_496),
    "3.4.6.3-DACNN-res64d-rot-b-release": (6_286_218, 6_332_388, 1_159_402_496),
    "2.2.2.2-DACNN-res64d-rot-b-reg": (5_568_394, 5_614_564, 588_977_152),
    "3.4.6.3-DACNN-res64d-rot-b-reg": (6_136_970, 6_183_140, 1_226_511_360),
}
# LRUNET_SPEC.md "Table 7 — baselines": (dataset, name) -> (params, conv+linear params)
TABLE7 = {
    ("cifar10", "ShuffleNet-0.5x-g3"): (228_565, 216_697),
    ("cifar10", "ShuffleNetV2-0.25x"): (211_082, 205_066),
    ("cifar10", "MobileNet-0.25x"): (215_642, 210_170),
    ("cifar10", "MobileNetV2-0.25x"): (249_122, 238_674),
    ("cifar10", "14-LruNet-1x"): (206_282, 125_002),
    ("cifar100", "ShuffleNet-0.75x-g3"): (559_633, 541_837),
    ("cifar100", "ShuffleNetV2-0.75x"): (568_408, 559_004),
    ("cifar100", "MobileNet-0.4x"): (567_217, 558_495),
    ("cifar100", "MobileNetV2-0.4x"): (603_248, 588_268),
    ("cifar100", "14-LruNet-2x"): (663_716, 501_284),
    ("fashionmnist", "ShuffleNet-0.5x-g3"): (228_349, 216_481),
    ("fashionmnist", "ShuffleNetV2-0.25x"): (210_650, 204_634),
    ("fashionmnist", "MobileNet-0.25x"): (215_498, 210_026),
    ("fashionmnist", "MobileNetV2-0.25x"): (248_978, 238_530),
    ("fashionmnist", "10-LruNet-1x"): (182_090, 123_850),
}


def _describe(*argv: str) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert launch.main(["describe", *argv, "--json"]) == 0
    return json.loads(out.getvalue())


# --- the registry ------------------------------------------------------------------------------


def test_every_family_is_registered():
    assert list_families()[0] == "lrunet"
    expected = {"lrunet", "dacnn", "mobilenet", "mobilenetv2", "shufflenet", "shufflenetv2"}
    assert expected <= set(list_families())
    for name in list_families():
        family = get_family(name)
        assert family.presets, f"{name} lists no presets"
        assert family.knobs, f"{name} declares no knobs a search space could set"


def test_registering_twice_raises():
    lrunet = get_family("lrunet")
    with pytest.raises(ValueError, match="already registered"):
        register_family(lrunet)
    with pytest.raises(ValueError, match="tag 'lrunet' is already used"):
        register_family(dataclasses.replace(lrunet, name="lrunet_copy", tag="lrunet"))
    assert list_families().count("lrunet") == 1


def test_unknown_family_and_untagged_names_name_the_families():
    with pytest.raises(ValueError, match="registered families: lrunet, "):
        get_family("resnet")
    with pytest.raises(ValueError, match="DACNN.*MobileNetV2"):
        parse_name("ResNet-18")


def test_family_config_must_carry_geometry():
    @dataclasses.dataclass(frozen=True)
    class NoGeometry:
        width: float = 1.0

    lrunet = get_family("lrunet")
    with pytest.raises(TypeError, match="geometry"):
        dataclasses.replace(lrunet, name="nogeo", tag="NoGeo", config=NoGeometry)


# --- every preset ------------------------------------------------------------------------------


@pytest.mark.timeout(300)
@pytest.mark.parametrize("dataset", GEOMETRIES)
@pytest.mark.parametrize("family_name,name", PRESETS, ids=[n for _, n in PRESETS])
def test_preset_builds_trains_and_counts(family_name, name, dataset):
    info = DATASETS[dataset]
    cfg = parse_name(name, **info.geometry)
    family = family_of(cfg)
    assert family.name == family_name
    assert cfg.name == name, "presets are spelled canonically"
    assert parse_name(cfg.name.upper(), **info.geometry) == cfg
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert dataclasses.replace(cfg).name == name

    torch.manual_seed(0)
    model = build_model(cfg)
    assert model.cfg == cfg
    assert count(cfg) == count_by_hooks(model), "analytic counts differ from forward hooks"

    # one training step at the training geometry (Fashion-MNIST: 32x32 crops of 28x28 images)
    x = torch.rand(2, info.in_channels, info.train_size, info.train_size)
    x = x.contiguous(memory_format=torch.channels_last)
    model.train()
    out = model(x)
    assert out.shape == (2, info.num_classes)
    F.cross_entropy(out, torch.tensor([0, 1])).backward()
    no_grad = {n for n, p in model.named_parameters() if p.grad is None}
    assert no_grad == set(family.dead_params(cfg)), "parameters without a gradient"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_presets_cover_the_papers_networks():
    names = {n for _, n in PRESETS}
    assert set(DACNN_TABLE) <= names
    assert {n for _, n in TABLE7} <= names | {"10-LruNet-1x"}


# --- the published counts through the CLI --------------------------------------------------


@pytest.mark.parametrize("name", DACNN_TABLE)
def test_describe_gives_dacnn_spec_counts(name):
    p10, p100, macs = DACNN_TABLE[name]
    d = _describe(name, "--dataset", "cifar10")
    assert (d["name"], d["params"], d["macs"]) == (name, p10, macs)
    assert _describe(name, "--dataset", "cifar100")["params"] == p100


@pytest.mark.parametrize("dataset,name", TABLE7, ids=[f"{d}-{n}" for d, n in TABLE7])
def test_describe_gives_table7_counts(dataset, name):
    params, conv = TABLE7[(dataset, name)]
    d = _describe(name, "--dataset", dataset)
    assert (d["params"], d["conv_params"]) == (params, conv)


def test_describe_list_shows_every_family_and_preset():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert launch.main(["describe", "--list"]) == 0
    text = out.getvalue()
    for family, preset in PRESETS:
        assert f"{family}: " in text and preset in text
    table = json.loads(_json_list())
    assert [e["family"] for e in table] == list_families()


def _json_list() -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert launch.main(["describe", "--list", "--json"]) == 0
    return out.getvalue()


def test_family_dataclass_is_a_registry_value():
    assert isinstance(get_family("dacnn"), Family)


def test_files_written_before_the_registry_still_load():
    """Checkpoints and model files store `config` as the config's own dict; those written before
    families existed have no family key and no LruNet sharing extensions, and still resume."""
    from lrunet.recipe import Recipe
    from trainables.data import load_dataset
    from trainables.loop import Trainer

    data = load_dataset("digits")
    cfg = parse_name("1-LruNet-0.25x-g4", **data.geometry)
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("share_k", "regulator")}
    assert config_from_dict(old) == cfg
    assert config_to_dict(cfg)["family"] == "lrunet"
    recipe = Recipe(epochs=1, batch_size=256)
    trainer = Trainer(cfg, recipe, data, device="cpu", threads=1, subset=300)
    trainer.train_epoch()
    state = trainer.state_dict()
    state["config"] = old
    again = Trainer(cfg, recipe, data, device="cpu", threads=1, subset=300)
    again.load_state_dict(state)
    assert again.epoch == 1
    other = dict(old, width=0.5)
    with pytest.raises(ValueError, match="checkpoint config"):
        again.load_state_dict({**state, "config": other})
