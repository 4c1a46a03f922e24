"""fig_regression: eNTK vs pNTK kernel-regression predictions against width (theorem T4).

Reads ``reports/data/regression.csv``. Top row: ``pred_rel_diff`` of the pNTK,
||f_e − f_p||_F / ||f_e||_F on the test set, against width (log-log), one panel
per architecture, one line per relative ridge level, with the n^-1/2 guide; a filled
marker is a width where the seed-median ``perturbation_ratio`` is below 1, i.e. in the
first-order regime that T4's bound covers (THEORY.md §8), a hollow one is outside it.
Middle row: that ``perturbation_ratio`` per ridge against width, with the line at 1.
Bottom row: ``test_acc`` of the eNTK, pNTK and mean-trace predictors at the smallest
ridge run (ridgeless when present), and of the eNTK and pNTK at the largest ridge
(thin dotted), linear y in [0, 1], so both the accuracy gap and the accuracy that
the first-order regime costs are visible. Each panel shows the deepest depth run
for its architecture.
"""

from __future__ import annotations

import textwrap
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MultipleLocator

from suite.errors import SuiteError
from suite.figures import _common as c
from suite.figures import style

NAME = "fig_regression"
EXPERIMENT = "regression"
TITLE = "Kernel regression: difference of eNTK and pNTK predictions against width (T4)"
DIFF_LABEL = "‖f$_{eNTK}$ − f$_{pNTK}$‖$_F$ / ‖f$_{eNTK}$‖$_F$"
RATIO_LABEL = "perturbation ratio\n‖Θ − pNTK⊗I‖$_2$ / (λ$_{min}$ + λ)"
ACC_LABEL = "test accuracy"
ACC_KERNELS = ("entk", "pntk", "trace_ntk")
#: Columns of the regression frame beyond the figures' common ones.
EXTRA_COLUMNS = ("ridge", "n_train", "n_test")


def ridge_label(ridge: float) -> str:
    """Legend text of a relative ridge level: ``ridgeless`` or ``λ = 0.1·mean diag``."""
    if ridge == 0:
        return "ridgeless"
    return f"λ = {ridge:g}·mean diag"


def ridge_palette(ridges: list[float]) -> dict[float, Any]:
    """Sequential colours: ridgeless darkest, the largest ridge lightest."""
    ordered = sorted(set(ridges))
    colors = sns.color_palette("crest_r", max(len(ordered), 2))
    return {r: mpl.colors.to_rgb(colors[i]) for i, r in enumerate(ordered)}


def _setting(rows: pd.DataFrame) -> tuple[dict[str, Any], str]:
    """The one setting of ``rows`` and its subtitle (train and test sizes instead of N)."""
    setting = dict(c.single_setting(rows, NAME))
    sizes = []
    for col in ("n_train", "n_test"):
        values = sorted(rows[col].dropna().unique().tolist())
        if len(values) > 1:
            raise SuiteError(f"{NAME}: the data mixes {col} values {values}; filter the frame first")
        sizes.append(int(values[0]))
    setting["n_inputs"] = None
    text = c.setting_text(setting)
    return setting, f"{text} · {sizes[0]} train / {sizes[1]} test inputs · centred one-hot targets"


def _median_ratio(ratio: pd.DataFrame) -> dict[tuple[float, int], float]:
    """(ridge, width) -> seed-median perturbation ratio."""
    if ratio.empty:
        return {}
    med = ratio.groupby(["ridge", "width"])["value"].median().reset_index()
    return {(float(r), int(w)): float(v) for r, w, v in med[["ridge", "width", "value"]].itertuples(index=False)}


def render(data: pd.DataFrame, summary: pd.DataFrame | None = None) -> Figure:
    """Prediction difference (top, log-log, one line per ridge), the perturbation ratio
    (middle) and test accuracy (bottom).

    Args:
        data: Tidy regression frame (the figures' columns plus ``ridge``, ``n_train``, ``n_test``).
        summary: Optional summary rows to take fitted slopes from.

    Returns:
        The figure (not yet saved).

    Raises:
        SuiteError: On missing columns or a mix of settings.
        MissingDataError: If there are no ``pred_rel_diff`` rows for the pNTK.
    """
    c.check_columns(data, NAME, (*c.REQUIRED_COLUMNS, *EXTRA_COLUMNS))
    df = c.prepare(data, NAME)
    df["ridge"] = pd.to_numeric(df["ridge"], errors="coerce").astype("float64")
    diff = c.select(df, "pred_rel_diff", ["pntk"], NAME)
    setting, subtitle = _setting(diff)
    chance = 1.0 / int(setting["n_outputs"]) if setting.get("n_outputs") is not None else float("nan")
    # One depth per panel: the deepest run for each architecture.
    depth_of = c.deepest(diff)
    diff = diff[diff["depth"] == diff["arch"].map(depth_of)]
    ratio = c.positive(df[(df["metric"] == "perturbation_ratio") & (df["kernel"] == "pntk")])
    ratio = ratio[ratio["depth"] == ratio["arch"].map(depth_of)]
    acc = df[(df["metric"] == "test_acc") & df["kernel"].isin(ACC_KERNELS)]
    acc = acc[acc["depth"] == acc["arch"].map(depth_of)]
    archs = style.ordered(diff["arch"].unique(), style.ARCH_ORDER)
    ridges = sorted(diff["ridge"].unique().tolist())
    colors = ridge_palette(ridges)
    acc_ridges = sorted(acc["ridge"].unique().tolist()) if not acc.empty else []
    acc_ridge = acc_ridges[0] if acc_ridges else None
    top_ridge = acc_ridges[-1] if len(acc_ridges) > 1 else None
    has_ratio = not ratio.empty
    n_rows = 1 + has_ratio + (acc_ridge is not None)
    with style.theme():
        fig, sfigs, axes = c.panel_grid(n_rows, len(archs), max(len(ridges) + 2, len(ACC_KERNELS) + 2))
        for j, arch in enumerate(archs):
            ax, sfig = axes[0][j], sfigs[0][j]
            panel = diff[diff["arch"] == arch]
            depth = int(panel["depth"].iloc[0])
            below = _median_ratio(ratio[ratio["arch"] == arch])
            handles = []
            for ridge in ridges:
                case = panel[panel["ridge"] == ridge]
                if case.empty:
                    continue
                key = {"experiment": EXPERIMENT, "arch": arch, "depth": depth, "ridge": ridge,
                       "kernel": "pntk", "metric": "pred_rel_diff"}
                marker = style.DEPTH_MARKERS[ridges.index(ridge) % len(style.DEPTH_MARKERS)]
                agg = c.seed_summary(case, ["ridge"])
                handles.append(
                    c.plot_series(ax, agg, color=colors[ridge], marker=marker, filled=not below,
                                  label=c.with_slope(ridge_label(ridge), c.slope_text(case, summary, key)))
                )
                inside = agg[[below.get((ridge, int(w)), np.inf) < 1 for w in agg["width"]]]
                if below and not inside.empty:
                    ax.plot(inside["width"].to_numpy(dtype=np.float64), inside["center"].to_numpy(dtype=np.float64),
                            linestyle="none", marker=marker, color=colors[ridge], zorder=4)
            c.append_reference(ax, panel, handles)
            if below:
                handles.append(Line2D([], [], linestyle="none", marker="o", color="0.35",
                                      label="filled: perturbation ratio < 1"))
            c.finish_panel(sfig, ax, panel["width"].unique(), handles,
                           ylabel=DIFF_LABEL if j == 0 else None,
                           title=f"{style.arch_label(arch)} (depth {depth})")
            if has_ratio:
                _ratio_panel(sfigs[1][j], axes[1][j], ratio[ratio["arch"] == arch], ridges, colors,
                             panel["width"].unique(), j == 0)
            if acc_ridge is not None:
                _accuracy_panel(sfigs[n_rows - 1][j], axes[n_rows - 1][j], acc[acc["arch"] == arch],
                                panel["width"].unique(), j == 0, acc_ridge, top_ridge, chance)
        log_rows = [axes[0], *([axes[1]] if has_ratio else [])]
        c.finish_figure(fig, TITLE, {}, [ax for row in log_rows for ax in row])
        chars = max(30, int(fig.get_figwidth() * 10))
        fig.suptitle(textwrap.fill(TITLE, chars) + "\n" + textwrap.fill(subtitle, chars))
        return fig


def _ratio_panel(sfig, ax, rows: pd.DataFrame, ridges: list[float], colors, widths, first: bool) -> None:
    """Seed-median perturbation ratio per ridge (geometric mean line, min-max band), line at 1."""
    for ridge in ridges:
        case = rows[rows["ridge"] == ridge]
        if case.empty:
            continue
        c.plot_series(ax, c.seed_summary(case, ["ridge"]), color=colors[ridge],
                      marker=style.DEPTH_MARKERS[ridges.index(ridge) % len(style.DEPTH_MARKERS)],
                      label=ridge_label(ridge))
    one = ax.axhline(1.0, color=style.REFERENCE_COLOR, linestyle="--", linewidth=1.2, zorder=1,
                     label="1: below it T4's bound is first order")
    c.finish_panel(sfig, ax, widths, [one], ylabel=RATIO_LABEL if first else None,
                   title="perturbation ratio (same ridges)")


def _accuracy_panel(sfig, ax, rows: pd.DataFrame, widths, first: bool, ridge: float | None,
                    top_ridge: float | None, chance: float) -> None:
    """Mean test accuracy over seeds (min-max band) of each predictor at the smallest ridge, and
    of the eNTK and pNTK at the largest (thin dotted), linear y in [0, 1]."""
    handles = []
    for kernel in ACC_KERNELS:
        case = rows[(rows["kernel"] == kernel) & (rows["ridge"] == ridge)]
        if case.empty:
            continue
        agg = case.groupby("width")["value"].agg(center="mean", lo="min", hi="max").reset_index()
        handles.append(
            c.plot_series(
                ax, agg,
                color=style.kernel_color(kernel, ACC_KERNELS),
                marker=style.KERNEL_MARKERS.get(kernel, "o"),
                linestyle=style.KERNEL_LINESTYLES.get(kernel, "-"),
                label=style.kernel_label(kernel) + ("" if ridge is None else f", {ridge_label(ridge)}"),
                band=kernel != "trace_ntk",  # three overlapping bands are unreadable
            )
        )
    if top_ridge is not None:
        for kernel in ("entk", "pntk"):
            case = rows[(rows["kernel"] == kernel) & (rows["ridge"] == top_ridge)]
            if case.empty:
                continue
            agg = case.groupby("width")["value"].mean().reset_index()
            (line,) = ax.plot(agg["width"].to_numpy(dtype=np.float64), agg["value"].to_numpy(dtype=np.float64),
                              color=style.kernel_color(kernel, ACC_KERNELS), marker=style.KERNEL_MARKERS.get(kernel, "o"),
                              markersize=3.5, linewidth=1.0, linestyle=":", zorder=3,
                              label=f"{style.kernel_label(kernel)}, {ridge_label(top_ridge)}")
            handles.append(line)
    c.finish_panel(sfig, ax, widths if len(rows) == 0 else rows["width"].unique(), handles,
                   ylabel=ACC_LABEL if first else None, title="test accuracy")
    ax.set_ylim(0.0, 1.02)
    ax.yaxis.set_major_locator(MultipleLocator(0.2))
    ax.axhline(chance, color=style.REFERENCE_COLOR, linestyle=":", linewidth=1.0, zorder=1)


def findings(data: pd.DataFrame) -> str:
    """Where the data reach T4's first-order regime, for the report: per architecture, the
    smallest ridge whose seed-median perturbation ratio is below 1 at the widest width, the
    prediction difference and its fitted slope there, against the ridgeless ones, and the
    accuracy that ridge costs."""
    from suite.stats import fit_slope  # numpy/pandas only

    df = c.prepare(data, NAME)
    df["ridge"] = pd.to_numeric(df["ridge"], errors="coerce").astype("float64")
    diff = c.positive(df[(df["metric"] == "pred_rel_diff") & (df["kernel"] == "pntk")])
    ratio = c.positive(df[(df["metric"] == "perturbation_ratio") & (df["kernel"] == "pntk")])
    if diff.empty or ratio.empty:
        return ""
    depth_of = c.deepest(diff)

    def series(rows: pd.DataFrame, ridge: float) -> str:
        case = rows[rows["ridge"] == ridge]
        wide = int(case["width"].max())
        at = float(np.exp(np.log(case.loc[case["width"] == wide, "value"]).mean()))
        try:
            fit = fit_slope(case[["width", "seed", "value"]])
            slope = style.format_slope(fit.slope, fit.slope_ci_low, fit.slope_ci_high)
        except SuiteError:
            slope = "no slope"
        return f"{at:.0%} at n = {wide}, {slope}"

    parts = []
    for arch in style.ordered(diff["arch"].unique(), style.ARCH_ORDER):
        mine = diff[(diff["arch"] == arch) & (diff["depth"] == depth_of[arch])]
        rat = ratio[(ratio["arch"] == arch) & (ratio["depth"] == depth_of[arch])]
        wide = int(mine["width"].max())
        med = _median_ratio(rat)
        inside = sorted(r for (r, w), v in med.items() if w == wide and v < 1)
        name = f"{style.arch_label(arch)} (depth {depth_of[arch]})"
        low = min(mine["ridge"].unique())
        text = f"{name}, {ridge_label(low)}: ratio {med.get((low, wide), np.nan):.3g} at n = {wide}, difference {series(mine, low)}"
        if not inside:
            parts.append(text + "; no ridge run reaches ratio < 1 at the widest width.")
            continue
        r = inside[0]
        text += (f"; from {ridge_label(r)} the ratio is below 1 at n = {wide} ({med[(r, wide)]:.2f}), "
                 f"and there the difference is {series(mine, r)} (T4: −0.5)")
        acc = df[(df["metric"] == "test_acc") & (df["kernel"] == "entk") & (df["arch"] == arch)
                 & (df["depth"] == depth_of[arch]) & (df["width"] == wide)]
        at_r, at_low = acc.loc[acc["ridge"] == r, "value"], acc.loc[acc["ridge"] == low, "value"]
        if not at_r.empty and not at_low.empty:
            text += f"; the eNTK's test accuracy there is {at_r.mean():.0%} (against {at_low.mean():.0%} {ridge_label(low)})"
        parts.append(text + ".")
    return ("**T4's first-order regime** (perturbation ratio ‖eNTK − pNTK⊗I‖₂ / (λ_min + λ), seed median; "
            "differences: geometric means over seeds; slopes: Student-t 95% intervals over seeds). "
            + " ".join(parts))


FIGURE = c.FigureSpec(
    order=10,
    name=NAME,
    experiment=EXPERIMENT,
    title=TITLE,
    caption=(
        "Top: relative Frobenius difference between the test predictions of eNTK and pNTK kernel "
        "regression against width (log-log), one line per ridge λ (relative to the mean diagonal of "
        "the train eNTK; geometric mean over seeds, min–max band, fitted slope with Student-t "
        "95% CI; dashed grey ∝ n^-1/2). Filled markers: widths where the seed-median perturbation "
        "ratio ‖eNTK − pNTK⊗I‖₂ / (λ_min + λ) (middle row) is below 1, the first-order regime in "
        "which T4's bound applies (THEORY.md §8); hollow: outside it. Only the largest ridges (10 "
        "and 100 mean diagonals) get there at affordable widths, and there the difference falls at "
        "about the n^-1/2 rate; at small ridges the slopes are flatter (pre-asymptotic). Bottom: "
        "test accuracy (argmax) of the eNTK, pNTK and mean-trace predictors at the smallest ridge, "
        "and of the eNTK and pNTK at the largest (thin dotted; mean over seeds; dotted grey: chance, "
        "1/O): a ridge large enough for the first-order regime dominates the train kernel's "
        "spectrum and costs accuracy, near chance for the conv nets. The mean trace's slopes are "
        "in the summary table."
    ),
    render=render,
    findings=findings,
)
