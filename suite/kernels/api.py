"""The public kernels, each ``prepare(...).run()``.

:func:`prepare` does the work that depends only on the call's signature (apply_fn, input
shapes and dtypes, parameter tree structure and leaf shapes, the memory budget setting)
once, and caches it: structural validation and ``jax.eval_shape`` of ``apply_fn``, the
memory estimate, ``auto``'s choice, compilation and XLA's compiled-memory check. Every call
still checks the values (NaN or inf in x1, x2 and the parameters) in one fused reduction,
computed by the kernel's own compiled program and read when the kernel is done.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from suite.errors import SuiteError
from suite.kernels import auto
from suite.kernels.implementations import executable, resolve_implementation
from suite.kernels.memory import BUDGET_ENV, check_memory, compiled_bytes
from suite.kernels.registry import KERNELS, KernelSpec, get_kernel
from suite.kernels.validation import (
    ApplyFn,
    Problem,
    _leaf_dtype,
    check_finite,
    check_inputs,
    output_problem,
    raise_if_not_finite,
)


@dataclass(frozen=True)
class _Plan:
    """What one signature resolved to (cached by :func:`prepare`)."""

    problem: Problem
    implementation: str
    executable: Any
    compiled_bytes: int | None


@dataclass(frozen=True, eq=False)
class Prepared:
    """A kernel request, checked, planned and compiled: :meth:`run` computes it.

    Attributes:
        kernel: a key of :data:`~suite.kernels.KERNELS`.
        implementation: the implementation that runs (``auto`` resolved).
        problem: N1, N2, O, P, dtype and the per-example input shape.
        compiled_bytes: XLA's estimate of the bytes one call allocates (result and
            temporaries such as Jacobians); None where the backend does not report it.
        executable: the compiled kernel; ``executable(*args)`` returns ``(kernel, flags)``,
            the finite-value flags of x1, x2 and the parameters computed in the same program.
        args: its arguments: (x1, x2, params) or, for scalar kernels, (x1, x2, params, v).
    """

    kernel: str
    implementation: str
    problem: Problem
    compiled_bytes: int | None
    executable: Any = field(repr=False)
    args: tuple[Any, ...] = field(repr=False)
    _result: jax.Array | None = field(default=None, repr=False)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """(N1, N2, O, O) for the eNTK, (N1, N2) for the scalar kernels."""
        p = self.problem
        return (p.n1, p.n2, p.n_outputs, p.n_outputs) if KERNELS[self.kernel].block else (p.n1, p.n2)

    def run(self) -> jax.Array:
        """The kernel, after its NaN/inf flags (computed with it) are read: a call returns when
        the kernel is done. The first call of ``auto`` on a new signature already computed it
        while timing the candidates, and returns that result.

        Raises:
            SuiteError: x1, x2 or the parameters contain NaN or inf.
        """
        if self._result is not None:
            return self._result
        out, flags = self.executable(*self.args)
        raise_if_not_finite(flags)
        return out

    def run_unchecked(self) -> jax.Array:
        """The compiled program alone (asynchronous; its flags are not read): the bare call
        the overhead benchmark and the alternatives experiment time."""
        return self.executable(*self.args)[0]


_PLANS: OrderedDict[tuple[Any, ...], _Plan] = OrderedDict()
_MAX_PLANS = 256


def _array_signature(a: Any) -> tuple[Any, ...]:
    shape = a.shape if hasattr(a, "shape") else np.shape(a)
    return tuple(shape), _leaf_dtype(a)


@lru_cache(maxsize=1024, typed=True)
def _cached_direction(kernel: str, n_outputs: int, dtype: np.dtype, items: tuple[Any, ...]) -> jax.Array:
    direction = KERNELS[kernel].direction
    assert direction is not None
    return jnp.asarray(direction(n_outputs, **dict(items)), dtype)


def _direction(spec: KernelSpec, problem: Problem, kwargs: dict[str, Any]) -> jax.Array | None:
    """The output direction v of a scalar kernel as a device array; cached when the kernel's
    arguments are hashable (the pNTK's v and each logit's), computed for a PRNG key."""
    if spec.direction is None:
        return None
    items = tuple(sorted(kwargs.items()))
    try:
        hash(items)
    except TypeError:  # a key array: the projection is drawn (one small device call)
        return jnp.asarray(spec.direction(problem.n_outputs, **kwargs), problem.dtype)
    return _cached_direction(spec.name, problem.n_outputs, problem.dtype, items)


def prepare(
    kernel: str,
    apply_fn: ApplyFn,
    params: Any,
    x1: Any,
    x2: Any = None,
    *,
    implementation: str = "auto",
    **kernel_kwargs: Any,
) -> Prepared:
    """Check, plan and compile one kernel request; ``prepare(...).run()`` is the kernel.

    Args:
        kernel: a key of :data:`~suite.kernels.KERNELS` (``entk``, ``pntk``, ...).
        apply_fn: ``apply_fn(params, x) -> (N, O)``.
        params: the parameter pytree.
        x1, x2: inputs (N1, ...) and (N2, ...); ``x2=None`` means x1 (one Jacobian reused).
        implementation: ``auto`` or a key of :data:`~suite.kernels.IMPLEMENTATIONS`.
        **kernel_kwargs: ``index`` for ``logit_ntk``, ``key`` for ``projected_ntk``.

    Once per signature (apply_fn, shapes and dtypes of x1, x2 and the parameter leaves, the
    parameter tree structure, ``SUITE_MEMORY_BUDGET``), cached: structural checks,
    ``jax.eval_shape`` of ``apply_fn``, the memory estimate, ``auto``'s timing and
    compilation with XLA's memory check. Every call: the NaN/inf check, one fused reduction
    (inside the kernel's compiled program for a cached signature; read by :meth:`Prepared.run`).

    Raises:
        SuiteError: bad inputs or parameters, an unknown kernel, implementation or argument.
        MemoryBudgetError: the call would exceed :func:`~suite.kernels.memory_budget`.
    """
    spec = get_kernel(kernel)
    unknown = sorted(set(kernel_kwargs) - set(spec.kwargs))
    if unknown:
        takes = ", ".join(spec.kwargs) or "no keyword arguments besides implementation"
        raise SuiteError(f"{kernel} got unexpected argument(s) {', '.join(unknown)}; it takes {takes}")
    x1, x2, leaves, treedef = check_inputs(apply_fn, params, x1, x2)
    requested = resolve_implementation(implementation, kernel)
    key = (
        kernel, apply_fn, requested, _array_signature(x1), None if x2 is None else _array_signature(x2),
        treedef, tuple(_array_signature(leaf) for leaf in leaves), os.environ.get(BUDGET_ENV),
    )
    plan = _PLANS.get(key)
    result = None
    if plan is None:
        # A new signature: values first, so that NaN inputs are refused before any tracing;
        # a cached one reads the same flags from the kernel's own program (Prepared.run).
        check_finite(x1, x2, leaves)
        problem = output_problem(apply_fn, params, x1, x2, leaves)
        v = _direction(spec, problem, kernel_kwargs)
        args = (x1, x2, params) if v is None else (x1, x2, params, v)
        # The result's size first, so that a hopeless request is refused before anything compiles.
        check_memory(kernel, problem, "structured_derivatives")
        impl = requested
        if impl == "auto":
            impl, result = auto.choose(kernel, apply_fn, args, problem)
        check_memory(kernel, problem, impl)
        exe = executable(kernel, apply_fn, impl, spec.mode, args)
        plan = _Plan(problem, impl, exe, compiled_bytes(exe))
        _PLANS[key] = plan
        if len(_PLANS) > _MAX_PLANS:
            _PLANS.popitem(last=False)
    else:
        _PLANS.move_to_end(key)
        v = _direction(spec, plan.problem, kernel_kwargs)
        args = (x1, x2, params) if v is None else (x1, x2, params, v)
    return Prepared(kernel, plan.implementation, plan.problem, plan.compiled_bytes, plan.executable, args, result)


def entk(apply_fn: ApplyFn, params: Any, x1: Any, x2: Any = None, *, implementation: str = "auto") -> jax.Array:
    """Exact empirical NTK J(x1) J(x2)^T, shape (N1, N2, O, O) (paper, eq. 1).

    ``x2=None`` means x2 = x1 and lets implementations reuse one Jacobian. Refused with a
    :class:`~suite.errors.MemoryBudgetError` when it would exceed
    :func:`~suite.kernels.memory_budget`.
    """
    return prepare("entk", apply_fn, params, x1, x2, implementation=implementation).run()


def pntk(apply_fn: ApplyFn, params: Any, x1: Any, x2: Any = None, *, implementation: str = "auto") -> jax.Array:
    """Pseudo-NTK (paper, eq. 2): the NTK of (1/sqrt O) sum_i f_i, shape (N1, N2).

    Equals (1/O) sum_ij Theta_ij of each eNTK block (its mean row sum), at one gradient per
    input instead of O.
    """
    return prepare("pntk", apply_fn, params, x1, x2, implementation=implementation).run()


def trace_ntk(apply_fn: ApplyFn, params: Any, x1: Any, x2: Any = None, *, implementation: str = "auto") -> jax.Array:
    """Mean of each eNTK block's diagonal, (1/O) Tr Theta, shape (N1, N2) (neural-tangents'
    default ``trace_axes=(-1,)``). Costs O gradients per input."""
    return prepare("trace_ntk", apply_fn, params, x1, x2, implementation=implementation).run()


def logit_ntk(
    apply_fn: ApplyFn, params: Any, x1: Any, x2: Any = None, *, index: int = 0, implementation: str = "auto"
) -> jax.Array:
    """One logit's kernel Theta_kk with k = ``index`` ("first logit" for 0), shape (N1, N2)."""
    return prepare("logit_ntk", apply_fn, params, x1, x2, implementation=implementation, index=index).run()


def projected_ntk(
    apply_fn: ApplyFn, params: Any, x1: Any, x2: Any = None, *, key: jax.Array, implementation: str = "auto"
) -> jax.Array:
    """NTK of v^T f for a random unit vector v drawn from ``key``, shape (N1, N2)."""
    return prepare("projected_ntk", apply_fn, params, x1, x2, implementation=implementation, key=key).run()
