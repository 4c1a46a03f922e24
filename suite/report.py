"""Reports from saved results: ``summary.json`` (fitted rates and verdicts), figures, REPORT.md,
and the gate a CI job runs on ``summary.json``.

Reads only ``<out>/data/*.csv`` written by :mod:`suite.runner`; never computes a kernel. The
statistics behind a verdict are in :mod:`suite.stats`; the predictions each experiment
declares, and the schema of ``summary.json``, are explained in ``reports/THEORY.md``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from suite import paths, results, stats
from suite.errors import SuiteError
from suite.experiments import EXPERIMENTS, Experiment
from suite.figures import DEFAULT_SETTINGS
from suite.store import (
    atomic_write_json,
    atomic_write_text,
)

#: Verdict of series for which the theory predicts nothing (see :func:`suite.stats.verdict`).
REPORTED = "reported"

#: Version of the ``summary.json`` layout (reports/THEORY.md §11); bumped on any change to
#: its fields or their meaning. Version 1 was a bare list of rows without predictions.
SCHEMA_VERSION = 2

_NO_CLAIM = "no rate is claimed by the theory; slope shown as measured"

#: The paper's headline quantity (experiment, kernel, metric): the verdict table shows it first.
HEADLINE = ("convergence", "pntk", "rel_frobenius")
#: Settings of the headline series: the paper's networks (ReLU) in float32, the settings the
#: figures draw by default. Series with another activation or float64 (the float64 spot check)
#: are judged and reported like any other, but are not the headline.
HEADLINE_SETTINGS = DEFAULT_SETTINGS

#: Columns of a summary row that are not part of what identifies its series.
_FIT_COLUMNS = {*stats.SUMMARY_COLUMNS, "value_at_max_width", "headline"}
_SHOWN = {"experiment", "arch", "depth", "kernel", "metric"}


#: Reading stored rows lives in :mod:`suite.results` (shared with the figures); kept here by name.
load_results = results.load
stored_grids = results.stored_grids


def summarize(exp: Experiment, rows: pd.DataFrame) -> pd.DataFrame:
    """Slope fits and verdicts of every series (error vs width over seeds) of one experiment."""
    by = [c for c in exp.series_columns if c in rows.columns]
    # A report-only metric can be undefined for some cases (e.g. lambda_min of a singular
    # kernel); fit what is defined and say how much was left out.
    undefined = rows["metric"].isin(exp.report_only_metrics) & ~np.isfinite(rows["value"])
    dropped = rows[undefined].groupby(by, dropna=False).size()
    rows = rows[~undefined]
    summary = stats.summarize(rows, by=by, predict=exp.prediction,
                              regime=exp.regime(rows) if exp.regime is not None else None)
    summary.insert(0, "experiment", exp.name)
    # The seed-mean (geometric) value at the largest width: a number for every series, also
    # those with one width (no slope) or no claimed rate.
    at_max = rows[rows["width"] == rows.groupby(by, dropna=False)["width"].transform("max")]
    positive = at_max[at_max["value"] > 0]
    means = positive.groupby(by, dropna=False)["value"].apply(lambda v: float(np.exp(np.log(v).mean())))
    summary = summary.merge(means.rename("value_at_max_width").reset_index(), on=by, how="left")
    reported = summary["verdict"] == REPORTED
    summary.loc[reported, "note"] = [
        f"{note}; {_NO_CLAIM}" if note else _NO_CLAIM for note in summary.loc[reported, "note"]
    ]
    summary["headline"] = is_headline(summary)
    for key, count in dropped.items():
        key = key if isinstance(key, tuple) else (key,)
        mask = np.logical_and.reduce([summary[c] == v for c, v in zip(by, key, strict=True)])
        summary.loc[mask, "note"] = summary.loc[mask, "note"] + f"; {count} undefined values left out"
    return summary


def build(out: str | Path | None = None, grid: str | None = None) -> dict[str, Any]:
    """Write ``summary.json``, every figure and ``REPORT.md`` under ``out`` (default: the run
    folder ``reports/latest``; the snapshot is rebuilt by ``python -m suite publish``).

    Returns:
        ``{"summary": Path, "report": Path, "figures": [Path, ...]}``.
    """
    from suite import figures

    out = Path(out if out is not None else paths.LATEST)
    results = load_results(out, grid)
    if not results and grid is not None and stored_grids(out):
        raise SuiteError(
            f"no results of grid {grid!r} in {paths.shown(paths.data_dir(out))}; grids stored there: "
            f"{', '.join(stored_grids(out))} (a --grid-file run is labelled custom-<file stem>)"
        )
    if not results:
        raise SuiteError(
            f"no results in {paths.shown(paths.data_dir(out))}; run an experiment first, e.g. "
            "python -m suite verify (or python -m suite run convergence --grid quick)"
        )
    summaries = [summarize(EXPERIMENTS[name], rows) for name, (rows, _) in results.items()]
    summary = pd.concat(summaries, ignore_index=True)
    summary_path = paths.summary_file(out)
    atomic_write_json(summary_path, {
        "schema_version": SCHEMA_VERSION,
        "schema": "reports/THEORY.md §11",
        "band_halfwidth": stats.THRESHOLDS.band_halfwidth,
        "ci_level": stats.THRESHOLDS.ci_level,
        "rows": _records(summary),
    })

    written: list[Path] = []
    shown: list[tuple[Any, Path]] = []
    for spec in figures.FIGURES.values():
        if spec.experiment not in results:
            continue
        exp_summary = summary[summary["experiment"] == spec.experiment]
        try:
            fig = figures.render(spec.name, results[spec.experiment][0], exp_summary)
        except figures.MissingDataError:
            continue  # this grid has no rows for it (e.g. no activation variants)
        files = figures.save(fig, paths.figures_dir(out), spec.name)
        written += files
        shown.append((spec, next(p for p in files if p.suffix == ".png")))

    report_path = paths.report_file(out)
    atomic_write_text(report_path, _markdown(results, summary, shown, out))
    return {"summary": summary_path, "report": report_path, "figures": written}


def _records(summary: pd.DataFrame) -> list[dict[str, Any]]:
    records = []
    for row in summary.to_dict(orient="records"):
        clean = {}
        for k, v in row.items():
            if isinstance(v, float) and not math.isfinite(v):  # NaN, or a bound's open band end
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


def _headline_quantity(summary: pd.DataFrame) -> pd.Series:
    """Rows of the headline's experiment, kernel and metric (:data:`HEADLINE`), any settings."""
    experiment, kernel, metric = HEADLINE
    return (summary["experiment"] == experiment) & (summary["kernel"] == kernel) & (summary["metric"] == metric)


def is_headline(summary: pd.DataFrame) -> pd.Series:
    """Which rows are the paper's headline quantity (:data:`HEADLINE`), one per arch and depth."""
    mask = _headline_quantity(summary)
    for column, value in HEADLINE_SETTINGS.items():
        if column in summary.columns:  # absent in summaries written before the setting existed
            mask &= summary[column].isna() | (summary[column] == value)
    return mask


def headline(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary rows of the paper's headline quantity (see :data:`HEADLINE`)."""
    return summary[is_headline(summary)]


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
        "| experiment | arch | depth | series | kernel | metric | value at widest | slope | 95% CI | predicted | widths × seeds | monotone | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    varying = _varying(summary)
    for (_, row), r in zip(summary.iterrows(), summary.itertuples(index=False), strict=True):
        series = _series_label(row, varying.get(r.experiment, [])) or "–"
        ci = f"[{_fmt(r.slope_ci_low)}, {_fmt(r.slope_ci_high)}]"
        note = f" ({r.note})" if isinstance(r.note, str) and r.note else ""
        why = f" ({stats.REASONS[r.reason]})" if isinstance(r.reason, str) and r.reason else ""
        lines.append(
            f"| {r.experiment} | {r.arch} | {r.depth} | {series} | {r.kernel} | {r.metric} | {_value(r.value_at_max_width)} | "
            f"{_fmt(r.slope)} | {ci} | {_prediction_text(row)} | {r.n_widths} × {r.n_seeds} | {_yes_no(r.monotone)} | "
            f"**{r.verdict}**{why}{note} |"
        )
    return "\n".join(lines)


def _prediction_text(row: Any) -> str:
    """``-0.50 ± 0.15 (T2)``, ``≤ -0.35 (bound; ...)`` or ``–``."""
    if row["prediction"] is None or pd.isna(row["prediction"]):
        return "–"
    if row["prediction"] == "bound":
        return f"≤ {_fmt(row['band_high'])} ({row['prediction_source']})"
    return f"{_fmt(row['predicted_slope'])} ± {stats.THRESHOLDS.band_halfwidth:g} ({row['prediction_source']})"


def _markdown(results, summary: pd.DataFrame, shown, out: Path) -> str:
    head = headline(summary)
    parts = [
        "# pNTK verification report",
        "",
        *_conclusion(results, summary),
        "## How to read a verdict",
        "",
        "Each series (one experiment, architecture, depth, kernel and metric, and settings such as O or the "
        "ridge) is an error measured at several widths n with several initialization seeds. Its slope b in "
        "log(error) = a + b·log(n) is the mean of one least-squares slope per seed; the 95% interval is the "
        "Student-t interval over those per-seed slopes, which covers the true slope 95% of the time (checked by "
        "simulation in the tests). Each series carries what the theory predicts, declared by its experiment "
        f"and derived in [THEORY.md]({_link(out, paths.THEORY)}): a slope (−0.5 for T1–T4), a bound (at least as fast as "
        f"n^-1/2), or nothing. Verdict: **consistent** when the whole interval lies within ±{stats.THRESHOLDS.band_halfwidth:g} "
        "of the prediction (the band allows for the curvature of the log-log curve at affordable widths, "
        "THEORY.md §10); **contradicts** when it lies wholly outside (for a bound: only when slower); "
        "**inconclusive** otherwise; **reported** when nothing is predicted (the slope is shown as measured). "
        "Monotonicity is shown but does not decide. `python -m suite gate` fails a CI job when a headline "
        "series is not consistent or a contradiction is unexplained.",
        "",
        "## Headline: pNTK vs eNTK, relative Frobenius error (theorem T2)",
        "",
        _verdict_table(head),
        "",
        "Verdicts per experiment (all series in the table at the end):",
        "",
        _counts_table(summary),
        "",
        *_not_consistent_section(summary),
        *_float64_section(summary),
        *_cost_section(out),
        *_cards_section(out),
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
    total = sum(float(meta.get("compute_seconds") or 0.0) for _, meta in results.values())
    parts += [f"- **Total compute time: {total:.0f} s ({total / 3600:.2f} h)** over {len(results)} experiments, "
              f"on {os.cpu_count()} CPU cores of the machine that wrote this report (cases computed elsewhere "
              "and merged count with their own time)."]
    parts += ["", "## Figures", ""]
    for spec, png in shown:
        parts += [f"### {spec.title}", "", f"![{spec.title}]({png.relative_to(out).as_posix()})", "", spec.caption, ""]
        found = spec.findings(results[spec.experiment][0]) if spec.findings else ""
        if found:
            parts += [found, ""]
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


def _float64_section(summary: pd.DataFrame) -> list[str]:
    """The float64 spot check: each headline-quantity series run in float64 beside its float32
    twin (same arch, depth and settings), with both verdicts; empty when none was run."""
    if "dtype" not in summary.columns:
        return []
    quantity = summary[_headline_quantity(summary)]
    f64 = quantity[quantity["dtype"] == "float64"]
    if f64.empty:
        return []
    key = [c for c in quantity.columns if c not in _FIT_COLUMNS and c not in ("dtype", "grid")]
    lines = [
        "## Float64 spot check of the headline",
        "",
        "The same networks and inputs in float64 (jax x64) beside float32: the verdicts should not depend on the "
        "precision, since the errors measured (≥ 1e-3) are far above float32 rounding (~1e-6 relative).",
        "",
        "| arch | depth | float32 slope [95% CI] | verdict | float64 slope [95% CI] | verdict | same verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    same_all = True
    for _, r64 in f64.iterrows():
        twin = quantity[(quantity["dtype"] == "float32")]
        for c in key:
            # Columns of other experiments are NaN here: NaN matches NaN.
            twin = twin[(twin[c] == r64[c]) | (twin[c].isna() & pd.isna(r64[c]))]
        if len(twin) != 1:
            same_all = False
            lines.append(f"| {r64['arch']} | {r64['depth']} | no float32 twin ({len(twin)} matches) | – | "
                         f"{_fmt(r64['slope'])} [{_fmt(r64['slope_ci_low'])}, {_fmt(r64['slope_ci_high'])}] | "
                         f"{r64['verdict']} | – |")
            continue
        r32 = twin.iloc[0]
        same = r32["verdict"] == r64["verdict"]
        same_all &= bool(same)
        lines.append(
            f"| {r64['arch']} | {r64['depth']} | {_fmt(r32['slope'])} [{_fmt(r32['slope_ci_low'])}, "
            f"{_fmt(r32['slope_ci_high'])}] | {r32['verdict']} | {_fmt(r64['slope'])} [{_fmt(r64['slope_ci_low'])}, "
            f"{_fmt(r64['slope_ci_high'])}] | {r64['verdict']} | {_yes_no(same)} |"
        )
    lines += ["", "Every float64 verdict equals its float32 verdict." if same_all
              else "**Some float64 verdicts differ from float32 or have no float32 twin; see the rows marked.**", ""]
    return lines


def _conclusion(results, summary: pd.DataFrame) -> list[str]:
    """The opening paragraph in plain words: prediction, what was tested, what held."""
    head = headline(summary)
    judged = summary[summary["verdict"] != REPORTED]
    counts = judged["verdict"].value_counts()
    consistent_head = int((head["verdict"] == "consistent").sum())
    lo, hi = (head["slope"].min(), head["slope"].max()) if len(head) else (math.nan, math.nan)
    archs = ", ".join(sorted(summary["arch"].dropna().unique()))
    reasons = judged[judged["verdict"] != "consistent"]["reason"].value_counts()
    unexplained_contradictions = int(((judged["verdict"] == "contradicts") & (judged["reason"] == "unexplained")).sum())
    commits = sorted({str(m.get("environment", {}).get("git_commit")) for _, m in results.values()})
    text = [
        "## Conclusion",
        "",
        "**What the theorem predicts.** At initialization, under NTK parameterization, the eNTK Θ of a network "
        "with O outputs is close to pNTK ⊗ I_O: the relative error ‖Θ − pNTK⊗I‖_F/‖Θ‖_F (T2), the largest "
        "off-diagonal and diagonal deviations (T1), the error of λ_max (T3) and the difference of kernel-"
        "regression predictions (T4) all fall like n^-1/2 in the width n (Mohamadi, Bae & Sutherland, ICML 2023).",
        "",
        f"**What was tested.** {len(results)} experiments on {archs} networks: {len(summary)} series of an "
        f"error against width, {len(judged)} of them with a prediction (the rest are reported as measured).",
        "",
        f"**What held.** The headline, the pNTK's relative Frobenius error, is consistent with n^-1/2 for "
        f"{consistent_head} of {len(head)} architecture/depth series (slopes {_fmt(lo)} to {_fmt(hi)}, each "
        f"interval within ±{stats.THRESHOLDS.band_halfwidth:g} of −0.5). Of all {len(judged)} series with a "
        f"prediction, {int(counts.get('consistent', 0))} are consistent, {int(counts.get('inconclusive', 0))} "
        f"inconclusive and {int(counts.get('contradicts', 0))} contradict it."
        + (
            f" The {int(reasons.sum())} that are not consistent are listed below by reason, each with its "
            "numbers and the evidence for the reason: "
            + ", ".join(f"{int(n)} {stats.REASONS[str(k)]}" for k, n in reasons.items())
            + (f". {unexplained_contradictions} contradict their prediction for no known reason (the gate "
               "fails on these)." if unexplained_contradictions else
               ". No series contradicts its prediction for an unknown reason: the unexplained ones are all "
               "inconclusive (their intervals straddle an edge of the band).")
            if len(reasons) else ""
        ),
        "",
    ]
    if any(c.endswith("-dirty") or c == "None" for c in commits):
        text += [f"**Provenance warning:** some results were computed from uncommitted code (commits: {', '.join(commits)}).", ""]
    return text


#: What each reason means and the evidence shown for it.
_REASON_TEXT = {
    "outside_assumptions": "The prediction is our derivation for a setting the theorem does not cover "
    "(standard parameterization, trained networks, ridgeless regression without a λ_min bound): a mismatch "
    "says the derivation is incomplete, not that the theorem fails. Evidence: the source of the prediction.",
    "too_few_seeds": "The interval straddles an edge of the band, and the observed per-seed spread says how "
    "many seeds would decide it (at most {max_seeds:g}× the seeds run). Evidence: per-seed slope sd and "
    "the seeds needed.",
    "pre_asymptotic": "The error is still bending towards the predicted rate: the slope over the larger "
    "half of the widths is closer to the band than the slope over the smaller half, and the per-seed bend "
    "is significant (its 95% interval excludes 0); or the experiment measures that the widths lie below the "
    "regime where the prediction applies (regression: T4's perturbation ratio ≥ 1, THEORY.md §8). Evidence: "
    "the two half-range slopes, and the measurement listed under the table.",
    "unexplained": "None of the above: these would need a closer look.",
}


def _not_consistent_section(summary: pd.DataFrame) -> list[str]:
    judged = summary[(summary["verdict"] != REPORTED) & (summary["verdict"] != "consistent")]
    if judged.empty:
        return ["## Series that are not consistent", "", "None: every series with a prediction is consistent.", ""]
    parts = ["## Series that are not consistent, by reason", ""]
    varying = _varying(summary)
    for key, title in stats.REASONS.items():
        rows = judged[judged["reason"] == key]
        if rows.empty:
            continue
        parts += [
            f"### {title[0].upper() + title[1:]} ({len(rows)})",
            "",
            _REASON_TEXT[key].format(max_seeds=stats.THRESHOLDS.max_seeds_needed),
            "",
            "| experiment | arch | depth | series | kernel | metric | slope | 95% CI | predicted | verdict | "
            "slope, smaller / larger half of widths | per-seed sd | seeds run / needed |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for (_, row), r in zip(rows.iterrows(), rows.itertuples(index=False), strict=True):
            series = _series_label(row, varying.get(r.experiment, [])) or "–"
            needed = "–" if pd.isna(r.seeds_needed) else f"{int(r.seeds_needed)}"
            sd = "–" if pd.isna(r.slope_sd) else f"{r.slope_sd:.2f}"
            parts.append(
                f"| {r.experiment} | {r.arch} | {r.depth} | {series} | {r.kernel} | {r.metric} | {_fmt(r.slope)} | "
                f"[{_fmt(r.slope_ci_low)}, {_fmt(r.slope_ci_high)}] | {_prediction_text(row)} | {r.verdict} | "
                f"{_fmt(r.slope_lower_half)} / {_fmt(r.slope_upper_half)} | {sd} | {r.n_seeds} / {needed} |"
            )
        parts.append("")
        if key == "pre_asymptotic" and "regime_note" in rows:
            noted = rows[rows["regime_note"] != ""]
            for (_, row), r in zip(noted.iterrows(), noted.itertuples(index=False), strict=True):
                series = _series_label(row, varying.get(r.experiment, [])) or "–"
                parts.append(f"- {r.experiment} {r.arch} depth {r.depth} {series} {r.kernel}: {r.regime_note}")
            if not noted.empty:
                parts.append("")
    return parts


def _link(out: Path, target: Path) -> str:
    """``target`` relative to the folder of a report written under ``out`` (a markdown link)."""
    return Path(os.path.relpath(target.resolve(), Path(out).resolve())).as_posix()


def _cost_section(out: Path) -> list[str]:
    """Key ratios of the committed benchmark baseline (``reports/bench/baseline-cpu.json``), if any,
    linked relative to ``out`` (the snapshot or a run folder)."""
    from suite import bench

    baseline = paths.BENCH / "baseline-cpu.json"
    if not baseline.exists():
        return []
    # The torch.func peer run of nox -s bench_peers, kept beside the baseline when it was run.
    peers = [p for p in [paths.BENCH / "baseline-cpu-peers.json"] if p.exists()]
    machine = bench.machine_summary(baseline)
    labels = {"cpu": "", "backend": "backend ", "jax": "jax "}
    where = ", ".join(f"{label}{machine[k]}" for k, label in labels.items() if k in machine)
    return [
        "## Cost: pNTK vs eNTK (benchmarks)",
        "",
        f"From the committed benchmark baseline `{_link(out, baseline)}`"
        + (f" and its torch.func peer run `{_link(out, peers[0])}`" if peers else "")
        + f" ({where}); every table and "
        f"the figure are in [`{_link(out, paths.BENCH / 'SUMMARY.md')}`]({_link(out, paths.BENCH / 'SUMMARY.md')}), "
        "`nox -s bench` measures a new run.",
        "",
        *bench.headline(baseline, peers=peers),
        "",
    ]


#: The committed checkpoint cards shown side by side (folder under ``paths.CARDS``, column title).
CHECKPOINT_CARDS = (("init", "at initialization"), ("trained", "after training"))


def _cards_section(out: Path) -> list[str]:
    """The mnist5k CNN's approximation cards at initialization and after training
    (``reports/cards/init`` and ``reports/cards/trained``) side by side, when both exist."""
    from suite import cards

    folders = {title: paths.CARDS / name for name, title in CHECKPOINT_CARDS}
    if not all((folder / "card.json").exists() for folder in folders.values()):
        return []
    loaded = {title: cards.load(folder) for title, folder in folders.items()}
    first = next(iter(loaded.values()))
    links = " and ".join(f"[{title}]({_link(out, folder / 'card.md')})" for title, folder in folders.items())
    commands = "; ".join(f"`python -m suite card {d['name']} --out {paths.shown(folders[t])}`"
                         for t, d in loaded.items())
    return [
        "## Approximation cards: the training experiment's CNN before and after training",
        "",
        f"`python -m suite card` on the mnist5k CNN of the training experiment (O = {first['n_outputs']}, "
        f"P = {first['n_params']:,}), on a probe of {first['n_probe']} of the {first['n_inputs']:,} mnist5k images it "
        f"was not trained on; the whole cards: {links} ({commands}). The theorems cover the left column only.",
        "",
        *cards.comparison_table(loaded),
        "",
        "| " + " | ".join(loaded) + " |",
        "|" + "---|" * len(loaded),
        "| " + " | ".join(f"{d['recommendation']}" for d in loaded.values()) + " |",
        "| " + " | ".join(f"![card {t}]({_link(out, folders[t] / 'card.png')})" for t in loaded) + " |",
        "",
    ]


def _counts_table(summary: pd.DataFrame) -> str:
    verdicts = list(stats.VERDICTS)
    reasons = list(stats.REASONS)
    lines = ["| experiment | theorem | " + " | ".join(verdicts) + " | not consistent because: "
             + ", ".join(stats.REASONS[r] for r in reasons) + " |", "|---|---|" + "---|" * (len(verdicts) + 1)]
    for name, rows in summary.groupby("experiment", sort=False):
        counts = rows["verdict"].value_counts()
        why = rows["reason"].value_counts()
        cells = " | ".join(str(int(counts.get(v, 0))) for v in verdicts)
        lines.append(f"| {name} | {EXPERIMENTS[str(name)].theorem} | {cells} | "
                     + " / ".join(str(int(why.get(r, 0))) for r in reasons) + " |")
    return "\n".join(lines)


def _metric_text(results) -> dict[str, str]:
    text: dict[str, str] = {}
    for name in results:
        text.update(EXPERIMENTS[name].metric_text)
    return text


def load_summary(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``summary.json`` (for CI gates).

    Raises:
        SuiteError: the file is missing, not JSON, or of another schema version.
    """
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        raise SuiteError(
            f"{path} does not exist; run python -m suite verify (or report) first, or judge the committed "
            f"snapshot with --summary {paths.shown(paths.summary_file(paths.SNAPSHOT))}"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise SuiteError(f"cannot read {path}: {exc}") from exc
    version = payload.get("schema_version") if isinstance(payload, dict) else 1
    if version != SCHEMA_VERSION:
        raise SuiteError(
            f"{path} has summary schema version {version}, this suite reads version {SCHEMA_VERSION}; "
            "rebuild it with python -m suite report"
        )
    return list(payload["rows"])


def gate(rows: list[dict[str, Any]]) -> list[str]:
    """What a CI job should fail on, one line each (empty: pass).

    Fails when a headline series (pNTK relative Frobenius error, T2, per arch and depth) is not
    ``consistent``, when there is no headline series at all, and when any series contradicts
    its prediction for no known reason (``reason == "unexplained"``).
    """
    problems = []
    head = [r for r in rows if r.get("headline")]
    if not head:
        problems.append("no headline series (convergence, pntk, rel_frobenius) in the summary; run python -m suite verify")
    for r in head:
        if r["verdict"] != "consistent":
            problems.append(f"headline series {_describe(r)} is {r['verdict']}: {_numbers(r)}")
    for r in rows:
        if r["verdict"] == "contradicts" and r.get("reason") == "unexplained":
            problems.append(f"unexplained contradiction: {_describe(r)}: {_numbers(r)}")
    return problems


def _describe(r: dict[str, Any]) -> str:
    keys = ("experiment", "arch", "depth", "kernel", "metric")
    extra = {k: r[k] for k in ("parameterization", "n_outputs", "ridge", "epoch", "stages")
             if r.get(k) is not None and not (k == "parameterization" and r[k] == "ntk")
             and not (k == "n_outputs" and r[k] == 10)}
    return "/".join(str(r.get(k)) for k in keys) + (f" ({', '.join(f'{k}={v}' for k, v in extra.items())})" if extra else "")


def _numbers(r: dict[str, Any]) -> str:
    def f(x: Any) -> str:
        return "nan" if x is None else f"{x:+.2f}"

    band = f"[{f(r.get('band_low'))}, {f(r.get('band_high'))}]"
    return (f"slope {f(r.get('slope'))}, 95% CI [{f(r.get('slope_ci_low'))}, {f(r.get('slope_ci_high'))}], "
            f"band {band}, {r.get('n_widths')} widths x {r.get('n_seeds')} seeds")
