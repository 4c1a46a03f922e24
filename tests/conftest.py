"""Shared fixtures: float64 available everywhere, dtype-keyed tolerances, tiny networks."""

from __future__ import annotations

import os

# Keep the fast suite on the CPU and quiet; float64 is enabled so that float64 tests can run,
# and float32 tests cast their inputs and parameters explicitly.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import jax.numpy as jnp
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

from suite import _nt, models  # noqa: E402

# --------------------------------------------------------------------------- without neural-tangents
#
# ``nox -s tests_newjax`` runs this suite on the newest jax, where neural-tangents does not import.
# A test that needs it is skipped there with the reason: either it is marked ``needs_nt`` (its
# assertions assume neural-tangents, e.g. auto's candidate list), or it reaches
# ``suite._nt.require()`` (models.build, the infinite kernels, the neural-tangents
# implementations, experiments), which raises NeuralTangentsUnavailable. Tests marked
# ``without_nt`` must work without it: for them that error stays a failure.

NT_SKIP_REASON = f"needs neural-tangents, which does not import here ({_nt.IMPORT_ERROR})"


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_nt: needs neural-tangents (skipped where it does not import)")
    config.addinivalue_line("markers", "without_nt: must pass without neural-tangents (never skipped for it)")


def pytest_collection_modifyitems(config, items):
    if _nt.available():
        return
    for item in items:
        if item.get_closest_marker("needs_nt"):
            item.add_marker(pytest.mark.skip(reason=NT_SKIP_REASON))


def _skip_when_nt_is_missing(item):
    """Run a test phase; turn neural-tangents' absence into a skip unless the test is ``without_nt``."""
    try:
        return (yield)
    except _nt.NeuralTangentsUnavailable:
        if _nt.available() or item.get_closest_marker("without_nt"):
            raise
        pytest.skip(NT_SKIP_REASON)


pytest_runtest_setup = pytest.hookimpl(wrapper=True)(_skip_when_nt_is_missing)
pytest_runtest_call = pytest.hookimpl(wrapper=True)(_skip_when_nt_is_missing)

#: Relative tolerances for comparing two exact computations of the same kernel.
RTOL = {np.dtype("float32"): 2e-4, np.dtype("float64"): 1e-9}

#: Small versions of every registered architecture (widths keep each case under a second).
SMALL = {"mlp": {"width": 32, "depth": 2}, "cnn": {"width": 8, "depth": 2}, "resnet": {"width": 8, "depth": 1},
         "wrn": {"width": 4, "depth": 1}}


def rel_err(a, b) -> float:
    """Relative Frobenius distance ||a - b|| / ||b||."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def small_problem(arch: str, dtype=jnp.float64, n: int = 4, n_outputs: int = 3, seed: int = 0):
    """(model, params, x1, x2) for a tiny network of ``arch`` on 6x6x1 images."""
    model = models.build(arch, n_outputs=n_outputs, **SMALL[arch])
    params = models.cast_params(model.init(jax.random.PRNGKey(seed), (6, 6, 1)), dtype)
    x = jax.random.normal(jax.random.PRNGKey(seed + 1), (2 * n - 1, 6, 6, 1), dtype)
    return model, params, x[:n], x[n:]


@pytest.fixture(params=sorted(models.ARCHS))
def arch(request) -> str:
    return request.param
