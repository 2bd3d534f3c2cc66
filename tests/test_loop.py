"""The plain training loop on real (tiny) data: it learns, reports every metric, resumes exactly,
rejects corrupt or mismatched checkpoints, stops on a non-finite loss; and the `train` command."""

from __future__ import annotations

import math
import re

import pytest
import torch

from lrunet import metrics as M
from lrunet.config import parse_name
from lrunet.counting import count
from lrunet.recipe import Recipe
from trainables.checkpoint import load_model
from trainables.data import load_dataset
from trainables.loop import Trainer, lr_factor_fn

pytestmark = pytest.mark.timeout(300)

EPOCH_METRICS = {
    M.EPOCH,
    M.TRAIN_LOSS,
    M.TRAIN_ACC,
    M.VAL_ACC,
    M.VAL_LOSS,
    M.PARAMS,
    M.CONV_PARAMS,
    M.MACS,
    M.MFLOPS,
    M.EPOCH_SECONDS,
    M.IMAGES_PER_SEC,
    M.LR,
}
TIMING = {M.EPOCH_SECONDS, M.IMAGES_PER_SEC}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _trainer(data, arch="1-LruNet-1x", subset=384, **recipe) -> Trainer:
    recipe = {"epochs": 4, "batch_size": 32, "seed": 3, **recipe}
    cfg = parse_name(arch, **data.geometry)
    # one thread: the machine running the suite is shared, and results must not depend on it
    return Trainer(cfg, Recipe(**recipe), data, device="cpu", threads=1, subset=subset)


def test_resume_after_epoch_k_matches_uninterrupted_run(digits, tmp_path):
    """A run killed after epoch k and resumed from its checkpoint gives epoch k+1 bit for bit."""
    a = _trainer(digits)
    first = a.train_epoch()
    assert set(first) == EPOCH_METRICS
    a.save_checkpoint(tmp_path / "k1.pt")
    a_second = a.train_epoch()

    b = _trainer(digits)  # a fresh process state: new model, RNGs re-seeded
    torch.manual_seed(12345)  # and the global RNG disturbed, as in a new process
    b.load_checkpoint(tmp_path / "k1.pt")
    assert b.epoch == 1 and b.history == [first]
    b_second = b.train_epoch()
    for key in EPOCH_METRICS - TIMING:
        assert a_second[key] == b_second[key], key
    for pa, pb in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        assert torch.equal(pa, pb)

    # it learns: after 24 steps it fits digits well above chance (10 %); validation lags while
    # the BatchNorm running statistics settle
    assert a_second[M.TRAIN_ACC] > 30 and a_second[M.TRAIN_LOSS] < first[M.TRAIN_LOSS]


def test_metrics_describe_the_run(digits):
    t = _trainer(digits, epochs=3, subset=64)
    m = t.train_epoch()
    c = count(t.cfg)
    assert m[M.EPOCH] == 1 and m[M.PARAMS] == c.params == t.model.num_params()
    assert m[M.CONV_PARAMS] == c.conv_params and m[M.MFLOPS] == pytest.approx(c.mflops)
    assert m[M.LR] == pytest.approx(0.1) and m[M.IMAGES_PER_SEC] > 0
    assert m[M.EPOCH_SECONDS] > 0 and 0 <= m[M.VAL_ACC] <= 100
    assert len(t.train_x) == 64 and len(t.val_x) == pytest.approx(0.1 * len(digits.train_x), abs=5)
    test = t.evaluate("test")
    assert set(test) == {M.TEST_ACC, M.TEST_LOSS} and math.isfinite(test[M.TEST_LOSS])
    with pytest.raises(ValueError, match="split: 'train'"):
        t.evaluate("train")


def test_schedules():
    recipe = Recipe(epochs=6, schedule="step")
    step = lr_factor_fn(recipe, steps_per_epoch=10)
    assert [step(e * 10) for e in range(6)] == pytest.approx([1, 1, 1, 1, 0.1, 0.01])
    assert recipe.milestones() == [4, 5]  # whole-epoch budgets: the recipe's milestones
    one_epoch = lr_factor_fn(Recipe(epochs=1, schedule="step"), steps_per_epoch=60)
    assert [one_epoch(i) for i in (0, 39, 40, 49, 50, 59)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01]
    )
    cosine = lr_factor_fn(Recipe(epochs=2, schedule="cosine"), steps_per_epoch=5)
    assert cosine(0) == 1 and cosine(5) == pytest.approx(0.5) and cosine(10) == pytest.approx(0)
    constant = lr_factor_fn(Recipe(epochs=2, schedule="constant"), steps_per_epoch=5)
    assert constant(9) == 1


def test_corrupt_checkpoint_names_the_file(digits, tmp_path):
    t = _trainer(digits, subset=64)
    path = tmp_path / "ckpt.pt"
    t.save_checkpoint(path)
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temp file
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ValueError, match=re.escape(f"checkpoint '{path}' is corrupt, truncated")):
        t.load_checkpoint(path)
    torch.save({"net": {}}, path)  # e.g. one of the authors' checkpoints
    with pytest.raises(ValueError, match="not an LruNet trainer checkpoint"):
        t.load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        t.load_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_of_another_run_is_refused(digits, tmp_path):
    _trainer(digits, "2-LruNet-1x").save_checkpoint(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="checkpoint config"):
        _trainer(digits).load_checkpoint(tmp_path / "other.pt")
    _trainer(digits, lr=0.05).save_checkpoint(tmp_path / "lr.pt")
    with pytest.raises(ValueError, match="checkpoint recipe"):
        _trainer(digits).load_checkpoint(tmp_path / "lr.pt")


def test_geometry_must_match_the_dataset(digits):
    cfg = parse_name("1-LruNet-1x")  # CIFAR geometry: 3 channels
    with pytest.raises(ValueError, match="does not match dataset 'digits'"):
        Trainer(cfg, Recipe(), digits, device="cpu")


def test_diverging_loss_raises(digits):
    t = _trainer(digits, subset=128, lr=1e12, schedule="constant")
    with pytest.raises(
        FloatingPointError, match=r"training loss became (nan|inf) at epoch 1.*lower"
    ):
        for _ in range(3):
            t.train_epoch()


def test_train_command(tmp_path, capsys):
    import launch

    out = tmp_path / "model.pt"
    argv = [
        "train",
        "1-LruNet-1x",
        "--dataset",
        "digits",
        "--epochs",
        "1",
        "--subset",
        "128",
        "--batch-size",
        "64",
        "--threads",
        "1",
        "--out",
        str(out),
        "--test",
    ]
    assert launch.main(argv) == 0
    printed = capsys.readouterr().out
    assert "epoch 1/1" in printed and "images/s" in printed and "val acc" in printed
    assert "test acc" in printed
    model, state = load_model(out)
    assert state["epoch"] == 1 and state["dataset"] == "digits"
    assert model.cfg.name == "1-LruNet-1x" and model.cfg.in_channels == 1
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


def test_train_command_user_errors(tmp_path, capsys):
    import launch

    code = launch.main(
        [
            "train",
            "1-LruNet-1x",
            "--dataset",
            "cifar10",
            "--epochs",
            "1",
            "--data-dir",
            str(tmp_path),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--download" in err
    code = launch.main(["train", "1-LruNet-3x-q", "--dataset", "digits", "--epochs", "1"])
    assert code == 2 and "cannot parse" in capsys.readouterr().err


def test_without_validation_split(digits):
    """Final retraining uses the whole training set: no validation metrics, nothing held out."""
    cfg = parse_name("1-LruNet-1x", **digits.geometry)
    t = Trainer(
        cfg,
        Recipe(epochs=1, batch_size=64),
        digits,
        device="cpu",
        threads=1,
        val_fraction=0.0,
        subset=64,
    )
    assert len(t.val_x) == 0
    m = t.train_epoch()
    assert M.VAL_ACC not in m and M.TRAIN_LOSS in m and m[M.PARAMS] == t.model.num_params()
    full = Trainer(cfg, Recipe(epochs=1), digits, device="cpu", threads=1, val_fraction=0.0)
    assert len(full.train_x) == len(digits.train_x)


def test_fashionmnist_is_evaluated_at_its_training_geometry():
    """28x28 evaluation images are zero-padded by 2 to the 32x32 the model trains on; counts stay
    at 28x28, the paper's convention."""
    from trainables.data import DATASETS, Dataset

    info = DATASETS["fashionmnist"]
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (200, 1, 28, 28), dtype=torch.uint8, generator=g)
    y = torch.arange(200) % 10
    data = Dataset(info, x, y, x[:20], y[:20], tuple(str(i) for i in range(10)), "synthetic")
    trainer = Trainer(
        parse_name("1-LruNet-0.25x-g4", **info.geometry),
        Recipe(epochs=1),
        data,
        device="cpu",
        threads=1,
    )
    assert trainer.val_x.shape[-2:] == (32, 32)
    inner = trainer.val_x[:, :, 2:30, 2:30]
    assert all((inner[i] == x).flatten(1).all(1).any() for i in range(len(inner)))
    assert trainer.val_x[:, :, :2].sum() == 0 and trainer.val_x[:, :, :, 30:].sum() == 0
    assert (
        trainer.counts[M.MFLOPS] == count(parse_name("1-LruNet-0.25x-g4", **info.geometry)).mflops
    )
    assert info.geometry["input_size"] == 28
