"""fig_depth: the rate stays about n^-1/2 at every depth; the constant grows with depth.

Reads ``reports/data/depth.csv`` (metric ``rel_frobenius``, kernel ``pntk``). One panel per
architecture (error vs width, one line per depth, sequential palette), and a last panel with
each series' prefactor against depth: the geometric mean of err·√n over widths and seeds, i.e.
the constant C of err = C n^-1/2 if the rate were exactly -1/2. ResNets are labelled by stage
layout (``stages``) when the data has one; their depth is the number of residual blocks.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

from suite.figures import _common as c
from suite.figures import style
from suite.stats import fit_power_law

NAME = "fig_depth"
EXPERIMENT = "depth"
TITLE = "Depth: relative Frobenius error of the pNTK vs width, and its prefactor vs depth"
YLABEL = "‖eNTK − pNTK⊗I‖$_F$ / ‖eNTK‖$_F$"
PREFACTOR_LABEL = "prefactor: error·√n (geometric mean)"


def _stages(rows: pd.DataFrame) -> pd.Series:
    """The stage layout per row as a string ('' when none; the CSV reads an empty cell as NaN)."""
    if "stages" not in rows.columns:
        return pd.Series("", index=rows.index)
    return rows["stages"].map(lambda v: "" if pd.isna(v) else str(v))


def _series_label(arch: str, depth: int, stages: str) -> str:
    if stages:
        return f"{stages} ({depth} blocks)"
    if arch == "wrn":
        return f"WRN-{6 * depth + 4} ({depth} blocks/stage)"
    return f"depth {depth}" + (" (blocks)" if arch == "resnet" else "")


def prefactor(rows: pd.DataFrame) -> float:
    """Geometric mean of value * sqrt(width) over the rows (C of C n^-1/2)."""
    v = rows["value"].to_numpy(dtype=np.float64) * np.sqrt(rows["width"].to_numpy(dtype=np.float64))
    return float(np.exp(np.mean(np.log(v))))


def _layout(n_arch: int, legend_entries: int) -> tuple[Figure, list[SubFigure], list[Axes]]:
    """Like :func:`suite.figures._common.panel_grid` with one extra panel whose y axis (the
    prefactor) is not shared with the error panels."""
    width = max(c.PANEL_WIDTH * (n_arch + 1), 7.5)
    height = 2.4 + 1.0 + 0.22 * legend_entries
    fig = Figure(figsize=(width, height + 0.6), layout="constrained")
    fig.get_layout_engine().set(w_pad=0.04, h_pad=0.04, hspace=0.02, wspace=0.02)  # type: ignore[union-attr, call-arg]
    subs = list(fig.subfigures(1, n_arch + 1, squeeze=False)[0])
    axes: list[Axes] = []
    for k, sub in enumerate(subs):
        share = axes[0] if 0 < k < n_arch else None
        axes.append(sub.add_subplot(1, 1, 1, sharey=share))
    return fig, subs, axes


def render(data: pd.DataFrame, summary: pd.DataFrame | None = None) -> Figure:
    """Log-log pNTK error vs width per arch and depth, plus the prefactor vs depth.

    Raises:
        SuiteError: missing columns or a mix of settings.
        MissingDataError: no ``rel_frobenius`` rows for the ``pntk``.
    """
    df = c.prepare(data, NAME)
    rows = c.select(df, "rel_frobenius", ["pntk"], NAME)
    rows = rows.assign(stages=_stages(rows))
    setting = c.single_setting(rows, NAME)
    archs = style.ordered(rows["arch"].unique(), style.ARCH_ORDER)
    colors = style.depth_palette(rows["depth"].unique())  # one palette: same depth, same colour
    depth_rank = {d: i for i, d in enumerate(sorted(colors))}
    series = rows.drop_duplicates(["arch", "depth", "stages"])
    n_entries = max(int(series.groupby("arch").size().max()) + 1, len(archs))
    with style.theme():
        fig, sfigs, axes = _layout(len(archs), n_entries)
        prefactors = []
        for j, arch in enumerate(archs):
            ax, sfig = axes[j], sfigs[j]
            panel = rows[rows["arch"] == arch]
            handles = []
            for (depth, stages), case in panel.groupby(["depth", "stages"], sort=True):
                key = {"experiment": EXPERIMENT, "arch": arch, "depth": depth,
                       "kernel": "pntk", "metric": "rel_frobenius"}
                if stages and summary is not None and "stages" in summary.columns:
                    key["stages"] = stages
                handles.append(
                    c.plot_fitted(
                        ax, case, summary, key,
                        by=["depth"], label=_series_label(arch, int(depth), stages),
                        color=colors[depth],
                        marker=style.DEPTH_MARKERS[depth_rank[depth] % len(style.DEPTH_MARKERS)],
                    )
                )
                prefactors.append((arch, int(depth), stages, prefactor(case)))
            c.append_reference(ax, panel, handles)
            # Blank entries keep every panel's legend, hence its plot area, the same height.
            handles += [Line2D([], [], linestyle="none", label=" ")] * (n_entries - len(handles))
            c.finish_panel(
                sfig,
                ax,
                panel["width"].unique(),
                handles,
                ylabel=YLABEL if j == 0 else None,
                title=style.arch_label(arch),
            )

        ax, sfig = axes[-1], sfigs[-1]
        table = pd.DataFrame(prefactors, columns=["arch", "depth", "stages", "prefactor"])
        handles = []
        for arch in archs:
            pts = table[table["arch"] == arch].sort_values("depth")
            label = style.arch_label(arch)
            if pts["depth"].nunique() >= 2:
                exponent, _, _ = fit_power_law(pts["depth"], pts["prefactor"])
                label += f": prefactor ∝ depth$^{{{exponent:.2f}}}$".replace("-", "−")
            (line,) = ax.plot(pts["depth"], pts["prefactor"], color=style.ARCH_COLORS.get(arch, "0.3"),
                              marker=style.ARCH_MARKERS.get(arch, "D"), label=label)
            handles.append(line)
        handles += [Line2D([], [], linestyle="none", label=" ")] * (n_entries - len(handles))
        depths = sorted(table["depth"].unique().tolist())
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(depths))
        ax.xaxis.set_major_formatter(FixedFormatter([str(d) for d in depths]))
        ax.xaxis.set_minor_locator(NullLocator())
        if len(depths) >= 2:
            pad = 2 ** (0.08 * math.log2(depths[-1] / depths[0]))
            ax.set_xlim(depths[0] / pad, depths[-1] * pad)
        ax.set_xlabel("depth (MLP: layers; ResNet: blocks)")
        ax.set_ylabel(PREFACTOR_LABEL)
        ax.set_title("prefactor vs depth")
        sfig.legend(handles=handles, loc="outside lower center", ncols=1, handlelength=2.6)
        return c.finish_figure(fig, TITLE, setting, axes)


FIGURE = c.FigureSpec(
    order=22,
    name=NAME,
    experiment=EXPERIMENT,
    title=TITLE,
    caption=(
        "Relative Frobenius error of the pNTK against the eNTK at initialisation for MLPs of "
        "1–8 hidden layers and ResNets with stage layouts up to ResNet-18's (2-2-2-2; depth = "
        "residual blocks), against width (log-log; geometric mean over seeds, min–max band, "
        "dashed grey ∝ n^-1/2, fitted slopes with Student-t 95% CIs). Right: the prefactor "
        "C = geometric mean of error·√n per series against depth (n: hidden units, or the "
        "ResNet's first-stage channels), with a power law fitted across depths; the theorem's "
        "rate does not depend on depth, its constant may."
    ),
    render=render,
)
