"""Data sources read what they promise, refuse what they cannot use, and splits are honest."""

import gzip
import struct

import numpy as np
import pytest
import torch

from conftest import FASHION_DIR, needs_fashion_mnist
from prunectl.data import DATA_SOURCES, SPLIT_NAMES, check_source, load_dataset, make_splits, split_sizes
from prunectl.errors import DataError
from prunectl.recipe import DataSpec


def _load(source: str, **fields) -> object:
    load_dataset.cache_clear()
    return load_dataset(DataSpec(source=source, **fields))


# ------------------------------------------------------------------------------- sources


def test_digits_is_the_embedded_default_with_ten_classes():
    data = _load("digits")
    assert len(data) == 1797
    assert data.input_shape == (1, 8, 8)
    assert data.classes == tuple(str(i) for i in range(10))
    assert data.x.dtype == torch.float32 and data.y.dtype == torch.int64
    assert float(data.x.min()) >= -1.0 and float(data.x.max()) <= 1.0
    assert data.preprocessing["scale"] == pytest.approx(1 / 16)


def test_the_registry_lists_every_source():
    assert DATA_SOURCES.names() == ("digits", "fashion-mnist", "imagefolder", "npz", "csv")


def test_unknown_source_names_the_known_ones():
    with pytest.raises(DataError, match="digits, fashion-mnist, imagefolder, npz, csv"):
        check_source(DataSpec(source="cifar"))


def test_sources_that_need_a_path_say_so():
    with pytest.raises(DataError, match="npz:PATH"):
        check_source(DataSpec(source="npz"))
    with pytest.raises(DataError, match="does not exist"):
        check_source(DataSpec(source="npz:/no/such/file.npz"))


def test_npz_images_and_features(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "img.npz", x=rng.integers(0, 256, (30, 12, 12)).astype(np.uint8), y=np.arange(30) % 3)
    images = _load(f"npz:{tmp_path / 'img.npz'}")
    assert images.input_shape == (1, 12, 12) and images.num_classes == 3
    np.savez(tmp_path / "tab.npz", x=rng.normal(5, 3, (40, 6)), y=np.arange(40) % 4)
    table = _load(f"npz:{tmp_path / 'tab.npz'}")
    assert table.input_shape == (6,) and table.num_classes == 4
    assert torch.allclose(table.x.mean(0), torch.zeros(6), atol=1e-5)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((4, 3))}, "lacks array"),
        ({"x": np.zeros((4, 3)), "y": np.zeros(5)}, "must match"),
        ({"x": np.array([[np.nan, 1.0]] * 4), "y": np.arange(4) % 2}, "NaN"),
        ({"x": np.zeros((4, 3)), "y": np.zeros(4)}, "single class"),
        ({"x": np.zeros((4, 3)), "y": np.array([0, 1, -1, 0])}, "labels must be >= 0"),
    ],
)
def test_npz_problems_are_named(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message):
        _load(f"npz:{tmp_path / 'bad.npz'}")


def test_a_truncated_npz_is_refused(tmp_path):
    np.savez(tmp_path / "ok.npz", x=np.zeros((40, 3)), y=np.arange(40) % 2)
    raw = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="not a readable .npz"):
        _load(f"npz:{tmp_path / 'cut.npz'}")


def test_csv_with_named_label_column_and_string_classes(tmp_path):
    rows = ["a,b,species"] + [f"{i},{i * 2},{'cat' if i % 2 else 'dog'}" for i in range(20)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    data = _load(f"csv:{tmp_path / 'd.csv'}", label_column="species")
    assert data.classes == ("cat", "dog") and data.input_shape == (2,)
    assert data.y.tolist()[:2] == [1, 0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b\n1,2\n", "no label column 'label'"),
        ("a,label\n1,0\nx,1\n", "non-numeric feature"),
        ("a,label\n1,0\n2\n", "has 1 fields"),
        ("a,label\n", "no data rows"),
    ],
)
def test_csv_problems_are_named(tmp_path, text, message):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(DataError, match=message):
        _load(f"csv:{tmp_path / 'bad.csv'}")


def test_imagefolder_reads_class_directories(tmp_path):
    from PIL import Image

    for label in ("ants", "bees"):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.new("RGB", (20, 10), (i * 40, 0, 0)).save(tmp_path / label / f"{i}.png")
    data = _load(f"imagefolder:{tmp_path}", image_size=16)
    assert data.classes == ("ants", "bees")
    assert data.input_shape == (3, 16, 16) and len(data) == 6


def test_imagefolder_refuses_a_corrupt_image(tmp_path):
    from PIL import Image

    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        Image.new("L", (8, 8)).save(tmp_path / label / "ok.png")
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="broken.png is not a readable image"):
        _load(f"imagefolder:{tmp_path}")


def _write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def _fake_fashion(directory, n=20):
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        _write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)


def test_fashion_mnist_pools_train_and_test_files(tmp_path):
    _fake_fashion(tmp_path)
    data = _load(f"fashion-mnist:{tmp_path}")
    assert len(data) == 40 and data.input_shape == (1, 28, 28)
    assert data.classes[0] == "T-shirt/top"


def test_a_truncated_idx_file_is_refused(tmp_path):
    _fake_fashion(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DataError, match="truncated or corrupt"):
        _load(f"fashion-mnist:{tmp_path}")


def test_a_missing_fashion_mnist_directory_says_how_to_install_it(tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        _load(f"fashion-mnist:{tmp_path / 'nowhere'}")


@needs_fashion_mnist
def test_the_real_fashion_mnist_has_70000_samples():
    data = _load(f"fashion-mnist:{FASHION_DIR}")
    assert len(data) == 70_000
    assert torch.bincount(data.y).tolist() == [7000] * 10


# -------------------------------------------------------------------------------- splits


def _labels() -> np.ndarray:
    return _load("digits").y.numpy()


def test_digits_default_split_sizes_follow_4_1_4_12():
    assert split_sizes(1797, DataSpec()) == {"members": 342, "dev": 85, "holdout": 342, "shadow_pool": 1028}


def test_splits_are_disjoint_and_have_the_requested_sizes():
    spec = DataSpec(members=300, dev=50, holdout=300, shadow_pool=600)
    splits = make_splits(_labels(), spec, seed=3)
    assert splits.sizes() == {"members": 300, "dev": 50, "holdout": 300, "shadow_pool": 600}
    everything = np.concatenate([getattr(splits, n) for n in SPLIT_NAMES])
    assert len(np.unique(everything)) == everything.size


def test_splits_are_stratified_to_within_two_samples_per_class():
    y = _labels()
    splits = make_splits(y, DataSpec(), seed=0)
    class_share = np.bincount(y) / y.size
    for name in SPLIT_NAMES:
        index = getattr(splits, name)
        counts = np.bincount(y[index], minlength=10)
        assert np.all(np.abs(counts - class_share * index.size) <= 2.0 + 1e-9), name


def test_splits_are_reproducible_from_the_seed_and_differ_across_seeds():
    y = _labels()
    a, b, c = (make_splits(y, DataSpec(), seed=s) for s in (7, 7, 8))
    assert a.to_dict() == b.to_dict()
    assert not np.array_equal(a.members, c.members)


def test_split_sizes_larger_than_the_data_are_refused():
    with pytest.raises(DataError, match="add up to 2000 but the data has 1797"):
        split_sizes(1797, DataSpec(members=1000, dev=100, holdout=900, shadow_pool=0 or None))


def test_splits_round_trip_through_json_dicts():
    from prunectl.data import Splits

    splits = make_splits(_labels(), DataSpec(), seed=1)
    again = Splits.from_dict(splits.to_dict())
    assert again.to_dict() == splits.to_dict()
