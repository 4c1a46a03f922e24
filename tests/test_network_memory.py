"""Networks that cannot fit are refused before anything is allocated (issue 13, item 5): the
parameter and activation estimate comes from shapes alone, is checked against the kernels'
memory budget, and stops ``Model.init`` and a CLI run (every case, before the first) with a
one-line error naming the size and the budget."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
import time

import jax
import pytest

from suite import models
from suite.errors import MemoryBudgetError
from suite.paths import ROOT

HUGE = 10**8


def test_estimate_counts_the_parameters_and_one_examples_activations():
    model = models.build("mlp", width=32, depth=2, n_outputs=3)
    need = model.memory((6, 6, 1))
    assert need.n_params == 36 * 32 + 32 + 32 * 32 + 32 + 32 * 3 + 3 == model.param_count((6, 6, 1))
    itemsize = jax.dtypes.canonicalize_dtype(jax.numpy.float64).itemsize  # conftest turns x64 on
    assert need.init_bytes == need.n_params * (4 + (itemsize if itemsize != 4 else 0))
    # at least the three layer outputs of one example are held (float of the default width)
    assert need.activation_bytes >= (32 + 32 + 3) * itemsize
    assert need.total_bytes == need.init_bytes + need.activation_bytes
    assert models.build("mlp", width=64, depth=2, n_outputs=3).memory((6, 6, 1)).total_bytes > need.total_bytes


def test_oversized_network_is_refused_before_init_allocates():
    model = models.build("mlp", width=HUGE, depth=1)
    calls = []

    def spy(*args, **kwargs):
        calls.append(args)
        return model.init_fn(*args, **kwargs)

    watched = dataclasses.replace(model, init_fn=spy)
    start = time.perf_counter()
    with pytest.raises(MemoryBudgetError) as err:
        watched.init(jax.random.PRNGKey(0), (8, 8, 1))
    elapsed = time.perf_counter() - start
    assert calls == [], "init sampled parameters before the check"
    assert elapsed < 5, f"the refusal took {elapsed:.1f} s"
    text = str(err.value)
    assert "width 100000000" in text and "7,500,000,010 parameters" in text  # 64·n + n + 10·n + 10
    assert "over the memory budget of" in text and "SUITE_MEMORY_BUDGET" in text
    assert "smaller width or depth" in text


def test_the_budget_is_the_kernels_budget(monkeypatch):
    model = models.build("mlp", width=256, depth=2, n_outputs=3)
    need = model.memory((6, 6, 1)).total_bytes
    monkeypatch.setenv("SUITE_MEMORY_BUDGET", str(need - 1))
    with pytest.raises(MemoryBudgetError, match="over the memory budget"):
        model.init(jax.random.PRNGKey(0), (6, 6, 1))
    monkeypatch.setenv("SUITE_MEMORY_BUDGET", str(need))
    params = model.init(jax.random.PRNGKey(0), (6, 6, 1))
    assert sum(leaf.size for leaf in jax.tree_util.tree_leaves(params)) == model.memory((6, 6, 1)).n_params


GRID = """
[grid]
archs = ["mlp"]
depths = [1]
widths = [8, 16, 100000000]
seeds = 1
[settings]
n_inputs = 6
n_outputs = 3
"""

#: ``python -m suite ...`` as a user runs it, reporting its peak RSS and the seconds it ran after
#: the libraries were imported (importing jax and neural-tangents takes 2-3 s on an idle 2-core
#: machine, several times that while other test workers load it: not what is measured here).
CLI = textwrap.dedent(
    """
    import resource, runpy, sys, time
    import suite.cli, suite.experiments, suite.models, suite.runner
    start = time.perf_counter()
    sys.argv = ["suite", *sys.argv[1:]]
    try:
        runpy.run_module("suite", run_name="__main__")
    except SystemExit as exc:
        code = exc.code
    # Peak RSS of this process image: VmHWM (reset at exec). ru_maxrss is not: Linux carries it
    # over from the forked parent, so under a large pytest worker it reports the worker's size.
    try:
        peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"STATS {time.perf_counter() - start:.2f} {peak}", file=sys.stderr)
    sys.exit(code)
    """
)


@pytest.mark.needs_nt  # the subprocess runs an experiment
def test_cli_refuses_an_oversized_grid_entry_at_once(tmp_path):
    grid = tmp_path / "huge.toml"
    grid.write_text(GRID)
    out = tmp_path / "out"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    begun = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CLI, "run", "convergence", "--grid-file", str(grid), "--out", str(out), "--no-progress"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    wall = time.perf_counter() - begun
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr
    assert "Traceback" not in err
    assert err.startswith("error: the mlp network of width 100000000, depth 1 has 6,800,000,003 parameters")
    assert "over the memory budget of" in err
    seconds, peak_kb = err.split("STATS ")[1].split()
    # the command answered within 5 s of starting its work, and allocated no network: its peak is
    # the interpreter with jax and neural-tangents (~230 MB here), not the 27 GB of weights
    assert float(seconds) < 5, f"refused after {seconds} s (whole process {wall:.1f} s)"
    assert int(peak_kb) < 1_000_000, f"peak RSS {int(peak_kb) / 1e3:.0f} MB"
    assert not (out / "data").exists(), "a refused run wrote results"
