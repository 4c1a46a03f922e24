"""Reports from saved results: ``summary.json`` (fitted rates and verdicts), figures, REPORT.md.

Reads only ``<out>/data/*.csv`` written by :mod:`suite.runner`; never computes a kernel.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from suite import paths, stats
from suite.errors import SuiteError
from suite.experiments import EXPERIMENTS, Experiment
from suite.store import ResultStore, atomic_write_json, atomic_write_text

#: Verdict of series whose metric has no theoretical rate (Experiment.report_only_metrics).
REPORTED = "reported"

#: The paper's headline quantity (experiment, kernel, metric): the verdict table shows it first.
HEADLINE = ("convergence", "pntk", "rel_frobenius")

#: Columns of a summary row that are not part of what identifies its series.
_FIT_COLUMNS = {"slope", "slope_ci_low", "slope_ci_high", "r2", "n_widths", "n_seeds", "monotone", "verdict", "note",
                "value_at_max_width"}
_SHOWN = {"experiment", "arch", "depth", "kernel", "metric"}


def load_results(out: Path, grid: str | None = None) -> dict[str, tuple[pd.DataFrame, dict[str, Any]]]:
    """Rows and metadata of every experiment with results in ``out/data``, for one grid
    (default: the grid each experiment last ran)."""
    found = {}
    for name, exp in EXPERIMENTS.items():
        store = ResultStore(out / "data", name, version=exp.version)
        frame = store.load()
        if frame.empty:
            continue
        meta = store.metadata
        chosen = grid or meta.get("grid") or frame["grid"].iloc[-1]
        rows = frame[frame["grid"] == chosen]
        if rows.empty:
            continue
        found[name] = (rows.reset_index(drop=True), {**meta, "grid": chosen})
    return found


def summarize(exp: Experiment, rows: pd.DataFrame) -> pd.DataFrame:
    """Slope fits and verdicts of every series (error vs width over seeds) of one experiment."""
    by = [c for c in exp.series_columns if c in rows.columns]
    # A report-only metric can be undefined for some cases (e.g. lambda_min of a singular
    # kernel); fit what is defined and say how much was left out.
    undefined = rows["metric"].isin(exp.report_only_metrics) & ~np.isfinite(rows["value"])
    dropped = rows[undefined].groupby(by, dropna=False).size()
    rows = rows[~undefined]
    summary = stats.summarize(rows, by=by)
    summary.insert(0, "experiment", exp.name)
    # The seed-mean (geometric) value at the largest width: a number for every series, also
    # those with one width (no slope) or no claimed rate.
    at_max = rows[rows["width"] == rows.groupby(by, dropna=False)["width"].transform("max")]
    positive = at_max[at_max["value"] > 0]
    means = positive.groupby(by, dropna=False)["value"].apply(lambda v: float(np.exp(np.log(v).mean())))
    summary = summary.merge(means.rename("value_at_max_width").reset_index(), on=by, how="left")
    report_only = summary["metric"].isin(exp.report_only_metrics)
    summary.loc[report_only, "verdict"] = REPORTED
    summary.loc[report_only, "note"] = "no rate is claimed by the theory; slope shown as measured"
    for key, count in dropped.items():
        key = key if isinstance(key, tuple) else (key,)
        mask = np.logical_and.reduce([summary[c] == v for c, v in zip(by, key, strict=True)])
        summary.loc[mask, "note"] = summary.loc[mask, "note"] + f"; {count} undefined values left out"
    return summary


def build(out: str | Path | None = None, grid: str | None = None) -> dict[str, Any]:
    """Write ``summary.json``, every figure and ``REPORT.md`` under ``out`` (default reports/).

    Returns:
        ``{"summary": Path, "report": Path, "figures": [Path, ...]}``.
    """
    from suite import figures

    out = Path(out if out is not None else paths.REPORTS)
    results = load_results(out, grid)
    if not results:
        raise SuiteError(
            f"no results in {out / 'data'}; run an experiment first, e.g. "
            "python -m suite verify (or python -m suite run convergence --grid quick)"
        )
    summaries = [summarize(EXPERIMENTS[name], rows) for name, (rows, _) in results.items()]
    summary = pd.concat(summaries, ignore_index=True)
    summary_path = out / "summary.json"
    atomic_write_json(summary_path, _records(summary))

    written: list[Path] = []
    shown: list[tuple[Any, Path]] = []
    for spec in figures.FIGURES.values():
        if spec.experiment not in results:
            continue
        exp_summary = summary[summary["experiment"] == spec.experiment]
        fig = figures.render(spec.name, results[spec.experiment][0], exp_summary)
        files = figures.save(fig, out / "figures", spec.name)
        written += files
        shown.append((spec, next(p for p in files if p.suffix == ".png")))

    report_path = out / "REPORT.md"
    atomic_write_text(report_path, _markdown(results, summary, shown, out))
    return {"summary": summary_path, "report": report_path, "figures": written}


def _records(summary: pd.DataFrame) -> list[dict[str, Any]]:
    records = []
    for row in summary.to_dict(orient="records"):
        clean = {}
        for k, v in row.items():
            if isinstance(v, float) and math.isnan(v):
                v = None
            elif v is pd.NA:
                v = None
            clean[str(k)] = v
        records.append(clean)
    return records


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:+.{digits}f}" if isinstance(x, float) else str(x)


def headline(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary rows of the paper's headline quantity (see :data:`HEADLINE`)."""
    experiment, kernel, metric = HEADLINE
    mask = (summary["experiment"] == experiment) & (summary["kernel"] == kernel) & (summary["metric"] == metric)
    return summary[mask]


def _series_label(row: pd.Series, varying: list[str]) -> str:
    """The settings that tell this series apart from others of its experiment (e.g. epoch=2)."""
    return ", ".join(f"{c}={row[c]}" for c in varying if c in row and not pd.isna(row[c]))


def _varying(summary: pd.DataFrame) -> dict[str, list[str]]:
    """Per experiment, the identifying columns (beyond arch, depth, kernel, metric) that vary."""
    out = {}
    for name, rows in summary.groupby("experiment"):
        cols = [c for c in rows.columns if c not in _FIT_COLUMNS | _SHOWN]
        out[str(name)] = [c for c in cols if rows[c].nunique(dropna=True) > 1]
    return out


def _value(x: Any) -> str:
    return "–" if x is None or pd.isna(x) else f"{x:.4g}"


def _yes_no(flag: Any) -> str:
    return "–" if flag is None or flag is pd.NA else ("yes" if flag else "no")


def _verdict_table(summary: pd.DataFrame) -> str:
    lines = [
        "| experiment | arch | depth | series | kernel | metric | value at widest | slope | 95% CI | R² | widths × seeds | monotone | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    varying = _varying(summary)
    for (_, row), r in zip(summary.iterrows(), summary.itertuples(index=False), strict=True):
        series = _series_label(row, varying.get(r.experiment, [])) or "–"
        ci = f"[{_fmt(r.slope_ci_low)}, {_fmt(r.slope_ci_high)}]"
        r2 = "–" if pd.isna(r.r2) else f"{r.r2:.2f}"
        note = f" ({r.note})" if isinstance(r.note, str) and r.note else ""
        lines.append(
            f"| {r.experiment} | {r.arch} | {r.depth} | {series} | {r.kernel} | {r.metric} | {_value(r.value_at_max_width)} | {_fmt(r.slope)} | {ci} | "
            f"{r2} | {r.n_widths} × {r.n_seeds} | {_yes_no(r.monotone)} | **{r.verdict}**{note} |"
        )
    return "\n".join(lines)


def _markdown(results, summary: pd.DataFrame, shown, out: Path) -> str:
    t = stats.THRESHOLDS
    head = headline(summary)
    counts = summary["verdict"].value_counts().to_dict()
    parts = [
        "# pNTK verification report",
        "",
        "Checks that the pseudo-NTK (gradient of the sum of logits / √O) converges to the exact "
        "empirical NTK at initialization at rate O(n^-1/2) in width n (Mohamadi, Bae & Sutherland, "
        "ICML 2023). Each series is fitted as log(error) = a + b·log(n) over all widths and seeds; "
        f"the 95% CI of b comes from a bootstrap over seeds ({t.n_boot} resamples). Verdict: "
        f"**consistent** when the CI overlaps [{t.band_low}, {t.band_high}] and the seed-mean error "
        f"falls monotonically; **inconclusive** when the CI is wider than {t.max_ci_width} or there "
        "are too few seeds; **contradicts** otherwise; **reported** for quantities the theory makes "
        "no claim about (the slope is shown as measured). Thresholds live in `suite/stats.py` "
        "(`THRESHOLDS`).",
        "",
        "## Headline: pNTK vs eNTK, relative Frobenius error (theorem T2)",
        "",
        _verdict_table(head),
        "",
        f"All {len(summary)} fitted series: "
        + ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
        + ". Per experiment (full table at the end):",
        "",
        _counts_table(summary),
        "",
        *_cost_section(out),
        "## What was run",
        "",
    ]
    for name, (rows, meta) in results.items():
        env = meta.get("environment", {})
        shape = ", ".join(
            f"{arch}: depths {sorted(g['depth'].unique().tolist())}, widths {sorted(g['width'].unique().tolist())}"
            for arch, g in rows.groupby("arch")
        )
        fields = [f for f in [f.name for f in dataclasses.fields(EXPERIMENTS[name].config_type)]
                  if f not in ("arch", "depth", "width", "seed") and f in rows.columns]
        settings = "; ".join(
            f"{f} = {', '.join(map(str, sorted(rows[f].dropna().unique().tolist(), key=str)))}" for f in fields
        )
        parts += [
            f"- **{name}** ({EXPERIMENTS[name].theorem}; `python -m suite run {name} --grid {meta['grid']}`): "
            f"{rows['case_key'].nunique()} cases, {rows['seed'].nunique()} seeds; {shape}.",
            f"  Settings: {settings}.",
            f"  Environment: jax {env.get('jax')}, neural-tangents {env.get('neural_tangents')}, "
            f"backend {env.get('backend')} ({env.get('device')}), commit {env.get('git_commit')}; "
            f"compute time {meta.get('compute_seconds', float('nan')):.0f} s.",
        ]
    parts += ["", "## Figures", ""]
    for spec, png in shown:
        parts += [f"### {spec.title}", "", f"![{spec.title}]({png.relative_to(out).as_posix()})", "", spec.caption, ""]
    parts += [
        "## All fitted series",
        "",
        "Metrics (defined in each experiment module's docstring under `suite/experiments/`): "
        + "; ".join(f"`{k}` = {v}" for k, v in _metric_text(results).items()) + ".",
        "",
        _verdict_table(summary),
        "",
        "Regenerate: `python -m suite report` (from saved data), `python -m suite verify` (recompute).",
        "",
    ]
    return "\n".join(parts)


def _cost_section(out: Path) -> list[str]:
    """Key ratios of the committed benchmark baseline (``<out>/bench/baseline-cpu.json``), if any."""
    from suite import bench

    baseline = out / "bench" / "baseline-cpu.json"
    if not baseline.exists():
        return []
    machine = bench.machine_summary(baseline)
    labels = {"cpu": "", "backend": "backend ", "jax": "jax "}
    where = ", ".join(f"{label}{machine[k]}" for k, label in labels.items() if k in machine)
    return [
        "## Cost: pNTK vs eNTK (benchmarks)",
        "",
        f"From the committed benchmark baseline `bench/baseline-cpu.json` ({where}); every table and "
        "the figure are in [`bench/SUMMARY.md`](bench/SUMMARY.md), `nox -s bench` measures a new run.",
        "",
        *bench.headline(baseline),
        "",
    ]


def _counts_table(summary: pd.DataFrame) -> str:
    verdicts = [*stats.VERDICTS, REPORTED]
    lines = ["| experiment | theorem | " + " | ".join(verdicts) + " |", "|---|---|" + "---|" * len(verdicts)]
    for name, rows in summary.groupby("experiment", sort=False):
        counts = rows["verdict"].value_counts()
        cells = " | ".join(str(int(counts.get(v, 0))) for v in verdicts)
        lines.append(f"| {name} | {EXPERIMENTS[str(name)].theorem} | {cells} |")
    return "\n".join(lines)


def _metric_text(results) -> dict[str, str]:
    text: dict[str, str] = {}
    for name in results:
        text.update(EXPERIMENTS[name].metric_text)
    return text


def load_summary(path: str | Path) -> list[dict[str, Any]]:
    """Read a ``summary.json`` (for CI gates)."""
    return json.loads(Path(path).read_text())
