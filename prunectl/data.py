"""Data sources in one registry, and the seeded, stratified split every run records.

A source spec is `KIND` or `KIND:ARG` (`digits`, `fashion-mnist:/path`, `npz:data.npz`). Every
source returns a :class:`Dataset`: float inputs already preprocessed, integer labels, and the
metadata an exported model needs to be used on its own (class names, input shape, the
preprocessing that was applied).
"""

from __future__ import annotations

import csv
import functools
import gzip
import math
import os
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prunectl.errors import DataError
from prunectl.recipe import DataSpec
from prunectl.registry import Registry
from prunectl.registry import split_source as parse_source

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
SPLIT_NAMES = ("members", "dev", "holdout", "shadow_pool")
SPLIT_RATIO = (4, 1, 4, 12)
"""members:dev:holdout:shadow_pool for unset sizes. The gate reserves a quarter of the pool for
calibration and each shadow trains on half the rest: 3/8 × 12 = 4.5, about 0.9× the victim's
members + dev, as close as the victim's own split lets a shadow re-run its recipe."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """All samples of a source, preprocessed. `x[i]`, `y[i]` is dataset index `i`."""

    x: torch.Tensor
    y: torch.Tensor
    classes: tuple[str, ...]
    source: str
    preprocessing: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def is_image(self) -> bool:
        return self.x.dim() == 4

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class SourceKind:
    """How one kind of source is read. `needs_arg`: the part after ':' is required;
    `path_is_dir`: its path names a directory (else a file)."""

    load: Callable[[str | None, DataSpec], Dataset]
    needs_arg: bool
    arg_is_path: bool
    default_path: Path | None = None
    missing_hint: str = "pass an existing path"
    path_is_dir: bool = False


DATA_SOURCES: Registry[SourceKind] = Registry("data source", DataError)


def check_source(spec: DataSpec) -> None:
    """Validate the source name and that its path exists, before any work starts."""
    kind_name, arg = parse_source(spec.source)
    kind = DATA_SOURCES.get(kind_name)
    if kind.needs_arg and not arg:
        raise DataError(f"data.source {spec.source!r} needs a path: use {kind_name}:PATH")
    path = Path(arg) if arg and kind.arg_is_path else kind.default_path
    if path is not None and not path.exists():
        raise DataError(f"data.source {spec.source!r}: {path} does not exist; {kind.missing_hint}")
    if path is not None and kind.path_is_dir and not path.is_dir():
        raise DataError(f"data.source {spec.source!r}: {path} is not a directory; pass the directory {kind_name}:DIR")
    if path is not None and not kind.path_is_dir and path.is_dir():
        raise DataError(f"data.source {spec.source!r}: {path} is a directory; pass a file, {kind_name}:FILE")
    if path is not None and not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        raise DataError(f"data.source {spec.source!r}: {path} is not readable (permission denied); check its permissions")
    if arg and not kind.arg_is_path:
        raise DataError(f"data.source {spec.source!r}: {kind_name} takes no argument; use {kind_name!r}")


@functools.lru_cache(maxsize=4)
def load_dataset(spec: DataSpec) -> Dataset:
    """Load (once per process: shadows reuse it) and check a dataset."""
    check_source(spec)
    kind_name, arg = parse_source(spec.source)
    dataset = DATA_SOURCES.get(kind_name).load(arg, spec)
    _check_dataset(dataset)
    return dataset


def _check_dataset(data: Dataset) -> None:
    if len(data) == 0:
        raise DataError(f"data source {data.source!r} holds no samples")
    if not torch.isfinite(data.x).all():
        raise DataError(f"data source {data.source!r} has NaN or infinite inputs; clean the data first")
    present = torch.unique(data.y)
    if present.numel() < 2:
        raise DataError(f"data source {data.source!r} has a single class; a classifier needs at least 2")
    if int(data.y.min()) < 0 or int(data.y.max()) >= data.num_classes:
        raise DataError(f"data source {data.source!r} has labels outside 0..{data.num_classes - 1}")


def _standardise_images(x: np.ndarray, scale: float, source: str, classes: tuple[str, ...], y: np.ndarray) -> Dataset:
    """Scale pixels to [0, 1], then to [-1, 1] with mean 0.5, std 0.5 per channel."""
    channels = x.shape[1]
    mean, std = (0.5,) * channels, (0.5,) * channels
    # In place: one float32 copy of the images, not three (70,000 Fashion-MNIST images: 156 MiB less peak).
    tensor = torch.from_numpy(x.astype(np.float32)).mul_(np.float32(scale)).sub_(0.5).div_(0.5)
    return Dataset(
        tensor.contiguous(),
        torch.from_numpy(y.astype(np.int64)),
        classes,
        source,
        {"kind": "image", "scale": scale, "mean": list(mean), "std": list(std), "layout": "NCHW"},
    )


def _standardise_features(x: np.ndarray, source: str, classes: tuple[str, ...], y: np.ndarray) -> Dataset:
    """Per-feature standardisation, so tabular features on different scales train alike."""
    x = x.astype(np.float64)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std[std == 0] = 1.0
    tensor = torch.from_numpy(((x - mean) / std).astype(np.float32))
    return Dataset(
        tensor.contiguous(),
        torch.from_numpy(y.astype(np.int64)),
        classes,
        source,
        {"kind": "features", "scale": 1.0, "mean": mean.tolist(), "std": std.tolist()},
    )


def _from_arrays(x: np.ndarray, y: np.ndarray, source: str, classes: tuple[str, ...] | None = None) -> Dataset:
    if x.shape[0] != y.shape[0]:
        raise DataError(f"{source}: {x.shape[0]} inputs but {y.shape[0]} labels; they must match")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.number):
        raise DataError(f"{source}: labels must be a 1-D array of integers")
    if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
        raise DataError(f"{source}: labels must be integers; store class indices 0..K-1")
    if x.ndim < 2 or not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{source}: inputs must be a numeric array of shape (N, features) or (N, [C,] H, W)")
    if not np.all(np.isfinite(x)):
        raise DataError(f"{source}: inputs contain NaN or infinite values; clean the data first")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise DataError(f"{source}: labels must be >= 0, found {int(y.min())}; number the classes from 0")
    if classes is None:
        classes = tuple(str(c) for c in range(int(y.max()) + 1 if y.size else 0))
    if x.ndim == 2:
        return _standardise_features(x, source, classes, y)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise DataError(f"{source}: inputs of shape {x.shape} are not (N, features) or (N, [C,] H, W)")
    scale = 1.0 / 255.0 if x.max() > 1.0 else 1.0
    return _standardise_images(x, scale, source, classes, y)


def _load_digits(arg: str | None, spec: DataSpec) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images[:, None].astype(np.float32)
    return _standardise_images(images, 1.0 / 16.0, "digits", tuple(str(i) for i in range(10)), bunch.target)


def _read_idx(path: Path, expected_dims: int) -> np.ndarray:
    """Read one gzip'd IDX file (the MNIST format), checking its header against its size."""
    try:
        with gzip.open(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise DataError(f"{path} is not a readable gzip IDX file ({error}); re-download or reinstall it") from None
    if len(raw) < 4 + 4 * expected_dims:
        raise DataError(f"{path} is truncated (no IDX header); re-download or reinstall it")
    zero, dtype_code, dims = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or dims != expected_dims:
        raise DataError(f"{path} is not an unsigned-byte IDX file with {expected_dims} dimensions; re-download or reinstall it")
    shape = struct.unpack(">" + "I" * dims, raw[4 : 4 + 4 * dims])
    body = raw[4 + 4 * dims :]
    if len(body) != math.prod(shape):
        raise DataError(
            f"{path} is truncated or corrupt: header says {math.prod(shape)} bytes, found {len(body)}; re-download or reinstall it"
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def _load_fashion_mnist(arg: str | None, spec: DataSpec) -> Dataset:
    """Train and test IDX files pooled into one set of 70,000: prunectl makes its own splits."""
    directory = Path(arg) if arg else FASHION_MNIST_DIR
    if not directory.is_dir():
        raise DataError(
            f"Fashion-MNIST not found in {directory}; install it with "
            "'apt-get install dataset-fashion-mnist' or pass fashion-mnist:DIR"
        )
    images, labels = [], []
    for prefix in ("train", "t10k"):
        image_path = directory / f"{prefix}-images-idx3-ubyte.gz"
        label_path = directory / f"{prefix}-labels-idx1-ubyte.gz"
        for path in (image_path, label_path):
            if not path.is_file():
                raise DataError(f"{path} is missing; a Fashion-MNIST directory holds the four *-idx*-ubyte.gz files")
        x = _read_idx(image_path, 3)
        y = _read_idx(label_path, 1)
        if x.shape[0] != y.shape[0]:
            raise DataError(
                f"{image_path} has {x.shape[0]} images but {label_path} has {y.shape[0]} labels; both must come from the same download"
            )
        images.append(x)
        labels.append(y)
    x = np.concatenate(images)[:, None]
    y = np.concatenate(labels).astype(np.int64)
    if y.max() >= len(FASHION_MNIST_CLASSES):
        raise DataError(f"{directory}: labels outside 0..9; the files are not Fashion-MNIST, re-download or reinstall them")
    return _standardise_images(x, 1.0 / 255.0, spec.source, FASHION_MNIST_CLASSES, y)


def _load_imagefolder(arg: str | None, spec: DataSpec) -> Dataset:
    """DIR/<class>/<image>: classes are the sorted sub-directory names; images resized square."""
    from PIL import Image, UnidentifiedImageError

    root = Path(str(arg))
    if not root.is_dir():
        raise DataError(f"imagefolder:{root} is not a directory of class sub-directories")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"imagefolder:{root} has {len(classes)} class sub-directories; a classifier needs at least 2")
    files: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        found = [p for p in sorted((root / name).rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        if not found:
            # A class without samples would still get an output logit and silently never be
            # predicted; more likely its images are missing or have another extension.
            raise DataError(
                f"imagefolder:{root}: class directory {name!r} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                "add its images or remove the directory"
            )
        files.extend((path, label) for path in found)
    modes = set()
    for path, _label in files:
        try:
            with Image.open(path) as image:
                modes.add("L" if image.mode in ("L", "1", "I;16", "I") else "RGB")
        except (UnidentifiedImageError, OSError) as error:
            raise DataError(f"{path} is not a readable image ({error}); remove or replace it") from None
    mode = "L" if modes == {"L"} else "RGB"
    size = spec.image_size
    pixels, labels = [], []
    for path, label in files:
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert(mode).resize((size, size), Image.BILINEAR), dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as error:
            raise DataError(f"{path} is not a readable image ({error}); remove or replace it") from None
        pixels.append(array[None] if mode == "L" else array.transpose(2, 0, 1))
        labels.append(label)
    x = np.stack(pixels)
    return _standardise_images(x, 1.0 / 255.0, spec.source, tuple(classes), np.asarray(labels))


def _load_npz(arg: str | None, spec: DataSpec) -> Dataset:
    path = Path(str(arg))
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DataError(
                f"{path} is not a readable .npz archive (it holds a single array); write it with numpy.savez(x=..., y=...)"
            )
        with loaded as archive:
            missing = {"x", "y"} - set(archive.files)
            if missing:
                raise DataError(f"{path} lacks array(s) {', '.join(sorted(missing))}; an npz source holds arrays 'x' and 'y'")
            x, y = archive["x"], archive["y"]
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        # numpy's own messages about pickled data suggest allow_pickle=True: never repeat that advice.
        if "allow_pickle" in str(error) and "Object arrays" in str(error):
            detail = "it holds object arrays, which only unpickling could read; store numeric arrays"
        elif "allow_pickle" in str(error) or "pickled" in str(error):
            detail = "neither a zip archive of arrays nor a .npy file"
        else:
            detail = (error.strerror if isinstance(error, OSError) and error.strerror else str(error).splitlines()[0]) if str(error) else type(error).__name__
        raise DataError(f"{path} is not a readable .npz archive ({detail}); write it with numpy.savez(x=..., y=...)") from None
    return _from_arrays(x, y, spec.source)


def _load_csv(arg: str | None, spec: DataSpec) -> Dataset:
    """A header row, numeric feature columns and one label column (integers or class names)."""
    path = Path(str(arg))
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not a readable CSV file (not UTF-8 text at byte {error.start}); save it as UTF-8 CSV") from None
    except (OSError, csv.Error) as error:
        detail = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise DataError(f"{path} is not a readable CSV file ({detail}); check the path and its format") from None
    if len(rows) < 2:
        raise DataError(f"{path} has no data rows; a CSV source needs a header row and samples")
    header = [h.strip() for h in rows[0]]
    if spec.label_column not in header:
        raise DataError(
            f"{path} has no label column {spec.label_column!r} (columns: {', '.join(header)}); set data.label_column"
        )
    label_at = header.index(spec.label_column)
    features, raw_labels = [], []
    for line_number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise DataError(f"{path}:{line_number} has {len(row)} fields, the header has {len(header)}; give every row one value per column")
        try:
            features.append([float(v) for i, v in enumerate(row) if i != label_at])
        except ValueError:
            raise DataError(f"{path}:{line_number} has a non-numeric feature; every column but the label must be a number") from None
        raw_labels.append(row[label_at].strip())
    try:
        numeric = [float(v) for v in raw_labels]
    except ValueError:  # class names
        classes: tuple[str, ...] | None = tuple(sorted(set(raw_labels)))
        y = np.asarray([classes.index(v) for v in raw_labels], dtype=np.int64)
    else:
        # `float` also reads "nan", "inf" and "-1": labels that are numbers but not classes.
        bad = next((raw for raw, v in zip(raw_labels, numeric) if not (math.isfinite(v) and v >= 0 and v == int(v))), None)
        if bad is not None:
            raise DataError(f"{path}: numeric labels must be integers >= 0, found {bad!r}; fix the {spec.label_column!r} column")
        y = np.asarray(numeric, dtype=np.int64)
        classes = None
    return _from_arrays(np.asarray(features, dtype=np.float64), y, spec.source, classes)


# The registry entries: kept together so the set of sources reads as one table.
DATA_SOURCES.register(SourceKind(_load_digits, needs_arg=False, arg_is_path=False), "digits")
DATA_SOURCES.register(
    SourceKind(
        _load_fashion_mnist,
        needs_arg=False,
        arg_is_path=True,
        default_path=FASHION_MNIST_DIR,
        missing_hint="install it with 'apt-get install dataset-fashion-mnist' or pass fashion-mnist:DIR",
        path_is_dir=True,
    ),
    "fashion-mnist",
)
DATA_SOURCES.register(SourceKind(_load_imagefolder, needs_arg=True, arg_is_path=True, path_is_dir=True), "imagefolder")
DATA_SOURCES.register(SourceKind(_load_npz, needs_arg=True, arg_is_path=True), "npz")
DATA_SOURCES.register(SourceKind(_load_csv, needs_arg=True, arg_is_path=True), "csv")


# ----------------------------------------------------------------------------------- splits


@dataclass(frozen=True, eq=False)
class Splits:
    """Disjoint dataset-index arrays. `members` train the released model; `holdout` is never trained on."""

    members: np.ndarray
    dev: np.ndarray
    holdout: np.ndarray
    shadow_pool: np.ndarray
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, **{name: getattr(self, name).tolist() for name in SPLIT_NAMES}}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Splits:
        return cls(*(np.asarray(raw[name], dtype=np.int64) for name in SPLIT_NAMES), seed=int(raw["seed"]))

    def sizes(self) -> dict[str, int]:
        return {name: int(getattr(self, name).size) for name in SPLIT_NAMES}


def split_sizes(total: int, spec: DataSpec) -> dict[str, int]:
    """Requested sizes, with unset ones following 4:1:4:12; an unset shadow pool takes the rest."""
    auto = {name: total * part // sum(SPLIT_RATIO) for name, part in zip(SPLIT_NAMES, SPLIT_RATIO)}
    auto["shadow_pool"] = total - auto["members"] - auto["dev"] - auto["holdout"]
    sizes = {name: getattr(spec, name) if getattr(spec, name) is not None else auto[name] for name in SPLIT_NAMES}
    if spec.shadow_pool is None:
        sizes["shadow_pool"] = max(0, total - sizes["members"] - sizes["dev"] - sizes["holdout"])
    if sum(sizes.values()) > total:
        wanted = ", ".join(f"{k}={v}" for k, v in sizes.items())
        raise DataError(
            f"split sizes ({wanted}) add up to {sum(sizes.values())} but the data has {total} samples; "
            "lower data.members/dev/holdout/shadow_pool"
        )
    for name in ("members", "dev", "holdout"):
        if sizes[name] < 1:
            raise DataError(f"data.{name} would be empty with {total} samples; use more data or set the split sizes")
    return sizes


def make_splits(labels: torch.Tensor | np.ndarray, spec: DataSpec, seed: int) -> Splits:
    """Seeded stratified split with exact sizes.

    Each sample gets a key `(rank within its class + class offset) / class size`, with ranks
    from a seeded shuffle and a random offset per class; sorting by key interleaves the classes
    evenly, so every consecutive chunk holds each class in proportion (within two samples).
    """
    y = np.asarray(labels, dtype=np.int64)
    sizes = split_sizes(y.size, spec)
    rng = np.random.default_rng(seed)
    keys = np.empty(y.size, dtype=np.float64)
    for label in np.unique(y):
        where = np.flatnonzero(y == label)
        ranks = rng.permutation(where.size)
        keys[where] = (ranks + rng.random()) / where.size
    order = np.lexsort((rng.random(y.size), keys))
    chunks, start = {}, 0
    for name in SPLIT_NAMES:
        chunks[name] = np.sort(order[start : start + sizes[name]])
        start += sizes[name]
    return Splits(**chunks, seed=seed)
