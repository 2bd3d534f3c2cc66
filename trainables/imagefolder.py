"""Image-folder datasets: reading <data_dir>/train/<class>/* and <data_dir>/test/<class>/*.

Holds the imagefolder decoder (`load_imagefolder`, called by `trainables.data.load_dataset`
through its file cache), the header pass that settles the stored size (`_imagefolder_size`: one
square size is kept as it is, mixed sizes are resized with PIL's bilinear filter and the resize
recorded), and `describe_stored_images`, which says how any dataset's stored images (what
evaluation and an exported model take) were made from its files.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import torch

from lrunet.datasets import DatasetInfo
from trainables.data import Dataset

# an image folder of mixed sizes: PIL's filter for images resized to the common size
IMAGEFOLDER_RESAMPLE = "bilinear"
IMAGE_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".webp",
    ".ppm",
    ".pgm",
    ".tif",
    ".tiff",
)
GREY_MODES = ("L", "1", "I;16", "I")


def load_imagefolder(files: list[Path], input_size: int | None = None) -> Dataset:
    """An image folder: classes from train/<class>/ (sorted), one channel (PIL mode L) when every
    image is greyscale, else RGB; the size from the files themselves.

    Images that all share one square size are stored as they are, never resized, so an exported
    model takes the files' own pixels; asking for another `input_size` then is a ValueError.
    Images of mixed sizes (or one non-square size) are resized with PIL's bilinear filter to
    `input_size`, default the most common size (its longer side when not square); the sizes
    resized are recorded in `DatasetInfo.resized_from`.
    """
    from PIL import Image

    train_dir, test_dir = files
    root = train_dir.parent
    classes = tuple(sorted(d.name for d in train_dir.iterdir() if d.is_dir()))
    if not classes:
        raise FileNotFoundError(f"imagefolder: no class folders in {train_dir}")
    extra = sorted({d.name for d in test_dir.iterdir() if d.is_dir()} - set(classes))
    if extra:
        raise ValueError(f"imagefolder: test classes {extra} have no folder in {train_dir}")

    def listing(split_dir: Path) -> list[tuple[Path, int]]:
        return [
            (p, i)
            for i, c in enumerate(classes)
            if (split_dir / c).is_dir()
            for p in sorted((split_dir / c).iterdir())
            if p.suffix.lower() in IMAGE_EXTENSIONS
        ]

    train_list, test_list = listing(train_dir), listing(test_dir)
    for split_dir, items in ((train_dir, train_list), (test_dir, test_list)):
        if not items:
            raise FileNotFoundError(
                f"imagefolder: no images ({', '.join(IMAGE_EXTENSIONS)}) "
                f"under {split_dir}/<class>/"
            )
    # headers first (PIL reads the size and mode without decoding): the size is settled, and
    # a wrong input_size refused, before any pixel is decoded
    sizes: Counter[tuple[int, int]] = Counter()
    grey = True
    for p, _ in train_list + test_list:
        try:
            with Image.open(p) as im:
                sizes[im.size] += 1
                grey = grey and im.mode in GREY_MODES
        except OSError as e:
            raise ValueError(f"imagefolder: cannot decode {p}: {e}") from e
    size = _imagefolder_size(sizes, input_size, root)
    mode = "L" if grey else "RGB"

    def stack(items: list[tuple[Path, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        arrays = []
        for p, _ in items:
            try:
                with Image.open(p) as raw:
                    im = raw.convert(mode)
            except OSError as e:
                raise ValueError(f"imagefolder: cannot decode {p}: {e}") from e
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BILINEAR)
            t = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
            arrays.append(t.view(size, size, -1).permute(2, 0, 1))
        return torch.stack(arrays), torch.tensor([y for _, y in items], dtype=torch.int64)

    train_x, train_y = stack(train_list)
    test_x, test_y = stack(test_list)
    info = DatasetInfo(
        "imagefolder",
        len(classes),
        1 if grey else 3,
        size,
        size,
        True,
        train_images=len(train_x),
        resized_from=tuple(sorted(s for s in sizes if s != (size, size))),
    )
    return Dataset(info, train_x, train_y, test_x, test_y, classes, str(root))


def _imagefolder_size(sizes: Counter[tuple[int, int]], input_size: int | None, root: Path) -> int:
    """The side every image of a folder is stored at (see `load_imagefolder`)."""
    if len(sizes) == 1:
        ((w, h),) = sizes
        if w == h:
            if input_size is not None and input_size != w:
                raise ValueError(
                    f"imagefolder: input_size {input_size} asked for, but every image under "
                    f"{root} is {w}x{w}; images of one size are used as stored, never resized "
                    f"(so an exported model takes the files as they are): use input_size {w} "
                    "or leave it out"
                )
            return w
    if input_size is not None:
        return input_size
    # the most common size; ties go to the larger, then the wider image (a fixed choice)
    (w, h), _ = max(sizes.items(), key=lambda kv: (kv[1], max(kv[0]), kv[0]))
    return max(w, h)


def describe_stored_images(data: Dataset) -> dict[str, Any]:
    """How the stored images (what evaluation and an exported model take, as pixels / 255) were
    made from the dataset's files: {"description": text, "pil_mode": "L"/"RGB" for an image
    folder else None, "resized_from": [[w, h], ...], "resize": PIL filter or None}."""
    info = data.info
    s = info.eval_size
    out: dict[str, Any] = {"pil_mode": None, "resized_from": [], "resize": None}
    if info.name == "imagefolder":
        mode = "L" if info.in_channels == 1 else "RGB"
        text = (
            f"the image files under {data.source}/test/<class>/, decoded with PIL and converted "
            f"to mode {mode}"
        )
        if info.resized_from:
            seen = ", ".join(f"{w}x{h}" for w, h in info.resized_from)
            text += (
                f"; every image not {s}x{s} (sizes seen, width x height: {seen}) resized to "
                f"{s}x{s} with PIL's {IMAGEFOLDER_RESAMPLE} filter after the conversion; this "
                "resize is not in the exported graph: resize images the same way first"
            )
            out["resize"] = IMAGEFOLDER_RESAMPLE
        else:
            text += f", at their own {s}x{s} size (no resize)"
        out.update(
            pil_mode=mode, resized_from=[list(r) for r in info.resized_from], description=text
        )
        return out
    if info.name == "digits":
        out["description"] = (
            "scikit-learn's 8x8 digits (values 0-16) scaled by 255/16, upsampled to 32x32 with "
            "torch's bilinear interpolation (align_corners=False) and rounded to uint8, as "
            "`trainables.data` stores them (the upsampling is not in the exported graph)"
        )
        return out
    colour = "greyscale" if info.in_channels == 1 else "RGB"
    out["description"] = f"the dataset's own {s}x{s} {colour} images, as distributed"
    return out
