"""Dataset loaders on small files written in each real on-disk format, the validation split, the
caches, the batched augmentation, and the real Fashion-MNIST when it is installed."""

from __future__ import annotations

import gzip
import math
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainables import data as D
from trainables.augment import augment_batch, sample_affine
from trainables.imagefolder import describe_stored_images

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("LRUNET_CACHE_DIR", str(tmp_path / "cache"))
    D._PROCESS_CACHE.clear()
    yield
    D._PROCESS_CACHE.clear()


def _cifar_batch(path: Path, n: int, label_key: bytes, num_classes: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    d = {
        b"batch_label": b"x",
        label_key: [int(i % num_classes) for i in range(n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [b"f%d.png" % i for i in range(n)],
    }
    if label_key == b"fine_labels":
        d[b"coarse_labels"] = [0] * n
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)
    return d


def test_cifar10_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = [_cifar_batch(folder / f"data_batch_{i}", 4, b"labels", 10, i) for i in range(1, 6)]
    test = _cifar_batch(folder / "test_batch", 3, b"labels", 10, 9)
    names = [f"class{i}".encode() for i in range(10)]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, f)
    ds = D.load_dataset("cifar10", tmp_path)
    assert ds.train_x.shape == (20, 3, 32, 32) and ds.test_x.shape == (3, 3, 32, 32)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64
    row = batches[1][b"data"][2]  # image 2 of data_batch_2 is training image 4 + 2
    img = ds.train_x[6]
    # the pickle stores each image channel-major: 1024 red, 1024 green, 1024 blue, row by row
    assert img[0, 0, 1] == row[1] and img[1, 0, 0] == row[1024] and img[2, 31, 31] == row[3071]
    assert ds.train_y.tolist()[4:8] == batches[1][b"labels"]
    assert ds.test_y.tolist() == test[b"labels"]
    assert ds.classes[3] == "class3" and ds.info.num_classes == 10 and ds.info.in_channels == 3
    assert ds.geometry == {"num_classes": 10, "in_channels": 3, "input_size": 32}


def test_cifar100_pickles(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    train = _cifar_batch(folder / "train", 7, b"fine_labels", 100, 1)
    _cifar_batch(folder / "test", 5, b"fine_labels", 100, 2)
    with open(folder / "meta", "wb") as f:
        pickle.dump(
            {
                b"fine_label_names": [f"c{i}".encode() for i in range(100)],
                b"coarse_label_names": [b"x"] * 20,
            },
            f,
        )
    ds = D.load_dataset("cifar-100", tmp_path)
    assert ds.name == "cifar100" and ds.info.num_classes == 100
    assert ds.train_x.shape == (7, 3, 32, 32) and len(ds.test_y) == 5
    assert ds.train_y.tolist() == train[b"fine_labels"]
    assert ds.classes[99] == "c99"


def _write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def _write_fmnist(folder: Path, n_train: int = 30, n_test: int = 10, compress: bool = True):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) * 3) % 10,
    }
    for name, a in arrays.items():
        _write_idx(folder / (name + (".gz" if compress else "")), a, compress)
    return arrays


@pytest.mark.parametrize("layout", ["torchvision", "flat", "uncompressed"])
def test_fashionmnist_idx_files(tmp_path, layout):
    folder = tmp_path / "FashionMNIST" / "raw" if layout == "torchvision" else tmp_path
    arrays = _write_fmnist(folder, compress=layout != "uncompressed")
    ds = D.load_dataset("fashionmnist", tmp_path)
    assert ds.source == str(folder)
    assert ds.train_x.shape == (30, 1, 28, 28) and ds.test_x.shape == (10, 1, 28, 28)
    assert torch.equal(
        ds.train_x[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"].astype(np.uint8))
    )
    assert ds.test_y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert ds.info.train_size == 32 and ds.info.eval_size == 28
    assert ds.geometry["input_size"] == 28  # the paper counts Fashion-MNIST FLOPs at 28x28


def test_idx_truncated_file_is_a_clear_error(tmp_path):
    _write_fmnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz: idx header says"):
        D.load_dataset("fashionmnist", tmp_path)


def _write_png(path: Path, size: tuple[int, int], colour, mode: str = "RGB") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)


def test_imagefolder(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        for c, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
            for i in range(n):
                _write_png(tmp_path / split / c / f"{i}.png", (32, 32) if i else (48, 40), colour)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    ds = D.load_dataset("imagefolder", tmp_path)
    assert ds.classes == ("cat", "dog")
    assert ds.info.num_classes == 2 and ds.info.in_channels == 3
    assert ds.train_x.shape == (6, 3, 32, 32) and ds.test_x.shape == (4, 3, 32, 32)
    assert ds.train_y.tolist() == [0, 0, 0, 1, 1, 1]
    cat, dog = ds.train_x[0], ds.train_x[3]  # the first of each was resized from 48x40
    assert cat[0].min() == 255 and cat[2].max() == 0 and dog[2].min() == 255
    assert D.dataset_info("imagefolder", tmp_path).num_classes == 2


def test_imagefolder_greyscale_is_one_channel(tmp_path):
    for split in ("train", "test"):
        for c in ("a", "b", "c"):
            _write_png(tmp_path / split / c / "0.png", (28, 28), 100, mode="L")
    ds = D.load_dataset("imagefolder", tmp_path)
    # images of one size keep it (no longer resized to 32x32)
    assert ds.info.in_channels == 1 and ds.train_x.shape == (3, 1, 28, 28)
    assert int(ds.train_x.float().mean().round()) == 100
    assert ds.info.resized_from == () and ds.geometry["input_size"] == 28


def _mixed_folder(root: Path) -> None:
    """Two classes; 28x28 images mostly, one 32x32 and one 20x24 (width x height) per split."""
    for split in ("train", "test"):
        for c, value in (("a", 60), ("b", 200)):
            for i in range(3):
                _write_png(root / split / c / f"{i}.png", (28, 28), value, mode="L")
        _write_png(root / split / "a" / "big.png", (32, 32), 60, mode="L")
        _write_png(root / split / "b" / "odd.png", (20, 24), 200, mode="L")


def test_imagefolder_of_mixed_sizes_records_its_resize_in_the_cache_too(tmp_path):
    _mixed_folder(tmp_path / "imgs")
    ds = D.load_dataset("imagefolder", tmp_path / "imgs")
    # the most common size wins; what was resized to it is recorded
    assert ds.train_x.shape == (8, 1, 28, 28) and ds.test_x.shape == (8, 1, 28, 28)
    assert ds.info.eval_size == 28 and ds.info.resized_from == ((20, 24), (32, 32))
    assert ds.info.in_channels == 1 and ds.train_x.float().mean().round() == 130
    described = describe_stored_images(ds)
    assert described["resize"] == "bilinear" and described["resized_from"] == [[20, 24], [32, 32]]
    assert "20x24, 32x32" in described["description"]
    assert "not in the exported graph" in described["description"]
    # a new process reads the file cache: the resize record comes back with it
    D._PROCESS_CACHE.clear()
    again = D.load_dataset("imagefolder", tmp_path / "imgs")
    assert again is not ds and again.info == ds.info and torch.equal(again.test_x, ds.test_x)
    # an explicit size is honoured for a folder of mixed sizes; it is another cache entry
    at32 = D.load_dataset("imagefolder", tmp_path / "imgs", input_size=32)
    assert at32.train_x.shape[-2:] == (32, 32) and at32.info.eval_size == 32
    assert at32.info.resized_from == ((20, 24), (28, 28))
    assert len(list((tmp_path / "cache").glob("imagefolder-*.pt"))) == 2
    assert D.dataset_info("imagefolder", tmp_path / "imgs", input_size=32) == at32.info


def test_imagefolder_of_one_size_is_never_resized(tmp_path):
    for split in ("train", "test"):
        for c in ("a", "b"):
            _write_png(tmp_path / split / c / "0.png", (28, 28), 7, mode="L")
    ds = D.load_dataset("imagefolder", tmp_path, input_size=28)  # the same size: fine
    assert ds.train_x.shape == (2, 1, 28, 28) and ds.info.resized_from == ()
    assert "at their own 28x28 size (no resize)" in describe_stored_images(ds)["description"]
    with pytest.raises(ValueError, match="every image under .* is 28x28; images of one size"):
        D.load_dataset("imagefolder", tmp_path, input_size=32)
    with pytest.raises(ValueError, match="input_size 28: digits images are 32x32"):
        D.load_dataset("digits", input_size=28)
    assert D.load_dataset("digits", input_size=32).info.eval_size == 32


@pytest.mark.parametrize(
    "name, needle",
    [("cifar10", "--download"), ("cifar100", "cifar-100-python"), ("imagefolder", "train/")],
)
def test_missing_dataset_says_where_and_how(tmp_path, name, needle):
    with pytest.raises(FileNotFoundError) as e:
        D.load_dataset(name, tmp_path / "nowhere")
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "nowhere") in msg and needle in msg


def test_missing_fashionmnist_names_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "DEBIAN_FASHION_MNIST", tmp_path / "not-installed")
    with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        D.load_dataset("fashionmnist", tmp_path)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="dataset: 'mnist' is not one of"):
        D.load_dataset("mnist")


def test_digits():
    ds = D.load_dataset("digits")
    assert ds.train_x.shape[1:] == (1, 32, 32) and ds.test_x.shape[1:] == (1, 32, 32)
    assert len(ds.train_x) + len(ds.test_x) == 1797
    assert len(ds.test_x) == pytest.approx(0.2 * 1797, abs=10)
    assert ds.train_x.max() == 255 and ds.info.flip is False
    assert sorted(set(ds.test_y.tolist())) == list(range(10))
    D._PROCESS_CACHE.clear()
    again = D.load_dataset("digits")
    assert again is not ds and torch.equal(again.test_x, ds.test_x)  # fixed, seeded split


def test_digits_train_images_is_the_real_count():
    ds = D.load_dataset("digits")
    assert len(ds.train_y) == D.DATASETS["digits"].train_images == 1438 and len(ds.test_y) == 359


def test_dataset_table_is_lrunet_datasets():
    import lrunet.datasets

    assert D.DATASETS is lrunet.datasets.DATASETS
    assert D.DatasetInfo is lrunet.datasets.DatasetInfo
    assert D.DATASET_NAMES is lrunet.datasets.DATASET_NAMES and "svhn" in D.DATASET_NAMES


# --- SVHN: torchvision's .mat files ------------------------------------------------------------


def _write_svhn(folder: Path, n_train: int = 40, n_test: int = 12) -> dict[str, dict]:
    """train_32x32.mat / test_32x32.mat as torchvision downloads them: X (32, 32, 3, N) uint8,
    y (N, 1) with labels 1..10, 10 meaning the digit 0."""
    import scipy.io

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    written = {}
    for name, n in (("train_32x32.mat", n_train), ("test_32x32.mat", n_test)):
        mat = {
            "X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
            "y": (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1),  # 1..10: 10s included
        }
        scipy.io.savemat(folder / name, mat)
        written[name] = mat
    return written


@pytest.mark.parametrize("layout", ["flat", "svhn-folder"])
def test_svhn_mat_files(tmp_path, layout):
    folder = tmp_path / "svhn" if layout == "svhn-folder" else tmp_path
    mats = _write_svhn(folder)
    ds = D.load_dataset("svhn", tmp_path)
    assert ds.source == str(folder) and ds.info is D.DATASETS["svhn"]
    assert ds.train_x.shape == (40, 3, 32, 32) and ds.test_x.shape == (12, 3, 32, 32)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64
    X = mats["train_32x32.mat"]["X"]
    for i, c, h, w in ((0, 0, 0, 0), (7, 2, 5, 30), (39, 1, 31, 2), (13, 0, 17, 9)):
        assert ds.train_x[i, c, h, w] == X[h, w, c, i]
    assert torch.equal(
        ds.test_x, torch.from_numpy(mats["test_32x32.mat"]["X"]).permute(3, 2, 0, 1)
    )
    raw_y = mats["train_32x32.mat"]["y"][:, 0]
    assert ds.train_y.tolist() == [int(v) % 10 for v in raw_y]  # 10 -> 0, the rest unchanged
    assert ds.train_y[9] == 0 and raw_y[9] == 10 and ds.train_y[3] == 4
    assert sorted(set(ds.test_y.tolist())) == list(range(10))
    assert ds.classes == tuple("0123456789") and ds.info.flip is False
    assert ds.geometry == {"num_classes": 10, "in_channels": 3, "input_size": 32}


def test_svhn_validation_split_is_stratified_and_stable(tmp_path):
    _write_svhn(tmp_path, n_train=200)
    ds = D.load_dataset("svhn", tmp_path)
    train, val = D.split_indices(ds.train_y)
    assert torch.bincount(ds.train_y[val], minlength=10).tolist() == [2] * 10
    assert len(train) == 180 and set(train.tolist()).isdisjoint(val.tolist())
    D._PROCESS_CACHE.clear()
    again = D.load_dataset("svhn", tmp_path)  # from the file cache, same labels, same split
    assert again is not ds and torch.equal(D.split_indices(again.train_y)[1], val)


def test_svhn_file_cache_serves_a_second_load(tmp_path, monkeypatch):
    monkeypatch.setenv("LRUNET_CACHE_DIR", str(tmp_path / "svhn-cache"))
    _write_svhn(tmp_path / "data")
    first = D.load_dataset("svhn", tmp_path / "data")
    assert D.load_dataset("svhn", tmp_path / "data") is first  # process cache
    cached = list((tmp_path / "svhn-cache").glob("svhn-*.pt"))
    assert len(cached) == 1
    blob = torch.load(cached[0], weights_only=True)
    blob["test_y"] = blob["test_y"].flip(0)  # prove the next load reads the cache file
    torch.save(blob, cached[0])
    D._PROCESS_CACHE.clear()
    second = D.load_dataset("svhn", tmp_path / "data")
    assert torch.equal(second.test_y, first.test_y.flip(0))
    assert torch.equal(second.train_x, first.train_x) and second.info is D.DATASETS["svhn"]


def test_missing_svhn_says_where_and_how(tmp_path):
    _write_svhn(tmp_path)
    (tmp_path / "test_32x32.mat").unlink()  # half a dataset is still missing
    with pytest.raises(FileNotFoundError) as e:
        D.load_dataset("svhn", tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "test_32x32.mat" in msg and "--download" in msg
    assert str(tmp_path) in msg and str(tmp_path / "svhn") in msg


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"this is not a mat file" * 20, "is not a readable SVHN .mat file"),
        (b"", "is not a readable SVHN .mat file"),
        ("foreign", "has no X and y arrays"),
        ("float", "X must be uint8 shaped (32, 32, 3, N)"),
    ],
    ids=["garbage", "empty", "foreign", "float-pixels"],
)
def test_corrupt_svhn_file_is_a_one_line_error(tmp_path, content, needle):
    import scipy.io

    _write_svhn(tmp_path)
    path = tmp_path / "train_32x32.mat"
    if content == "foreign":
        scipy.io.savemat(path, {"images": np.zeros((4, 4))})
    elif content == "float":
        scipy.io.savemat(path, {"X": np.zeros((32, 32, 3, 2)), "y": np.ones((2, 1))})
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError) as e:
        D.load_dataset("svhn", tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and needle in msg


def test_split_is_stratified_fixed_and_disjoint():
    labels = torch.arange(1000) % 10
    train, val = D.split_indices(labels, 0.1)
    assert len(val) == 100 and len(train) == 900
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert torch.bincount(labels[val]).tolist() == [10] * 10
    again_train, again_val = D.split_indices(labels, 0.1)
    assert torch.equal(val, again_val) and torch.equal(train, again_train)
    other_train, other_val = D.split_indices(labels, 0.1, seed=D.SPLIT_SEED + 1)
    assert not torch.equal(val, other_val)


def test_subset_is_nested_and_excludes_validation():
    labels = torch.arange(1000) % 10
    full, val = D.split_indices(labels, 0.1)
    small, val_small = D.split_indices(labels, 0.1, subset=50)
    big, _ = D.split_indices(labels, 0.1, subset=300)
    assert torch.equal(val, val_small) and len(small) == 50 and len(big) == 300
    assert set(small.tolist()) <= set(big.tolist()) <= set(full.tolist())
    with pytest.raises(ValueError, match="subset: 901 exceeds the 900 training images"):
        D.split_indices(labels, 0.1, subset=901)


def test_file_cache_is_written_and_reused(tmp_path):
    _write_fmnist(tmp_path / "fm")
    first = D.load_dataset("fashionmnist", tmp_path / "fm")
    assert D.load_dataset("fashionmnist", tmp_path / "fm") is first  # process cache
    cached = list((tmp_path / "cache").glob("fashionmnist-*.pt"))
    assert len(cached) == 1
    D._PROCESS_CACHE.clear()
    blob = torch.load(cached[0], weights_only=True)
    blob["train_y"] = blob["train_y"].flip(0)  # prove the next load reads the cache file
    torch.save(blob, cached[0])
    second = D.load_dataset("fashionmnist", tmp_path / "fm")
    assert torch.equal(second.train_y, first.train_y.flip(0))
    cached[0].write_bytes(b"garbage")  # a corrupt cache entry is rebuilt from the sources
    D._PROCESS_CACHE.clear()
    third = D.load_dataset("fashionmnist", tmp_path / "fm")
    assert torch.equal(third.train_y, first.train_y)


@pytest.mark.skipif(
    not (D.DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason="real Fashion-MNIST not installed (apt-get install -y dataset-fashion-mnist)",
)
def test_real_fashionmnist():
    ds = D.load_dataset("fashionmnist", "/nonexistent-data-dir")
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(ds.train_y).tolist() == [6000] * 10
    assert torch.bincount(ds.test_y).tolist() == [1000] * 10
    mean = ds.train_x.float().div(255).mean().item()
    assert mean == pytest.approx(0.2860, abs=1e-3)  # LRUNET_SPEC §3's measured mean
    train, val = D.split_indices(ds.train_y)
    assert len(val) == 6000 and len(train) == 54000
    # loaded twice (the second time from the file cache), the info is still the code's
    assert ds.info == D.DATASETS["fashionmnist"] and ds.info.eval_pad == 2
    D._PROCESS_CACHE.clear()
    assert D.load_dataset("fashionmnist").info == D.DATASETS["fashionmnist"]


# --- augmentation ------------------------------------------------------------------------------


def test_crop_is_zero_padded_shift():
    x = torch.rand(64, 2, 28, 28)
    out = augment_batch(x, torch.Generator().manual_seed(0), out_size=32, degrees=0, flip=False)
    g = torch.Generator().manual_seed(0)
    oy, ox = (torch.randint(0, 5, (64,), generator=g) for _ in range(2))
    padded = F.pad(x, (4, 4, 4, 4))
    expected = torch.stack(
        [padded[i, :, oy[i] : oy[i] + 32, ox[i] : ox[i] + 32] for i in range(64)]
    )
    assert out.shape == (64, 2, 32, 32) and torch.equal(out, expected)
    assert len({(int(a), int(b)) for a, b in zip(oy, ox)}) > 10  # offsets really vary


def test_flip_mirrors_about_half_the_images():
    x = torch.rand(200, 1, 8, 8)
    out = augment_batch(x, torch.Generator().manual_seed(1), out_size=8, pad=0, degrees=0)
    flipped = sum(torch.equal(o, i.flip(-1)) for o, i in zip(out, x))
    same = sum(torch.equal(o, i) for o, i in zip(out, x))
    assert flipped + same == 200 and 70 < flipped < 130


def test_rotation_matches_torchvision_nearest():
    import torchvision.transforms.functional as TF

    x = (torch.rand(6, 1, 32, 32) * 255).round() / 255
    theta = sample_affine(6, (32, 32), 32, torch.Generator().manual_seed(2), pad=0, flip=False)
    out = augment_batch(x, torch.Generator().manual_seed(2), out_size=32, pad=0, flip=False)
    for i in range(6):
        degrees = math.degrees(math.atan2(theta[i, 0, 1], theta[i, 0, 0]))
        assert abs(degrees) <= 10
        ref = TF.rotate(x[i], -degrees, interpolation=TF.InterpolationMode.NEAREST)
        assert (ref != out[i]).float().mean() < 0.002  # equal up to a rounding tie or two


def test_augmentation_is_reproducible_from_the_generator():
    x = torch.rand(16, 3, 32, 32)
    g = torch.Generator().manual_seed(5)
    state = g.get_state()
    a = augment_batch(x, g, out_size=32)
    g.set_state(state)
    assert torch.equal(a, augment_batch(x, g, out_size=32))
    assert not torch.equal(a, augment_batch(x, g, out_size=32))
