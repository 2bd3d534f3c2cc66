"""Search spaces: every shipped space loads and samples valid, budget-respecting models; every file
of the error corpus (tests/bad_spaces/) fails `launch.py check-space` with one line naming the key
and the fix, exit code 2, and without importing Ray."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from lrunet.config import LruNetConfig
from lrunet.counting import count
from lrunet.recipe import TRIAL_KEYS, split_trial_config, trial_keys
from lrunet.registry import count as family_count
from search_spaces import KNOBS, SpaceError, list_spaces, load_space
from search_spaces.distributions import Choice, LogUniform, QUniform, RandInt

REPO = Path(__file__).resolve().parents[1]
BAD = sorted((REPO / "tests" / "bad_spaces").glob("*.yaml"))
SHIPPED = (
    "dacnn_smoke",
    "lru_full",
    "lru_paper",
    "lru_smoke",
    "sharing_full",
    "sharing_smoke",
    "table7",
    "table7_cifar100",
    "table7_fashionmnist",
)


def expectations(path: Path) -> list[str]:
    return [
        line.removeprefix("# expect:").strip()
        for line in path.read_text().splitlines()
        if line.startswith("# expect:")
    ]


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# --- shipped spaces ---------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_shipped_spaces_listed_and_load():
    assert set(SHIPPED) <= set(list_spaces())
    for name in list_spaces():
        spec = load_space(name)
        assert spec.name == name and spec.description
        assert set(spec.knobs) <= {k for f in spec.families for k in trial_keys(f)}
        assert spec.costs.params[0] <= spec.costs.params[1]


def test_knob_table_is_trial_keys():
    assert list(KNOBS) == list(TRIAL_KEYS)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", SHIPPED)
def test_1000_samples_are_valid_and_budgets_enforced(name):
    spec = load_space(name)
    b = spec.budgets
    rng = random.Random(1234)
    feasible = infeasible = 0
    for _ in range(1000):
        flat = spec.sample(rng)
        assert set(flat) <= set(trial_keys(flat["family"]))
        cfg, recipe = split_trial_config(flat, **spec.geometry)  # raises if invalid
        c = family_count(cfg)
        assert spec.costs.params[0] <= c.params <= spec.costs.params[1]
        assert spec.costs.mflops[0] <= c.mflops <= spec.costs.mflops[1]
        assert recipe.epochs <= spec.training.max_epochs
        over = (b.max_params is not None and c.params > b.max_params) or (
            b.max_mflops is not None and c.mflops > b.max_mflops
        )
        reason = spec.check_budget(flat)
        if over:
            assert reason is not None and "over budget" in reason, (flat, c)
            infeasible += 1
        else:
            assert reason is None, reason
            feasible += 1
    assert feasible > 100
    if b.max_params is not None:
        assert infeasible > 100  # lru_full's budgets do cut: both branches were exercised


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", SHIPPED)
def test_sampled_models_build_and_match_counts(name):
    from lrunet.registry import build_model

    spec = load_space(name)
    rng = random.Random(7)
    for _ in range(3):
        flat = spec.sample_feasible(rng)
        cfg, _ = split_trial_config(flat, **spec.geometry)
        model = build_model(cfg)
        assert sum(p.numel() for p in model.parameters()) == spec.counts(flat).params


@pytest.mark.parametrize(
    "name,dataset",
    [
        ("table7", "cifar10"),
        ("table7_cifar100", "cifar100"),
        ("table7_fashionmnist", "fashionmnist"),
    ],
)
def test_table7_spaces_are_the_papers_grid(name, dataset):
    from lrunet.registry import count as counts

    spec = load_space(name)
    assert spec.dataset == dataset and spec.is_grid and spec.num_configs == 5
    names = {}
    for flat in spec.grid():
        cfg, _ = split_trial_config(flat, **spec.geometry)
        names[cfg.name] = counts(cfg).params
    rows = {  # LRUNET_SPEC.md, Table 7
        "cifar10": [228_565, 211_082, 215_642, 249_122, 206_282],
        "cifar100": [559_633, 568_408, 567_217, 603_248, 663_716],
        "fashionmnist": [228_349, 210_650, 215_498, 248_978, 182_090],
    }
    assert sorted(names.values()) == sorted(rows[dataset]), names
    assert spec.training.grace_epochs == spec.training.max_epochs == 300


def test_paper_grid_matches_table_2():
    spec = load_space("lru_paper")
    assert spec.is_grid and spec.num_configs == 9
    configs = list(spec.grid())
    assert [c["reuse"] for c in configs] == [1, 2, 4, 6, 8, 10, 12, 14, 16]
    params = [spec.counts(c).params for c in configs]
    # LRUNET_SPEC.md Table 2 (reference code, measured): 125,642 + 5,760 N
    assert params == [125_642 + 5_760 * n for n in (1, 2, 4, 6, 8, 10, 12, 14, 16)]
    assert params[0] == 131_402 and params[-1] == 217_802
    assert [round(spec.counts(c).mflops, 2) for c in configs][-1] == 45.93
    assert spec.costs.params == (131_402, 217_802)
    assert all(c["width"] == 1 and c["shuffle"] == "swap" and c["dropout"] == 0.5 for c in configs)


def test_full_space_shape():
    spec = load_space("lru_full")
    for s in range(1, 5):
        assert spec.knobs[f"reuse_{s}"] == RandInt(1, 16)
    assert spec.knobs["shuffle"] == Choice(("swap", "plain", "group", "none"))
    assert spec.knobs["sharing"] == Choice(("tied", "untied"))
    assert spec.dataset == "cifar10" and spec.fixed["epochs"] == 300
    assert spec.fixed["weight_decay"] == 5e-4  # written 5e-4, which PyYAML reads as text
    assert spec.metrics == ["val_acc", "params", "mflops"]
    assert spec.modes == ["max", "min", "min"]
    assert spec.num_configs is not None and spec.num_configs > 1_000_000


def test_smoke_space_is_small_and_varied():
    spec = load_space("lru_smoke")
    assert spec.dataset == "fashionmnist" and spec.geometry["input_size"] == 28
    t = spec.training
    assert 3000 <= t.subset <= 5000 and 2 <= t.max_epochs <= 4 and t.grace_epochs == 1
    assert 8 <= t.num_samples <= 12 and 2 <= t.reduction_factor <= 3
    assert spec.fixed["epochs"] == t.max_epochs  # the schedule spans the epoch budget
    # sizes vary enough for a Pareto front of several architectures
    sizes = {spec.counts(spec.sample(i)).params for i in range(50)}
    assert len(sizes) > 20 and max(sizes) > 5 * min(sizes)


def test_sampling_is_seeded():
    spec = load_space("lru_full")
    assert spec.sample(3) == spec.sample(random.Random(3))
    assert spec.sample(3) != spec.sample(4)


# --- translations -----------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_tune_param_space_inclusive_to_half_open():
    from ray import tune
    from ray.tune.search.sample import Categorical, Float, Integer

    spec = load_space("lru_full")
    space = spec.to_tune_param_space()
    r1 = space["reuse_1"]
    assert isinstance(r1, Integer) and (r1.lower, r1.upper) == (1, 17)
    seen = {r1.sample() for _ in range(3000)}
    assert seen == set(range(1, 17))  # 16 (the file's inclusive hi) included, 17 never
    assert isinstance(space["width"], Categorical)
    assert space["width"].categories == [0.5, 1.0, 1.5, 2.0]
    assert space["lr"] == 0.1 and space["schedule"] == "step"
    dropout = space["dropout"]
    assert isinstance(dropout, Float)
    grid = spec.knobs["dropout"].values()
    for v in {dropout.sample() for _ in range(500)}:
        assert min(abs(v - g) for g in grid) < 1e-9, v
    smoke = load_space("lru_smoke").to_tune_param_space()
    lr = smoke["lr"]
    assert isinstance(lr, Float) and (lr.lower, lr.upper) == (0.05, 0.2)
    paper = load_space("lru_paper").to_tune_param_space(grid=True)
    assert paper["reuse"] == tune.grid_search([1, 2, 4, 6, 8, 10, 12, 14, 16])


@pytest.mark.timeout(60)
def test_optuna_distributions():
    import optuna

    spec = load_space("lru_smoke")
    dists = spec.to_optuna_distributions()
    assert set(dists) == set(spec.searched) and not set(dists) & set(spec.fixed)
    assert dists["reuse_1"] == optuna.distributions.IntDistribution(1, 3)
    assert dists["lr"] == optuna.distributions.FloatDistribution(0.05, 0.2, log=True)
    assert dists["width"] == optuna.distributions.CategoricalDistribution([0.25, 0.5, 0.75])
    full = load_space("lru_full").to_optuna_distributions()
    assert full["dropout"] == optuna.distributions.FloatDistribution(0.0, 0.7, step=0.1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(300):
        trial = study.ask(dists)
        flat = {**spec.fixed, **trial.params}
        assert spec.check_budget(flat) is None
        seen.add(trial.params["reuse_4"])
        study.tell(trial, 0.0)
    assert seen == {1, 2, 3}  # Optuna's IntDistribution is inclusive like the file


# --- loader behaviour -------------------------------------------------------------------------


def test_numbers_written_as_text_are_cast(tmp_path):
    spec = load_space(
        write(
            tmp_path,
            "recipe:\n  lr: {loguniform: [1e-3, 1e-1]}\n  weight_decay: 5e-4\n"
            "  epochs: 1e1\nbudgets:\n  max_params: 2e5\n",
        )
    )
    assert spec.knobs["lr"] == LogUniform(0.001, 0.1)
    assert spec.fixed["weight_decay"] == 0.0005 and spec.fixed["epochs"] == 10
    assert isinstance(spec.fixed["epochs"], int) and spec.budgets.max_params == 200_000
    assert spec.training.max_epochs == 10


def test_defaults(tmp_path):
    spec = load_space(write(tmp_path, "model:\n  reuse: {choice: [1, 2]}\n"))
    assert spec.dataset == "cifar10" and spec.geometry["num_classes"] == 10
    assert spec.metrics == ["val_acc", "params"] and spec.modes == ["max", "min"]
    assert spec.reference_point == (0.0, 137_162.0)  # largest params in the space
    assert spec.training.max_epochs == 300 and spec.fixed["epochs"] == 300


def test_quniform_grid_values():
    assert QUniform(0.0, 0.7, 0.1).values() == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def test_invalid_architectures_in_a_range_are_reported_infeasible(tmp_path):
    spec = load_space(
        write(tmp_path, "model:\n  width: {choice: [0.5, 1]}\n  groups: {randint: [1, 12]}\n")
    )
    flat = {**spec.sample(0), "groups": 3, "width": 1.0}
    reason = spec.check_budget(flat)
    assert reason is not None and "invalid architecture" in reason and "groups" in reason
    assert spec.check_budget({**flat, "groups": 4}) is None


def test_budget_reason_names_the_limit(tmp_path):
    spec = load_space(
        write(tmp_path, "model:\n  reuse: {randint: [1, 16]}\nbudgets:\n  max_mflops: 20\n")
    )
    assert spec.check_budget({"reuse": 16}) == (
        "16-LruNet-1x over budget: mflops 45.93 > max_mflops 20"
    )
    assert spec.check_budget({"reuse": 1}) is None
    assert spec.reference_point == (0.0, 217_802.0)


def test_overrides_are_validated():
    spec = load_space("lru_smoke", overrides={"training": {"num_samples": 4}})
    assert spec.training.num_samples == 4 and spec.training.subset == 4000
    with pytest.raises(SpaceError, match=r"\(with overrides\).*training.grace_epochs"):
        load_space("lru_smoke", overrides={"training": {"grace_epochs": 9}})


def test_max_epochs_may_cut_a_long_schedule_short():
    spec = load_space("lru_full", overrides={"training": {"max_epochs": 2, "grace_epochs": 1}})
    assert spec.training.max_epochs == 2 and spec.fixed["epochs"] == 300
    with pytest.raises(SpaceError, match="training.grace_epochs: 10 exceeds max_epochs 2"):
        load_space("lru_full", overrides={"training": {"max_epochs": 2}})


def test_imagefolder_geometry(tmp_path):
    spec = load_space(
        write(tmp_path, "dataset: {name: imagefolder, num_classes: 5, input_size: 64}\n")
    )
    assert spec.geometry == {"num_classes": 5, "in_channels": 3, "input_size": 64}


def test_missing_space_lists_shipped(tmp_path):
    with pytest.raises(FileNotFoundError, match="did you mean 'lru_full'.*lru_paper"):
        load_space("lru_ful")
    with pytest.raises(FileNotFoundError, match="shipped spaces: .*lru_full"):
        load_space(str(tmp_path / "nope.yaml"))


def test_summary_mentions_ranges():
    text = load_space("lru_paper").summary()
    assert "131,402 .. 217,802" in text and "configs       9" in text


# --- error corpus and no Ray ------------------------------------------------------------------


def test_error_corpus_is_complete():
    assert len(BAD) >= 15
    for path in BAD:
        assert expectations(path), f"{path.name} has no '# expect:' header"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_space_fails_with_one_line(path):
    proc = subprocess.run(
        [sys.executable, "launch.py", "check-space", str(path.relative_to(REPO))],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("launch.py check-space: error: ")
    for fragment in expectations(path):
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


def test_bad_space_raises_value_error_in_process():
    for path in BAD:
        with pytest.raises(ValueError):
            load_space(str(path))


@pytest.mark.timeout(120)
def test_cli_and_loader_never_import_ray(tmp_path):
    script = f"""
import contextlib, io, json, sys
sys.path.insert(0, {str(REPO)!r})
import launch
from search_spaces import list_spaces, load_space
codes = []
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    codes.append(launch.main(["spaces"]))
    codes.append(launch.main(["spaces", "-v"]))
    for name in list_spaces():
        codes.append(launch.main(["check-space", name, "-n", "3"]))
        spec = load_space(name)
        spec.sample(0), spec.summary(), spec.check_budget(spec.sample(1))
    for path in {[str(p) for p in BAD]!r}:
        codes.append(launch.main(["check-space", path]))
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("ray", "optuna", "mlflow"))
print(json.dumps({{"codes": codes, "heavy": heavy}}))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=100
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["heavy"] == []
    n = len(list_spaces())
    assert out["codes"] == [0, 0] + [0] * n + [2] * len(BAD)


@pytest.mark.timeout(60)
def test_spaces_command_lists_every_space():
    proc = subprocess.run(
        [sys.executable, "launch.py", "spaces"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    for name in SHIPPED:
        assert name in proc.stdout
    assert "continuous" in proc.stdout and "131k-218k" in proc.stdout


def test_lrunet_config_default_reuse_used_when_unset(tmp_path):
    # a space with no reuse knob counts the paper's default N = 8
    spec = load_space(write(tmp_path, "model:\n  width: {choice: [1, 2]}\n"))
    assert spec.costs.params[0] == count(LruNetConfig(reuse=8)).params


def test_spec_pickles_for_ray_workers():
    import pickle

    spec = load_space("lru_full")
    clone = pickle.loads(pickle.dumps(spec))
    assert clone == spec and clone.sample(5) == spec.sample(5)
    assert clone.check_budget(clone.sample(5)) == spec.check_budget(spec.sample(5))
