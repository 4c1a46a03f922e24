"""Checks of one kernel request before anything is computed.

Two kinds, so that a cached call pays only for what can change between calls with the same
signature (apply_fn, shapes, dtypes, parameter tree):

* structural checks (:func:`check_inputs`: dtype, batch axis, shapes; :func:`output_problem`:
  ``jax.eval_shape`` of ``apply_fn``): once per signature;
* value checks (NaN or inf in x1, x2 or the parameters): every call, as ONE reduction over
  all arrays (:func:`finite_flags`) and one transfer of three booleans, instead of one
  blocking reduction per parameter leaf. A cached call computes the flags inside the kernel's
  own compiled program (no extra dispatch); the first call of a signature checks them first,
  with :func:`check_finite`, before anything is traced or compiled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from suite.errors import SuiteError

ApplyFn = Callable[[Any, jax.Array], jax.Array]


@dataclass(frozen=True)
class Problem:
    """Shapes of one kernel request, checked before anything is computed.

    ``example_shape``: the per-example input shape (x1.shape[1:]).
    """

    n1: int
    n2: int
    n_outputs: int
    n_params: int
    dtype: np.dtype
    example_shape: tuple[int, ...] = ()


def _check_array(name: str, x: Any) -> jax.Array:
    """dtype, rank and emptiness of one input (metadata only: nothing is read from the device)."""
    if not hasattr(x, "dtype") or not hasattr(x, "shape"):
        x = np.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise SuiteError(
            f"{name} has dtype {x.dtype}; kernels need floating-point inputs "
            f"(cast it, e.g. {name}.astype(np.float32))"
        )
    if x.ndim < 2:
        raise SuiteError(
            f"{name} has shape {tuple(x.shape)}; inputs need a leading batch axis, "
            f"shape (N, ...) (use {name}[None] for one example)"
        )
    if x.shape[0] == 0:
        raise SuiteError(f"{name} is empty (shape {tuple(x.shape)}); pass at least one example")
    return x if isinstance(x, jax.Array) else jnp.asarray(x)


def check_inputs(
    apply_fn: ApplyFn, params: Any, x1: Any, x2: Any = None
) -> tuple[jax.Array, jax.Array | None, list[Any], Any]:
    """Structural checks; returns (x1, x2 as jax arrays, parameter leaves, tree structure).

    Raises:
        SuiteError: a non-callable ``apply_fn``, integer inputs, a missing batch axis, an
            x1/x2 per-example shape mismatch, or parameters without array leaves.
    """
    if not callable(apply_fn):
        raise SuiteError(f"apply_fn must be callable apply_fn(params, x) -> (N, O), got {type(apply_fn).__name__}")
    x1 = _check_array("x1", x1)
    if x2 is not None:
        x2 = _check_array("x2", x2)
        if x1.shape[1:] != x2.shape[1:]:
            raise SuiteError(
                f"x1 has per-example shape {tuple(x1.shape[1:])} but x2 has {tuple(x2.shape[1:])}; "
                "both inputs must have the same feature shape"
            )
    leaves, treedef = jax.tree_util.tree_flatten(params)
    if not leaves:
        raise SuiteError("params has no array leaves; pass the network's parameter pytree")
    return x1, x2, leaves, treedef


def _leaf_dtype(leaf: Any) -> np.dtype:
    dtype = getattr(leaf, "dtype", None)
    return np.dtype(dtype) if dtype is not None else np.asarray(leaf).dtype


def finite_flags(x1: jax.Array, x2: jax.Array | None, params: Any) -> jax.Array:
    """[x1 finite, x2 finite, every floating-point parameter finite] as one (3,) bool array:
    traceable, so a compiled kernel can return it beside its result (one fused reduction);
    integer leaves cannot hold NaN and are skipped."""
    leaves = [leaf for leaf in jax.tree_util.tree_leaves(params) if jnp.issubdtype(_leaf_dtype(leaf), jnp.floating)]
    ok_x2 = jnp.all(jnp.isfinite(x2)) if x2 is not None else jnp.bool_(True)
    ok_params = jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves])) if leaves else jnp.bool_(True)
    return jnp.stack([jnp.all(jnp.isfinite(x1)), ok_x2, ok_params])


_finite_flags = jax.jit(finite_flags)


def raise_if_not_finite(flags: Any) -> None:
    """Raise the error for the first False of :func:`finite_flags` (read with one explicit
    transfer of three booleans)."""
    ok_x1, ok_x2, ok_params = (bool(b) for b in jax.device_get(flags))
    if not ok_x1:
        raise SuiteError("x1 contains NaN or inf; clean or impute the inputs first")
    if not ok_x2:
        raise SuiteError("x2 contains NaN or inf; clean or impute the inputs first")
    if not ok_params:
        raise SuiteError("params contain NaN or inf; re-initialize the network or check training")


def check_finite(x1: jax.Array, x2: jax.Array | None, leaves: list[Any]) -> None:
    """Refuse NaN or inf in the inputs or the floating-point parameters: one jitted reduction
    and one transfer of three booleans (not one blocking reduction per leaf)."""
    raise_if_not_finite(_finite_flags(x1, x2, leaves))


def output_problem(
    apply_fn: ApplyFn, params: Any, x1: jax.Array, x2: jax.Array | None, leaves: list[Any]
) -> Problem:
    """The :class:`Problem` of a request, from ``jax.eval_shape`` of ``apply_fn`` on one example.

    Raises:
        SuiteError: ``apply_fn`` fails on these parameters and inputs, or does not return (N, O).
    """
    try:
        out = jax.eval_shape(apply_fn, params, x1[:1])
    except Exception as exc:
        raise SuiteError(
            f"apply_fn(params, x) failed on inputs of per-example shape {tuple(x1.shape[1:])}: "
            f"{type(exc).__name__}: {exc}. Check that params belong to this network and input shape."
        ) from exc
    if not hasattr(out, "shape") or len(out.shape) != 2 or out.shape[0] != 1:
        shape = getattr(out, "shape", type(out).__name__)
        raise SuiteError(
            f"apply_fn must return logits of shape (N, O); for 1 input it returned {shape}. "
            "Reshape the output, e.g. lambda p, x: f(p, x).reshape(x.shape[0], -1)"
        )
    n_params = sum(int(np.prod(np.shape(leaf))) for leaf in leaves)
    n2 = x1.shape[0] if x2 is None else x2.shape[0]
    return Problem(int(x1.shape[0]), int(n2), int(out.shape[1]), n_params, np.dtype(out.dtype),
                   tuple(int(d) for d in x1.shape[1:]))


def validate(apply_fn: ApplyFn, params: Any, x1: Any, x2: Any = None) -> tuple[jax.Array, jax.Array | None, Problem]:
    """Check inputs, parameters and the output shape of ``apply_fn`` without computing a kernel
    (all checks, uncached: :func:`suite.kernels.prepare` caches the structural ones).

    Raises:
        SuiteError: integer or non-finite inputs, missing batch axis, x1/x2 per-example shape
            mismatch, non-finite parameters, or an ``apply_fn`` that does not return (N, O).
    """
    x1, x2, leaves, _ = check_inputs(apply_fn, params, x1, x2)
    check_finite(x1, x2, leaves)
    return x1, x2, output_problem(apply_fn, params, x1, x2, leaves)
