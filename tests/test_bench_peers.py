"""torch.func's vmap(jacrev) recipe as a peer of the public kernels (``nox -s bench_peers``).

The same networks (``NETWORKS`` of ``test_bench_kernels``: an MLP, a CNN and a ResNet in the
NTK parameterization), the same float32 parameters (copied from the jax model) and the same
inputs, written as torch functions; the eNTK and pNTK by the recipe of PyTorch's "Neural
Tangent Kernels" tutorial: per-example Jacobians by ``vmap(jacrev(f))`` and their contraction
(the pNTK on the summed function (1/sqrt O) sum_i f_i). The groups are those of
``test_bench_kernels``, so ``python -m suite.bench summarize RUN.json PEERS.json`` sets each
torch row beside the public call. Each case checks its result against the suite's reference
eNTK, which also proves the torch network is the same function.

Skipped when torch is not installed (``nox -s bench_peers`` installs the CPU build).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import pytest
from conftest import rel_err

torch = pytest.importorskip("torch", reason="torch is not installed (nox -s bench_peers installs its CPU build)")

import jax  # noqa: E402
from test_bench_kernels import (  # noqa: E402
    CHECK_N,
    MAX_GRAM_FLOPS,
    NETWORKS,
    OUTPUTS,
    SCALING_ENTK_MAX_N,
    SCALING_N,
    Problem,
    grid_problem,
    machine_info,
    reference_entk,
    run_benchmark,
    scaling_problem,
    scaling_reference,
    tolerance,
)

from suite import kernels  # noqa: E402

IMPLEMENTATION = "torch-vmap-jacrev"
#: N of the scaling groups that get a torch peer (the eNTK up to SCALING_ENTK_MAX_N).
PEER_SCALING_N = (16, 64, 256)


# --------------------------------------------------------------------------- the networks in torch


def _torch_params(params: Any) -> tuple[Any, ...]:
    """The jax parameter leaves (W, b of each Dense / Conv in execution order) as torch
    tensors; conv kernels HWIO -> OIHW, biases flattened."""
    out = []
    for leaf in jax.tree_util.tree_leaves(params):
        a = np.asarray(leaf, np.float32)
        if a.ndim == 4:
            a = a.transpose(3, 2, 0, 1)
        elif a.ndim > 1 and a.shape[:-1] == (1,) * (a.ndim - 1):
            a = a.reshape(-1)
        out.append(torch.from_numpy(np.array(a, copy=True)))  # writable, contiguous
    return tuple(out)


def _forward(arch: str, cfg: Any) -> Callable[[tuple[Any, ...], Any], Any]:
    """f(params, x) of suite.models' ``arch`` (stax, NTK parameterization) in torch:
    Dense: W_std / sqrt(fan_in) x @ W + b_std b; Conv 3x3 SAME likewise (fan_in = 9 C_in)."""
    import torch.nn.functional as F

    w_std, b_std = cfg.W_std, cfg.b_std or 0.0

    def dense(h, w, b):
        return (w_std / math.sqrt(w.shape[0])) * (h @ w) + b_std * b

    def conv(h, w, b):
        fan_in = w.shape[1] * w.shape[2] * w.shape[3]
        return (w_std / math.sqrt(fan_in)) * F.conv2d(h, w, padding="same") + b_std * b.reshape(1, -1, 1, 1)

    def mlp(p, x):
        h = x.reshape(x.shape[0], -1)  # NHWC flattened as stax.Flatten does
        for i in range(cfg.depth):
            h = torch.relu(dense(h, p[2 * i], p[2 * i + 1]))
        return dense(h, p[-2], p[-1])

    def cnn(p, x):
        h = x.permute(0, 3, 1, 2)
        for i in range(cfg.depth):
            h = torch.relu(conv(h, p[2 * i], p[2 * i + 1]))
        return dense(h.mean(dim=(2, 3)), p[-2], p[-1])

    def resnet(p, x):
        h = conv(x.permute(0, 3, 1, 2), p[0], p[1])
        for i in range(cfg.depth):  # each block: relu, conv, relu, conv, plus the identity
            w1, b1, w2, b2 = p[2 + 4 * i: 6 + 4 * i]
            h = h + conv(torch.relu(conv(torch.relu(h), w1, b1)), w2, b2)
        return dense(torch.relu(h).mean(dim=(2, 3)), p[-2], p[-1])

    return {"mlp": mlp, "cnn": cnn, "resnet": resnet}[arch]


def torch_call(kernel: str, problem: Problem) -> Callable[[], Any]:
    """The tutorial's recipe for ``kernel`` (entk or pntk) on ``problem``, x2 = x1."""
    from torch.func import jacrev, vmap

    cfg = problem.model.config
    forward = _forward(problem.arch, cfg)
    params = _torch_params(problem.params)
    x = torch.from_numpy(np.array(problem.x1, np.float32, copy=True))
    o = cfg.n_outputs

    def f_single(p, xi):
        return forward(p, xi.unsqueeze(0)).squeeze(0)

    if kernel == "entk":
        def run():
            jac = vmap(jacrev(f_single), (None, 0))(params, x)
            jac = [j.flatten(2) for j in jac]
            return sum(torch.einsum("Naf,Mbf->NMab", j, j) for j in jac)
    else:
        def f_sum(p, xi):
            return f_single(p, xi).sum() / math.sqrt(o)

        def run():
            grads = vmap(jacrev(f_sum), (None, 0))(params, x)
            grads = [g.flatten(1) for g in grads]
            return sum(g @ g.T for g in grads)

    return run


def _record(benchmark: Any, bench: str, kernel: str, problem: Problem) -> None:
    benchmark.extra_info.update(
        bench=bench, model=problem.model_id, arch=problem.arch, width=problem.width, depth=problem.depth,
        O=problem.model.config.n_outputs, N=problem.n, n_params=problem.n_params, kernel=kernel,
        implementation=IMPLEMENTATION, resolved_implementation=IMPLEMENTATION, peer="torch",
        torch=torch.__version__, torch_threads=torch.get_num_threads(), **machine_info(),
    )


# --------------------------------------------------------------------------- benchmarks


def _grid() -> list[Any]:
    cases = []
    for arch, cfg in NETWORKS.items():
        for o in OUTPUTS:
            for kernel in ("pntk", "entk"):
                case_id = f"{arch}-w{cfg['width']:04d}-d{cfg['depth']:02d}-O{o}-{kernel}-torch"
                marks = [] if (arch, o) == ("cnn", 10) else [pytest.mark.slow]
                cases.append(pytest.param(arch, o, kernel, id=case_id, marks=marks))
    return cases


@pytest.mark.parametrize(("arch", "n_outputs", "kernel"), _grid())
def test_torch_kernel(benchmark, arch, n_outputs, kernel):
    problem = grid_problem(arch, n_outputs)
    benchmark.group = f"{arch}-O{n_outputs}-{kernel}"
    _record(benchmark, "kernels", kernel, problem)
    got = run_benchmark(benchmark, torch_call(kernel, problem)).numpy()
    expected = kernels.KERNELS[kernel].from_entk(reference_entk(problem))
    err = rel_err(got, expected)
    benchmark.extra_info["rel_err"] = err
    assert err < tolerance(), f"torch {kernel} on {arch} O={n_outputs} is off the reference by {err:.2e}"


def _scaling() -> list[Any]:
    cases = []
    for arch in NETWORKS:
        for n in PEER_SCALING_N:
            if n not in SCALING_N[arch]:
                continue
            for kernel in ("pntk", "entk"):
                if kernel == "entk" and n > SCALING_ENTK_MAX_N:
                    continue
                cases.append(pytest.param(arch, n, kernel, id=f"{arch}-N{n:04d}-{kernel}-torch",
                                          marks=[pytest.mark.slow]))
    return cases


@cache
def _n_params(arch: str) -> int:
    return grid_problem(arch, OUTPUTS[0]).n_params


@pytest.mark.parametrize(("arch", "n", "kernel"), _scaling())
def test_torch_scaling(benchmark, arch, n, kernel):
    o = OUTPUTS[0]
    flops = 2 * (n * o) ** 2 * _n_params(arch)
    if kernel == "entk" and flops > MAX_GRAM_FLOPS:
        pytest.skip(f"the recipe's (N O)^2 Gram is {flops:.1e} flops (> {MAX_GRAM_FLOPS:.0e})")
    problem = scaling_problem(arch, n)
    benchmark.group = f"scaling-{arch}-N{n:04d}"
    _record(benchmark, "scaling", kernel, problem)
    got = run_benchmark(benchmark, torch_call(kernel, problem)).numpy()
    reference = scaling_reference(arch, n)
    want = reference if kernel == "entk" else kernels.KERNELS["pntk"].from_entk(reference)
    err = rel_err(got[:CHECK_N, :CHECK_N], want)
    benchmark.extra_info["rel_err"] = err
    assert err < tolerance(), f"torch {kernel} on {arch} N={n} is off the reference by {err:.2e}"
