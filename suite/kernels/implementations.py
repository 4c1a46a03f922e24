"""The compiled kernel functions: neural-tangents' three implementations and the suite's own
``jax`` path (public jax API only: vmap / jacrev / grad, so it works on jax releases where
neural-tangents does not import).

Three compiled modes serve every kernel: ``full`` (x1, x2, params) -> Theta (N1, N2, O, O)
(paper eq. 1); ``trace`` -> (1/O) Tr Theta (N1, N2); ``scalar`` (x1, x2, params, v) -> the
NTK of v^T f (N1, N2), which with v = 1/sqrt(O) is the pNTK (paper eq. 2).

All implementations assume examples do not interact inside ``apply_fn`` (no batch norm in
training mode), as neural-tangents' ``vmap_axes=0`` does.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp

from suite import _nt
from suite.errors import unknown_name
from suite.kernels.memory import check_compiled
from suite.kernels.validation import ApplyFn, finite_flags

#: neural-tangents' NtkImplementation values; ``jax`` is the suite's own path.
IMPLEMENTATIONS: dict[str, int | None] = {
    "jacobian_contraction": 1,
    "ntk_vector_products": 2,
    "structured_derivatives": 3,
    "jax": None,
}
IMPLEMENTATION_CHOICES = ("auto", *IMPLEMENTATIONS)


def available_implementations() -> tuple[str, ...]:
    """The implementations that run here: all four, or only ``jax`` where neural-tangents
    does not import."""
    return tuple(name for name, impl in IMPLEMENTATIONS.items() if impl is None or _nt.available())


def resolve_implementation(implementation: str, kernel: str) -> str:
    """Check an implementation name; ``auto`` stays ``auto`` (:mod:`suite.kernels.auto` times
    the candidates) unless only one implementation runs here (``jax`` where neural-tangents
    does not import). A neural-tangents implementation where it does not import raises its
    ImportError."""
    if implementation not in IMPLEMENTATION_CHOICES:
        raise unknown_name("implementation", implementation, IMPLEMENTATION_CHOICES)
    if implementation != "auto":
        if IMPLEMENTATIONS[implementation] is not None:
            _nt.require()
        return implementation
    here = available_implementations()
    return "auto" if len(here) > 1 else here[0]


def reproducible_implementation() -> str:
    """A fixed implementation for results that must not depend on timing (the experiments):
    structured derivatives, or ``jax`` where neural-tangents does not import. ``auto`` may pick
    differently on another run, and implementations differ in the last float32 bits."""
    return "structured_derivatives" if _nt.available() else "jax"


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
    ``scalar`` (x1, x2, params, v) -> (N1, N2), the NTK of v^T f. It returns
    ``(kernel, finite_flags(x1, x2, params))``: the value checks ride in the kernel's own
    program, so a cached call needs no second dispatch for them.
    Always jitted: an unjitted neural-tangents call gave wrong numbers on older jaxlib.
    """
    impl = IMPLEMENTATIONS[implementation]
    if impl is None:
        fn = _jax_scalar(apply_fn) if mode == "scalar" else _jax_full(apply_fn, mode)
    else:
        fn = _nt_kernel(apply_fn, impl, mode)

    def checked(x1, x2, params, *v):
        return fn(x1, x2, params, *v), finite_flags(x1, x2, params)

    return jax.jit(checked)


def signature(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Tree structure, shapes and dtypes of ``args``: what a compiled executable is specific to."""
    leaves, treedef = jax.tree_util.tree_flatten(args)
    return treedef, tuple((tuple(jnp.shape(a)), str(jnp.result_type(a))) for a in leaves)


_EXECUTABLES: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_MAX_EXECUTABLES = 256


def executable(kernel: str, apply_fn: ApplyFn, implementation: str, mode: str, args: tuple[Any, ...]) -> Any:
    """The compiled kernel for these argument shapes, cached (least recently used, 256 kept);
    ``executable(...)(*args)`` returns ``(kernel, finite flags)`` (see :func:`compiled`).

    Compiling ahead of time lets XLA report the memory the call will need (arguments, result
    and temporaries such as Jacobians) before anything is allocated; a call over the
    budget is refused with :class:`~suite.errors.MemoryBudgetError`.
    """
    key = (apply_fn, implementation, mode, *signature(args))
    exe = _EXECUTABLES.get(key)
    if exe is None:
        exe = compiled(apply_fn, implementation, mode).lower(*args).compile()
        check_compiled(kernel, implementation, exe)
        _EXECUTABLES[key] = exe
        if len(_EXECUTABLES) > _MAX_EXECUTABLES:
            _EXECUTABLES.popitem(last=False)
    else:
        # Checked again: the budget (SUITE_MEMORY_BUDGET) may have changed since it compiled.
        check_compiled(kernel, implementation, exe)
        _EXECUTABLES.move_to_end(key)
    return exe
