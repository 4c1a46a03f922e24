"""Comparing a candidate run with a baseline on calibration-normalized medians."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from suite.bench.loading import (
    CALIBRATION_GROUP,
    DEFAULT_THRESHOLD,
    BenchFileError,
    calibration_time,
    load,
)


def compare(
    baseline_json: str | Path, candidate_json: str | Path, threshold: float = DEFAULT_THRESHOLD
) -> tuple[pd.DataFrame, list[str]]:
    """Compare two runs benchmark by benchmark on calibration-normalized medians.

    Each median is divided by the :func:`calibration_time` of its own run, so a machine
    that is uniformly k times slower gives ratios near 1. When either run lacks the calibration
    benchmark, raw medians are compared instead (``normalized`` is False in the result).

    Returns:
        A frame with one row per benchmark in either run (``name``, ``group``,
        ``baseline_ms``, ``candidate_ms``, ``raw_ratio``, ``ratio`` = normalized
        candidate / baseline, ``status`` in ``ok``, ``faster``, ``regression``,
        ``missing in candidate``, ``new in candidate``, ``calibration``; ``note`` says when ``auto`` ran another
        implementation than in the baseline) and a list of failure messages,
        one per regression (normalized ratio > 1 + threshold). Missing or new benchmarks
        are reported in the frame, never failures.
    """
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold!r}")
    base, cand = load(baseline_json), load(candidate_json)
    base_cal, cand_cal = calibration_time(base), calibration_time(cand)
    normalized = not (math.isnan(base_cal) or math.isnan(cand_cal))
    scale_base = base_cal if normalized else 1.0
    scale_cand = cand_cal if normalized else 1.0

    b = base.drop_duplicates("fullname").set_index("fullname")
    c = cand.drop_duplicates("fullname").set_index("fullname")
    rows = []
    failures = []
    for key in [*b.index, *(k for k in c.index if k not in b.index)]:
        in_b, in_c = key in b.index, key in c.index
        src = b.loc[key] if in_b else c.loc[key]
        row: dict[str, Any] = {"name": src["name"], "group": src["group"], "note": ""}
        if in_b and in_c and "resolved_implementation" in b.columns and "resolved_implementation" in c.columns:
            was, now = b.loc[key, "resolved_implementation"], c.loc[key, "resolved_implementation"]
            if isinstance(was, str) and isinstance(now, str) and was != now:
                row["note"] = f"auto ran {now} (baseline: {was})"
        row["baseline_ms"] = float(b.loc[key, "median"]) * 1e3 if in_b else math.nan
        row["candidate_ms"] = float(c.loc[key, "median"]) * 1e3 if in_c else math.nan
        if in_b and in_c:
            row["raw_ratio"] = row["candidate_ms"] / row["baseline_ms"]
            row["ratio"] = row["raw_ratio"] * scale_base / scale_cand
            if src["group"] == CALIBRATION_GROUP:
                row["status"] = "calibration"  # the unit itself: reported, never a regression
            elif row["ratio"] > 1 + threshold:
                row["status"] = "regression"
                failures.append(
                    f"{src['name']} [{src['group']}]: {row['ratio']:.2f}x the baseline "
                    f"({row['baseline_ms']:.3f} ms -> {row['candidate_ms']:.3f} ms"
                    + (", calibration-normalized" if normalized else "")
                    + (f"; {row['note']}" if row["note"] else "")
                    + ")"
                )
            elif row["ratio"] < 1 / (1 + threshold):
                row["status"] = "faster"
            else:
                row["status"] = "ok"
        else:
            row["raw_ratio"] = row["ratio"] = math.nan
            row["status"] = "missing in candidate" if in_b else "new in candidate"
        rows.append(row)
    out = pd.DataFrame(
        rows, columns=["name", "group", "baseline_ms", "candidate_ms", "raw_ratio", "ratio", "status", "note"]
    )
    out.attrs.update(normalized=normalized, machine_ratio=cand_cal / base_cal if normalized else math.nan)
    return out, failures


def newest_other(baseline: str | Path) -> Path:
    """The most recently modified ``*.json`` next to ``baseline`` other than itself (peer
    runs, ``*-peers.json``, are not candidates: they time other libraries; nor are the other
    accelerators' baselines, ``baseline-*.json``)."""
    baseline = Path(baseline)
    others = [p for p in baseline.parent.glob("*.json")
              if p.resolve() != baseline.resolve() and not p.stem.endswith("-peers")
              and not p.name.startswith("baseline-")]
    if not others:
        raise BenchFileError(
            f"no benchmark run next to {baseline} to compare; run `nox -s bench` first "
            "or pass the candidate JSON explicitly"
        )
    return max(others, key=lambda p: (p.stat().st_mtime, p.name))

