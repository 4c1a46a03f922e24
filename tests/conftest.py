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

from suite import models  # noqa: E402

#: Relative tolerances for comparing two exact computations of the same kernel.
RTOL = {np.dtype("float32"): 2e-4, np.dtype("float64"): 1e-9}

#: Small versions of every registered architecture (widths keep each case under a second).
SMALL = {"mlp": {"width": 32, "depth": 2}, "cnn": {"width": 8, "depth": 2}, "resnet": {"width": 8, "depth": 1}}


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
