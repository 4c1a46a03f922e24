"""Kernel benchmarks that double as correctness tests (pytest-benchmark).

In the default run (``--benchmark-disable`` in pyproject) each case calls its kernel once and
checks the result; ``nox -s bench`` times them (``--benchmark-enable --benchmark-only``, slow
cases included) and writes ``reports/bench/<machine>-<stamp>.json`` for :mod:`suite.bench`.
Every suite timing is of the PUBLIC call a user makes (``suite.pntk(apply_fn, params, x)``
etc., validation included), on a cached signature.

* ``test_kernel``: every kernel of :data:`suite.kernels.KERNELS` x every implementation
  (``auto`` included) x every architecture x O in {10, 100}, N = 8 Gaussian 8x8x3 inputs,
  K(X, X). Group ``{arch}-O{O}-{kernel}``: one table compares the implementations.
* ``test_nt_peer``: in the same groups for the pNTK and eNTK, neural-tangents' three
  implementations called directly, jitted, as a user of neural-tangents would (the pNTK on
  the summed function (1/sqrt O) sum_i f_i). ``tests/test_bench_peers.py`` adds torch.func's
  vmap(jacrev) recipe to the same groups (``nox -s bench_peers``).
* ``test_fig1_pair``: the paper's Figure 1 setting, eNTK vs pNTK for ONE pair of 32x32x3
  inputs on ResNet-18/34/50 (width 16; also 101/152/200 on accelerators) as O grows. Group
  ``fig1-{resnet}-O{O}``.
* ``test_scaling``: time against N (16 to 1024 inputs) and the "near the limit" checks: the
  pNTK (``auto`` and the blocked pNTK) beside its lower bound, one batched per-example gradient
  pass (``gradients``) plus the N x N Gram product of those gradients (``gram``, at the BLAS
  rate of this run); the eNTK up to N = 256 beside its per-example Jacobian pass
  (``jacobians``; the bound adds the (N O)^2 Gram at the measured rate); neural-tangents'
  structured derivatives and Jacobian contraction as peers. Group ``scaling-{arch}-N{N}``.
* ``test_api_overhead``: the public pNTK call vs the bare compiled executable of
  ``kernels.prepare`` on the same inputs (target: <= 0.3 ms apart).
* ``test_calibration_matmul``: a fixed 512x512 float32 matmul, so that medians can be divided
  by the machine's speed (``suite.bench.compare``).

Every kernel benchmark records XLA's compiled memory estimate (``compiled_bytes``: result plus
temporaries), so the summary can show the eNTK's O^2 memory beside the pNTK's flat one.

Timing: models, parameters and inputs are built once (cached), the kernel is compiled by an
untimed call, and the timed callable ends in ``jax.block_until_ready``. After timing, every
result is checked against the eNTK of the suite's own ``jax`` implementation through
``KERNELS[k].from_entk`` (float32, relative Frobenius error).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import pytest
from conftest import rel_err

from suite import _nt, blocked, data, kernels, models

#: Examples per kernel call in the main grid, and their per-example shape.
N = 8
IMAGE = (8, 8, 3)
#: Small networks (build kwargs); the id ``mlp-w0256-d02`` names each one.
NETWORKS: dict[str, dict[str, int]] = {
    "mlp": {"width": 256, "depth": 2},
    "cnn": {"width": 32, "depth": 2},
    "resnet": {"width": 16, "depth": 2},
}
OUTPUTS = (10, 100)
#: Figure 1: one pair of 32x32x3 inputs, ResNet-18/34-like stages at this base width.
FIG1_IMAGE = (32, 32, 3)
FIG1_WIDTH = 16
FIG1_OUTPUTS = (10, 100, 200)
#: The paper's ResNet depths: 18/34/50 everywhere; 101/152/200 only on accelerators (on 2 CPU
#: cores each takes minutes to compile and time). A case over the memory budget is skipped.
FIG1_NETWORKS = tuple(
    name for name in models.RESNETS
    if name in ("resnet18", "resnet34", "resnet50") or jax.default_backend() != "cpu"
)
#: Implementations timed per ResNet: auto everywhere, plus the suite's jax path on ResNet-18.
FIG1_IMPLEMENTATIONS = {name: ("auto", "jax") if name == "resnet18" else ("auto",) for name in FIG1_NETWORKS}

KEY = jax.random.PRNGKey(7)
KERNEL_KWARGS: dict[str, dict[str, Any]] = {"logit_ntk": {"index": 0}, "projected_ntk": {"key": KEY}}

#: Relative Frobenius tolerance in float32 against the jax-implementation eNTK (as the kernel
#: tests); accelerators default to reduced-precision (TF32) matmuls, hence the looser value.
RTOL = {"cpu": 2e-4}
RTOL_ACCELERATOR = 1e-2

#: Rounds: about TARGET_S seconds of timing per benchmark, within [MIN_ROUNDS, MAX_ROUNDS].
TARGET_S = 0.3
MIN_ROUNDS, MAX_ROUNDS = 5, 200


# --------------------------------------------------------------------------- cached problems


@dataclass(frozen=True, eq=False)
class Problem:
    """A network, float32 parameters and inputs, built once per (network, O)."""

    model_id: str
    arch: str
    width: int
    depth: int
    model: models.Model
    params: Any
    x1: jax.Array
    x2: jax.Array | None
    n_params: int

    @property
    def n(self) -> int:
        return int(self.x1.shape[0])


def _n_params(params: Any) -> int:
    return sum(math.prod(jnp.shape(leaf)) for leaf in jax.tree_util.tree_leaves(params))


def _inputs(n: int, image: tuple[int, ...]) -> jax.Array:
    return jnp.asarray(data.load("gaussian", n=n, image_shape=image, seed=0, dtype=np.float32).x)


@cache
def grid_problem(arch: str, n_outputs: int) -> Problem:
    """The main grid's network ``arch`` with O = ``n_outputs`` on N Gaussian 8x8x3 inputs."""
    cfg = NETWORKS[arch]
    model = models.build(arch, n_outputs=n_outputs, **cfg)
    params = models.cast_params(model.init(jax.random.PRNGKey(0), IMAGE), jnp.float32)
    model_id = f"{arch}-w{cfg['width']:04d}-d{cfg['depth']:02d}"
    return Problem(model_id, arch, cfg["width"], cfg["depth"], model, params, _inputs(N, IMAGE), None,
                   _n_params(params))


@cache
def fig1_problem(network: str, n_outputs: int) -> Problem:
    """Figure 1: ``network`` of :data:`suite.models.RESNETS`, base width 16, one pair of
    32x32x3 inputs."""
    model = models.build("resnet", n_outputs=n_outputs, width=FIG1_WIDTH, **models.RESNETS[network])
    params = models.cast_params(model.init(jax.random.PRNGKey(0), FIG1_IMAGE), jnp.float32)
    x = _inputs(2, FIG1_IMAGE)
    depth = int(network.removeprefix("resnet"))
    return Problem(f"{network}-w{FIG1_WIDTH:04d}", "resnet", FIG1_WIDTH, depth, model, params, x[:1], x[1:],
                   _n_params(params))


@cache
def reference_entk(problem: Problem) -> jax.Array:
    """The eNTK by the suite's own jax implementation: the reference every case is checked against."""
    return kernels.entk(problem.model.apply_fn, problem.params, problem.x1, problem.x2, implementation="jax")


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class KernelCall:
    """What :func:`kernel_call` prepares: the implementation that runs (``auto`` resolved), a
    zero-argument callable of the PUBLIC call run to completion, the bare compiled executable
    on the same inputs, and XLA's estimate of the bytes one call allocates (None if not
    reported)."""

    resolved: str
    run: Callable[[], jax.Array]
    bare: Callable[[], jax.Array]
    compiled_bytes: int | None


def kernel_call(kernel: str, implementation: str, problem: Problem) -> KernelCall:
    """The public call of ``kernel`` on ``problem`` and, from ``kernels.prepare``, what it
    resolves to (the first prepare times auto's candidates and compiles; later calls hit the
    cache)."""
    apply_fn = problem.model.apply_fn
    kwargs = KERNEL_KWARGS.get(kernel, {})
    prepared = kernels.prepare(kernel, apply_fn, problem.params, problem.x1, problem.x2,
                               implementation=implementation, **kwargs)
    compute = kernels.KERNELS[kernel].compute

    def public() -> jax.Array:
        return jax.block_until_ready(compute(apply_fn, problem.params, problem.x1, problem.x2,
                                             implementation=implementation, **kwargs))

    def bare() -> jax.Array:
        return jax.block_until_ready(prepared.run_unchecked())

    return KernelCall(prepared.implementation, public, bare, prepared.compiled_bytes)


#: neural-tangents' implementations timed as peers, by the names of kernels.IMPLEMENTATIONS.
NT_PEERS = ("jacobian_contraction", "ntk_vector_products", "structured_derivatives")


def nt_peer_call(kernel: str, implementation: str, problem: Problem) -> Callable[[], jax.Array]:
    """neural-tangents called directly, as its user would: ``jax.jit(nt.empirical_ntk_fn(f,
    trace_axes=(), vmap_axes=0, implementation=i))``, on f itself for the eNTK and on the
    summed function (1/sqrt O) sum_i f_i (kept as an (N, 1) output) for the pNTK."""
    nt = _nt.require()
    f = problem.model.apply_fn
    impl = kernels.IMPLEMENTATIONS[implementation]
    if kernel == "entk":
        fn = nt.empirical_ntk_fn(f, trace_axes=(), vmap_axes=0, implementation=impl)
        jitted = jax.jit(fn)
    elif kernel == "pntk":
        o = problem.model.config.n_outputs

        def f_sum(p, x):
            return f(p, x).sum(axis=-1, keepdims=True) / math.sqrt(o)

        fn = nt.empirical_ntk_fn(f_sum, trace_axes=(), vmap_axes=0, implementation=impl)
        jitted = jax.jit(lambda x1, x2, p: fn(x1, x2, p)[..., 0, 0])
    else:
        raise AssertionError(f"no neural-tangents peer for {kernel!r}")
    return lambda: jax.block_until_ready(jitted(problem.x1, problem.x2, problem.params))


def machine_info() -> dict[str, Any]:
    """Backend and versions, recorded with every benchmark (see also suite.bench's hook)."""
    return {
        "backend": jax.default_backend(),
        "device": jax.devices()[0].device_kind,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
    }


def run_benchmark(benchmark: Any, fn: Callable[[], jax.Array], target_s: float = TARGET_S,
                  max_rounds: int = MAX_ROUNDS) -> jax.Array:
    """Compile with one untimed call, time a second untimed call (also a warm-up) to choose the
    number of rounds, then time ~``target_s`` seconds of rounds of ``fn``."""
    if benchmark.disabled:
        return benchmark.pedantic(fn, rounds=1, iterations=1)
    fn()  # compile
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    rounds = min(max_rounds, max(MIN_ROUNDS, math.ceil(target_s / max(once, 1e-9))))
    return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0)


def tolerance() -> float:
    return RTOL.get(jax.default_backend(), RTOL_ACCELERATOR)


def check_against_reference(benchmark: Any, kernel: str, implementation: str, problem: Problem,
                            got: jax.Array, rtol: float | None = None) -> None:
    """Assert ``got`` equals the reference eNTK's identity (float32 tolerance)."""
    spec = kernels.KERNELS[kernel]
    kwargs = KERNEL_KWARGS.get(kernel, {})
    expected = spec.from_entk(reference_entk(problem), **kwargs)
    err = rel_err(got, expected)
    benchmark.extra_info["rel_err"] = err
    rtol = tolerance() if rtol is None else max(rtol, tolerance())
    assert err < rtol, f"{kernel} ({implementation}) is off the reference eNTK by {err:.2e}"


def record(benchmark: Any, bench: str, kernel: str, implementation: str, problem: Problem,
           resolved: str, compiled_bytes: int | None = None, peer: str | None = None) -> None:
    """extra_info of a benchmark (``compiled_bytes``: XLA's estimate, when known; ``peer``: the
    library a peer row times, e.g. ``neural-tangents``, absent for the suite's own calls)."""
    if peer is not None:
        benchmark.extra_info["peer"] = peer
    if compiled_bytes is not None:
        benchmark.extra_info["compiled_bytes"] = compiled_bytes
    benchmark.extra_info.update(
        bench=bench,
        model=problem.model_id,
        arch=problem.arch,
        width=problem.width,
        depth=problem.depth,
        O=problem.model.config.n_outputs,
        N=problem.n,
        n_params=problem.n_params,
        kernel=kernel,
        implementation=implementation,
        resolved_implementation=resolved,
        **machine_info(),
    )


# --------------------------------------------------------------------------- calibration


@cache
def _calibration_problem() -> tuple[Callable[[jax.Array], jax.Array], jax.Array]:
    a = jax.random.normal(jax.random.PRNGKey(0), (512, 512), jnp.float32) / math.sqrt(512)
    return jax.jit(lambda m: m @ m), a


def test_calibration_matmul(benchmark):
    """A fixed 512x512 float32 matmul: the machine-speed unit for comparing runs (defined first
    so that it runs first, before the kernels heat the machine)."""
    matmul, a = _calibration_problem()
    benchmark.group = "calibration"
    benchmark.extra_info.update(bench="calibration", **machine_info())
    # Many rounds: suite.bench normalizes by this benchmark's fastest round.
    got = run_benchmark(benchmark, lambda: jax.block_until_ready(matmul(a)), target_s=1.0, max_rounds=2000)
    expected = np.asarray(a, np.float64) @ np.asarray(a, np.float64)
    assert rel_err(got, expected) < tolerance()


# --------------------------------------------------------------------------- the grid


def _is_slow(kernel: str, implementation: str, n_outputs: int) -> bool:
    # Kernels needing O gradients per input (eNTK, trace) through the Jacobian-contraction or
    # NTK-vector-product paths take ~0.1-1 s per call at O = 100.
    block = kernels.KERNELS[kernel].mode != "scalar"
    return n_outputs >= 100 and block and implementation in ("jacobian_contraction", "ntk_vector_products")


def _grid() -> list[Any]:
    cases = []
    for arch, cfg in NETWORKS.items():
        for o in OUTPUTS:
            for kernel in kernels.KERNELS:
                for impl in kernels.IMPLEMENTATION_CHOICES:
                    case_id = f"{arch}-w{cfg['width']:04d}-d{cfg['depth']:02d}-O{o}-{kernel}-{impl}"
                    marks = [pytest.mark.slow] if _is_slow(kernel, impl, o) else []
                    cases.append(pytest.param(arch, o, kernel, impl, id=case_id, marks=marks))
    return cases


@pytest.mark.parametrize(("arch", "n_outputs", "kernel", "implementation"), _grid())
def test_kernel(benchmark, arch, n_outputs, kernel, implementation):
    problem = grid_problem(arch, n_outputs)
    benchmark.group = f"{arch}-O{n_outputs}-{kernel}"
    call = kernel_call(kernel, implementation, problem)
    record(benchmark, "kernels", kernel, implementation, problem, call.resolved, call.compiled_bytes)
    got = run_benchmark(benchmark, call.run)
    check_against_reference(benchmark, kernel, implementation, problem, got)


def _nt_peer_grid() -> list[Any]:
    cases = []
    for arch, cfg in NETWORKS.items():
        for o in OUTPUTS:
            for kernel in ("pntk", "entk"):
                for impl in NT_PEERS:
                    case_id = f"{arch}-w{cfg['width']:04d}-d{cfg['depth']:02d}-O{o}-{kernel}-nt-{impl}"
                    # in the fast run, one network checks the peers; the rest only when timing
                    fast = (arch, o) == ("cnn", 10)
                    marks = [] if fast else [pytest.mark.slow]
                    cases.append(pytest.param(arch, o, kernel, impl, id=case_id, marks=marks))
    return cases


@pytest.mark.skipif(not _nt.available(), reason=f"neural-tangents does not import here: {_nt.IMPORT_ERROR}")
@pytest.mark.parametrize(("arch", "n_outputs", "kernel", "implementation"), _nt_peer_grid())
def test_nt_peer(benchmark, arch, n_outputs, kernel, implementation):
    """neural-tangents called directly (jitted), in the public call's group."""
    problem = grid_problem(arch, n_outputs)
    benchmark.group = f"{arch}-O{n_outputs}-{kernel}"
    record(benchmark, "kernels", kernel, f"nt-{implementation}", problem, f"nt-{implementation}",
           peer="neural-tangents")
    got = run_benchmark(benchmark, nt_peer_call(kernel, implementation, problem))
    check_against_reference(benchmark, kernel, implementation, problem, got)


# --------------------------------------------------------------------------- Figure 1


def _fig1_cases() -> list[Any]:
    cases = []
    for stages in FIG1_NETWORKS:
        for o in FIG1_OUTPUTS:
            for kernel in ("entk", "pntk"):
                for impl in FIG1_IMPLEMENTATIONS[stages]:
                    cheapest = (stages, o, kernel, impl) == ("resnet18", 10, "pntk", "auto")
                    marks = [] if cheapest else [pytest.mark.slow]
                    case_id = f"{stages}-w{FIG1_WIDTH:04d}-O{o}-{kernel}-{impl}"
                    cases.append(pytest.param(stages, o, kernel, impl, id=case_id, marks=marks))
    return cases


@pytest.mark.parametrize(("stages", "n_outputs", "kernel", "implementation"), _fig1_cases())
def test_fig1_pair(benchmark, stages, n_outputs, kernel, implementation):
    """Paper Figure 1: eNTK vs pNTK time for one pair (x1, x2) as the number of outputs grows."""
    problem = fig1_problem(stages, n_outputs)
    benchmark.group = f"fig1-{stages}-O{n_outputs}"
    try:
        call = kernel_call(kernel, implementation, problem)
    except kernels.MemoryBudgetError as exc:
        pytest.skip(f"{stages} at O={n_outputs} does not fit this machine: {exc}")
    record(benchmark, "fig1", kernel, implementation, problem, call.resolved, call.compiled_bytes)
    got = run_benchmark(benchmark, call.run)
    expected_shape = (1, 1, n_outputs, n_outputs) if kernel == "entk" else (1, 1)
    assert got.shape == expected_shape
    check_against_reference(benchmark, kernel, implementation, problem, got)


# --------------------------------------------------------------------------- time against N


#: Inputs per call for the scaling benchmarks (the networks of NETWORKS, O = 10). The MLP
#: stops at 256: its Gram at N = 1024 (P = 118k) is 2.5e11 flops, seconds per round here.
SCALING_N: dict[str, tuple[int, ...]] = {
    "mlp": (16, 64, 256),
    "cnn": (16, 64, 256, 1024),
    "resnet": (16, 64, 256, 1024),
}
#: Largest N at which the eNTK ((N O)^2 entries, O gradients per input) is timed as well.
SCALING_ENTK_MAX_N = 256
#: The first CHECK_N inputs' kernel is checked against the reference eNTK of those inputs.
CHECK_N = 16
SCALING_PARTS = ("pntk", "pntk_blocked", "gradients", "gram", "entk", "jacobians",
                 "nt-structured_derivatives-pntk", "nt-jacobian_contraction-pntk",
                 "nt-structured_derivatives-entk", "nt-jacobian_contraction-entk")
#: Parts that exist only up to SCALING_ENTK_MAX_N (O gradients per input, (N O)^2 results).
ENTK_PARTS = ("entk", "jacobians", "nt-structured_derivatives-entk", "nt-jacobian_contraction-entk")
#: Skip an eNTK by Jacobian contraction whose (N O)^2 Gram needs more flops than this (the
#: MLP at N = 256: 1.5e12, half a minute per round here); the bound still covers it.
MAX_GRAM_FLOPS = 2e11


def scaling_skip(arch: str, n: int, part: str) -> str | None:
    """Why a scaling case is left out, or None."""
    if part in ENTK_PARTS and n > SCALING_ENTK_MAX_N:
        return "eNTK only up to N = 256"
    if part.startswith("nt-jacobian_contraction-entk"):
        base = grid_problem(arch, OUTPUTS[0])
        flops = 2 * (n * OUTPUTS[0]) ** 2 * base.n_params
        if flops > MAX_GRAM_FLOPS:
            return f"its (N O)^2 Gram is {flops:.1e} flops (> {MAX_GRAM_FLOPS:.0e})"
    return None


@cache
def jacobian_pass(arch: str) -> Callable[[Any, jax.Array], Any]:
    """The eNTK bound's first part: per-example Jacobians (O rows each), vmap(jacrev), jitted."""
    f = grid_problem(arch, OUTPUTS[0]).model.apply_fn
    return jax.jit(jax.vmap(jax.jacrev(lambda p, x: f(p, x[None])[0]), in_axes=(None, 0)))


@cache
def scaling_problem(arch: str, n: int) -> Problem:
    """The main grid's ``arch`` network (O = 10) on ``n`` Gaussian 8x8x3 inputs."""
    base = grid_problem(arch, OUTPUTS[0])
    return Problem(base.model_id, arch, base.width, base.depth, base.model, base.params, _inputs(n, IMAGE), None,
                   base.n_params)


@cache
def scaling_reference(arch: str, n: int) -> jax.Array:
    """The reference eNTK of the first CHECK_N inputs of ``scaling_problem(arch, n)``."""
    p = scaling_problem(arch, n)
    return kernels.entk(p.model.apply_fn, p.params, p.x1[:CHECK_N], implementation="jax")


@cache
def scaling_gradients(arch: str, n: int) -> jax.Array:
    """The (N, P) per-example gradients of the pNTK's scalar function (the Gram's input)."""
    p = scaling_problem(arch, n)
    return jax.block_until_ready(blocked.gradient_pass(p.model.apply_fn, OUTPUTS[0])(p.params, p.x1))


def _scaling_cases() -> list[Any]:
    cases = []
    for arch, ns in SCALING_N.items():
        for n in ns:
            for part in SCALING_PARTS:
                if part in ENTK_PARTS and n > SCALING_ENTK_MAX_N:
                    continue
                marks = [] if (arch, n) == ("cnn", CHECK_N) else [pytest.mark.slow]
                cases.append(pytest.param(arch, n, part, id=f"{arch}-N{n:04d}-{part}", marks=marks))
    return cases


@pytest.mark.parametrize(("arch", "n", "part"), _scaling_cases())
def test_scaling(benchmark, arch, n, part):
    """Time against N, and the pNTK beside its lower bound: the gradient pass plus the Gram.

    ``pntk`` is the public kernel's call (``auto``); ``pntk_blocked`` the blocked pNTK
    (one tile when it fits the budget); ``gradients`` the jitted per-example gradient pass over
    all N inputs; ``gram`` G G^T of those (N, P) gradients; ``entk`` the eNTK (``auto``);
    ``jacobians`` the eNTK bound's Jacobian pass; ``nt-<impl>-<kernel>`` neural-tangents
    called directly (peers).
    """
    reason = scaling_skip(arch, n, part)
    if reason:
        pytest.skip(reason)
    problem = scaling_problem(arch, n)
    o = OUTPUTS[0]
    benchmark.group = f"scaling-{arch}-N{n:04d}"
    apply_fn = problem.model.apply_fn
    if part in ("pntk", "entk"):
        call = kernel_call(part, "auto", problem)
        record(benchmark, "scaling", part, "auto", problem, call.resolved, call.compiled_bytes)
        fn = call.run
    elif part.startswith("nt-"):
        impl, kernel = part.removeprefix("nt-").rsplit("-", 1)
        record(benchmark, "scaling", kernel, f"nt-{impl}", problem, f"nt-{impl}", peer="neural-tangents")
        fn = nt_peer_call(kernel, impl, problem)
    elif part == "jacobians":
        jac = jacobian_pass(arch)
        record(benchmark, "scaling", "jacobians", "jax", problem, "jax")

        def fn() -> Any:
            return jax.block_until_ready(jac(problem.params, problem.x1))
    elif part == "pntk_blocked":
        record(benchmark, "scaling", "pntk", "blocked", problem, "blocked")

        def fn() -> np.ndarray:
            return blocked.pntk_blocked(apply_fn, problem.params, problem.x1, progress=False)
    elif part == "gradients":
        grads = blocked.gradient_pass(apply_fn, o)
        record(benchmark, "scaling", "gradients", "jax", problem, "jax")

        def fn() -> jax.Array:
            return jax.block_until_ready(grads(problem.params, problem.x1))
    else:
        g = scaling_gradients(arch, n)
        tile = blocked.gram()
        record(benchmark, "scaling", "gram", "jax", problem, "jax")
        benchmark.extra_info["flops"] = 2 * n * n * int(g.shape[1])

        def fn() -> jax.Array:
            return jax.block_until_ready(tile(g, g))
    got = run_benchmark(benchmark, fn)

    reference = scaling_reference(arch, n)
    expected = kernels.KERNELS["pntk"].from_entk(reference)
    if part.startswith("nt-"):
        kernel = part.rsplit("-", 1)[1]
        want = reference if kernel == "entk" else expected
        err = rel_err(np.asarray(got)[:CHECK_N, :CHECK_N], want)
    elif part == "jacobians":
        heads = [np.asarray(leaf[:CHECK_N], np.float64).reshape(CHECK_N, OUTPUTS[0], -1)
                 for leaf in jax.tree_util.tree_leaves(got)]
        err = rel_err(sum(np.einsum("aoP,bqP->aboq", j, j) for j in heads), reference)
    elif part == "gradients":
        head = np.asarray(got[:CHECK_N], np.float64)
        err = rel_err(head @ head.T, expected)
    elif part == "gram":
        g64 = np.asarray(scaling_gradients(arch, n)[:CHECK_N], np.float64)
        err = rel_err(np.asarray(got)[:CHECK_N, :CHECK_N], g64 @ g64.T)
    elif part == "entk":
        assert got.shape == (n, n, o, o)
        err = rel_err(got[:CHECK_N, :CHECK_N], reference)
    else:
        assert got.shape == (n, n)
        err = rel_err(np.asarray(got)[:CHECK_N, :CHECK_N], expected)
    benchmark.extra_info["rel_err"] = err
    assert err < tolerance(), f"{part} on {arch} N={n} is off the reference by {err:.2e}"


# --------------------------------------------------------------------------- API overhead


@pytest.mark.parametrize("path", ["api", "compiled"])
@pytest.mark.parametrize("arch", sorted(NETWORKS))
def test_api_overhead(benchmark, arch, path):
    """pNTK (auto): the public call (checks, one fused NaN/inf reduction, cached plan) vs the
    bare compiled executable of ``kernels.prepare`` on the same inputs."""
    problem = grid_problem(arch, OUTPUTS[0])
    benchmark.group = f"api-{arch}-O{OUTPUTS[0]}-pntk"
    call = kernel_call("pntk", "auto", problem)
    record(benchmark, "api", "pntk", "auto", problem, call.resolved, call.compiled_bytes)
    benchmark.extra_info["path"] = path
    # many rounds: the difference of two medians a fraction of a millisecond apart
    got = run_benchmark(benchmark, call.run if path == "api" else call.bare, target_s=1.0, max_rounds=2000)
    check_against_reference(benchmark, "pntk", "auto", problem, got)
