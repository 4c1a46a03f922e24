"""The kernel registry: what each kernel is, how it follows from the eNTK, and (for the
scalar kernels) its output direction v, so that the kernel is the NTK of v^T f.

Notation (THEORY.md §1): f: R^D -> R^O, J(x) = df/dtheta in R^{O x P}, Theta = J(x1) J(x2)^T.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from suite.errors import SuiteError, unknown_name

# --------------------------------------------------------------------------- directions


def projection(key: jax.Array, n_outputs: int) -> np.ndarray:
    """The random unit vector :func:`suite.kernels.projected_ntk` uses for ``key``."""
    v = np.asarray(jax.random.normal(key, (n_outputs,), dtype=jnp.float32), dtype=np.float64)
    return v / np.linalg.norm(v)


def _sum_direction(n_outputs: int) -> np.ndarray:
    """v = 1/sqrt(O) * ones: the pNTK's direction (the 1/sqrt O scaling of paper eq. 2)."""
    return np.ones(n_outputs) / math.sqrt(n_outputs)


def _unit_direction(n_outputs: int, index: int = 0) -> np.ndarray:
    """e_k for k = ``index``: the NTK of f_k is Theta_kk."""
    if isinstance(index, bool) or not isinstance(index, int | np.integer) or not 0 <= index < n_outputs:
        raise SuiteError(
            f"index must be an integer in [0, {n_outputs}) for a network with O={n_outputs} outputs, got {index!r}"
        )
    return np.eye(n_outputs)[index]


def _projection_direction(n_outputs: int, key: jax.Array) -> np.ndarray:
    return projection(key, n_outputs)


# --------------------------------------------------------------------------- identities


# The identities below work on numpy and jax arrays alike (experiments pass float64 numpy).


def _xp(full: Any) -> Any:
    return np if isinstance(full, np.ndarray) else jnp


def _block_row_sum_mean(full: Any) -> Any:
    # (1/O) 1^T Theta 1: the gradient of (1/sqrt O) sum_i f_i on each side gives
    # (1/O) sum_ij Theta_ij, i.e. O times the mean of the O*O entries.
    return full.sum(axis=(2, 3)) / full.shape[-1]


def _block_trace(full: Any) -> Any:
    return _xp(full).einsum("abcc->ab", full) / full.shape[-1]


def _block_projection(full: Any, key: jax.Array) -> Any:
    xp = _xp(full)
    v = xp.asarray(projection(key, full.shape[-1]), dtype=full.dtype)
    return xp.einsum("abij,i,j->ab", full, v, v)


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class KernelSpec:
    """One kernel: how to compute it and how it follows exactly from the eNTK.

    ``from_entk(full, **kw)`` is the identity a test checks against and a cheap way for
    experiments to get every scalar kernel from one eNTK. ``direction(O, **kw)`` is the
    output direction v of a scalar kernel (``mode == "scalar"``: the NTK of v^T f), None for
    the others; ``kwargs`` names the keyword arguments the kernel takes (``index``, ``key``).
    """

    name: str
    label: str
    description: str
    from_entk: Callable[..., Any]
    block: bool
    jacobians_per_input: Callable[[int], int]
    mode: str  # the compiled function it runs: "full", "trace" or "scalar" (see implementations)
    direction: Callable[..., np.ndarray] | None = None
    kwargs: tuple[str, ...] = ()

    @property
    def compute(self) -> Callable[..., jax.Array]:
        """The public function, e.g. :func:`suite.kernels.pntk` for ``"pntk"``."""
        from suite.kernels import api

        fn: Callable[..., jax.Array] = getattr(api, self.name)
        return fn


KERNELS: dict[str, KernelSpec] = {
    "entk": KernelSpec(
        "entk", "eNTK", "exact empirical NTK, (N1, N2, O, O)", lambda full, **_: full, True, lambda o: o, "full"
    ),
    "pntk": KernelSpec(
        "pntk", "pNTK", "NTK of the sum of logits / sqrt(O)", lambda full, **_: _block_row_sum_mean(full),
        False, lambda o: 1, "scalar", _sum_direction,
    ),
    "trace_ntk": KernelSpec(
        "trace_ntk", "mean trace", "mean of each block's diagonal",
        lambda full, **_: _block_trace(full), False, lambda o: o, "trace",
    ),
    "logit_ntk": KernelSpec(
        "logit_ntk", "first logit", "one logit's diagonal entry",
        lambda full, index=0, **_: full[:, :, index, index], False, lambda o: 1, "scalar",
        _unit_direction, ("index",),
    ),
    "projected_ntk": KernelSpec(
        "projected_ntk", "random projection", "NTK of v^T f, v a random unit vector",
        lambda full, key, **_: _block_projection(full, key), False, lambda o: 1, "scalar",
        _projection_direction, ("key",),
    ),
}
APPROXIMATIONS = tuple(k for k, spec in KERNELS.items() if not spec.block)


def get_kernel(name: str) -> KernelSpec:
    """Look up a kernel by name, with a clear error listing the valid ones."""
    if name not in KERNELS:
        raise unknown_name("kernel", name, KERNELS)
    return KERNELS[name]


def as_matrix(full: Any) -> Any:
    """(N1, N2, O, O) eNTK as the (N1*O, N2*O) matrix (example-major, logit-minor)."""
    n1, n2, o, _ = full.shape
    return full.transpose(0, 2, 1, 3).reshape(n1 * o, n2 * o)
