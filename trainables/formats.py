"""Decoders of the file-based datasets' distribution formats: CIFAR-10/100 (torchvision's
pickled batches), Fashion-MNIST (idx files, optionally gzipped) and SVHN (torchvision's
`train_32x32.mat` / `test_32x32.mat`, labels 10 -> 0). Each returns a `trainables.data.Dataset`
of uint8 (N, C, H, W) images; locating the files and caching them is `trainables.data`'s job,
image folders are `trainables.imagefolder`'s.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import torch

from lrunet.datasets import DATASETS
from lrunet.io import first_line
from trainables.data import Dataset


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")  # noqa: S301 (the CIFAR distribution format)


def _load_cifar(name: str, files: list[Path]) -> Dataset:
    label_key = b"labels" if name == "cifar10" else b"fine_labels"
    meta_key = b"label_names" if name == "cifar10" else b"fine_label_names"
    *train_files, test_file, meta_file = files

    def read(paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for p in paths:
            try:
                d = _unpickle(p)
                xs.append(
                    torch.from_numpy(np.asarray(d[b"data"], dtype=np.uint8).copy()).view(
                        -1, 3, 32, 32
                    )
                )
                ys.append(torch.tensor(d[label_key], dtype=torch.int64))
            except (KeyError, RuntimeError, ValueError, pickle.UnpicklingError, EOFError) as e:
                raise ValueError(f"{name}: {p} is not a CIFAR batch file: {e!r}") from e
        return torch.cat(xs), torch.cat(ys)

    train_x, train_y = read(train_files)
    test_x, test_y = read([test_file])
    classes = tuple(c.decode() for c in _unpickle(meta_file)[meta_key])
    return Dataset(DATASETS[name], train_x, train_y, test_x, test_y, classes, str(files[0].parent))


def read_idx(path: Path) -> torch.Tensor:
    """An idx file (optionally gzipped) as a uint8 tensor of its declared shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte idx file (bad magic number)")
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = raw[4 + 4 * ndim :]
    expected = 1
    for s in shape:
        expected *= s
    if len(data) != expected:
        raise ValueError(f"{path}: idx header says {shape} ({expected} bytes), found {len(data)}")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(*shape)


def _load_fashionmnist(files: list[Path]) -> Dataset:
    tr_x, tr_y, te_x, te_y = (read_idx(f) for f in files)
    classes = (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )
    return Dataset(
        DATASETS["fashionmnist"],
        tr_x.unsqueeze(1),
        tr_y.long(),
        te_x.unsqueeze(1),
        te_y.long(),
        classes,
        str(files[0].parent),
    )


def read_svhn_mat(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One of torchvision's SVHN .mat files as uint8 (N, 3, 32, 32) images and int64 labels 0-9.

    The file holds X shaped (32, 32, 3, N) and y shaped (N, 1) with labels 1..10, 10 meaning the
    digit 0; like torchvision, 10 is read as 0.
    """
    import scipy.io

    try:
        mat = scipy.io.loadmat(path, variable_names=("X", "y"))
    except Exception as e:  # garbage, truncation, HDF5 (v7.3) files fail in many different ways
        raise ValueError(
            f"svhn: {path} is not a readable SVHN .mat file ({first_line(e)[:160]}); "
            f"replace it with torchvision's (--download)"
        ) from None
    x, y = mat.get("X"), mat.get("y")
    if x is None or y is None:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"svhn: {path} has no X and y arrays (found {found}); not an SVHN file")
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise ValueError(
            f"svhn: {path}: X must be uint8 shaped (32, 32, 3, N), got {x.dtype} {x.shape}"
        )
    y = np.asarray(y).reshape(-1).astype(np.int64)
    if len(y) != x.shape[3]:
        raise ValueError(f"svhn: {path}: {x.shape[3]} images but {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() > 10):
        raise ValueError(f"svhn: {path}: labels must be 1..10, found {y.min()}..{y.max()}")
    y[y == 10] = 0
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1))  # (H, W, C, N) -> (N, C, H, W)
    return torch.from_numpy(images), torch.from_numpy(y)


def _load_svhn(files: list[Path]) -> Dataset:
    (train_x, train_y), (test_x, test_y) = (read_svhn_mat(f) for f in files)
    classes = tuple(str(i) for i in range(10))
    return Dataset(
        DATASETS["svhn"], train_x, train_y, test_x, test_y, classes, str(files[0].parent)
    )


LOADERS = {
    "cifar10": lambda files: _load_cifar("cifar10", files),
    "cifar100": lambda files: _load_cifar("cifar100", files),
    "fashionmnist": _load_fashionmnist,
    "svhn": _load_svhn,
}
