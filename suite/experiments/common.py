"""Pieces shared by experiments: cached inputs and networks, and kernel error metrics.

The metrics compare the exact eNTK Theta (N, N, O, O) with an approximation K (N, N) used as
K x I_O (THEORY.md §1, "the approximation"). They are computed blockwise in float64 without
forming the (N*O) x (N*O) Kronecker product.
"""

from __future__ import annotations

import itertools
import platform
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from functools import lru_cache
from typing import Any, ClassVar, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from suite import _nt, blocked, data, kernels, models
from suite.errors import MemoryBudgetError, SuiteError, require_positive_int
from suite.paths import ROOT

DTYPES = {"float32": jnp.float32, "float64": jnp.float64}


@lru_cache(maxsize=16)
def inputs(dataset: str, n_inputs: int, data_seed: int = 0, dtype: str = "float32") -> jax.Array:
    """A fixed, class-balanced, standardized NHWC input batch (the same for every width/seed)."""
    ds = data.load(dataset, n=n_inputs, seed=data_seed)
    return jnp.asarray(ds.x, DTYPES[dtype])


def network(cfg: models.ModelConfig, seed: int, input_shape: tuple[int, ...], dtype: str) -> tuple[models.Model, Any]:
    """The (cached) model of ``cfg`` and its parameters for init seed ``seed`` in ``dtype``."""
    model = models.from_config(cfg)
    params = model.init(jax.random.PRNGKey(seed), input_shape)
    return model, models.cast_params(params, DTYPES[dtype])


def ensure_dtype(dtype: str) -> None:
    """Enable float64 in jax when a config asks for it (float64 is opt-in)."""
    if dtype == "float64" and not jax.config.read("jax_enable_x64"):
        jax.config.update("jax_enable_x64", True)


def exact_entk(apply_fn: Any, params: Any, x: Any, x2: Any = None, *, implementation: str | None = None) -> Any:
    """The exact eNTK Theta(x, x2), (N1, N2, O, O) (THEORY.md §1, paper eq. 1), as every
    experiment computes it: the unblocked :func:`suite.kernels.entk` (default implementation
    :func:`suite.kernels.reproducible_implementation`), and only where that call is refused
    by the memory budget the blocked :func:`suite.blocked.entk_blocked`, with the same
    implementation. Cases that fit therefore give exactly the numbers they always gave; the
    blocked kernel equals the unblocked one to float rounding."""
    impl = kernels.reproducible_implementation() if implementation is None else implementation
    try:
        return kernels.entk(apply_fn, params, x, x2, implementation=impl)
    except MemoryBudgetError:
        return blocked.entk_blocked(apply_fn, params, x, x2, implementation=impl, progress=False)


# --------------------------------------------------------------------------- metrics


def block_diagonal(full: np.ndarray) -> np.ndarray:
    """(N1, N2, O) diagonal entries Theta_ab,ii of each O x O block."""
    return np.einsum("abii->abi", full)


def mean_diagonal(full: np.ndarray) -> float:
    """Mean of the self-blocks' diagonal entries Theta_aa,ii: the kernel's typical scale."""
    return float(np.einsum("aaii->", full) / (full.shape[0] * full.shape[-1]))


def kron_distance(full: np.ndarray, approx: np.ndarray) -> float:
    """||Theta - K x I_O||_F, blockwise:
    sum_ab [ sum_ij Theta_abij^2 - 2 K_ab sum_i Theta_abii + O K_ab^2 ]."""
    o = full.shape[-1]
    sq = np.einsum("abij,abij->", full, full)
    cross = np.sum(approx * np.einsum("abii->ab", full))
    return float(np.sqrt(max(sq - 2 * cross + o * np.sum(approx**2), 0.0)))


def rel_frobenius_kron(full: np.ndarray, approx: np.ndarray) -> float:
    """||Theta - K x I_O||_F / ||Theta||_F (theorem T2)."""
    return kron_distance(full, approx) / float(np.linalg.norm(full))


def max_offdiagonal(full: np.ndarray) -> float:
    """max_{a,b,i!=j} |Theta_ab,ij| / mean diagonal (theorem T1, off-diagonal part)."""
    o = full.shape[-1]
    off = np.abs(full) * (1 - np.eye(o))
    return float(off.max() / mean_diagonal(full))


def max_diagonal_deviation(full: np.ndarray, approx: np.ndarray) -> float:
    """max_{a,b,i} |Theta_ab,ii - K_ab| / mean diagonal (theorem T1, diagonal part)."""
    return float(np.abs(block_diagonal(full) - approx[:, :, None]).max() / mean_diagonal(full))


def rel_frobenius(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b||_F / ||b||_F."""
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# --------------------------------------------------------------------------- case configs


class CaseConfig:
    """Base of every experiment's per-case config (each a frozen dataclass with ``arch``,
    ``depth``, ``width``, ``seed`` and its own fields): the one place that checks what cases
    share and names them.

    ``__post_init__`` checks ``depth``, ``width`` and the fields in ``POSITIVE_INTS`` are positive
    integers, ``dtype`` (where there is one) is in :data:`DTYPES`, builds ``model_config()`` (which
    checks the architecture, activation and parameterization with clear errors), then calls
    ``validate()`` for the experiment's own checks. ``id`` is the readable case id.
    """

    #: Further fields that must be positive integers (besides depth and width).
    POSITIVE_INTS: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for name in ("depth", "width", *self.POSITIVE_INTS):
            require_positive_int(name, getattr(self, name))
        dtype = getattr(self, "dtype", "float32")
        if dtype not in DTYPES:
            raise SuiteError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        self.model_config()
        self.validate()

    def model_config(self) -> models.ModelConfig:
        """The network of this case."""
        raise NotImplementedError

    def validate(self) -> None:
        """The experiment's own checks (raise :class:`SuiteError`); none by default."""

    @property
    def id(self) -> str:
        """Readable case id, e.g. ``mlp-d03-w0512-s2``."""
        return case_id(self)


_Case = TypeVar("_Case")


def grid_product(make: Callable[..., _Case], arch: Iterable[str], **axes: Any) -> list[_Case]:
    """Every case of a grid: ``make(arch=a, **point)`` for each architecture ``a`` and each point
    of the Cartesian product of ``axes`` (looped in the order given, the last fastest).

    An axis is a sequence of values, a single value (a string or number: one point), or a
    mapping from architecture to either (a per-architecture axis, e.g. widths). Every
    experiment's grid is built here, so the case lists of all grids follow one rule::

        grid_product(Config, arch=widths, depth=depths, width=widths, seed=range(5), dataset="digits")
    """
    configs = []
    for name in arch:
        values = [_axis_values(axis, name) for axis in axes.values()]
        configs += [make(arch=name, **dict(zip(axes, point, strict=True))) for point in itertools.product(*values)]
    return configs


def _axis_values(axis: Any, arch: str) -> tuple[Any, ...]:
    if isinstance(axis, Mapping):
        axis = axis[arch]
    if isinstance(axis, str) or not isinstance(axis, Iterable):
        return (axis,)
    return tuple(axis)


# --------------------------------------------------------------------------- provenance


def case_id(config: Any) -> str:
    """Readable id of a case with arch, depth, width and seed, e.g. ``mlp-d03-w0512-s2``."""
    return f"{config.arch}-d{config.depth:02d}-w{config.width:04d}-s{config.seed}"


def tidy_frame(rows: Any, columns: list[str], config: Any, **extra: Any) -> pd.DataFrame:
    """The tidy frame an experiment returns: one row per entry of ``rows`` (tuples in the order
    of ``columns``, or a mapping of columns), preceded by the case's columns, every field of the
    config dataclass then ``extra`` (e.g. ``n_params``), repeated on each row."""
    frame = pd.DataFrame(rows, columns=columns)
    case = {**asdict(config), **extra}
    for col, value in reversed(case.items()):
        frame.insert(0, col, value)
    return frame


def environment() -> dict[str, Any]:
    """Versions, backend and commit recorded beside every result."""
    import jaxlib

    nt_version = None
    if _nt.available():
        from importlib.metadata import version

        nt_version = version("neural-tangents")
    device = jax.devices()[0]
    return {
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "neural_tangents": nt_version,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "backend": jax.default_backend(),
        "device": getattr(device, "device_kind", str(device)),
        "device_count": jax.device_count(),
        "x64": bool(jax.config.read("jax_enable_x64")),
        "git_commit": git_commit(),
    }


def git_commit() -> str | None:
    """The suite's git commit (with ``-dirty`` when the tree has changes), if known."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!reports"], cwd=ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None
