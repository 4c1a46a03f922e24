"""The blocked pNTK (suite/blocked.py): equal to the direct pNTK, bounded, atomic, multi-device.

Exactness reference: ``kernels.pntk(..., implementation="jax")`` computes the same quantity
(the NTK of g = (1/sqrt O) sum_i f_i, THEORY.md §1) in one shot, so the two must agree to
float rounding (RTOL) for any blocking.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import RTOL, rel_err, small_problem

from suite import blocked, kernels
from suite.errors import MemoryBudgetError, SuiteError
from suite.paths import ROOT

ARCHS = ("mlp", "cnn")


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("block_size", [3, None])
def test_blocked_equals_direct_pntk(arch, block_size):
    """N1 = 7, N2 = 6 and B = 3 (not dividing either): padded last blocks, mirrored tiles."""
    model, params, x1, x2 = small_problem(arch, n=7)
    direct_sym = np.asarray(kernels.pntk(model.apply, params, x1, implementation="jax"))
    direct = np.asarray(kernels.pntk(model.apply, params, x1, x2, implementation="jax"))

    sym = blocked.pntk_blocked(model.apply, params, x1, block_size=block_size, progress=False)
    cross = blocked.pntk_blocked(model.apply, params, x1, x2, block_size=block_size, progress=False)

    assert isinstance(sym, np.ndarray) and sym.shape == (7, 7) and sym.dtype == np.float64
    assert cross.shape == (7, 6)
    assert rel_err(sym, direct_sym) < RTOL[np.dtype("float64")]
    assert rel_err(cross, direct) < RTOL[np.dtype("float64")]
    np.testing.assert_array_equal(sym, sym.T)  # mirrored: exactly symmetric


def test_float32_dtype_argument_matches_float32_direct():
    model, params, x1, _ = small_problem("mlp", n=7)
    got = blocked.pntk_blocked(model.apply, params, x1, block_size=2, dtype=np.float32, progress=False)
    p32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), params)
    want = np.asarray(kernels.pntk(model.apply, p32, x1.astype(jnp.float32), implementation="jax"))
    assert got.dtype == np.float32
    assert rel_err(got, want) < RTOL[np.dtype("float32")]


def test_memmap_output_equals_in_memory_and_leaves_no_temp_file(tmp_path):
    model, params, x1, x2 = small_problem("cnn", n=7)
    in_memory = blocked.pntk_blocked(model.apply, params, x1, x2, block_size=3, progress=False)
    path = tmp_path / "kernel.npy"
    on_disk = blocked.pntk_blocked(model.apply, params, x1, x2, block_size=3, out=path, progress=False)
    assert isinstance(on_disk, np.memmap)
    np.testing.assert_array_equal(np.asarray(on_disk), in_memory)
    np.testing.assert_array_equal(np.load(path), in_memory)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kernel.npy"]


def test_interrupted_run_leaves_nothing_at_out(tmp_path, monkeypatch):
    """Atomic output: a failure during the tiles must not leave a half-written kernel."""
    model, params, x1, _ = small_problem("mlp", n=7)

    def fail_midway(g1, g2, result, *args, **kwargs):
        result[:3] = 1.0
        raise RuntimeError("interrupted")

    monkeypatch.setattr(blocked, "_tiles", fail_midway)
    with pytest.raises(RuntimeError, match="interrupted"):
        blocked.pntk_blocked(model.apply, params, x1, block_size=3, out=tmp_path / "k.npy", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_gradients_spill_to_disk_and_are_cleaned_up(tmp_path):
    """Gradients over the host budget go to a temporary memmap beside ``out``, removed after."""
    model, params, x1, _ = small_problem("mlp", n=7)
    p = sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(params))
    plan = blocked.plan_blocks(7, None, p, 8, budget=6 * p * 8, block_size=2, to_disk=True)
    assert plan.spill_gradients  # 7 gradient rows exceed a 6-row host budget
    got = blocked.pntk_blocked(
        model.apply, params, x1, block_size=2, memory_budget=6 * p * 8, out=tmp_path / "k.npy", progress=False
    )
    want = np.asarray(kernels.pntk(model.apply, params, x1, implementation="jax"))
    assert rel_err(got, want) < RTOL[np.dtype("float64")]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["k.npy"]


def test_gradients_are_computed_once_per_block():
    """Count executed per-example forward passes with a callback inside apply_fn: every
    example's gradient is computed exactly once (plus padding of the last block), not once
    per tile (which would be 2x-3x more here)."""
    model, params, x1, x2 = small_problem("mlp", n=7)
    calls: list[int] = []

    def counted(p, x):
        jax.debug.callback(lambda v: calls.append(v.shape[0]), x[:, 0, 0, 0])
        return model.apply(p, x)

    blocked.pntk_blocked(counted, params, x1, block_size=3, progress=False)
    assert len(calls) == 3 * 3  # 3 blocks of 3 rows (the last padded), 6 tiles
    calls.clear()
    blocked.pntk_blocked(counted, params, x1, x2, block_size=3, progress=False)
    assert len(calls) == 3 * 3 + 2 * 3  # G1 and G2 once each, 6 tiles


def test_automatic_block_size_respects_the_budget():
    p, s = 10_000, 4
    budget = 2_000_000
    plan = blocked.plan_blocks(5000, None, p, s, budget=budget, to_disk=True)
    assert plan.device_bytes <= budget
    assert blocked._device_bytes(plan.block_size + 1, p, s) > budget  # the largest that fits
    assert plan.n_tiles == plan.blocks1 * (plan.blocks1 + 1) // 2
    assert blocked.plan_blocks(7, 5, p, s, budget=10**9).block_size == 7  # capped at max(N1, N2)
    # two devices: blocks padded to a multiple of the device count
    assert blocked.plan_blocks(7, None, p, s, budget=10**9, n_devices=2, block_size=3).padded_block == 4


def test_memory_budget_errors_are_clear():
    model, params, x1, _ = small_problem("mlp", n=7)
    with pytest.raises(MemoryBudgetError, match="even with one example"):
        blocked.pntk_blocked(model.apply, params, x1, memory_budget=1000, progress=False)
    with pytest.raises(MemoryBudgetError, match="block_size=3"):
        blocked.plan_blocks(100, None, 10_000, 4, budget=200_000, block_size=3)
    with pytest.raises(MemoryBudgetError, match="out="):
        blocked.plan_blocks(100_000, None, 10, 4, budget=10**9)  # 40 GB result in RAM


def test_invalid_inputs_reuse_kernel_validation(tmp_path):
    model, params, x1, _ = small_problem("mlp", n=7)
    with pytest.raises(SuiteError, match="NaN"):
        blocked.pntk_blocked(model.apply, params, np.full((3, 6, 6, 1), np.nan), progress=False)
    with pytest.raises(SuiteError, match="same feature shape"):
        blocked.pntk_blocked(model.apply, params, x1, np.zeros((2, 5, 5, 1)), progress=False)
    with pytest.raises(SuiteError, match="positive integer"):
        blocked.pntk_blocked(model.apply, params, x1, block_size=0, progress=False)
    with pytest.raises(SuiteError, match="does not exist"):
        blocked.pntk_blocked(model.apply, params, x1, out=tmp_path / "no" / "k.npy", progress=False)


def test_gram_cost_counts_symmetric_half():
    sym, full = blocked.gram_cost(100, None, 50), blocked.gram_cost(100, 100, 50)
    assert full["flops"] == 2 * 100 * 100 * 50
    assert sym["flops"] == 100 * 101 * 50


CHILD = textwrap.dedent(
    """
    import json, sys
    import jax
    jax.config.update("jax_enable_x64", True)  # as in the parent (conftest), for equal float32 rounding
    import jax.numpy as jnp
    import numpy as np
    from suite import blocked, models
    out, results = sys.argv[1], {"devices": jax.device_count()}
    for arch, kw in (("mlp", {"width": 32, "depth": 2}), ("cnn", {"width": 8, "depth": 2})):
        model = models.build(arch, n_outputs=3, **kw)
        params = models.cast_params(model.init(jax.random.PRNGKey(0), (6, 6, 1)), jnp.float32)
        x = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (13, 6, 6, 1), jnp.float32))
        for b in (3, 4):
            np.save(f"{out}/{arch}-b{b}-sym.npy", blocked.pntk_blocked(model.apply, params, x[:7], block_size=b, progress=False))
            np.save(f"{out}/{arch}-b{b}-x2.npy", blocked.pntk_blocked(model.apply, params, x[:7], x[7:], block_size=b, progress=False))
    print(json.dumps(results))
    """
)


@pytest.mark.needs_nt  # a subprocess builds stax networks (tests/test_without_nt.py: plain jax)
def test_two_devices_equal_one_device(tmp_path):
    """Blocks sharded over 2 (forced host) devices give the 1-device kernel. The CNN case
    guards against jit's SPMD partitioner, which gave wrong per-example conv gradients on the
    second device (jax 0.5.3); blocks of 3 rows are padded to 4, blocks of 4 are not."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["devices"] == 2

    from suite import models

    for arch, kw in (("mlp", {"width": 32, "depth": 2}), ("cnn", {"width": 8, "depth": 2})):
        model = models.build(arch, n_outputs=3, **kw)
        params = models.cast_params(model.init(jax.random.PRNGKey(0), (6, 6, 1)), jnp.float32)
        x = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (13, 6, 6, 1), jnp.float32))
        one = jax.devices()[:1]
        for b in (3, 4):
            sym = blocked.pntk_blocked(model.apply, params, x[:7], block_size=b, progress=False, devices=one)
            cross = blocked.pntk_blocked(model.apply, params, x[:7], x[7:], block_size=b, progress=False, devices=one)
            for name, want in (("sym", sym), ("x2", cross)):
                got = np.load(tmp_path / f"{arch}-b{b}-{name}.npy")
                assert got.shape == want.shape
                assert rel_err(got, want) < 1e-6, (arch, b, name)


# --------------------------------------------------------------------------- blocked eNTK
# Reference: the unblocked kernels.entk, J(x1) J(x2)^T (THEORY.md §1, paper eq. 1), in one call.


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("block_size", [3, 4, None])
def test_blocked_entk_equals_direct_entk(arch, block_size):
    """N1 = 7, N2 = 6: tiles of 3 and 4 divide neither (padded last tiles), None fits all."""
    model, params, x1, x2 = small_problem(arch, n=7)
    direct_sym = np.asarray(kernels.entk(model.apply, params, x1, implementation="structured_derivatives"))
    direct = np.asarray(kernels.entk(model.apply, params, x1, x2, implementation="structured_derivatives"))

    sym = blocked.entk_blocked(model.apply, params, x1, block_size=block_size, progress=False)
    cross = blocked.entk_blocked(model.apply, params, x1, x2, block_size=block_size, progress=False)

    assert isinstance(sym, np.ndarray) and sym.shape == (7, 7, 3, 3) and sym.dtype == np.float64
    assert cross.shape == (7, 6, 3, 3) and cross.dtype == np.float64
    assert rel_err(sym, direct_sym) < RTOL[np.dtype("float64")]
    assert rel_err(cross, direct) < RTOL[np.dtype("float64")]
    matrix = kernels.as_matrix(sym)
    np.testing.assert_array_equal(matrix, matrix.T)  # mirrored tiles: exactly symmetric


def test_blocked_entk_other_implementation_and_float32():
    model, params, x1, x2 = small_problem("cnn", n=5)
    p32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), params)
    x1, x2 = x1.astype(jnp.float32), x2.astype(jnp.float32)
    want = np.asarray(kernels.entk(model.apply, p32, x2, x1, implementation="jax"))
    got = blocked.entk_blocked(model.apply, p32, x2, x1, block_size=2, implementation="jax", progress=False)
    assert got.dtype == np.float32 and got.shape == (4, 5, 3, 3)
    assert rel_err(got, want) < RTOL[np.dtype("float32")]


def test_blocked_entk_computes_only_upper_tiles_when_symmetric(monkeypatch):
    """N = 7, B = 3: 3 tiles per side, so 6 tile calls (j >= i) instead of 9; with x2 of
    6 examples, 3 x 2 calls. Counted at Prepared.run (the fitting only compiles)."""
    model, params, x1, x2 = small_problem("mlp", n=7)
    runs: list[bool] = []
    real_run = kernels.Prepared.run

    def counted(self):
        runs.append(self.args[1] is None)
        return real_run(self)

    monkeypatch.setattr(kernels.Prepared, "run", counted)
    blocked.entk_blocked(model.apply, params, x1, block_size=3, progress=False)
    assert len(runs) == 6 and sum(runs) == 3  # 3 diagonal tiles entk(x_i), 3 off-diagonal
    runs.clear()
    blocked.entk_blocked(model.apply, params, x1, x2, block_size=3, progress=False)
    assert len(runs) == 3 * 2 and not any(runs)


def test_blocked_entk_memmap_output_is_atomic(tmp_path, monkeypatch):
    model, params, x1, x2 = small_problem("cnn", n=7)
    in_memory = blocked.entk_blocked(model.apply, params, x1, x2, block_size=3, progress=False)
    path = tmp_path / "entk.npy"
    on_disk = blocked.entk_blocked(model.apply, params, x1, x2, block_size=3, out=path, progress=False)
    assert isinstance(on_disk, np.memmap)
    np.testing.assert_array_equal(np.asarray(on_disk), in_memory)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entk.npy"]

    def fail_midway(apply_fn, params, x1h, x2h, result, *args, **kwargs):
        result[:3] = 1.0
        raise RuntimeError("interrupted")

    monkeypatch.setattr(blocked, "_entk_tiles", fail_midway)
    with pytest.raises(RuntimeError, match="interrupted"):
        blocked.entk_blocked(model.apply, params, x1, block_size=3, out=tmp_path / "k.npy", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entk.npy"]


def test_blocked_entk_automatic_tiles_fit_the_budget():
    """MLP (7 inputs, float64, structured derivatives): the unblocked eNTK's compiled call
    takes about 50 kB, a tile of 4 x 4 examples about 28 kB. Under a 30 kB budget the
    automatic tile is the largest that fits (evened out: 4 + 3), and the result is exact."""
    model, params, x1, _ = small_problem("mlp", n=7)
    problem = kernels.validate(model.apply, params, x1)[2]
    tiles = blocked._entk_fit(model.apply, params, np.asarray(x1), None, problem, 30_000, None,
                              "structured_derivatives")
    assert tiles.compiled_bytes is not None and tiles.compiled_bytes <= 30_000
    assert (tiles.block1, tiles.tiles1, tiles.n_tiles) == (4, 2, 3)
    got = blocked.entk_blocked(model.apply, params, x1, memory_budget=30_000, progress=False)
    want = np.asarray(kernels.entk(model.apply, params, x1, implementation="structured_derivatives"))
    assert rel_err(got, want) < RTOL[np.dtype("float64")]


def test_blocked_entk_errors_are_clear(tmp_path):
    model, params, x1, x2 = small_problem("mlp", n=7)
    with pytest.raises(SuiteError, match="positive integer"):
        blocked.entk_blocked(model.apply, params, x1, block_size=0, progress=False)
    with pytest.raises(SuiteError, match="unknown implementation"):
        blocked.entk_blocked(model.apply, params, x1, implementation="fast", progress=False)
    with pytest.raises(SuiteError, match="does not exist"):
        blocked.entk_blocked(model.apply, params, x1, out=tmp_path / "no" / "k.npy", progress=False)
    with pytest.raises(SuiteError, match="NaN"):
        blocked.entk_blocked(model.apply, params, np.full((3, 6, 6, 1), np.nan), progress=False)
    # the (21 x 21) float64 result, 3.5 kB, over a 1 kB budget in RAM: the fix is out=
    with pytest.raises(MemoryBudgetError, match="out="):
        blocked.entk_blocked(model.apply, params, x1, memory_budget=1000, progress=False)
    # on disk, but not even one example's tile fits: the fix names implementation and budget
    with pytest.raises(MemoryBudgetError, match=r"even a tile of one example.*SUITE_MEMORY_BUDGET"):
        blocked.entk_blocked(model.apply, params, x1, memory_budget=1000, out=tmp_path / "k.npy", progress=False)
    with pytest.raises(MemoryBudgetError, match=r"block_size=4.*smaller block_size"):
        blocked.entk_blocked(model.apply, params, x1, x2, block_size=4, memory_budget=20_000, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_experiments_fall_back_to_the_blocked_entk_only_when_refused(monkeypatch):
    """``common.exact_entk``: bit-identical to the unblocked kernel when it fits (the
    committed results' path); the blocked kernel where SUITE_MEMORY_BUDGET refuses it.
    Unblocked eNTK of 6 inputs ~45 kB, trace ~37 kB: a 40 kB budget refuses the eNTK alone
    (also once its executable is cached under the default budget: the check is redone), and
    alternatives times the blocked eNTK instead."""
    from suite.experiments import alternatives, common

    model, params, x1, _ = small_problem("mlp", n=6)
    impl = kernels.reproducible_implementation()
    direct = np.asarray(kernels.entk(model.apply, params, x1, implementation=impl))
    np.testing.assert_array_equal(np.asarray(common.exact_entk(model.apply, params, x1)), direct)

    monkeypatch.setenv("SUITE_MEMORY_BUDGET", "40000")
    with pytest.raises(MemoryBudgetError):
        kernels.entk(model.apply, params, x1, implementation=impl)
    fallback = common.exact_entk(model.apply, params, x1)
    assert isinstance(fallback, np.ndarray) and fallback.shape == direct.shape
    assert rel_err(fallback, direct) < RTOL[np.dtype("float64")]

    calls = alternatives.timed_calls(model.apply, params, x1, impl, seed=0)
    assert isinstance(calls["entk"], alternatives._BlockedCall)
    assert rel_err(calls["entk"](), direct) < RTOL[np.dtype("float64")]
    own = alternatives.own_kernel("entk", model.apply, params, x1, impl, seed=0)
    assert rel_err(own, direct) < RTOL[np.dtype("float64")]
