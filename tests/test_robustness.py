"""Robustness: grid-file errors, interruption (SIGINT, SIGKILL) and resume, reproducibility
across runs and worker processes, and kernel properties on random networks (hypothesis)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suite import kernels, runner
from suite.errors import SuiteError
from suite.experiments import EXPERIMENTS, load_grid_file

TINY_TOML = """
[grid]
archs = ["mlp"]
depths = [1]
widths = [8, 16, 32, 64]
seeds = 2
[settings]
n_inputs = 6
n_outputs = 3
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def tiny_configs(tmp_path: Path):
    return EXPERIMENTS["convergence"].custom_grid(load_grid_file(write(tmp_path, "tiny.toml", TINY_TOML)))


# --------------------------------------------------------------------------- grid files


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[grid\nwidths = [", "is not valid TOML"),
        ("[settings]\nn_inputs = 3\n", r"needs a \[grid\] table"),
        (TINY_TOML + "[extra]\nx = 1\n", r"unknown section\(s\) \['extra'\]"),
        ('[grid]\narchs = ["mlp"]\ndepths = [1]\nseeds = 2\n', r"missing \['widths'\]"),
        ('[grid]\narchs = ["mlp"]\ndepths = [1]\nwidths = [8, 16]\nseeds = 2\n', "at least 3 distinct widths"),
        (TINY_TOML.replace("n_outputs = 3", "n_output = 3"), r"unknown setting\(s\) \['n_output'\]"),
        (TINY_TOML.replace('"mlp"', '"vit"'), "unknown architecture 'vit'"),
        (TINY_TOML.replace("[8, 16, 32, 64]", "[0, 16, 32]"), "width must be a positive integer"),
        (TINY_TOML.replace("widths = [8, 16, 32, 64]", "widths = {cnn = [8, 16, 32]}"), "no entry for arch 'mlp'"),
    ],
    ids=["malformed", "no-grid", "extra-section", "missing-key", "two-widths", "bad-setting", "bad-arch", "width-0", "per-arch"],
)
def test_bad_grid_files_get_clear_errors(tmp_path, text, match):
    with pytest.raises(SuiteError, match=match):
        EXPERIMENTS["convergence"].custom_grid(load_grid_file(write(tmp_path, "g.toml", text)))


def test_unreadable_grid_file(tmp_path):
    with pytest.raises(SuiteError, match="cannot read grid file"):
        load_grid_file(tmp_path / "missing.toml")
    with pytest.raises(SuiteError, match="is not valid JSON"):
        load_grid_file(write(tmp_path, "g.json", "{not json"))


def test_grid_file_expands_per_arch_tables(tmp_path):
    text = TINY_TOML.replace('archs = ["mlp"]', 'archs = ["mlp", "cnn"]').replace(
        "widths = [8, 16, 32, 64]", "widths = {mlp = [8, 16, 32], cnn = [4, 8, 16, 32]}"
    )
    configs = EXPERIMENTS["convergence"].custom_grid(load_grid_file(write(tmp_path, "g.toml", text)))
    assert len(configs) == (3 + 4) * 2
    assert {c.n_inputs for c in configs} == {6}


# --------------------------------------------------------------------------- reproducibility


def _values(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=["seconds"]).sort_values(["case_key", "kernel", "metric"]).reset_index(drop=True)


def test_two_runs_and_two_workers_are_bit_identical(tmp_path):
    configs = tiny_configs(tmp_path)[:4]
    one = runner.run_experiment("convergence", "t", out=tmp_path / "a", configs=configs, progress=False)
    again = runner.run_experiment("convergence", "t", out=tmp_path / "b", configs=configs, progress=False)
    two = runner.run_experiment("convergence", "t", out=tmp_path / "c", configs=configs, progress=False, jobs=2)
    pd.testing.assert_frame_equal(_values(one), _values(again), check_exact=True)
    pd.testing.assert_frame_equal(_values(one), _values(two), check_exact=True)


# --------------------------------------------------------------------------- interruption


def _cli(grid: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "suite", "run", "convergence", "--grid-file", str(grid), "--out", str(out), "--no-progress"]


@pytest.mark.needs_nt  # subprocesses run an experiment
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_killed_runs_resume_to_the_uninterrupted_result(tmp_path, sig):
    grid = write(tmp_path, "tiny.toml", TINY_TOML)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    reference = subprocess.run(_cli(grid, tmp_path / "ref"), env=env, capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stderr
    rng = random.Random(1234)
    out = tmp_path / "killed"
    interrupted = 0
    sidecar = out / "data" / "convergence.json"
    for _ in range(3):
        before = sidecar.stat().st_mtime_ns if sidecar.exists() else None
        proc = subprocess.Popen(_cli(grid, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # Signal once the run has started its cases (it rewrites its sidecar first), at a random
        # point after: a fixed delay lands in the imports on a loaded machine, where a SIGINT
        # aborts inside jaxlib's C++ import (SIGABRT), before the CLI's handler exists.
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if sidecar.exists() and sidecar.stat().st_mtime_ns != before:
                break
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 2.0))
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        if proc.returncode == 0:
            continue  # finished before the signal
        interrupted += 1
        if sig == signal.SIGINT and proc.returncode == 130:
            assert "rerun the same command to resume" in err
        elif sig == signal.SIGINT:
            # interrupted while Python was still starting up, before the CLI's handler existed
            assert proc.returncode == -signal.SIGINT, err
        data = out / "data"
        assert not [p for p in data.glob(".*") if p.is_file()], "a temporary file was left behind"
        if (data / "convergence.csv").exists():
            pd.read_csv(data / "convergence.csv")  # never half-written
    assert interrupted >= 1, "no run was interrupted: the test did not exercise resume"
    final = subprocess.run(_cli(grid, out), env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    got = pd.read_csv(out / "data" / "convergence.csv")
    want = pd.read_csv(tmp_path / "ref" / "data" / "convergence.csv")
    pd.testing.assert_frame_equal(_values(got), _values(want), check_exact=True)


# --------------------------------------------------------------------------- kernel properties


def _net(dims, seed):
    keys = jax.random.split(jax.random.PRNGKey(seed), len(dims) - 1)
    params = [
        {"w": jax.random.normal(k, (a, b)) / np.sqrt(a), "b": jnp.zeros(b)}
        for k, a, b in zip(keys, dims[:-1], dims[1:], strict=True)
    ]

    def apply(p, x):
        for layer in p[:-1]:
            x = jnp.tanh(x @ layer["w"] + layer["b"])
        return x @ p[-1]["w"] + p[-1]["b"]

    return apply, params


NETS = st.builds(
    lambda d, h, o, n, seed: (d, h, o, n, seed),
    st.integers(1, 4), st.integers(1, 6), st.integers(1, 4), st.integers(1, 5), st.integers(0, 2**16),
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(NETS, st.sampled_from(["jax", "structured_derivatives"]))
def test_kernel_properties_on_random_networks(spec, implementation):
    d, h, o, n, seed = spec
    apply, params = _net((d, h, o), seed)
    x = jax.random.normal(jax.random.PRNGKey(seed + 1), (n, d))
    full = np.asarray(kernels.entk(apply, params, x, implementation=implementation))
    mat = np.asarray(kernels.as_matrix(full))
    scale = max(np.abs(mat).max(), 1e-300)
    # symmetry and positive semi-definiteness of K(X, X)
    assert np.allclose(mat, mat.T, atol=1e-12 * scale)
    assert np.linalg.eigvalsh(mat).min() >= -1e-10 * scale
    # the pNTK identity: (1/O) sum_ij Theta_ij, itself PSD
    p = np.asarray(kernels.pntk(apply, params, x, implementation=implementation))
    assert np.allclose(p, full.sum(axis=(2, 3)) / o, rtol=1e-9, atol=1e-12 * scale)
    assert np.linalg.eigvalsh(p).min() >= -1e-10 * max(np.abs(p).max(), 1e-300)
    # invariance to batch splitting: K([X1; X2], X) = [K(X1, X); K(X2, X)]
    k = max(n // 2, 1)
    parts = [kernels.pntk(apply, params, x[:k], x, implementation=implementation)]
    if k < n:
        parts.append(kernels.pntk(apply, params, x[k:], x, implementation=implementation))
    assert np.allclose(np.concatenate(parts), p, rtol=1e-9, atol=1e-12 * scale)
