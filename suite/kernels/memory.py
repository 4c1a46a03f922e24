"""Memory of one kernel call: the budget, a size estimate before compiling, and XLA's
compiled estimate after. :func:`suite.kernels.prepare` runs these once per signature."""

from __future__ import annotations

import os
import re
from typing import Any

import jax

from suite.errors import MemoryBudgetError, SuiteError
from suite.kernels.registry import KERNELS
from suite.kernels.validation import Problem

#: Environment variable that sets the budget (bytes, or e.g. "16GB").
BUDGET_ENV = "SUITE_MEMORY_BUDGET"

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(text: str) -> int:
    """Parse ``"4GB"``, ``"512MiB"`` or ``"1000000"`` into a number of bytes."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise SuiteError(f"cannot parse memory size {text!r}; use e.g. '4GB', '512MiB' or a byte count")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def format_bytes(n: float) -> str:
    """Human-readable size, e.g. ``10.0 GB``."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    raise AssertionError("unreachable")


def memory_budget() -> int:
    """Bytes one kernel call may use: ``SUITE_MEMORY_BUDGET`` if set, else half the free memory
    (host RAM, or the accelerator's limit when smaller)."""
    env = os.environ.get(BUDGET_ENV)
    if env:
        return parse_bytes(env)
    free = _available_host_memory()
    try:
        stats = jax.devices()[0].memory_stats() or {}
        if "bytes_limit" in stats:
            free = min(free, int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)))
    except Exception:  # CPU devices have no memory_stats
        pass
    return free // 2


def _available_host_memory() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def estimate_bytes(kernel: str, problem: Problem, implementation: str) -> int:
    """Bytes the result plus the largest intermediate of one call will take (a lower bound).

    The eNTK result is (N1*O) x (N2*O); scalar kernels are N1 x N2. Jacobian-based paths
    (``jax``, ``jacobian_contraction``) also hold the per-example Jacobians: (N1+N2) x O x P
    for block kernels, (N1+N2) x P for scalar ones.
    """
    spec = KERNELS[kernel]
    item = problem.dtype.itemsize
    o = problem.n_outputs
    result = problem.n1 * problem.n2 * (o * o if spec.block else 1) * item
    if implementation in ("jax", "jacobian_contraction"):
        rows = o if spec.jacobians_per_input(o) > 1 else 1
        result += (problem.n1 + problem.n2) * rows * problem.n_params * item
    return result


def check_memory(kernel: str, problem: Problem, implementation: str, budget: int | None = None) -> int:
    """Refuse a kernel whose estimated size exceeds ``budget`` with an error suggesting the fix."""
    need = estimate_bytes(kernel, problem, implementation)
    budget = memory_budget() if budget is None else budget
    if need > budget:
        o = problem.n_outputs
        result = problem.n1 * o * problem.n2 * o * problem.dtype.itemsize
        hint = (
            f"the eNTK of {problem.n1}x{problem.n2} inputs with O={o} is a "
            f"({problem.n1 * o})x({problem.n2 * o}) matrix ({format_bytes(result)}); use pntk "
            "(O^2 smaller) or fewer inputs per call"
            if KERNELS[kernel].block
            else "use fewer inputs per call, or implementation='structured_derivatives'"
        )
        raise MemoryBudgetError(
            f"{kernel} with implementation {implementation!r} needs about {format_bytes(need)}, "
            f"over the memory budget of {format_bytes(budget)}: {hint}. "
            "Raise the budget with SUITE_MEMORY_BUDGET (e.g. '16GB') if you are sure."
        )
    return need


def compiled_bytes(exe: Any) -> int | None:
    """Bytes a compiled call allocates (its result and temporaries; the arguments exist
    already), by XLA's memory analysis; None where the backend does not report it."""
    stats = exe.memory_analysis()
    if stats is None:
        return None
    return int(stats.temp_size_in_bytes + stats.output_size_in_bytes)


def check_compiled(kernel: str, implementation: str, exe: Any) -> int | None:
    """Refuse a compiled call whose XLA estimate (result and temporaries) exceeds the budget;
    returns that estimate (None where the backend does not report it)."""
    need = compiled_bytes(exe)
    if need is not None:
        budget = memory_budget()
        if need > budget:
            raise MemoryBudgetError(
                f"{kernel} with implementation {implementation!r} needs {format_bytes(need)} by XLA's "
                "estimate (result and temporaries), over the memory "
                f"budget of {format_bytes(budget)}; use fewer inputs per call, another implementation "
                "(structured_derivatives usually needs least), pntk instead of entk, or raise "
                "SUITE_MEMORY_BUDGET if you are sure."
            )
    return need
