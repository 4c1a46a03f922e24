"""Loading pytest-benchmark JSON reports of ``tests/test_bench_kernels.py`` (and
``tests/test_bench_peers.py``) into tidy frames. Pure json + pandas: nothing here imports jax."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

#: Group of the fixed matmul every run times, used to normalize for machine speed.
CALIBRATION_GROUP = "calibration"
#: Default regression threshold: a normalized median more than 25% above the baseline fails.
DEFAULT_THRESHOLD = 0.25
#: extra_info fields that identify "the same network and implementation" across kernels.
PAIR_KEYS = ("bench", "model", "O", "N", "implementation")

#: ``bench`` of the time-against-N benchmarks (``test_scaling``), and of the paper's Figure 1.
SCALING_BENCH = "scaling"
FIG1_BENCH = "fig1"
#: The "near the limit" target: pNTK time / (gradient pass + Gram) at most this.
NEAR_LIMIT_TARGET = 1.5

_STAT_COLUMNS = ("median", "iqr", "mean", "stddev", "min", "max", "rounds")


class BenchFileError(ValueError):
    """A file that is not a pytest-benchmark JSON report."""




def read_json(path: str | Path) -> dict[str, Any]:
    """The raw report, checked to have a ``benchmarks`` list."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise BenchFileError(f"{path}: no such file; run `nox -s bench` to create one") from None
    except json.JSONDecodeError as exc:
        raise BenchFileError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("benchmarks"), list):
        raise BenchFileError(f"{path}: not a pytest-benchmark report (no 'benchmarks' list)")
    return raw


def load(json_path: str | Path) -> pd.DataFrame:
    """One row per benchmark: name, fullname, group, params, stats (seconds), extra_info fields.

    Stats columns: ``median``, ``iqr``, ``mean``, ``stddev``, ``min``, ``max``, ``rounds``.
    Every ``extra_info`` key becomes a column (missing ones are NaN).
    """
    raw = read_json(json_path)
    rows = []
    for b in raw["benchmarks"]:
        stats = b.get("stats") or {}
        row: dict[str, Any] = {
            "name": b.get("name"),
            "fullname": b.get("fullname") or b.get("name"),
            "group": b.get("group") or "",
            "params": b.get("params") or {},
        }
        row.update({k: stats.get(k, math.nan) for k in _STAT_COLUMNS})
        for key, value in (b.get("extra_info") or {}).items():
            if key not in row:
                row[key] = value
        rows.append(row)
    columns = ["name", "fullname", "group", "params", *_STAT_COLUMNS]
    return pd.DataFrame(rows, columns=None if rows else columns)


def machine_summary(json_path: str | Path) -> dict[str, Any]:
    """Short machine description of a run: cpu, python, jax versions and device when recorded."""
    info = read_json(json_path).get("machine_info") or {}
    cpu = info.get("cpu") or {}
    out = {
        "node": info.get("node"),
        "cpu": cpu.get("brand_raw") if isinstance(cpu, dict) else cpu,
        "python": info.get("python_version"),
    }
    for key in ("jax", "jaxlib", "backend", "device", "load_average", "torch", "torch_threads"):
        if key in info:
            out[key] = info[key]
    return {k: v for k, v in out.items() if v is not None}


def calibration_time(df: pd.DataFrame) -> float:
    """The machine-speed unit of a run: the fastest round of its calibration matmul, or NaN.

    The fastest round, not the median: other work on the machine shifts a short benchmark's
    median (on a shared 2-core machine we saw one run's calibration median 1.6x its usual value
    while its fastest round and every kernel's median were as usual), but rarely its minimum.
    """
    cal = df.loc[df["group"] == CALIBRATION_GROUP, "min"]
    return float(cal.min()) if len(cal) else math.nan



def load_runs(paths: Sequence[str | Path]) -> pd.DataFrame:
    """:func:`load` of several runs as one frame (e.g. ``nox -s bench``'s run and
    ``nox -s bench_peers``' torch run, whose groups share names, so peers sit in the same
    tables); the column ``run`` names each row's file."""
    frames = [load(p).assign(run=Path(p).name) for p in paths]
    if not frames:
        raise BenchFileError("no benchmark runs given")
    return pd.concat(frames, ignore_index=True)
