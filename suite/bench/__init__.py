"""Read, summarize and compare pytest-benchmark JSON files of ``tests/test_bench_kernels.py``
(and ``tests/test_bench_peers.py``, the torch peers).

Pure json + pandas: nothing here imports jax or neural-tangents, so reports can be built and
baselines compared on any machine.

* :mod:`suite.bench.loading`: :func:`load` turns one ``--benchmark-json`` file into a tidy
  frame, one row per benchmark (:func:`load_runs` several, e.g. a run and its peers).
* :mod:`suite.bench.tables`: :func:`ratios` (median over the group's fastest, the
  calibration matmul and the eNTK), :func:`speedups` (eNTK / pNTK, paper Figure 1),
  :func:`auto_choice`, :func:`scaling_table` (time against N, the pNTK and eNTK against their
  bounds), :func:`fig1_table`, :func:`peer_table` (the public call against neural-tangents
  and torch.func) and :func:`overhead_table` (public call against the bare executable).
* :mod:`suite.bench.comparison`: :func:`compare` a candidate run against a baseline on
  calibration-normalized medians, so a uniformly slower machine does not count as a regression.
* :mod:`suite.bench.summary`: :func:`summarize` (markdown, every target marked met or NOT
  met) and :func:`headline` (key ratios for the verification report).
* The figure is :mod:`suite.figures.bench` (:func:`write_figure`; matplotlib only there).

Command line::

    python -m suite.bench summarize RUN.json [PEERS.json ...] [--out reports/bench/]
    python -m suite.bench compare BASELINE.json [CANDIDATE.json] [--threshold 0.25]

``compare`` exits 1 when a benchmark regressed, naming it; without CANDIDATE it takes the
newest other JSON file next to BASELINE.

The package also provides the pytest hook :func:`pytest_benchmark_update_machine_info`
(``pytest -p suite.bench``) that adds jax/jaxlib versions and the device to the JSON.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from suite.bench.comparison import compare, newest_other
from suite.bench.loading import (
    CALIBRATION_GROUP,
    DEFAULT_THRESHOLD,
    FIG1_BENCH,
    NEAR_LIMIT_TARGET,
    PAIR_KEYS,
    SCALING_BENCH,
    BenchFileError,
    calibration_time,
    load,
    load_runs,
    machine_summary,
    read_json,
)
from suite.bench.summary import compare_markdown, headline, markdown_table, summarize
from suite.bench.tables import (
    ENTK_BOUND_TARGET,
    OVERHEAD_TARGET_MS,
    PEER_TARGET,
    auto_choice,
    fig1_table,
    growth_exponents,
    overhead_table,
    peer_table,
    ratios,
    scaling_table,
    speedups,
)

__all__ = [
    "CALIBRATION_GROUP",
    "DEFAULT_THRESHOLD",
    "ENTK_BOUND_TARGET",
    "FIG1_BENCH",
    "NEAR_LIMIT_TARGET",
    "OVERHEAD_TARGET_MS",
    "PAIR_KEYS",
    "PEER_TARGET",
    "SCALING_BENCH",
    "BenchFileError",
    "auto_choice",
    "calibration_time",
    "compare",
    "compare_markdown",
    "fig1_table",
    "growth_exponents",
    "headline",
    "load",
    "load_runs",
    "machine_summary",
    "main",
    "markdown_table",
    "newest_other",
    "overhead_table",
    "peer_table",
    "pytest_benchmark_update_machine_info",
    "ratios",
    "read_json",
    "scaling_table",
    "speedups",
    "summarize",
    "write_figure",
]


def write_figure(json_path: str | Path, png: str | Path, peers: tuple[str | Path, ...] = ()) -> Path:
    """The run's figure (:func:`suite.figures.bench.write_figure`), saved as ``png``."""
    from suite.figures import bench as figure  # matplotlib only when drawing

    return figure.write_figure(json_path, png, peers)


def pytest_benchmark_update_machine_info(config: Any, machine_info: dict[str, Any]) -> None:
    """pytest-benchmark hook (``pytest -p suite.bench``): record jax, jaxlib, backend, device."""
    import jax
    import jaxlib

    machine_info["jax"] = jax.__version__
    machine_info["jaxlib"] = getattr(jaxlib, "__version__", "unknown")
    machine_info["backend"] = jax.default_backend()
    machine_info["device"] = jax.devices()[0].device_kind
    machine_info["device_count"] = jax.device_count()
    if hasattr(os, "getloadavg"):
        # Other work on the machine skews timings: keep the 1/5/15-minute load at the start.
        machine_info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    try:  # the torch peers' version, when torch is installed (nox -s bench_peers)
        import torch

        machine_info["torch"] = torch.__version__
        machine_info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> int:
    """``python -m suite.bench {summarize,compare}`` (:func:`suite.bench.cli.main`)."""
    from suite.bench.cli import main as cli_main

    return cli_main(argv)
