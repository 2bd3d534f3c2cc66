"""Datasets as in-memory uint8 tensors, the fixed validation split, and the training subset.

The paper trains on CIFAR-10, CIFAR-100 and Fashion-MNIST from torchvision (LRUNET_SPEC.md §3);
pixels are fed as value/255 with no normalisation, which is kept. Every loader returns a `Dataset`
of uint8 tensors shaped (N, C, H, W) plus int64 labels; augmentation happens later, on batches, on
the trial's device (`trainables.augment`). Each dataset's geometry and training-set size come from
the one dataset table, `lrunet.datasets` (re-exported here as `DatasetInfo`, `DATASETS`).

    cifar10, cifar100  torchvision's pickles: <data_dir>/cifar-10-batches-py/, cifar-100-python/
    fashionmnist       idx .gz files in <data_dir>/FashionMNIST/raw/ or <data_dir>/, else Debian's
                       /usr/share/datasets/fashion-mnist (apt-get install -y dataset-fashion-mnist)
    svhn               torchvision's train_32x32.mat and test_32x32.mat in <data_dir>/ or
                       <data_dir>/svhn/: the standard split without "extra" (73,257 / 26,032),
                       label 10 read as digit 0 as torchvision does
    imagefolder        <data_dir>/train/<class>/* and <data_dir>/test/<class>/*, decoded with PIL
                       once, converted to RGB (L when every image is greyscale); classes, channels
                       and size come from the files (see `trainables.imagefolder`: images of one
                       size are kept as they are, mixed sizes are resized, the resize recorded)
    digits             scikit-learn's bundled 8x8 digits upsampled to 32x32; always available

The file formats are decoded by `trainables.formats` (CIFAR, idx, .mat) and
`trainables.imagefolder`; this module finds the files, caches the tensors and splits them.

Search metrics come from a validation split carved from the training set (`split_indices`): 10 %
of every class, chosen with `SPLIT_SEED`, which is independent of the trial seed, so every trial of
every search sees the same split. The test set is touched only by final evaluation.

A dataset is decoded once per node: a process-level cache serves the trials of a reused Ray actor,
and a file cache (`$LRUNET_CACHE_DIR`, default ~/.cache/lrunet) of tensors, read back with
`torch.load(..., weights_only=True)`, serves new processes.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from lrunet.datasets import DATASET_NAMES, DATASETS, VAL_FRACTION, DatasetInfo
from lrunet.io import save_torch

SPLIT_SEED = 20190521  # validation split and subsets; never the trial seed
DIGITS_TEST_FRACTION = 0.2
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
CACHE_FORMAT = 3  # 3: an image folder's size is inferred, its resizes recorded in its info


def pad_for_eval(images: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
    """Evaluation images as the model sees them (zero-padded by `info.eval_pad` per side)."""
    if not info.eval_pad:
        return images
    p = info.eval_pad
    return torch.nn.functional.pad(images, (p, p, p, p))


@dataclass(frozen=True, eq=False)
class Dataset:
    info: DatasetInfo
    train_x: torch.Tensor  # uint8 (N, C, H, W)
    train_y: torch.Tensor  # int64 (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...]
    source: str  # where it was read from

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def geometry(self) -> dict[str, int]:
        return self.info.geometry

    def __post_init__(self) -> None:
        for split, x, y in (
            ("train", self.train_x, self.train_y),
            ("test", self.test_x, self.test_y),
        ):
            if (
                x.dtype != torch.uint8
                or x.dim() != 4
                or y.dtype != torch.int64
                or len(x) != len(y)
            ):
                raise ValueError(
                    f"{self.info.name}: {split} split must be uint8 (N, C, H, W) images with N "
                    f"int64 labels, got {x.dtype} {tuple(x.shape)} and {y.dtype} {tuple(y.shape)}"
                )


_PROCESS_CACHE: dict[tuple[str, str, int | None], Dataset] = {}


def default_data_dir() -> Path:
    return Path(os.environ.get("LRUNET_DATA_DIR", "data"))


def cache_dir() -> Path:
    return Path(os.environ.get("LRUNET_CACHE_DIR", Path.home() / ".cache" / "lrunet"))


def dataset_info(
    name: str, data_dir: str | os.PathLike | None = None, *, input_size: int | None = None
) -> DatasetInfo:
    """The `DatasetInfo` of `name`; an image folder is read (and cached) to learn its classes,
    channels and size."""
    name = _check_name(name)
    if name in DATASETS:
        _check_input_size(name, input_size)
        return DATASETS[name]
    return load_dataset(name, data_dir, input_size=input_size).info


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = False,
    input_size: int | None = None,
) -> Dataset:
    """Load `name` into memory (see the module docstring for formats and search paths).

    `input_size` is the side an image folder of mixed sizes is resized to (default: its most
    common size); a folder whose images share one size keeps it, and asking for another is a
    ValueError. The other datasets have their fixed size (the table in `lrunet.datasets`).
    Raises FileNotFoundError naming where it looked and how to get the data.
    """
    name = _check_name(name)
    if name != "imagefolder":
        _check_input_size(name, input_size)
        input_size = None
    elif input_size is not None and (
        isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 2
    ):
        raise ValueError(f"input_size: expected an integer >= 2, got {input_size!r}")
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if name == "digits":
        key = (name, "", None)
        if key not in _PROCESS_CACHE:
            _PROCESS_CACHE[key] = _load_digits()
        return _PROCESS_CACHE[key]
    files = _locate(name, root, download)
    key = (name, str(files[0].parent.resolve()), input_size)
    if key not in _PROCESS_CACHE:
        _PROCESS_CACHE[key] = _load_file_cached(name, files, input_size)
    return _PROCESS_CACHE[key]


def _check_input_size(name: str, input_size: int | None) -> None:
    size = DATASETS[name].eval_size
    if input_size is not None and input_size != size:
        raise ValueError(
            f"input_size {input_size}: {name} images are {size}x{size}; only an image folder "
            f"of mixed sizes can be resized (leave input_size out for {name})"
        )


def _check_name(name: str) -> str:
    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in DATASET_NAMES:
        raise ValueError(f"dataset: {name!r} is not one of {', '.join(DATASET_NAMES)}")
    return key


# --- locating files --------------------------------------------------------------------------

_CIFAR = {
    "cifar10": (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"],
    ),
    "cifar100": ("cifar-100-python", ["train", "test", "meta"]),
}
_FMNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")  # torchvision's; "extra" is not used


def _locate(name: str, root: Path, download: bool) -> list[Path]:
    """The source files of `name` (downloading them when asked); FileNotFoundError otherwise."""
    if name in _CIFAR:
        folder, names = _CIFAR[name]
        files = [root / folder / n for n in names]
        if not all(f.is_file() for f in files) and download:
            _download(name, root)
        if all(f.is_file() for f in files):
            return files
        raise FileNotFoundError(
            f"{name}: no {folder}/ with {', '.join(names)} under {root.resolve()}; fetch it with "
            f"`python launch.py train ... --dataset {name} --data-dir {root} --download` "
            f"(torchvision download, needs the network) or unpack the official tarball there"
        )
    if name == "fashionmnist":
        candidates = [root / "FashionMNIST" / "raw", root, DEBIAN_FASHION_MNIST]
        for folder in candidates:
            files = [_with_gz(folder / n) for n in _FMNIST_FILES]
            if all(f is not None for f in files):
                return files  # type: ignore[return-value]
        if download:
            _download(name, root)
            files = [_with_gz(root / "FashionMNIST" / "raw" / n) for n in _FMNIST_FILES]
            if all(f is not None for f in files):
                return files  # type: ignore[return-value]
        looked = ", ".join(str(c) for c in candidates)
        raise FileNotFoundError(
            f"fashionmnist: no idx files ({_FMNIST_FILES[0]}[.gz] ...) in {looked}; install them "
            f"with `apt-get install -y dataset-fashion-mnist` or pass --download (torchvision, "
            f"needs the network)"
        )
    if name == "svhn":
        candidates = [root, root / "svhn"]
        for folder in candidates:
            files = [folder / n for n in _SVHN_FILES]
            if all(f.is_file() for f in files):
                return files
        if download:
            _download(name, root)
            files = [root / n for n in _SVHN_FILES]
            if all(f.is_file() for f in files):
                return files
        looked = " or ".join(str(c.resolve()) for c in candidates)
        raise FileNotFoundError(
            f"svhn: no {' and '.join(_SVHN_FILES)} in {looked}; fetch them with "
            f"`python launch.py train ... --dataset svhn --data-dir {root} --download` "
            f"(torchvision download, needs the network) or copy torchvision's SVHN files there"
        )
    # imagefolder
    train, test = root / "train", root / "test"
    if not train.is_dir() or not test.is_dir():
        raise FileNotFoundError(
            f"imagefolder: expected {train.resolve()}/<class>/* and {test.resolve()}/<class>/*; "
            f"pass --data-dir pointing at a folder holding train/ and test/"
        )
    return [train, test]


def _with_gz(path: Path) -> Path | None:
    for p in (path.with_name(path.name + ".gz"), path):
        if p.is_file():
            return p
    return None


def _download(name: str, root: Path) -> None:
    import torchvision.datasets as tvd

    cls = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100, "fashionmnist": tvd.FashionMNIST}
    try:
        if name == "svhn":
            for split in ("train", "test"):
                tvd.SVHN(str(root), split=split, download=True)
            return
        for train in (True, False):
            cls[name](str(root), train=train, download=True)
    except (OSError, RuntimeError) as e:  # URLError is an OSError
        raise ConnectionError(f"{name}: download into {root.resolve()} failed: {e}") from e


# --- file cache ------------------------------------------------------------------------------


def _fingerprint(name: str, files: list[Path], input_size: int | None = None) -> str:
    # the target size is part of the key: one folder read at two sizes is two entries ("auto",
    # the inferred size, is a function of the files hashed below)
    target = input_size if input_size is not None else "auto"
    h = hashlib.sha256(f"{CACHE_FORMAT}:{name}:{target}".encode())
    paths = [p for f in files for p in (sorted(f.rglob("*")) if f.is_dir() else [f])]
    for p in paths:
        st = p.stat()
        h.update(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def _load_file_cached(name: str, files: list[Path], input_size: int | None = None) -> Dataset:
    path = cache_dir() / f"{name}-{_fingerprint(name, files, input_size)}.pt"
    if path.is_file():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            return Dataset(
                # a known dataset's info is code, not data: never trust an older cache's copy
                DATASETS.get(name) or _info_from_cache(blob["info"]),
                blob["train_x"],
                blob["train_y"],
                blob["test_x"],
                blob["test_y"],
                tuple(blob["classes"]),
                blob["source"],
            )
        except Exception:  # a corrupt cache entry is rebuilt, never fatal
            pass
    if name == "imagefolder":
        from trainables.imagefolder import load_imagefolder  # it imports Dataset from here

        data = load_imagefolder(files, input_size)
    else:
        from trainables.formats import LOADERS  # they import Dataset from here

        data = LOADERS[name](files)
    blob = {
        "info": vars(data.info),
        "train_x": data.train_x,
        "train_y": data.train_y,
        "test_x": data.test_x,
        "test_y": data.test_y,
        "classes": list(data.classes),
        "source": data.source,
    }
    try:
        save_torch(blob, path)
    except OSError:  # a read-only or full cache only costs the decoding time next time
        pass
    return data


def _info_from_cache(raw: dict) -> DatasetInfo:
    info = dict(raw)
    info["resized_from"] = tuple(tuple(int(v) for v in s) for s in info.get("resized_from", ()))
    return DatasetInfo(**info)


# --- decoders --------------------------------------------------------------------------------


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) * (255.0 / 16.0)
    x = F.interpolate(x, size=32, mode="bilinear", align_corners=False)
    x = x.round().clamp(0, 255).to(torch.uint8)
    y = torch.tensor(d.target, dtype=torch.int64)
    train_idx, test_idx = split_indices(y, DIGITS_TEST_FRACTION, seed=SPLIT_SEED + 1)
    classes = tuple(str(i) for i in range(10))
    return Dataset(
        DATASETS["digits"],
        x[train_idx],
        y[train_idx],
        x[test_idx],
        y[test_idx],
        classes,
        "sklearn.datasets.load_digits",
    )


# --- splits ----------------------------------------------------------------------------------


def split_indices(
    labels: torch.Tensor,
    val_fraction: float = VAL_FRACTION,
    subset: int | None = None,
    seed: int = SPLIT_SEED,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices) of a training set, both sorted.

    The validation split takes round(val_fraction * n_c) images of every class c, drawn with a
    generator seeded by `seed` (stratified, so it is the same for every trial). `subset=K` then
    keeps K of the remaining training images, a seeded random draw nested in every larger one.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction: expected a number in [0, 1), got {val_fraction!r}")
    g = torch.Generator().manual_seed(seed)
    train_parts, val_parts = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_val = round(val_fraction * len(idx))
        val_parts.append(idx[:n_val])
        train_parts.append(idx[n_val:])
    train = torch.cat(train_parts)
    if subset is not None:
        if isinstance(subset, bool) or not isinstance(subset, int) or subset < 1:
            raise ValueError(f"subset: expected a positive integer, got {subset!r}")
        if subset > len(train):
            raise ValueError(
                f"subset: {subset} exceeds the {len(train)} training images left "
                f"after the validation split; use a smaller subset or none"
            )
        train = train.sort().values
        train = train[torch.randperm(len(train), generator=g)[:subset]]
    return train.sort().values, torch.cat(val_parts).sort().values
