"""Read, summarize and compare pytest-benchmark JSON files of ``tests/test_bench_kernels.py``.

Pure json + pandas: nothing here imports jax or neural-tangents, so reports can be built and
baselines compared on any machine.

* :func:`load` turns one ``--benchmark-json`` file into a tidy frame, one row per benchmark.
* :func:`ratios` adds each median relative to the fastest entry of its group, to the
  calibration matmul of the same run, and to the eNTK of the same network and implementation.
* :func:`speedups` gives the eNTK / pNTK time ratio per network and O (paper, Figure 1).
* :func:`compare` checks a candidate run against a baseline on calibration-normalized medians
  (median / the calibration matmul's fastest round), so a uniformly slower machine does not
  count as a regression.
* :func:`scaling_table` and :func:`fig1_table` give time against N (with the pNTK's
  "near the limit" ratio to one gradient pass plus the Gram) and time and memory against O.
* :func:`summarize` writes a markdown report; :func:`write_figure` its figure (matplotlib
  is imported only there).

Command line::

    python -m suite.bench summarize RUN.json [--out reports/bench/]
    python -m suite.bench compare BASELINE.json [CANDIDATE.json] [--threshold 0.25]

``compare`` exits 1 when a benchmark regressed, naming it; without CANDIDATE it takes the
newest other JSON file next to BASELINE.

The module also provides the pytest hook :func:`pytest_benchmark_update_machine_info`
(``pytest -p suite.bench``) that adds jax/jaxlib versions and the device to the JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
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


# --------------------------------------------------------------------------- loading


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
    for key in ("jax", "jaxlib", "backend", "device", "load_average"):
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


# --------------------------------------------------------------------------- ratios


def ratios(df: pd.DataFrame) -> pd.DataFrame:
    """Add ratio columns to a :func:`load` frame (a copy).

    * ``vs_fastest``: median / the smallest median of the same group (1.0 for the fastest).
    * ``fastest``: True for the fastest entry of its group.
    * ``vs_calibration``: median / :func:`calibration_time` of the same run.
    * ``vs_entk``: median / the eNTK's median for the same network, O, N and implementation
      (the ``PAIR_KEYS`` of ``extra_info``); so a pNTK row's value is its pNTK/eNTK time ratio.
    """
    out = df.copy()
    if out.empty:
        for col in ("vs_fastest", "fastest", "vs_calibration", "vs_entk"):
            out[col] = pd.Series(dtype=float)
        return out
    best = out.groupby("group")["median"].transform("min")
    out["vs_fastest"] = out["median"] / best
    out["fastest"] = out["median"] == best
    out["vs_calibration"] = out["median"] / calibration_time(out)
    out["vs_entk"] = math.nan
    if "kernel" in out and all(k in out for k in PAIR_KEYS):
        entk = out[out["kernel"] == "entk"].drop_duplicates(list(PAIR_KEYS))
        entk_median = entk.set_index(list(PAIR_KEYS))["median"]
        keys = pd.MultiIndex.from_frame(out[list(PAIR_KEYS)])
        out["vs_entk"] = out["median"].to_numpy() / entk_median.reindex(keys).to_numpy()
    return out


def speedups(df: pd.DataFrame, kernel: str = "pntk") -> pd.DataFrame:
    """eNTK time / ``kernel`` time per network and O (the paper's Figure 1 comparison).

    One row per (bench, model, O, N) with columns ``entk_<impl>_ms``, ``<kernel>_<impl>_ms`` and
    ``speedup_<impl>`` for each implementation timed for both kernels, plus ``entk_best_ms``,
    ``<kernel>_best_ms`` and ``speedup_best``: the fastest eNTK over the fastest ``kernel``
    across implementations.
    """
    needed = {"kernel", *PAIR_KEYS}
    if df.empty or not needed <= set(df.columns):
        return pd.DataFrame()
    sub = df[df["kernel"].isin(["entk", kernel])]
    table = sub.pivot_table(
        index=["bench", "model", "O", "N"], columns=["kernel", "implementation"], values="median", aggfunc="min"
    )
    if "entk" not in table.columns.get_level_values(0) or kernel not in table.columns.get_level_values(0):
        return pd.DataFrame()
    out = pd.DataFrame(index=table.index)
    common = set(table["entk"].columns) & set(table[kernel].columns)
    impls = sorted(common, key=lambda i: (i != "auto", i))
    for impl in impls:
        out[f"entk_{impl}_ms"] = table["entk"][impl] * 1e3
        out[f"{kernel}_{impl}_ms"] = table[kernel][impl] * 1e3
        out[f"speedup_{impl}"] = table["entk"][impl] / table[kernel][impl]
    out["entk_best_ms"] = table["entk"].min(axis=1) * 1e3
    out[f"{kernel}_best_ms"] = table[kernel].min(axis=1) * 1e3
    out["speedup_best"] = table["entk"].min(axis=1) / table[kernel].min(axis=1)
    return out.dropna(subset=["speedup_best"]).reset_index()


def auto_choice(df: pd.DataFrame) -> pd.DataFrame:
    """Per group and kernel timing ``auto`` beside other implementations: what auto resolved to,
    the fastest implementation and auto / fastest."""
    if df.empty or not {"implementation", "kernel"} <= set(df.columns):
        return pd.DataFrame()
    rows = []
    if "bench" in df:  # the scaling groups set the pNTK beside its parts, not implementations
        df = df[df["bench"] != SCALING_BENCH]
    for (group, kernel), g in df.groupby(["group", "kernel"], sort=True):
        auto = g[g["implementation"] == "auto"]
        if auto.empty or g["implementation"].nunique() < 2:
            continue
        best = g.loc[g["median"].idxmin()]
        resolved = auto["resolved_implementation"].iloc[0] if "resolved_implementation" in g else None
        rows.append({
            "group": group,
            "kernel": kernel,
            "auto_resolves_to": resolved,
            "auto_ms": float(auto["median"].iloc[0]) * 1e3,
            "fastest": f"auto ({resolved})" if best["implementation"] == "auto" and resolved else best["implementation"],
            "fastest_ms": float(best["median"]) * 1e3,
            "auto_vs_fastest": float(auto["median"].iloc[0] / best["median"]),
        })
    return pd.DataFrame(rows)


def _part(row: pd.Series) -> str:
    return "pntk_blocked" if row.get("implementation") == "blocked" else str(row["kernel"])


def scaling_table(df: pd.DataFrame) -> pd.DataFrame:
    """Median ms of each part of the scaling benchmarks, one row per (model, N).

    Columns: ``pntk`` (auto), ``pntk_blocked``, ``gradients`` (the per-example gradient pass),
    ``gram`` (G G^T of those gradients), ``entk`` (auto, small N only), ``gram_gflops`` (the
    Gram's rate in this run), ``bound`` = gradients + gram, ``pntk_vs_bound`` and
    ``blocked_vs_bound`` (the "near the limit" ratios) and ``entk_vs_pntk``.
    """
    if df.empty or "bench" not in df or not (df["bench"] == SCALING_BENCH).any():
        return pd.DataFrame()
    sc = df[df["bench"] == SCALING_BENCH].copy()
    sc["part"] = sc.apply(_part, axis=1)
    table = sc.pivot_table(index=["model", "N"], columns="part", values="median", aggfunc="min") * 1e3
    table.columns.name = None
    for part in ("pntk", "pntk_blocked", "gradients", "gram", "entk"):
        if part not in table:
            table[part] = math.nan
    gram = sc[sc["part"] == "gram"]
    if "flops" in gram:
        rate = gram.set_index(["model", "N"])
        table["gram_gflops"] = (rate["flops"] / rate["median"] / 1e9).reindex(table.index)
    else:
        table["gram_gflops"] = math.nan
    table["bound"] = table["gradients"] + table["gram"]
    table["pntk_vs_bound"] = table["pntk"] / table["bound"]
    table["blocked_vs_bound"] = table["pntk_blocked"] / table["bound"]
    table["entk_vs_pntk"] = table["entk"] / table["pntk"]
    return table.reset_index().sort_values(["model", "N"], kind="stable", ignore_index=True)


def growth_exponents(table: pd.DataFrame, parts: Sequence[str] = ("pntk", "gradients", "gram", "entk")) -> pd.DataFrame:
    """Local exponent d log(time) / d log(N) between consecutive N of :func:`scaling_table`,
    one row per (model, part, N): 1 for a per-example pass, 2 for the N x N Gram."""
    rows = []
    for model, g in table.groupby("model", sort=True):
        g = g.sort_values("N")
        for part in parts:
            pts = list(g[["N", part]].dropna().itertuples(index=False))
            for (n0, t0), (n1, t1) in itertools.pairwise(pts):
                rows.append({"model": model, "part": part, "N": int(n1),
                             "exponent": math.log(t1 / t0) / math.log(n1 / n0)})
    return pd.DataFrame(rows, columns=["model", "part", "N", "exponent"])


def fig1_table(df: pd.DataFrame) -> pd.DataFrame:
    """The paper's Figure 1: per network and O, the fastest eNTK and pNTK (ms), their ratio,
    and XLA's compiled memory of those same calls (MB; result plus temporaries), from the
    ``fig1`` bench."""
    if df.empty or "bench" not in df or not (df["bench"] == FIG1_BENCH).any():
        return pd.DataFrame()
    f1 = df[df["bench"] == FIG1_BENCH]
    fast = f1.loc[f1.groupby(["model", "O", "kernel"])["median"].idxmin()]
    out = fast.pivot_table(index=["model", "O"], columns="kernel", values="median") * 1e3
    out.columns = [f"{c}_ms" for c in out.columns]
    if "compiled_bytes" in fast:  # the memory of the same (fastest) call
        mem = fast.pivot_table(index=["model", "O"], columns="kernel", values="compiled_bytes") / 1e6
        mem.columns = [f"{c}_mb" for c in mem.columns]
        out = out.join(mem)
    for col in ("entk_ms", "pntk_ms", "entk_mb", "pntk_mb"):
        if col not in out:
            out[col] = math.nan
    out["speedup"] = out["entk_ms"] / out["pntk_ms"]
    out["memory_ratio"] = out["entk_mb"] / out["pntk_mb"]
    return out.reset_index()


# --------------------------------------------------------------------------- comparing


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
    """The most recently modified ``*.json`` next to ``baseline`` other than itself."""
    baseline = Path(baseline)
    others = [p for p in baseline.parent.glob("*.json") if p.resolve() != baseline.resolve()]
    if not others:
        raise BenchFileError(
            f"no benchmark run next to {baseline} to compare; run `nox -s bench` first "
            "or pass the candidate JSON explicitly"
        )
    return max(others, key=lambda p: (p.stat().st_mtime, p.name))


# --------------------------------------------------------------------------- markdown


def _fmt(x: Any, spec: str = ".3g") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float | int | np.integer | np.floating) and not isinstance(x, bool):
        return format(int(x), spec) if spec == "d" else format(x, spec)
    return str(x)


def markdown_table(df: pd.DataFrame, columns: dict[str, str], formats: dict[str, str] | None = None) -> str:
    """A GitHub markdown table of ``df[columns]`` with headers ``columns.values()``."""
    formats = formats or {}
    lines = ["| " + " | ".join(columns.values()) + " |", "|" + "---|" * len(columns)]
    for _, row in df.iterrows():
        cells = [_fmt(row[c], formats.get(c, ".3g")) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _short(name: str) -> str:
    """``test_kernel[mlp-w0256-...]`` -> ``mlp-w0256-...``."""
    return name[name.index("[") + 1 : -1] if "[" in name and name.endswith("]") else name


def summarize(json_path: str | Path, figure: str | None = None) -> str:
    """Markdown report of one run: machine, pNTK-vs-eNTK speedups, auto's choice, Figure 1,
    time against N and the near-the-limit ratio, then one table per group. ``figure``: a
    relative path of the run's :func:`write_figure` image to show at the top."""
    df = ratios(load(json_path))
    machine = machine_summary(json_path)
    lines = [f"# Benchmark summary: `{Path(json_path).name}`", ""]
    if figure:
        lines += [f"![time and memory of the pNTK and eNTK]({figure})", ""]
    lines += [f"- {k}: {v}" for k, v in machine.items()]
    cal = calibration_time(df)
    lines += [f"- calibration (512x512 float32 matmul), fastest round: {_fmt(cal * 1e3, '.4g')} ms", ""]
    lines += [
        "Medians in ms; `x fastest` is the median over the group's fastest; `x calib` is the median "
        "over the calibration matmul's fastest round (compare these across machines); `x eNTK` is the time "
        "relative to the eNTK of the same network and implementation.",
        "",
    ]
    key = _headline(df)
    if key:
        lines += ["## Key ratios and targets", "", *key, ""]
    sp = speedups(df)
    if not sp.empty:
        lines += ["## pNTK vs eNTK", "",
                  "Speedup = eNTK time / pNTK time with the same implementation (higher is better); "
                  "`best` = fastest eNTK / fastest pNTK.", ""]
        impl_cols = {c: c.replace("speedup_", "") for c in sp.columns if c.startswith("speedup_")}
        cols = {"bench": "bench", "model": "network", "O": "O", "N": "N", "entk_best_ms": "eNTK best (ms)",
                "pntk_best_ms": "pNTK best (ms)", **impl_cols}
        lines += [markdown_table(sp, cols), ""]
    auto = auto_choice(df)
    if not auto.empty:
        lines += ["## auto vs the fastest implementation", ""]
        cols = {"group": "group", "kernel": "kernel", "auto_resolves_to": "auto ->", "auto_ms": "auto (ms)",
                "fastest": "fastest", "fastest_ms": "fastest (ms)", "auto_vs_fastest": "auto / fastest"}
        lines += [markdown_table(auto, cols), ""]
        lines += [f"auto within 10% of the fastest in {int((auto['auto_vs_fastest'] <= 1.1).sum())} "
                  f"of {len(auto)} groups; worst {auto['auto_vs_fastest'].max():.2f}x.", ""]
    lines += _fig1_section(df) + _scaling_section(df)
    lines += ["## Groups", ""]
    df = df.assign(case=df["name"].map(_short), median_ms=df["median"] * 1e3, iqr_ms=df["iqr"] * 1e3)
    for group, g in df.groupby("group", sort=True):
        lines += [f"### {group}", ""]
        g = g.sort_values("median")
        cols = {"case": "benchmark", "median_ms": "median (ms)", "iqr_ms": "IQR (ms)", "rounds": "rounds",
                "vs_fastest": "x fastest", "vs_calibration": "x calib", "vs_entk": "x eNTK"}
        lines += [markdown_table(g, cols, {"rounds": "d"}), ""]
    return "\n".join(lines)


def headline(json_path: str | Path) -> list[str]:
    """A few markdown bullet lines with a run's key ratios, for the verification report:
    Figure 1's speedup and memory against O, the main grid's pNTK/eNTK speedups, speedup
    against N, the near-the-limit ratio and auto against the fastest implementation."""
    return _headline(ratios(load(json_path)))


def _headline(df: pd.DataFrame) -> list[str]:
    lines = []
    f1 = fig1_table(df)
    for model, g in (f1.groupby("model", sort=True) if not f1.empty else []):
        g = g.sort_values("O")
        speed = ", ".join(f"{s:.3g}x at O = {int(o)}" for o, s in zip(g["O"], g["speedup"], strict=True))
        mem = ", ".join(f"{m:.3g}x" for m in g["memory_ratio"] if not math.isnan(m))
        lines.append(f"- Figure 1 ({model}, one pair): pNTK faster than the eNTK by {speed}"
                     + (f"; eNTK / pNTK compiled memory {mem}" if mem else "") + "; "
                     + _target_text(list(zip(g["O"], g["speedup"], strict=True))) + ".")
    sp = speedups(df)
    grid = sp[sp["bench"] == "kernels"] if not sp.empty else sp
    for o, g in (grid.groupby("O", sort=True) if not grid.empty else []):
        cells = ", ".join(f"{m.split('-')[0]} {s:.3g}x" for m, s in zip(g["model"], g["speedup_best"], strict=True))
        conv = g[~g["model"].str.startswith("mlp")]
        verdicts = ", ".join(
            f"{m.split('-')[0]} {'met' if s >= o / 2 else 'NOT met'}"
            for m, s in zip(conv["model"], conv["speedup_best"], strict=True)
        )
        lines.append(f"- Main grid (N = {int(g['N'].iloc[0])}), O = {int(o)}: fastest eNTK / fastest pNTK: {cells}"
                     f" (target >= O/2 = {o / 2:g}x for conv nets: {verdicts}).")
    table = scaling_table(df)
    for model, g in (table.groupby("model", sort=True) if not table.empty else []):
        pts = g.dropna(subset=["entk_vs_pntk"])
        speed = ", ".join(f"{s:.3g}x at N = {int(n)}" for n, s in zip(pts["N"], pts["entk_vs_pntk"], strict=True))
        top = g.loc[g["N"].idxmax()]
        first = pts.loc[pts["entk_vs_pntk"] >= 5.0, "N"]  # O/2 at O = 10
        reach = f" (>= O/2 = 5x from N = {int(first.min())})" if len(first) else " (never >= O/2 = 5x)"
        lines.append(f"- {model.split('-')[0]}, O = 10, against N: eNTK / pNTK {speed}{reach}; at N = {int(top['N'])} "
                     f"the pNTK takes {top['pntk_vs_bound']:.2f}x its bound (gradient pass + Gram; target "
                     f"<= {NEAR_LIMIT_TARGET}), the blocked pNTK {top['blocked_vs_bound']:.2f}x.")
    auto = auto_choice(df)
    if not auto.empty:
        within = int((auto["auto_vs_fastest"] <= 1.1).sum())
        worst = auto.loc[auto["auto_vs_fastest"].idxmax()]
        lines.append(f"- auto within 10% of the fastest implementation in {within} of {len(auto)} groups; worst "
                     f"{worst['auto_vs_fastest']:.2f}x ({worst['group']}).")
    return lines


def _target_text(points: list[tuple[float, float]]) -> str:
    """``target >= O/2: met at O = 10; NOT met at O = 100`` for (O, speedup) points."""
    met = [int(o) for o, sp in points if sp >= o / 2]
    missed = [int(o) for o, sp in points if sp < o / 2]
    parts = [f"met at O = {', '.join(map(str, met))}"] if met else []
    parts += [f"NOT met at O = {', '.join(map(str, missed))}"] if missed else []
    return "target >= O/2: " + "; ".join(parts)


def _fig1_section(df: pd.DataFrame) -> list[str]:
    f1 = fig1_table(df)
    if f1.empty:
        return []
    cols = {"model": "network", "O": "O", "entk_ms": "eNTK (ms)", "pntk_ms": "pNTK (ms)", "speedup": "speedup",
            "entk_mb": "eNTK memory (MB)", "pntk_mb": "pNTK memory (MB)", "memory_ratio": "memory ratio"}
    return [
        "## Figure 1: one pair of inputs, time and memory against O", "",
        "The fastest implementation of each kernel; memory is XLA's compiled estimate of one call "
        "(result plus temporaries such as Jacobians), which grows with O for the eNTK and stays flat for "
        "the pNTK.", "",
        markdown_table(f1, cols, {"O": "d"}), "",
    ]


def _scaling_section(df: pd.DataFrame) -> list[str]:
    table = scaling_table(df)
    if table.empty:
        return []
    cols = {"model": "network", "N": "N", "pntk": "pNTK auto", "pntk_blocked": "pNTK blocked",
            "gradients": "gradient pass", "gram": "Gram", "gram_gflops": "Gram GFLOP/s",
            "pntk_vs_bound": "auto / bound", "blocked_vs_bound": "blocked / bound", "entk": "eNTK",
            "entk_vs_pntk": "eNTK / pNTK"}
    lines = [
        "## Time against N, and the pNTK near its limit", "",
        "Medians in ms, O = 10. The bound is one batched per-example gradient pass over the N inputs plus "
        "the N x N Gram product of those (N, P) gradients, both timed in this run (the Gram at this "
        f"run's BLAS rate); the target is pNTK / bound <= {NEAR_LIMIT_TARGET}.", "",
        markdown_table(table, cols, {"N": "d"}), "",
    ]
    largest = table.loc[table.groupby("model")["N"].idxmax()]
    for _, row in largest.iterrows():
        for part, label in (("pntk_vs_bound", "pNTK (auto)"), ("blocked_vs_bound", "blocked pNTK")):
            if not math.isnan(row[part]):
                verdict = "met" if row[part] <= NEAR_LIMIT_TARGET else "NOT met"
                lines.append(f"- {row['model']}, N = {int(row['N'])}: {label} / bound = {row[part]:.2f} "
                             f"(target <= {NEAR_LIMIT_TARGET}: {verdict})")
    exps = growth_exponents(table)
    if not exps.empty:
        wide = exps.pivot_table(index=["model", "part"], columns="N", values="exponent").reset_index()
        wide.columns = [c if isinstance(c, str) else f"to N={c}" for c in wide.columns]
        lines += ["", "Growth exponent d log(time) / d log(N) between consecutive N (1: linear, 2: the "
                  "N^2 of the kernel):", "",
                  markdown_table(wide, {c: c for c in wide.columns}, {c: ".2f" for c in wide.columns}), ""]
    return lines


def compare_markdown(table: pd.DataFrame, failures: list[str], threshold: float) -> str:
    """Markdown for a :func:`compare` result: verdict, regressions, then every benchmark."""
    normalized = table.attrs.get("normalized", False)
    head = [
        f"# Benchmark comparison (threshold +{threshold:.0%}, "
        + ("calibration-normalized" if normalized else "raw medians: a run lacks the calibration benchmark")
        + ")",
        "",
    ]
    if normalized:
        head += [f"Machine speed (candidate / baseline calibration): {table.attrs['machine_ratio']:.3g}x", ""]
    counts = table["status"].value_counts()
    head += [", ".join(f"{n} {s}" for s, n in counts.items()), ""]
    if failures:
        head += ["## Regressions", "", *(f"- {f}" for f in failures), ""]
    table = table.assign(case=table["name"].map(_short))
    cols = {"case": "benchmark", "group": "group", "baseline_ms": "baseline (ms)",
            "candidate_ms": "candidate (ms)", "raw_ratio": "raw", "ratio": "normalized", "status": "status",
            "note": "note"}
    return "\n".join([*head, "## All benchmarks", "", markdown_table(table, cols)])


# --------------------------------------------------------------------------- figure


def render_figure(df: pd.DataFrame) -> Any:
    """A 2x2 matplotlib figure of one run (from its saved JSON, no kernel is computed):
    Figure 1's time and memory against O, time against N, and the pNTK over its bound.
    Panels without data say so."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from suite.figures import style

    f1, table = fig1_table(df), scaling_table(df)
    with style.theme():
        fig, axes = plt.subplots(2, 2, figsize=(11, 8.5), layout="constrained")
        (ax_time, ax_mem), (ax_n, ax_limit) = axes
        kernel_style = {"entk": ("-", "o"), "pntk": ("--", "s")}
        models = sorted(f1["model"].unique()) if not f1.empty else []
        colors = dict(zip(models, sns.color_palette("colorblind", len(models)), strict=True))
        for ax, unit, title, ylabel in (
            (ax_time, "ms", "Figure 1: one pair of 32x32x3 inputs", "time per pair (ms)"),
            (ax_mem, "mb", "Figure 1: memory of one call", "XLA compiled memory (MB)"),
        ):
            for model in models:
                g = f1[f1["model"] == model].sort_values("O")
                for kernel, (ls, marker) in kernel_style.items():
                    ax.plot(g["O"], g[f"{kernel}_{unit}"], ls=ls, marker=marker, color=colors[model],
                            label=f"{style.KERNEL_LABELS[kernel]}, {model}")
            empty = f1.empty or f1[[f"{k}_{unit}" for k in kernel_style]].isna().all().all()
            _finish_axis(ax, title, "outputs O", ylabel, empty=empty, logx=True)
        arch_models = sorted(table["model"].unique()) if not table.empty else []
        arch_colors = dict(zip(arch_models, sns.color_palette("colorblind", len(arch_models)), strict=True))
        for model in arch_models:
            g = table[table["model"] == model]
            for kernel, (ls, marker) in kernel_style.items():
                pts = g[["N", kernel]].dropna()
                ax_n.plot(pts["N"], pts[kernel], ls=ls, marker=marker, color=arch_colors[model],
                          label=f"{style.KERNEL_LABELS[kernel]}, {model}")
            ax_limit.plot(g["N"], g["pntk_vs_bound"], ls="-", marker="s", color=arch_colors[model],
                          label=f"pNTK (auto), {model}")
            pts = g[["N", "blocked_vs_bound"]].dropna()
            ax_limit.plot(pts["N"], pts["blocked_vs_bound"], ls=":", marker="^", color=arch_colors[model],
                          label=f"blocked pNTK, {model}")
        if not table.empty:
            # Guides over the last step of N only, from the slowest pNTK there: enough to read
            # the growth off without stretching the axis over decades no series reaches.
            ns = np.array(sorted(table["N"].unique()), dtype=float)[-2:]
            anchor = table.loc[table["N"] == ns[0], "pntk"].max()
            for power, label in ((1, "∝ N"), (2, "∝ N²")):
                ax_n.plot(ns, anchor * (ns / ns[0]) ** power, color=style.REFERENCE_COLOR, lw=1.2,
                          ls=(0, (1, 2)) if power == 1 else (0, (4, 2)), label=label)
            ax_limit.axhline(NEAR_LIMIT_TARGET, color="0.3", lw=1, ls="--", label=f"target {NEAR_LIMIT_TARGET}")
            ax_limit.axhline(1.0, color=style.REFERENCE_COLOR, lw=1, ls=":", label="= bound")
        _finish_axis(ax_n, "Time against N (O = 10)", "inputs N", "time per kernel (ms)", empty=table.empty,
                     logx=True)
        _finish_axis(ax_limit, "pNTK / (gradient pass + Gram)", "inputs N", "time ratio", empty=table.empty,
                     logx=True, logy=False)
        if not table.empty:
            highest = table[["pntk_vs_bound", "blocked_vs_bound"]].max().max()
            ax_limit.set_ylim(0, max(1.15 * NEAR_LIMIT_TARGET, 1.1 * highest))
        fig.suptitle("pNTK vs eNTK cost (medians of this run)")
    return fig


def _finish_axis(ax: Any, title: str, xlabel: str, ylabel: str, *, empty: bool, logx: bool,
                 logy: bool = True) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    from suite.figures import style

    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if empty:
        for line in ax.get_lines():
            line.remove()
        ax.text(0.5, 0.5, "not in this run", transform=ax.transAxes, ha="center", va="center", color="0.4")
        ax.set_xticks([])
        ax.set_yticks([])
        return
    if logx:
        ax.set_xscale("log")
        ticks = sorted({float(x) for line in ax.get_lines() for x in line.get_xdata() if x > 0})
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_locator(NullLocator())
    if logy:
        style.format_log_y(ax)
    else:
        ax.set_ylim(bottom=0)
    ax.legend(fontsize="small", loc="upper left" if logy else "upper right")


def write_figure(json_path: str | Path, png: str | Path) -> Path:
    """Render :func:`render_figure` for a run and save it as ``png`` (atomically)."""
    import matplotlib.pyplot as plt

    from suite.figures import _common

    png = Path(png)
    fig = render_figure(load(json_path))
    try:
        written = _common.save(fig, png.parent, png.stem)
    finally:
        plt.close(fig)
    return written[0]


# --------------------------------------------------------------------------- pytest hook


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


# --------------------------------------------------------------------------- CLI


def _write(text: str, out: Path | None, default_name: str) -> None:
    if out is None:
        print(text)
        return
    target = out if out.suffix == ".md" else out / default_name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text + "\n")
    print(f"wrote {target}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m suite.bench {summarize,compare}``; returns the exit code."""
    p = argparse.ArgumentParser(prog="python -m suite.bench", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("summarize", help="markdown summary of one pytest-benchmark JSON run")
    s.add_argument("json", type=Path)
    s.add_argument("--out", type=Path,
                   help="a .md file, or a directory for <run>.md; a .png (and .svg) figure goes beside it "
                        "(default: markdown to stdout, no figure)")
    c = sub.add_parser("compare", help="fail (exit 1) when a benchmark regressed against the baseline")
    c.add_argument("baseline", type=Path)
    c.add_argument("candidate", type=Path, nargs="?", help="default: newest other JSON next to the baseline")
    c.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help="allowed slowdown of a normalized median (default 0.25 = 25%%)")
    c.add_argument("--out", type=Path, help="also write the comparison as markdown (.md file or directory)")
    args = p.parse_args(argv)
    try:
        if args.command == "summarize":
            if args.out is None:
                print(summarize(args.json))
                return 0
            md = args.out if args.out.suffix == ".md" else args.out / f"{args.json.stem}.md"
            png = write_figure(args.json, md.with_suffix(".png"))
            print(f"wrote {png}")
            _write(summarize(args.json, figure=png.name), md, md.name)
            return 0
        candidate = args.candidate or newest_other(args.baseline)
        print(f"baseline:  {args.baseline}\ncandidate: {candidate}")
        table, failures = compare(args.baseline, candidate, args.threshold)
    except (BenchFileError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = compare_markdown(table, failures, args.threshold)
    if args.out is not None:
        _write(text, args.out, f"compare-{Path(candidate).stem}.md")
    else:
        print(text)
    if failures:
        print(f"\nFAILED: {len(failures)} benchmark(s) slower than the baseline by more than "
              f"{args.threshold:.0%} (calibration-normalized):", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    print(f"\nOK: no benchmark slower than the baseline by more than {args.threshold:.0%}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
