"""What works without neural-tangents: the suite's own kernels, ``prepare`` and the blocked
kernels, on networks written in plain jax (issue 13, items 3 and 4).

Every test here runs with neural-tangents hidden (as on a jax release where it does not
import), in ``nox -s tests`` and in ``nox -s tests_newjax``; they are marked ``without_nt``, so
reaching neural-tangents is a failure, never a skip. The oracle is central finite differences
of the network in float64, which uses no autodiff.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rel_err

from suite import _nt, blocked, kernels, models
from suite.errors import MemoryBudgetError
from suite.paths import ROOT

pytestmark = pytest.mark.without_nt

N_OUT = 3


@pytest.fixture(autouse=True)
def hide_neural_tangents(monkeypatch):
    monkeypatch.setattr(_nt, "nt", None)
    monkeypatch.setattr(_nt, "stax", None)
    monkeypatch.setattr(_nt, "IMPORT_ERROR", "ImportError: hidden by tests/test_without_nt.py")
    # models.from_config is cached: a network another test built in this worker would be
    # returned without reaching _nt.require().
    models.from_config.cache_clear()


# --------------------------------------------------------------------------- plain-jax networks


def mlp_apply(params, x):
    h = x.reshape(x.shape[0], -1)
    for w, b in params[:-1]:
        h = jnp.tanh(h @ w / jnp.sqrt(w.shape[0]) + b)
    w, b = params[-1]
    return h @ w / jnp.sqrt(w.shape[0]) + b


def mlp_params(seed=0, d=16, width=6):
    k = jax.random.split(jax.random.PRNGKey(seed), 6)
    dims = [(d, width), (width, width), (width, N_OUT)]
    return [(jax.random.normal(k[2 * i], s), 0.1 * jax.random.normal(k[2 * i + 1], (s[1],)))
            for i, s in enumerate(dims)]


def cnn_apply(params, x):
    w, b, v, c = params["conv"]["w"], params["conv"]["b"], params["dense"]["w"], params["dense"]["b"]
    h = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    h = jax.nn.relu(h / 3.0 + b)
    return h.mean(axis=(1, 2)) @ v / jnp.sqrt(v.shape[0]) + c


def cnn_params(seed=0, channels=4):
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    return {"conv": {"w": jax.random.normal(k[0], (3, 3, 1, channels)), "b": 0.1 * jax.random.normal(k[1], (channels,))},
            "dense": {"w": jax.random.normal(k[2], (channels, N_OUT)), "b": 0.1 * jax.random.normal(k[3], (N_OUT,))}}


NETWORKS = {"mlp": (mlp_apply, mlp_params), "cnn": (cnn_apply, cnn_params)}


def problem(name, n1=5, n2=4, dtype=jnp.float64):
    apply_fn, init = NETWORKS[name]
    params = jax.tree_util.tree_map(lambda a: a.astype(dtype), init())
    x = jax.random.normal(jax.random.PRNGKey(1), (n1 + n2, 4, 4, 1), dtype)
    return apply_fn, params, x[:n1], x[n1:]


def fd_jacobian(apply_fn, params, x, eps=1e-6):
    """(N, O, P) Jacobian by central differences in float64."""
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    flat = np.asarray(flat, np.float64)
    cols = []
    for i in range(flat.size):
        step = np.zeros_like(flat)
        step[i] = eps
        cols.append((np.asarray(apply_fn(unravel(flat + step), x)) - np.asarray(apply_fn(unravel(flat - step), x))) / (2 * eps))
    return np.stack(cols, axis=-1)


# --------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("implementation", ["jax", "auto"])
@pytest.mark.parametrize("net", sorted(NETWORKS))
def test_every_kernel_matches_finite_differences(net, implementation):
    apply_fn, params, x1, x2 = problem(net)
    j1, j2 = fd_jacobian(apply_fn, params, x1), fd_jacobian(apply_fn, params, x2)
    full = np.einsum("aoP,bqP->aboq", j1, j2)
    want = {
        "entk": full,
        "pntk": full.sum((2, 3)) / N_OUT,
        "trace_ntk": np.einsum("abii->ab", full) / N_OUT,
        "logit_ntk": full[:, :, 1, 1],
    }
    for kernel, expected in want.items():
        kw = {"index": 1} if kernel == "logit_ntk" else {}
        got = kernels.KERNELS[kernel].compute(apply_fn, params, x1, x2, implementation=implementation, **kw)
        assert rel_err(got, expected) < 1e-7, kernel
    # the random projection is v^T Theta v for some v: symmetric PSD on x1 with itself
    r = np.asarray(kernels.projected_ntk(apply_fn, params, x1, implementation=implementation, key=jax.random.PRNGKey(3)))
    assert np.allclose(r, r.T) and np.linalg.eigvalsh(r).min() > -1e-9 * np.abs(r).max()


def test_prepare_resolves_auto_to_the_jax_path_and_runs():
    apply_fn = lambda p, x: mlp_apply(p, x)  # noqa: E731 -- fresh: nothing cached for it
    _, params, x1, x2 = problem("mlp")
    assert kernels.available_implementations() == ("jax",)
    call = kernels.prepare("pntk", apply_fn, params, x1, x2)
    assert call.implementation == "jax"
    assert call.output_shape == (5, 4)
    np.testing.assert_allclose(np.asarray(call.run()), np.asarray(kernels.pntk(apply_fn, params, x1, x2, implementation="jax")))


def test_memory_guard_refuses_before_computing(monkeypatch):
    _, params, x1, _ = problem("mlp")
    monkeypatch.setenv("SUITE_MEMORY_BUDGET", "1kB")
    with pytest.raises(MemoryBudgetError, match=r"over the memory budget of 1\.0 kB"):
        kernels.entk(mlp_apply, params, x1, implementation="jax")


# --------------------------------------------------------------------------- blocked kernels


@pytest.mark.parametrize("net", sorted(NETWORKS))
def test_blocked_pntk_equals_the_direct_pntk(net, tmp_path):
    apply_fn, params, x1, x2 = problem(net, n1=7, n2=6)
    sym = blocked.pntk_blocked(apply_fn, params, x1, block_size=3, progress=False)
    cross = blocked.pntk_blocked(apply_fn, params, x1, x2, block_size=3, progress=False, out=tmp_path / "k.npy")
    assert rel_err(sym, kernels.pntk(apply_fn, params, x1, implementation="jax")) < 1e-9
    assert rel_err(cross, kernels.pntk(apply_fn, params, x1, x2, implementation="jax")) < 1e-9
    np.testing.assert_array_equal(np.load(tmp_path / "k.npy"), cross)


def test_blocked_entk_with_the_jax_path_equals_the_direct_entk():
    _, params, x1, x2 = problem("mlp", n1=5, n2=3)
    got = blocked.entk_blocked(mlp_apply, params, x1, x2, implementation="jax", block_size=2, progress=False)
    assert rel_err(got, kernels.entk(mlp_apply, params, x1, x2, implementation="jax")) < 1e-9


#: One process per host, as in the README's "Several hosts": jax.distributed, then each process
#: computes its band of rows of the kernel on its own devices (2 forced host devices here).
HOST = textwrap.dedent(
    """
    import sys
    import jax
    coordinator, n, i, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=n, process_id=i)
    import numpy as np
    sys.path.insert(0, "tests")
    from test_without_nt import mlp_apply, problem
    from suite import blocked
    from suite.errors import SuiteError
    assert len(jax.local_devices()) == 2 and len(jax.devices()) == 2 * n
    _, params, x, _ = problem("mlp", n1=9, n2=0)
    rows = np.array_split(np.arange(len(x)), jax.process_count())[jax.process_index()]
    blocked.pntk_blocked(mlp_apply, params, x[rows], x, block_size=3, progress=False,
                         out=f"{out}/pntk-rows-{jax.process_index()}.npy")
    try:
        blocked.pntk_blocked(mlp_apply, params, x[rows], x, progress=False, devices=jax.devices())
    except SuiteError as exc:
        print("refused:", exc)
    """
)


def test_blocked_pntk_on_two_hosts_with_two_devices_each(tmp_path):
    """Two processes joined by jax.distributed (one per host), each sharding its rows over 2
    devices, give the one-device kernel; other processes' devices are refused clearly."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    procs = [subprocess.Popen([sys.executable, "-c", HOST, f"127.0.0.1:{port}", "2", str(i), str(tmp_path)],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outputs = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert "refused:" in out and "belong to other processes" in out and "jax.process_index()" in out
    got = np.concatenate([np.load(tmp_path / f"pntk-rows-{i}.npy") for i in range(2)])
    _, params, x, _ = problem("mlp", n1=9, n2=0)
    assert got.shape == (9, 9)
    assert rel_err(got, kernels.pntk(mlp_apply, params, x, implementation="jax")) < 1e-9


# --------------------------------------------------------------------------- what needs neural-tangents


def test_what_needs_neural_tangents_says_what_works_and_how_to_install():
    with pytest.raises(_nt.NeuralTangentsUnavailable) as err:
        models.build("mlp", width=8)
    text = str(err.value)
    assert "hidden by tests/test_without_nt.py" in text  # why it is missing
    assert "implementation='jax' or 'auto'" in text and "pntk_blocked" in text  # what works
    assert "suite.models.build" in text and "infinite-width kernels" in text and "every experiment" in text
    assert "pip install --no-deps neural-tangents==0.6.5" in text or "pip install 'jax[cpu]==0.5.3'" in text
    _, params, x1, _ = problem("mlp")
    with pytest.raises(ImportError, match="could not be imported"):
        kernels.entk(mlp_apply, params, x1, implementation="structured_derivatives")
