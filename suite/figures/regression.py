"""fig_regression: eNTK vs pNTK kernel-regression predictions converge with width (theorem T4).

Reads ``reports/data/regression.csv``. Top row: ``pred_rel_diff`` of the pNTK,
||f_e − f_p||_F / ||f_e||_F on the test set, against width (log-log), one panel
per architecture, one line per relative ridge level, with the n^-1/2 guide.
Bottom row: ``test_acc`` of the eNTK, pNTK and mean-trace predictors at the
smallest ridge run (ridgeless when present), linear y in [0, 1], so the
accuracy gap is visible closing as the width grows. Each panel shows the
deepest depth run for its architecture.
"""

from __future__ import annotations

import textwrap
from typing import Any

import matplotlib as mpl
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MultipleLocator

from suite.errors import SuiteError
from suite.figures import _common as c
from suite.figures import style

NAME = "fig_regression"
EXPERIMENT = "regression"
TITLE = "Kernel regression with the pNTK approaches eNTK regression as width grows (T4)"
DIFF_LABEL = "‖f$_{eNTK}$ − f$_{pNTK}$‖$_F$ / ‖f$_{eNTK}$‖$_F$"
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


def render(data: pd.DataFrame, summary: pd.DataFrame | None = None) -> Figure:
    """Prediction difference (top, log-log, one line per ridge) and test accuracy (bottom).

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
    acc = df[(df["metric"] == "test_acc") & df["kernel"].isin(ACC_KERNELS)]
    acc = acc[acc["depth"] == acc["arch"].map(depth_of)]
    archs = style.ordered(diff["arch"].unique(), style.ARCH_ORDER)
    ridges = sorted(diff["ridge"].unique().tolist())
    colors = ridge_palette(ridges)
    acc_ridge = min(acc["ridge"].unique().tolist()) if not acc.empty else None
    n_rows = 2 if acc_ridge is not None else 1
    with style.theme():
        fig, sfigs, axes = c.panel_grid(n_rows, len(archs), max(len(ridges) + 1, len(ACC_KERNELS)))
        for j, arch in enumerate(archs):
            ax, sfig = axes[0][j], sfigs[0][j]
            panel = diff[diff["arch"] == arch]
            depth = int(panel["depth"].iloc[0])
            handles = []
            for ridge in ridges:
                case = panel[panel["ridge"] == ridge]
                if case.empty:
                    continue
                key = {"experiment": EXPERIMENT, "arch": arch, "depth": depth, "ridge": ridge,
                       "kernel": "pntk", "metric": "pred_rel_diff"}
                handles.append(
                    c.plot_series(
                        ax,
                        c.seed_summary(case, ["ridge"]),
                        color=colors[ridge],
                        marker=style.DEPTH_MARKERS[ridges.index(ridge) % len(style.DEPTH_MARKERS)],
                        label=c.with_slope(ridge_label(ridge), c.slope_text(case, summary, key)),
                    )
                )
            c.append_reference(ax, panel, handles)
            c.finish_panel(sfig, ax, panel["width"].unique(), handles,
                           ylabel=DIFF_LABEL if j == 0 else None,
                           title=f"{style.arch_label(arch)} (depth {depth})")
            if n_rows == 2:
                _accuracy_panel(sfigs[1][j], axes[1][j], acc[(acc["arch"] == arch) & (acc["ridge"] == acc_ridge)],
                                panel["width"].unique(), j == 0, acc_ridge, chance)
        c.finish_figure(fig, TITLE, {}, axes[0])
        chars = max(30, int(fig.get_figwidth() * 10))
        fig.suptitle(textwrap.fill(TITLE, chars) + "\n" + textwrap.fill(subtitle, chars))
        return fig


def _accuracy_panel(sfig, ax, rows: pd.DataFrame, widths, first: bool, ridge: float | None, chance: float) -> None:
    """Mean test accuracy over seeds (min-max band) of each predictor, linear y in [0, 1]."""
    handles = []
    for kernel in ACC_KERNELS:
        case = rows[rows["kernel"] == kernel]
        if case.empty:
            continue
        agg = case.groupby("width")["value"].agg(center="mean", lo="min", hi="max").reset_index()
        handles.append(
            c.plot_series(
                ax, agg,
                color=style.kernel_color(kernel, ACC_KERNELS),
                marker=style.KERNEL_MARKERS.get(kernel, "o"),
                linestyle=style.KERNEL_LINESTYLES.get(kernel, "-"),
                label=style.kernel_label(kernel),
                band=kernel != "trace_ntk",  # three overlapping bands are unreadable
            )
        )
    c.finish_panel(sfig, ax, widths if len(rows) == 0 else rows["width"].unique(), handles,
                   ylabel=ACC_LABEL if first else None,
                   title="test accuracy" if ridge is None else f"test accuracy, {ridge_label(ridge)}")
    ax.set_ylim(0.0, 1.02)
    ax.yaxis.set_major_locator(MultipleLocator(0.2))
    ax.axhline(chance, color=style.REFERENCE_COLOR, linestyle=":", linewidth=1.0, zorder=1)


FIGURE = c.FigureSpec(
    order=10,
    name=NAME,
    experiment=EXPERIMENT,
    title=TITLE,
    caption=(
        "Top: relative Frobenius difference between the test predictions of eNTK and pNTK kernel "
        "regression against width (log-log), one line per ridge λ (relative to the mean diagonal of "
        "the train eNTK; geometric mean over seeds, min–max band, fitted slope with Student-t "
        "95% CI; dashed grey ∝ n^-1/2). Bottom: test accuracy (argmax) of the eNTK, pNTK and "
        "mean-trace predictors at the smallest ridge run (mean over seeds; dotted: chance, 1/O). "
        "T4 predicts the n^-1/2 rate once ‖eNTK − pNTK⊗I‖₂ is small next to λ_min + λ; "
        "before that (small ridge, ill-conditioned train kernels) slopes are flatter. The mean "
        "trace's slopes are in the summary table."
    ),
    render=render,
)
