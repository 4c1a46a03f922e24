"""Tests of suite.data: offline loading, class balance, determinism, CIFAR-10 format, errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from suite import data
from suite.data import DATASETS, DEFAULT_DATASET, Dataset, input_shape, load, train_test_split
from suite.errors import SuiteError

EMBEDDED = ("digits", "mnist5k", "mnist5k14", "gaussian")
SHAPES = {"digits": (8, 8, 1), "mnist5k": (28, 28, 1), "mnist5k14": (14, 14, 1), "gaussian": (32, 32, 3)}
RAW_MAX = {"digits": 16, "mnist5k": 255, "mnist5k14": 255}


def _n_all(name: str) -> int | None:
    return 200 if name == "gaussian" else None


# ----------------------------------------------------------------------------- registry


def test_registry_entries() -> None:
    assert set(DATASETS) == {"digits", "mnist5k", "mnist5k14", "cifar10", "gaussian"}
    assert DEFAULT_DATASET in DATASETS
    for key, spec in DATASETS.items():
        assert spec.name == key
        assert spec.n_classes == 10
        assert spec.description
        assert callable(spec.loader)
    assert DATASETS["cifar10"].image_shape == (32, 32, 3)


@pytest.mark.parametrize("name", [*EMBEDDED, "cifar10"])
def test_input_shape_without_loading(name: str) -> None:
    shape = (32, 32, 3) if name == "cifar10" else SHAPES[name]
    assert input_shape(name) == shape
    assert input_shape(name, flatten=True) == (int(np.prod(shape)),)


def test_input_shape_gaussian_custom_and_fixed_shape_error() -> None:
    assert input_shape("gaussian", image_shape=(4, 5, 2)) == (4, 5, 2)
    assert input_shape("gaussian", flatten=True, image_shape=(4, 5, 2)) == (40,)
    with pytest.raises(SuiteError, match="fixed image shape"):
        input_shape("digits", image_shape=(28, 28, 1))


# ----------------------------------------------------------------------------- embedded sets


def test_mnist5k14_is_mnist5k_averaged_over_2x2_blocks() -> None:
    from suite.data import DATASETS as specs
    from suite.data import LoadRequest

    request = LoadRequest(n=None, seed=0, path=None, image_shape=(14, 14, 1), n_classes=10)
    full, labels = specs["mnist5k"].loader(request)
    small, small_labels = specs["mnist5k14"].loader(request)
    np.testing.assert_array_equal(labels, small_labels)
    expected = (full[:, 0::2, 0::2] / 4.0 + full[:, 1::2, 0::2] / 4.0
                + full[:, 0::2, 1::2] / 4.0 + full[:, 1::2, 1::2] / 4.0)
    np.testing.assert_allclose(small, expected, rtol=1e-6)


@pytest.mark.parametrize("name", EMBEDDED)
def test_loads_offline_with_shapes_and_dtypes(name: str) -> None:
    ds = load(name, n=100, seed=0)
    assert isinstance(ds, Dataset)
    assert ds.name == name and ds.n_classes == 10
    assert ds.x.shape == (100, *SHAPES[name])
    assert ds.x.dtype == np.float32
    assert ds.y.shape == (100,) and ds.y.dtype == np.int64
    assert ds.targets.shape == (100, 10) and ds.targets.dtype == np.float32
    assert ds.y.min() >= 0 and ds.y.max() <= 9
    np.testing.assert_array_equal(np.bincount(ds.y, minlength=10), np.full(10, 10))
    # Standardized over the subset: zero mean, unit variance.
    assert abs(float(ds.x.mean())) < 1e-5
    assert float(ds.x.std()) == pytest.approx(1.0, abs=1e-4)
    assert not ds.x.flags.writeable


@pytest.mark.parametrize("name", ["digits", "mnist5k"])
def test_raw_pixel_range(name: str) -> None:
    ds = load(name, n=200, seed=1, standardize=False, dtype=np.float64)
    assert ds.x.dtype == np.float64
    assert ds.x.min() == 0.0
    assert ds.x.max() == RAW_MAX[name]
    np.testing.assert_array_equal(ds.x, np.round(ds.x))  # integer pixel values kept exactly


@pytest.mark.parametrize("name", EMBEDDED)
def test_deterministic_per_seed_and_different_across_seeds(name: str) -> None:
    a = load(name, n=50, seed=3)
    b = load(name, n=50, seed=3)
    c = load(name, n=50, seed=4)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)
    # Different examples, not just a different order.
    rows_a = {row.tobytes() for row in a.x.reshape(50, -1)}
    rows_c = {row.tobytes() for row in c.x.reshape(50, -1)}
    assert rows_a != rows_c


@pytest.mark.parametrize("name", EMBEDDED)
def test_flatten_and_targets(name: str) -> None:
    flat = load(name, n=30, seed=2, flatten=True)
    images = load(name, n=30, seed=2)
    assert flat.x.shape == (30, int(np.prod(SHAPES[name])))
    np.testing.assert_array_equal(flat.x, images.x.reshape(30, -1))

    onehot = flat.targets
    np.testing.assert_allclose(onehot.sum(axis=1), 1.0)
    np.testing.assert_array_equal(onehot.argmax(axis=1), flat.y)
    assert set(np.unique(onehot)) == {0.0, 1.0}

    centered = load(name, n=30, seed=2, targets="centered")
    np.testing.assert_allclose(centered.targets.sum(axis=1), 0.0, atol=1e-6)
    np.testing.assert_allclose(centered.targets, onehot - 0.1, atol=1e-7)
    assert centered.target_kind == "centered"


@pytest.mark.parametrize("name", ["digits", "mnist5k"])
def test_classes_are_mixed(name: str) -> None:
    ds = load(name, n=100, seed=0)
    assert len(set(ds.y[:20].tolist())) > 3  # mnist5k is sorted by class on disk


def test_uneven_n_is_as_balanced_as_possible() -> None:
    ds = load("digits", n=105, seed=5)
    counts = np.bincount(ds.y, minlength=10)
    assert counts.sum() == 105
    assert set(counts.tolist()) == {10, 11}
    assert (counts == 11).sum() == 5


def test_mnist5k_matches_file_structure() -> None:
    ds = load("mnist5k", seed=0, standardize=False)
    assert len(ds) == 5000
    np.testing.assert_array_equal(ds.class_counts(), np.full(10, 500))
    # The raw file is sorted by class, 500 per class, label in the last column.
    raw_x, raw_y = data._mnist5k_raw()
    np.testing.assert_array_equal(raw_y, np.repeat(np.arange(10), 500))
    assert raw_x.shape == (5000, 28, 28, 1) and raw_x.dtype == np.uint8
    # A real digit: ink in the centre, blank corners.
    mean_image = raw_x.mean(axis=0)[..., 0]
    assert mean_image[10:18, 10:18].mean() > 50 > mean_image[:3, :3].max()


def test_digits_all_and_subsample() -> None:
    full = load("digits")
    assert full.x.shape == (1797, 8, 8, 1)
    np.testing.assert_array_equal(
        full.class_counts(), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    )
    sub = load("digits", n=100, seed=7)
    np.testing.assert_array_equal(sub.class_counts(), np.full(10, 10))
    # Largest class-balanced subset: 174 of each class plus one from 9 larger classes.
    assert len(load("digits", n=1749)) == 1749


def test_gaussian_options() -> None:
    ds = load(
        "gaussian",
        n=12,
        seed=1,
        image_shape=(4, 5, 2),
        n_classes=3,
        standardize=False,
        dtype=np.float64,
    )
    assert ds.x.shape == (12, 4, 5, 2) and ds.n_classes == 3
    np.testing.assert_array_equal(ds.class_counts(), [4, 4, 4])
    assert ds.targets.shape == (12, 3)
    # Same values whatever the dtype (drawn in float64, then cast).
    ds32 = load("gaussian", n=12, seed=1, image_shape=(4, 5, 2), n_classes=3, standardize=False)
    np.testing.assert_array_equal(ds32.x, ds.x.astype(np.float32))
    with pytest.raises(SuiteError, match="pass n="):
        load("gaussian")


def test_standardize_matches_float64_reference_and_guards_zero_std() -> None:
    raw = load("mnist5k", n=300, seed=2, standardize=False, dtype=np.float64).x
    std = load("mnist5k", n=300, seed=2).x
    np.testing.assert_allclose(std, (raw - raw.mean()) / raw.std(), rtol=1e-5, atol=1e-5)
    constant = data._standardize(np.full((3, 4, 4, 1), 7, np.uint8), np.dtype(np.float32))
    assert constant.dtype == np.float32
    np.testing.assert_array_equal(constant, 0.0)


# ----------------------------------------------------------------------------- split


def test_train_test_split_balanced_and_disjoint() -> None:
    ds = load("gaussian", n=200, seed=0, image_shape=(3,))
    train, test = train_test_split(ds, 60, 40, seed=1)
    np.testing.assert_array_equal(train.class_counts(), np.full(10, 6))
    np.testing.assert_array_equal(test.class_counts(), np.full(10, 4))
    train_rows = {row.tobytes() for row in train.x}
    test_rows = {row.tobytes() for row in test.x}
    all_rows = {row.tobytes() for row in ds.x}
    assert len(train_rows) == 60 and len(test_rows) == 40
    assert not train_rows & test_rows
    assert train_rows | test_rows <= all_rows
    np.testing.assert_array_equal(train.targets.argmax(axis=1), train.y)
    again, _ = ds.split(60, 40, seed=1)
    np.testing.assert_array_equal(again.x, train.x)


def test_train_test_split_uneven_and_too_large() -> None:
    ds = load("digits", n=100, seed=0)
    train, test = train_test_split(ds, 45, 35, seed=0)
    assert len(train) == 45 and len(test) == 35
    for part in (train, test):
        assert part.class_counts().max() - part.class_counts().min() <= 1
    assert (train.class_counts() + test.class_counts()).max() == 8
    with pytest.raises(SuiteError, match=r"exceeds .*\(100 of 100"):
        train_test_split(ds, 80, 30)


# ----------------------------------------------------------------------------- cifar10


def _write_fake_cifar(directory: Path, n_batches: int = 2, per_batch: int = 20) -> None:
    """Write CIFAR-10 python-pickle batches: R plane = 1, G = 2, B = 3, labels i % 10."""
    directory.mkdir(parents=True, exist_ok=True)
    planes = np.concatenate([np.full(1024, v, dtype=np.uint8) for v in (1, 2, 3)])
    for b in range(n_batches):
        pixels = np.tile(planes, (per_batch, 1))
        pixels[:, 0] = b * per_batch + np.arange(per_batch)  # R of pixel (0, 0): global index
        batch = {
            b"batch_label": f"training batch {b + 1} of {n_batches}".encode(),
            b"labels": [(b * per_batch + i) % 10 for i in range(per_batch)],
            b"data": pixels,
            b"filenames": [f"img{b}_{i}.png".encode() for i in range(per_batch)],
        }
        with (directory / f"data_batch_{b + 1}").open("wb") as handle:
            pickle.dump(batch, handle, protocol=2)


@pytest.fixture
def cifar_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "cifar-10-batches-py"
    _write_fake_cifar(directory)
    return directory


def test_cifar10_shapes_channel_order_and_labels(cifar_dir: Path) -> None:
    ds = load("cifar10", path=cifar_dir, standardize=False, seed=0)
    assert ds.x.shape == (40, 32, 32, 3) and ds.x.dtype == np.float32
    np.testing.assert_array_equal(ds.class_counts(), np.full(10, 4))
    # NHWC: channel 0 is the R plane (1), 1 is G (2), 2 is B (3), at every pixel but (0, 0).
    for channel, value in enumerate((1, 2, 3)):
        plane = ds.x[..., channel].reshape(40, -1)
        if channel == 0:
            plane = plane[:, 1:]
        assert np.all(plane == value)
    # The label written for each image travels with it.
    index = ds.x[:, 0, 0, 0].astype(int)
    np.testing.assert_array_equal(np.sort(index), np.arange(40))
    np.testing.assert_array_equal(ds.y, index % 10)


def test_cifar10_subsample_flatten_and_standardize(cifar_dir: Path) -> None:
    ds = load("cifar10", path=str(cifar_dir), n=20, seed=1, flatten=True)
    assert ds.x.shape == (20, 3072)
    np.testing.assert_array_equal(ds.class_counts(), np.full(10, 2))
    assert abs(float(ds.x.mean())) < 1e-5
    with pytest.raises(SuiteError, match="at most n=40"):
        load("cifar10", path=cifar_dir, n=50)


def test_cifar10_env_var_and_parent_dir(cifar_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data.CIFAR10_ENV, str(cifar_dir))
    from_env = load("cifar10", standardize=False)
    from_arg = load("cifar10", path=cifar_dir, standardize=False)
    np.testing.assert_array_equal(from_env.x, from_arg.x)
    # Pointing at the folder the tarball was extracted into also works.
    monkeypatch.setenv(data.CIFAR10_ENV, str(cifar_dir.parent))
    assert len(load("cifar10")) == 40


def test_cifar10_missing_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(data.CIFAR10_ENV, raising=False)
    with pytest.raises(SuiteError, match=r"nothing is downloaded.*SUITE_CIFAR10_DIR"):
        load("cifar10")


def test_cifar10_nonexistent_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(SuiteError, match=r"does not exist.*SUITE_CIFAR10_DIR"):
        load("cifar10", path=missing)
    monkeypatch.setenv(data.CIFAR10_ENV, str(missing))
    with pytest.raises(SuiteError, match=r"does not exist \(SUITE_CIFAR10_DIR="):
        load("cifar10")


def test_cifar10_dir_without_batches(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("not cifar")
    with pytest.raises(SuiteError, match=r"no CIFAR-10 batch files .*data_batch_1"):
        load("cifar10", path=tmp_path)
    with pytest.raises(SuiteError, match="not a directory"):
        load("cifar10", path=tmp_path / "readme.txt")


def test_cifar10_corrupt_batch(cifar_dir: Path) -> None:
    (cifar_dir / "test_batch").write_bytes(b"\x80\x04garbage, not a pickle")
    with pytest.raises(SuiteError, match=r"corrupt CIFAR-10 batch .*test_batch.*re-extract"):
        load("cifar10", path=cifar_dir)


def test_cifar10_batch_missing_keys_or_bad_shape(cifar_dir: Path) -> None:
    with (cifar_dir / "data_batch_2").open("wb") as handle:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8)}, handle)
    with pytest.raises(SuiteError, match=r"data_batch_2: expected a dict with keys"):
        load("cifar10", path=cifar_dir)
    with (cifar_dir / "data_batch_2").open("wb") as handle:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, handle)
    with pytest.raises(SuiteError, match=r"must be uint8 of shape \(n, 3072\)"):
        load("cifar10", path=cifar_dir)


# ----------------------------------------------------------------------------- errors


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(
        SuiteError, match=r"unknown dataset 'mnist'.*cifar10, digits, gaussian, mnist5k"
    ):
        load("mnist")
    with pytest.raises(SuiteError, match="unknown dataset"):
        input_shape("imagenet")


def test_n_too_large_names_the_maximum() -> None:
    with pytest.raises(SuiteError, match=r"at most n=5000"):
        load("mnist5k", n=5001)
    with pytest.raises(SuiteError, match=r"at most n=1749"):
        load("digits", n=1750)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_n(bad: object) -> None:
    with pytest.raises(SuiteError, match="n must be a positive integer"):
        load("digits", n=bad)  # type: ignore[arg-type]


def test_bad_arguments() -> None:
    with pytest.raises(SuiteError, match=r"targets must be one of 'onehot', 'centered'"):
        load("digits", targets="labels")
    with pytest.raises(SuiteError, match="seed must be a non-negative integer"):
        load("digits", seed=-1)
    with pytest.raises(SuiteError, match="floating dtype"):
        load("digits", dtype=np.int32)
    with pytest.raises(SuiteError, match="path= only applies"):
        load("digits", path="/tmp")
    with pytest.raises(SuiteError, match="10 classes"):
        load("mnist5k", n_classes=5)
    with pytest.raises(SuiteError, match="image_shape entry must be a positive integer"):
        load("gaussian", n=4, image_shape=(0, 3))
