"""The dataset table: every dataset's geometry, declared once.

The data loaders (`trainables.data`), the search-space loader (counting geometry, training-set
size), `launch.py describe --dataset` and the checkpoint importer all read this table. Plain
Python, no torch.

`train_size` is the side of the training crops; `eval_size` the side of the stored evaluation
images, which is also the geometry the paper counts MFLOPs at (Fashion-MNIST: train 32, eval 28,
LRUNET_SPEC.md §3 and §2). `eval_pad` zero-pads evaluation images on every side before the model
sees them: Fashion-MNIST is trained on 32x32 crops of the 4-padded 28x28 images, and the
reference's raw 28x28 evaluation changes every feature map's size (14-7-4 instead of 16-8-4),
costing 0.35-0.6 points on trained models and about 4 after one epoch (spec §6.6). Here
validation and test images are padded by 2 to the training geometry; the reference's way
(`eval_pad=0`) is what `tests/test_reference.py` uses to reproduce the released checkpoints.

An image folder's info is read from its files (`trainables.data`): classes from its class folders,
one channel when every image is greyscale, the size of its images. `resized_from` lists the image
sizes, (width, height) as PIL reports them, that the loader resized to `eval_size` (a folder of
mixed sizes); it is empty when the stored images are the files' own pixels.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and a search need to know about a dataset."""

    name: str
    num_classes: int
    in_channels: int
    train_size: int
    eval_size: int
    flip: bool  # horizontal flip in augmentation (the reference flips even Fashion-MNIST)
    eval_pad: int = 0  # zero padding of evaluation images, per side
    train_images: int | None = None  # images in the training split (None: known once loaded)
    # (width, height) of the images the loader resized to eval_size x eval_size (image folders
    # of mixed sizes only); () when every stored image is its file's own pixels
    resized_from: tuple[tuple[int, int], ...] = ()

    @property
    def geometry(self) -> dict[str, int]:
        """Keyword arguments of every family's config (`lrunet.registry.parse_name`)."""
        return {
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "input_size": self.eval_size,
        }


GEOMETRY_KEYS = ("num_classes", "in_channels", "input_size")
VAL_FRACTION = 0.1  # share of each class held out for validation (fixed split, every trial)

DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo("cifar10", 10, 3, 32, 32, True, train_images=50_000),
    "cifar100": DatasetInfo("cifar100", 100, 3, 32, 32, True, train_images=50_000),
    "fashionmnist": DatasetInfo(
        "fashionmnist", 10, 1, 32, 28, True, eval_pad=2, train_images=60_000
    ),
    # house numbers: a flipped digit is another digit, so no horizontal flip
    "svhn": DatasetInfo("svhn", 10, 3, 32, 32, False, train_images=73_257),
    # scikit-learn's 8x8 digits, upsampled to 32x32; 1,797 images in all, 1,438 for training
    # (the test split takes round(20 %) of every class: 359 images)
    "digits": DatasetInfo("digits", 10, 1, 32, 32, False, train_images=1_438),
}
# Classes, channels and size of an image folder come from its files.
DATASET_NAMES = (*DATASETS, "imagefolder")
