"""Exact and approximate empirical NTKs: the public kernels, :func:`prepare`, the registry of
kernels and implementations.

Notation (THEORY.md §1): f: R^D -> R^O, J(x) = df/dtheta in R^{O x P}.

* ``entk``: Theta(x1, x2) = J(x1) J(x2)^T, shape (N1, N2, O, O) (paper, eq. 1).
* ``pntk``: the NTK of g = (1/sqrt O) sum_i f_i, shape (N1, N2) (paper, eq. 2). It equals
  (1/O) sum_ij Theta_ij exactly: the mean row sum of each O x O eNTK block, which is O times
  the mean of its O*O entries (at initialization Theta ~ pNTK x I_O, so the diagonal ~ pNTK).
* ``trace_ntk``: mean of each block's diagonal, (1/O) Tr Theta (neural-tangents' default).
* ``logit_ntk``: one logit's entry Theta_kk ("first logit" for k = 0).
* ``projected_ntk``: the NTK of v^T f for a random unit vector v.

Every public kernel is ``prepare(kernel, apply_fn, params, x1, x2, ...).run()``.

Modules: :mod:`~suite.kernels.api` (the kernels and :func:`prepare`, cached per signature),
:mod:`~suite.kernels.registry` (:data:`KERNELS`, each scalar kernel's output direction),
:mod:`~suite.kernels.validation`, :mod:`~suite.kernels.memory`,
:mod:`~suite.kernels.implementations` (neural-tangents' three and the suite's ``jax`` path)
and :mod:`~suite.kernels.auto` (``implementation="auto"``); experiments use
:func:`reproducible_implementation` instead of ``auto`` so that their numbers do not depend
on timing.
"""

from __future__ import annotations

from suite.errors import MemoryBudgetError, SuiteError
from suite.kernels.api import Prepared, entk, logit_ntk, pntk, prepare, projected_ntk, trace_ntk
from suite.kernels.auto import (
    AUTO_CANDIDATES,
    AUTO_LONG_CALL_S,
    AUTO_MARGIN,
    AUTO_RUNS,
    choose_implementation,
    concrete_implementation,
    pick_with_margin,
)
from suite.kernels.implementations import (
    IMPLEMENTATION_CHOICES,
    IMPLEMENTATIONS,
    available_implementations,
    compiled,
    executable,
    reproducible_implementation,
    resolve_implementation,
)
from suite.kernels.memory import (
    check_memory,
    compiled_bytes,
    estimate_bytes,
    format_bytes,
    memory_budget,
    parse_bytes,
)
from suite.kernels.registry import (
    APPROXIMATIONS,
    KERNELS,
    KernelSpec,
    as_matrix,
    get_kernel,
    projection,
)
from suite.kernels.validation import ApplyFn, Problem, validate

__all__ = [
    "APPROXIMATIONS",
    "AUTO_CANDIDATES",
    "AUTO_LONG_CALL_S",
    "AUTO_MARGIN",
    "AUTO_RUNS",
    "IMPLEMENTATIONS",
    "IMPLEMENTATION_CHOICES",
    "KERNELS",
    "ApplyFn",
    "KernelSpec",
    "MemoryBudgetError",
    "Prepared",
    "Problem",
    "SuiteError",
    "as_matrix",
    "available_implementations",
    "check_memory",
    "choose_implementation",
    "compiled",
    "compiled_bytes",
    "concrete_implementation",
    "entk",
    "estimate_bytes",
    "executable",
    "format_bytes",
    "get_kernel",
    "logit_ntk",
    "memory_budget",
    "parse_bytes",
    "pick_with_margin",
    "pntk",
    "prepare",
    "projected_ntk",
    "projection",
    "reproducible_implementation",
    "resolve_implementation",
    "trace_ntk",
    "validate",
]
