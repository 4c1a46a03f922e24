"""The benchmark figure: a 2x2 summary of one ``nox -s bench`` run, drawn from its saved
pytest-benchmark JSON (no kernel is computed).

Not an experiment figure: it defines no ``FIGURE``, so :data:`suite.figures.FIGURES` (and the
report built over it from ``reports/data``) does not list it; ``python -m suite.bench
summarize RUN.json --out DIR`` renders it beside the run's summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

from suite.bench.loading import NEAR_LIMIT_TARGET, load_runs
from suite.bench.tables import fig1_table, scaling_table
from suite.figures import _common, style


def render_figure(df: pd.DataFrame) -> Any:
    """A 2x2 matplotlib figure of one run (from its saved JSON, no kernel is computed):
    Figure 1's time and memory against O, time against N, and the pNTK over its bound.
    Panels without data say so."""
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
            empty = bool(f1.empty or f1[[f"{k}_{unit}" for k in kernel_style]].isna().all().all())
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


def write_figure(json_path: str | Path, png: str | Path, peers: tuple[str | Path, ...] = ()) -> Path:
    """Render :func:`render_figure` for a run (and its peer runs) and save it as ``png`` (atomically)."""
    png = Path(png)
    fig = render_figure(load_runs([json_path, *peers]))
    try:
        written = _common.save(fig, png.parent, png.stem)
    finally:
        plt.close(fig)
    return written[0]

