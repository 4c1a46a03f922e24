"""fig_cost: the cheap kernels have the same error as the pNTK but not the same cost.

Reads ``reports/data/alternatives.csv``: every kernel computed by its own implementation.
Per output count O (one row of panels each): one panel per architecture with the relative
Frobenius error ‖eNTK − K⊗I‖_F/‖eNTK‖_F of each approximate kernel K against width, and a
last panel with the median wall time of one kernel call at the largest width of each
architecture (log y), each bar annotated with the eNTK's time divided by the kernel's.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from suite.figures import _common as c
from suite.figures import style

NAME = "fig_cost"
EXPERIMENT = "alternatives"
TITLE = "Same error, different cost: approximate kernels vs the eNTK at initialisation"
YLABEL = style.METRIC_LABELS["rel_frobenius"]
UNSCALED = "unscaled_sum"

#: Kernel order: legends and bars (eNTK first in the timing panel only).
ORDER: tuple[str, ...] = ("entk", "pntk", UNSCALED, "logit_ntk", "projected_ntk", "trace_ntk")
LABELS: dict[str, str] = {**style.KERNEL_LABELS, UNSCALED: "unscaled sum / O"}
COLORS: dict[str, str] = {**style.KERNEL_PALETTE, UNSCALED: "#E69F00"}
MARKERS: dict[str, str] = {**style.KERNEL_MARKERS, UNSCALED: "o"}
LINESTYLES: dict[str, object] = {**style.KERNEL_LINESTYLES, UNSCALED: (0, (1, 2))}


def _color(kernel: str, kernels: list[str]) -> str:
    return COLORS.get(kernel) or style.kernel_color(kernel, kernels)


def render(data: pd.DataFrame, summary: pd.DataFrame | None = None) -> Figure:
    """Error vs width per kernel and arch, plus the time per call at the largest width.

    Raises:
        SuiteError: On missing columns or a mix of settings other than O.
        MissingDataError: If there are no ``rel_frobenius`` rows for an approximate kernel.
    """
    df = c.prepare(data, NAME)
    errors = c.select(df, "rel_frobenius", None, NAME)
    errors = errors[errors["kernel"] != "entk"]
    if errors.empty:
        raise c.MissingDataError(f"{NAME}: no rel_frobenius rows for an approximate kernel")
    seconds = c.positive(df[df["metric"] == "seconds"])
    outputs = sorted(int(o) for o in errors["n_outputs"].unique())
    # O is the one setting this experiment varies on purpose: one row of panels per O.
    settings = [c.single_setting(errors[errors["n_outputs"] == o], NAME) for o in outputs]
    setting = dict(settings[0])
    if len(outputs) > 1:
        setting["n_outputs"] = None
    archs = style.ordered(errors["arch"].unique(), style.ARCH_ORDER)
    kernels = [k for k in style.ordered(errors["kernel"].unique(), ORDER)]
    per_input = _jacobians_per_input(df)

    with style.theme():
        n_cols = len(archs) + 1
        legend_entries = len(kernels) + 1
        row_height = 2.4 + 1.0 + 0.22 * legend_entries
        fig = Figure(
            figsize=(c.PANEL_WIDTH * len(archs) + 5.2, row_height * len(outputs) + 0.6), layout="constrained"
        )
        fig.get_layout_engine().set(w_pad=0.04, h_pad=0.04, hspace=0.02, wspace=0.02)  # type: ignore[union-attr, call-arg]
        subs = fig.subfigures(len(outputs), n_cols, squeeze=False, width_ratios=[1.0] * len(archs) + [1.3])
        all_axes: list[Axes] = []
        for r, o in enumerate(outputs):
            first: Axes | None = None
            rows_o = errors[errors["n_outputs"] == o]
            suffix = f" · O = {o}" if len(outputs) > 1 else ""
            for j, arch in enumerate(archs):
                sfig = subs[r][j]
                ax = sfig.add_subplot(1, 1, 1, sharey=first)
                first = first or ax
                all_axes.append(ax)
                panel = rows_o[rows_o["arch"] == arch]
                depth = int(panel["depth"].max()) if not panel.empty else 0
                panel = panel[panel["depth"] == depth]
                handles = []
                for kernel in kernels:
                    case = panel[panel["kernel"] == kernel]
                    if case.empty:
                        continue
                    key = {"experiment": EXPERIMENT, "arch": arch, "depth": depth, "n_outputs": o,
                           "kernel": kernel, "metric": "rel_frobenius"}
                    handles.append(
                        c.plot_fitted(
                            ax, case, summary, key,
                            by=["kernel"], label=LABELS.get(kernel, kernel),
                            color=_color(kernel, kernels),
                            marker=MARKERS.get(kernel, "o"),
                            linestyle=LINESTYLES.get(kernel, "-"),
                            band=kernel == "pntk",
                            filled=kernel != UNSCALED,
                        )
                    )
                c.append_reference(ax, panel, handles)
                c.finish_panel(
                    sfig, ax, panel["width"].unique(), handles,
                    ylabel=YLABEL if j == 0 else None,
                    title=f"{style.arch_label(arch)} (depth {depth}){suffix}",
                )
            sfig = subs[r][-1]
            ax = sfig.add_subplot(1, 1, 1)
            all_axes.append(ax)
            _timing_panel(sfig, ax, seconds[seconds["n_outputs"] == o], archs, o, per_input, suffix)
        return c.finish_figure(fig, TITLE, setting, all_axes)


def _jacobians_per_input(df: pd.DataFrame) -> dict[tuple[str, int], float]:
    rows = df[df["metric"] == "jacobians_per_input"]
    return {(str(k), int(o)): float(v) for k, o, v in zip(rows["kernel"], rows["n_outputs"], rows["value"], strict=True)}


def _timing_panel(sfig, ax: Axes, seconds: pd.DataFrame, archs: list[str], o: int,
                  per_input: dict[tuple[str, int], float], suffix: str) -> None:
    """Grouped bars: seed geometric mean of the median seconds per call at each arch's largest
    width (min–max over seeds as error bars), annotated with eNTK time / kernel time."""
    ax.set_yscale("log")  # before drawing: bars on a linear axis would pin the limits to 0
    kernels = style.ordered(seconds["kernel"].unique(), ORDER)
    if seconds.empty:
        ax.text(0.5, 0.5, "no timings", transform=ax.transAxes, ha="center", color="0.4")
        ax.set_ylim(1e-4, 1.0)
        ax.set_title(f"time per call{suffix}")
        return
    bar_w = 0.8 / max(len(kernels), 1)
    lows, highs = [], []
    ticks, ticklabels = [], []
    for i, arch in enumerate(archs):
        rows = seconds[seconds["arch"] == arch]
        if rows.empty:
            continue
        depth = int(rows["depth"].max())
        rows = rows[rows["depth"] == depth]
        width = int(rows["width"].max())
        rows = rows[rows["width"] == width]
        stats = rows.groupby("kernel")["value"].agg(
            center=lambda v: float(np.exp(np.mean(np.log(v)))), lo="min", hi="max"
        )
        ticks.append(i)
        ticklabels.append(f"{style.arch_label(arch)}\nn = {width}")
        base = stats["center"].get("entk", math.nan)
        for k, kernel in enumerate(kernels):
            if kernel not in stats.index:
                continue
            center, lo, hi = (float(stats.loc[kernel, s]) for s in ("center", "lo", "hi"))
            x = i - 0.4 + bar_w * (k + 0.5)
            ax.bar(x, center, width=bar_w * 0.9, color=_color(kernel, kernels),
                   hatch="//" if kernel == UNSCALED else None, edgecolor="white", linewidth=0.5, zorder=2)
            ax.errorbar(x, center, yerr=[[center - lo], [hi - center]], color="0.25", linewidth=0.9,
                        capsize=1.5, zorder=3)
            if kernel != "entk" and math.isfinite(base):
                ratio = base / center
                text = f"{ratio:.0f}×" if ratio >= 10 else f"{ratio:.1f}×"
                ax.text(x, hi * 1.25, text, rotation=90, ha="center", va="bottom", fontsize=8, color="0.2")
            lows.append(lo)
            highs.append(hi)
    ax.set_ylim(min(lows) / 3, max(highs) * 30)  # headroom for the annotations
    ax.set_xticks(ticks, ticklabels)
    ax.set_xlim(-0.6, len(archs) - 0.4)
    ax.grid(False, axis="x")
    ax.set_ylabel("seconds per call (median of 3)")
    ax.set_title(f"time at the largest width{suffix}")
    handles = []
    for kernel in kernels:
        n_jac = per_input.get((kernel, o))
        jac = "" if n_jac is None else f" · {n_jac:.0f} Jacobian{'s' if n_jac != 1 else ''}/input"
        handles.append(Patch(facecolor=_color(kernel, kernels), hatch="//" if kernel == UNSCALED else None,
                             edgecolor="white", label=f"{LABELS.get(kernel, kernel)}{jac}"))
    sfig.legend(handles=handles, loc="outside lower center", ncols=1, title="above bars: eNTK time / kernel time")


FIGURE = c.FigureSpec(
    order=25,
    name=NAME,
    experiment=EXPERIMENT,
    title=TITLE,
    caption=(
        "Left: relative Frobenius distance ‖eNTK − K⊗I‖_F/‖eNTK‖_F of each approximate kernel K, "
        "each computed by its own implementation, against width (log-log; geometric mean over "
        "seeds, min–max band for the pNTK, dashed grey ∝ n^-1/2, fitted slopes with 95% CIs). "
        "The unscaled sum of logits divided by O is the pNTK exactly, so its line lies on the "
        "pNTK's. Right: wall time of one kernel call at the largest width (median of 3 calls "
        "after compilation; geometric mean over seeds, min–max bars), annotated with the eNTK's "
        "time divided by the kernel's. Timings are informative only: the machine was shared."
    ),
    render=render,
)
