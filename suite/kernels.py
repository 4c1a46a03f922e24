"""Exact and approximate empirical NTKs: the registry of kernels and implementations.

Notation (theory.md §1): f: R^D -> R^O, J(x) = df/dtheta in R^{O x P}.

* ``entk``: Theta(x1, x2) = J(x1) J(x2)^T, shape (N1, N2, O, O) (paper, eq. 1).
* ``pntk``: the NTK of g = (1/sqrt O) sum_i f_i, shape (N1, N2) (paper, eq. 2). It equals
  (1/O) sum_ij Theta_ij exactly: the mean row sum of each O x O eNTK block, which is O times
  the mean of its O*O entries (at initialization Theta ~ pNTK x I_O, so the diagonal ~ pNTK).
* ``trace_ntk``: mean of each block's diagonal, (1/O) Tr Theta (neural-tangents' default).
* ``logit_ntk``: one logit's entry Theta_kk ("first logit" for k = 0).
* ``projected_ntk``: the NTK of v^T f for a random unit vector v.

Every scalar kernel except the trace is the NTK of a scalar function v^T f, so one code
path serves them all. Implementations: neural-tangents' three (``jacobian_contraction``,
``ntk_vector_products``, ``structured_derivatives``) and the suite's own ``jax`` path, which
uses only the public jax API (vmap / jacrev / grad) and so works on jax releases where
neural-tangents does not import. ``auto`` times the candidates once per network and input
shapes and keeps the fastest (see :func:`choose_implementation`); experiments use
:func:`reproducible_implementation` instead, so their numbers do not depend on timing.

All implementations assume examples do not interact inside ``apply_fn`` (no batch norm in
training mode), as neural-tangents' ``vmap_axes=0`` does.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from suite import _nt
from suite.errors import MemoryBudgetError, SuiteError, unknown_name

ApplyFn = Callable[[Any, jax.Array], jax.Array]

#: neural-tangents' NtkImplementation values; ``jax`` is the suite's own path.
IMPLEMENTATIONS: dict[str, int | None] = {
    "jacobian_contraction": 1,
    "ntk_vector_products": 2,
    "structured_derivatives": 3,
    "jax": None,
}
IMPLEMENTATION_CHOICES = ("auto", *IMPLEMENTATIONS)


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class Problem:
    """Shapes of one kernel request, checked before anything is computed."""

    n1: int
    n2: int
    n_outputs: int
    n_params: int
    dtype: np.dtype


def _check_array(name: str, x: Any) -> jax.Array:
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
    if not bool(jnp.all(jnp.isfinite(x))):
        raise SuiteError(f"{name} contains NaN or inf; clean or impute the inputs first")
    return jnp.asarray(x)


def validate(apply_fn: ApplyFn, params: Any, x1: Any, x2: Any = None) -> tuple[jax.Array, jax.Array | None, Problem]:
    """Check inputs, parameters and the output shape of ``apply_fn`` without computing a kernel.

    Raises:
        SuiteError: integer or non-finite inputs, missing batch axis, x1/x2 per-example shape
            mismatch, non-finite parameters, or an ``apply_fn`` that does not return (N, O).
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
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves:
        raise SuiteError("params has no array leaves; pass the network's parameter pytree")
    for leaf in leaves:
        if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.floating) and not bool(jnp.all(jnp.isfinite(leaf))):
            raise SuiteError("params contain NaN or inf; re-initialize the network or check training")
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
    n_params = sum(int(np.prod(jnp.shape(leaf))) for leaf in leaves)
    n2 = x1.shape[0] if x2 is None else x2.shape[0]
    problem = Problem(int(x1.shape[0]), int(n2), int(out.shape[1]), n_params, np.dtype(out.dtype))
    return x1, x2, problem


# --------------------------------------------------------------------------- memory


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
    env = os.environ.get("SUITE_MEMORY_BUDGET")
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


# --------------------------------------------------------------------------- implementations


def _per_example(apply_fn: ApplyFn) -> Callable[[Any, jax.Array], jax.Array]:
    return lambda p, x: apply_fn(p, x[None])[0]


def _flat_leaves(tree: Any, lead: int) -> list[jax.Array]:
    return [leaf.reshape(*leaf.shape[:lead], -1) for leaf in jax.tree_util.tree_leaves(tree)]


def _jax_full(apply_fn: ApplyFn, mode: str) -> Callable[..., jax.Array]:
    """The suite's own path: per-example Jacobians by vmap(jacrev), contracted leaf by leaf."""
    jac = jax.vmap(jax.jacrev(_per_example(apply_fn)), in_axes=(None, 0))
    spec = {"full": "aoP,bqP->aboq", "trace": "aoP,boP->ab"}[mode]

    def kernel(x1, x2, params):
        j1 = _flat_leaves(jac(params, x1), 2)
        j2 = j1 if x2 is None else _flat_leaves(jac(params, x2), 2)
        out = sum(jnp.einsum(spec, a, b) for a, b in zip(j1, j2, strict=True))
        return out / j1[0].shape[1] if mode == "trace" else out

    return kernel


#: XLA:CPU lowers a product with one or two rows (or columns) to a loop that sums the
#: parameter axis in sequence: 6e-4 relative error in float32 for one pair over ResNet-18's
#: parameters (numpy's BLAS: 2e-6), while from about 4 x 4 on it uses a blocked matrix product
#: (1e-6). Such thin Grams therefore contract chunks of _GRAM_CHUNK parameters and add the
#: partial products; the others go to the matrix product as they are.
_GRAM_CHUNK = 4096
_MAX_PARTIALS = 2**22  # elements of the (chunks, N1, N2) partial products


def _gram(a: jax.Array, b: jax.Array) -> jax.Array:
    """a @ b.T for (N1, P) and (N2, P), accurate in float32 also when N1 or N2 is 1 or 2."""
    n1, p = a.shape
    n2 = b.shape[0]
    chunks = p // _GRAM_CHUNK
    if min(n1, n2) > 2 or chunks < 2 or chunks * n1 * n2 > _MAX_PARTIALS:
        return a @ b.T
    pad = (-p) % chunks
    a = jnp.pad(a, ((0, 0), (0, pad))).reshape(n1, chunks, -1)
    b = jnp.pad(b, ((0, 0), (0, pad))).reshape(n2, chunks, -1)
    return jnp.einsum("ncp,mcp->cnm", a, b).sum(axis=0)


def _jax_scalar(apply_fn: ApplyFn) -> Callable[..., jax.Array]:
    """NTK of x -> v^T f(x): per-example gradients by vmap(grad), then their Gram matrix."""
    f = _per_example(apply_fn)

    def kernel(x1, x2, params, v):
        grad = jax.vmap(jax.grad(lambda p, x: f(p, x) @ v.astype(f(p, x).dtype)), in_axes=(None, 0))
        g1 = _flat_leaves(grad(params, x1), 1)
        g2 = g1 if x2 is None else _flat_leaves(grad(params, x2), 1)
        return sum(_gram(a, b) for a, b in zip(g1, g2, strict=True))

    return kernel


def _nt_kernel(apply_fn: ApplyFn, impl: int, mode: str) -> Callable[..., jax.Array]:
    nt = _nt.require()
    if mode in ("full", "trace"):
        trace_axes = () if mode == "full" else (-1,)
        fn = nt.empirical_ntk_fn(apply_fn, trace_axes=trace_axes, vmap_axes=0, implementation=impl)
        return lambda x1, x2, params: fn(x1, x2, params)

    def scalar(x1, x2, params, v):
        # keepdims: a (N,) output would make neural-tangents trace over the batch axis.
        def f_v(p, x):
            out = apply_fn(p, x)
            return (out @ v.astype(out.dtype))[:, None]

        fn = nt.empirical_ntk_fn(f_v, trace_axes=(), vmap_axes=0, implementation=impl)
        return fn(x1, x2, params)[..., 0, 0]

    return scalar


@lru_cache(maxsize=256)
def compiled(apply_fn: ApplyFn, implementation: str, mode: str) -> Any:
    """Jitted kernel function, cached so repeated calls with the same apply_fn do not recompile.

    ``mode``: ``full`` (x1, x2, params) -> (N1, N2, O, O); ``trace`` -> (N1, N2);
    ``scalar`` (x1, x2, params, v) -> (N1, N2), the NTK of v^T f.
    Always jitted: an unjitted neural-tangents call gave wrong numbers on older jaxlib.
    """
    impl = IMPLEMENTATIONS[implementation]
    if impl is None:
        fn = _jax_scalar(apply_fn) if mode == "scalar" else _jax_full(apply_fn, mode)
    else:
        fn = _nt_kernel(apply_fn, impl, mode)
    return jax.jit(fn)


#: Implementations ``auto`` times against each other, per compiled mode, preferred first.
#: No fixed choice is fastest (reports/bench/SUMMARY.md): structured derivatives wins by 10-40x
#: on MLPs, while on conv nets the plain per-example Jacobians / gradients of the ``jax`` path
#: are 10-45% faster except for the CNN eNTK at O = 100. Jacobian contraction times within
#: noise of ``jax`` (both are vmap(jacrev) plus a contraction) and NTK-vector products was
#: never ahead, so neither is tried.
AUTO_CANDIDATES: dict[str, tuple[str, ...]] = {
    "full": ("structured_derivatives", "jax"),
    "trace": ("structured_derivatives", "jax"),
    "scalar": ("structured_derivatives", "jax"),
}
#: ``auto`` keeps the preferred candidate unless another is at least this much faster, so that
#: near-ties do not flip the choice from one run to the next on a noisy machine.
AUTO_MARGIN = 0.05
#: Timed calls per candidate (the best counts) after a first call, for calls shorter than
#: AUTO_LONG_CALL_S; a longer first call is itself the measurement (its noise is small beside
#: it, and repeating it would multiply the cost of a one-off call).
AUTO_RUNS = 3
AUTO_LONG_CALL_S = 0.25
_AUTO_CHOICE: dict[tuple[Any, ...], str] = {}


def resolve_implementation(implementation: str, kernel: str) -> str:
    """Check an implementation name and map ``auto`` to ``"jax"`` where neural-tangents does
    not import; otherwise ``auto`` stays ``"auto"`` and :func:`choose_implementation` times the
    candidates once per network and input shapes."""
    if implementation not in IMPLEMENTATION_CHOICES:
        raise unknown_name("implementation", implementation, IMPLEMENTATION_CHOICES)
    if implementation != "auto":
        if IMPLEMENTATIONS[implementation] is not None:
            _nt.require()
        return implementation
    return "auto" if _nt.available() else "jax"


def reproducible_implementation() -> str:
    """A fixed implementation for results that must not depend on timing (the experiments):
    structured derivatives, or ``jax`` where neural-tangents does not import. ``auto`` may pick
    differently on another run, and implementations differ in the last float32 bits."""
    return "structured_derivatives" if _nt.available() else "jax"


def choose_implementation(kernel: str, apply_fn: ApplyFn, args: tuple[Any, ...], problem: Problem | None = None) -> str:
    """The fastest of :data:`AUTO_CANDIDATES` for this kernel's mode, network and argument
    shapes, cached per network and shapes. See :func:`_choose` for how it is timed."""
    return _choose(kernel, apply_fn, args, problem)[0]


def _choose(
    kernel: str, apply_fn: ApplyFn, args: tuple[Any, ...], problem: Problem | None
) -> tuple[str, jax.Array | None]:
    """(implementation, the chosen candidate's result when this call timed it, else None).

    Each candidate is compiled and run once; a first run shorter than :data:`AUTO_LONG_CALL_S`
    is followed by :data:`AUTO_RUNS` timed runs whose best counts, a longer one is the
    measurement. The preferred (first) candidate is kept unless another beats it by
    :data:`AUTO_MARGIN`. So a one-off long call costs one run per candidate, and its result
    is reused rather than computed again. Candidates over the memory budget (by
    :func:`estimate_bytes` for ``problem`` when given, and by XLA's compiled estimate) are
    skipped; the kept result is dropped when two results would not fit the budget together.
    """
    mode = KERNELS[kernel].mode
    key = (apply_fn, mode, _signature(args))
    if key in _AUTO_CHOICE:
        return _AUTO_CHOICE[key], None
    timings: dict[str, float] = {}
    kept: tuple[str, jax.Array] | None = None  # the best candidate so far and its result
    budget = memory_budget()
    for candidate in AUTO_CANDIDATES[mode]:
        if problem is not None and estimate_bytes(kernel, problem, candidate) > budget:
            continue
        try:
            exe = executable(kernel, apply_fn, candidate, mode, args)
        except MemoryBudgetError:
            continue
        start = time.perf_counter()
        out = jax.block_until_ready(exe(*args))
        first = time.perf_counter() - start
        if first >= AUTO_LONG_CALL_S:
            timings[candidate] = first
        else:  # short: the first run pays for allocation and caches; best of several
            runs = []
            for _ in range(AUTO_RUNS):
                start = time.perf_counter()
                out = jax.block_until_ready(exe(*args))
                runs.append(time.perf_counter() - start)
            timings[candidate] = min(runs)
        if pick_with_margin(timings, AUTO_MARGIN) == candidate:
            kept = (candidate, out) if 2 * out.nbytes <= budget else None
        del out
    if not timings:  # every candidate is over budget: let the caller's check say so
        return AUTO_CANDIDATES[mode][0], None
    chosen = pick_with_margin(timings, AUTO_MARGIN)
    _AUTO_CHOICE[key] = chosen
    return chosen, kept[1] if kept is not None and kept[0] == chosen else None


def pick_with_margin(timings: dict[str, float], margin: float) -> str:
    """The first key of ``timings`` (the preferred one) unless the fastest is more than
    ``margin`` (a fraction) faster than it."""
    preferred = next(iter(timings))
    fastest = min(timings, key=timings.__getitem__)
    return fastest if timings[fastest] < (1 - margin) * timings[preferred] else preferred


def concrete_implementation(
    kernel: str, implementation: str, apply_fn: ApplyFn, args: tuple[Any, ...], problem: Problem | None = None
) -> str:
    """The implementation a call with these arguments runs (``auto`` resolved, timing once if
    needed); ``args`` as passed to :func:`executable`."""
    impl = resolve_implementation(implementation, kernel)
    return choose_implementation(kernel, apply_fn, args, problem) if impl == "auto" else impl


def _signature(args: tuple[Any, ...]) -> tuple[Any, str]:
    shapes = jax.tree_util.tree_map(lambda a: (jnp.shape(a), str(jnp.result_type(a))), args)
    return jax.tree_util.tree_structure(args), str(shapes)


# --------------------------------------------------------------------------- public kernels


_EXECUTABLES: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_MAX_EXECUTABLES = 256


def executable(kernel: str, apply_fn: ApplyFn, implementation: str, mode: str, args: tuple[Any, ...]) -> Any:
    """The compiled kernel for these argument shapes, cached (least recently used, 256 kept).

    Compiling ahead of time lets XLA report the memory the call will need (arguments, result
    and temporaries such as Jacobians) before anything is allocated; a call over the
    budget is refused with :class:`~suite.errors.MemoryBudgetError`.
    """
    key = (apply_fn, implementation, mode, *_signature(args))
    exe = _EXECUTABLES.get(key)
    if exe is None:
        exe = compiled(apply_fn, implementation, mode).lower(*args).compile()
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
        _EXECUTABLES[key] = exe
        if len(_EXECUTABLES) > _MAX_EXECUTABLES:
            _EXECUTABLES.popitem(last=False)
    else:
        _EXECUTABLES.move_to_end(key)
    return exe


def compiled_bytes(exe: Any) -> int | None:
    """Bytes a compiled call allocates (its result and temporaries; the arguments exist
    already), by XLA's memory analysis; None where the backend does not report it."""
    stats = exe.memory_analysis()
    if stats is None:
        return None
    return int(stats.temp_size_in_bytes + stats.output_size_in_bytes)


def _run(kernel: str, mode: str, apply_fn, params, x1, x2, implementation, vector=None) -> jax.Array:
    """Validate, resolve the implementation, check memory (first by the result's size, then by
    XLA's compiled estimate), then call the cached compiled kernel.

    ``vector(O)`` gives the output direction v of scalar kernels (the NTK of v^T f).
    """
    x1, x2, problem = validate(apply_fn, params, x1, x2)
    v = None if vector is None else jnp.asarray(vector(problem.n_outputs), problem.dtype)
    args = (x1, x2, params) if v is None else (x1, x2, params, v)
    # The result's size first, so that a hopeless request is refused before anything compiles.
    check_memory(kernel, problem, "structured_derivatives")
    impl = resolve_implementation(implementation, kernel)
    if impl == "auto":
        impl, result = _choose(kernel, apply_fn, args, problem)
        if result is not None:  # this call timed the candidates: their chosen result is ours
            return result
    check_memory(kernel, problem, impl)
    return executable(kernel, apply_fn, impl, mode, args)(*args)


def entk(apply_fn: ApplyFn, params: Any, x1: Any, x2: Any = None, *, implementation: str = "auto") -> jax.Array:
    """Exact empirical NTK J(x1) J(x2)^T, shape (N1, N2, O, O) (paper, eq. 1).

    ``x2=None`` means x2 = x1 and lets implementations reuse one Jacobian. Refused with a
    :class:`~suite.errors.MemoryBudgetError` when it would exceed :func:`memory_budget`.
    """
    return _run("entk", "full", apply_fn, params, x1, x2, implementation)


def pntk(apply_fn: ApplyFn, params: Any, x1: Any, x2: Any = None, *, implementation: str = "auto") -> jax.Array:
    """Pseudo-NTK (paper, eq. 2): the NTK of (1/sqrt O) sum_i f_i, shape (N1, N2).

    Equals (1/O) sum_ij Theta_ij of each eNTK block (its mean row sum), at one gradient per
    input instead of O.
    """
    return _run("pntk", "scalar", apply_fn, params, x1, x2, implementation, _sum_direction)


def trace_ntk(apply_fn: ApplyFn, params: Any, x1: Any, x2: Any = None, *, implementation: str = "auto") -> jax.Array:
    """Mean of each eNTK block's diagonal, (1/O) Tr Theta, shape (N1, N2) (neural-tangents'
    default ``trace_axes=(-1,)``). Costs O gradients per input."""
    return _run("trace_ntk", "trace", apply_fn, params, x1, x2, implementation)


def logit_ntk(
    apply_fn: ApplyFn, params: Any, x1: Any, x2: Any = None, *, index: int = 0, implementation: str = "auto"
) -> jax.Array:
    """One logit's kernel Theta_kk with k = ``index`` ("first logit" for 0), shape (N1, N2)."""

    def unit(o: int) -> np.ndarray:
        if isinstance(index, bool) or not isinstance(index, int | np.integer) or not 0 <= index < o:
            raise SuiteError(f"index must be an integer in [0, {o}) for a network with O={o} outputs, got {index!r}")
        return np.eye(o)[index]

    return _run("logit_ntk", "scalar", apply_fn, params, x1, x2, implementation, unit)


def projected_ntk(
    apply_fn: ApplyFn, params: Any, x1: Any, x2: Any = None, *, key: jax.Array, implementation: str = "auto"
) -> jax.Array:
    """NTK of v^T f for a random unit vector v drawn from ``key``, shape (N1, N2)."""
    return _run("projected_ntk", "scalar", apply_fn, params, x1, x2, implementation, lambda o: projection(key, o))


def projection(key: jax.Array, n_outputs: int) -> np.ndarray:
    """The random unit vector :func:`projected_ntk` uses for ``key``."""
    v = np.asarray(jax.random.normal(key, (n_outputs,), dtype=jnp.float32), dtype=np.float64)
    return v / np.linalg.norm(v)


def _sum_direction(n_outputs: int) -> np.ndarray:
    """v = 1/sqrt(O) * ones: the pNTK's direction (the 1/sqrt O scaling of the paper)."""
    return np.ones(n_outputs) / math.sqrt(n_outputs)


# --------------------------------------------------------------------------- registry


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


@dataclass(frozen=True)
class KernelSpec:
    """One kernel: how to compute it and how it follows exactly from the eNTK.

    ``from_entk(full, **kw)`` is the identity a test checks against and a cheap way for
    experiments to get every scalar kernel from one eNTK.
    """

    name: str
    label: str
    description: str
    compute: Callable[..., jax.Array]
    from_entk: Callable[..., jax.Array]
    block: bool
    jacobians_per_input: Callable[[int], int]
    mode: str  # the compiled function it runs: "full", "trace" or "scalar" (see compiled)


KERNELS: dict[str, KernelSpec] = {
    "entk": KernelSpec(
        "entk", "eNTK", "exact empirical NTK, (N1, N2, O, O)", entk, lambda full, **_: full, True, lambda o: o, "full"
    ),
    "pntk": KernelSpec(
        "pntk", "pNTK", "NTK of the sum of logits / sqrt(O)", pntk, lambda full, **_: _block_row_sum_mean(full),
        False, lambda o: 1, "scalar",
    ),
    "trace_ntk": KernelSpec(
        "trace_ntk", "mean trace", "mean of each block's diagonal", trace_ntk,
        lambda full, **_: _block_trace(full), False, lambda o: o, "trace",
    ),
    "logit_ntk": KernelSpec(
        "logit_ntk", "first logit", "one logit's diagonal entry", logit_ntk,
        lambda full, index=0, **_: full[:, :, index, index], False, lambda o: 1, "scalar",
    ),
    "projected_ntk": KernelSpec(
        "projected_ntk", "random projection", "NTK of v^T f, v a random unit vector", projected_ntk,
        lambda full, key, **_: _block_projection(full, key),
        False, lambda o: 1, "scalar",
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
