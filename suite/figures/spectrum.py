"""fig_spectrum: eigenvalues of pNTK⊗I against those of the eNTK (theorems T3, T3').

Reads ``reports/data/spectrum.csv`` (kernel ``pntk``). Rows: λ_max relative error and
whole-spectrum relative error (T3: at least n^-1/2, reference line drawn), then λ_min and
condition-number relative errors (T3': no guarantee, no reference line). Columns:
architectures; one line per depth. Cases whose eNTK has λ_min/λ_max (metric
``inv_condition`` of kernel ``entk``) below 10 float eps of their dtype are circled in the
λ_min and condition-number rows: their λ_min is limited by the kernel's rounding.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from suite.figures import _common as c
from suite.figures import style

NAME = "fig_spectrum"
EXPERIMENT = "spectrum"
TITLE = "Eigenvalues of pNTK⊗I vs the eNTK at initialisation (T3; λ_min and κ: T3', no guarantee)"

#: (metric, y label, whether the theory guarantees n^-1/2) per row, top to bottom.
ROWS: tuple[tuple[str, str, bool], ...] = (
    ("lambda_max_rel_err", "|Δλ$_{max}$| / λ$_{max}$(eNTK)", True),
    ("spectrum_rel_err", "‖Δλ‖$_2$ / ‖λ(eNTK)‖$_2$", True),
    ("lambda_min_rel_err", "|Δλ$_{min}$| / λ$_{min}$(eNTK)", False),
    ("cond_rel_err", "|Δκ| / κ(eNTK)", False),
)

#: λ_min/λ_max below this many float eps of the kernel's dtype marks λ_min as precision-limited.
PRECISION_EPS = 10.0
EPS = {"float32": float(np.finfo(np.float32).eps), "float64": float(np.finfo(np.float64).eps)}


def precision_limited(df: pd.DataFrame) -> set[tuple[str, int, int, int]]:
    """(arch, depth, width, seed) of cases whose eNTK λ_min/λ_max is within 10 eps of rounding."""
    rows = df[(df["kernel"] == "entk") & (df["metric"] == "inv_condition")]
    if rows.empty:
        return set()
    eps = rows["dtype"].astype(str).map(EPS).fillna(EPS["float32"]).to_numpy(dtype=np.float64)
    flagged = rows[rows["value"].to_numpy(dtype=np.float64) < PRECISION_EPS * eps]
    return {(str(r.arch), int(r.depth), int(r.width), int(r.seed)) for r in flagged.itertuples(index=False)}


def render(data: pd.DataFrame, summary: pd.DataFrame | None = None) -> Figure:
    """Log-log relative eigenvalue errors of pNTK⊗I against width, per metric and arch.

    Args:
        data: Tidy spectrum frame (see :mod:`suite.figures`).
        summary: Optional summary rows; slopes are taken from it when it has the case.

    Raises:
        SuiteError: On missing columns or a mix of settings.
        MissingDataError: If there are no λ_max rows for the pNTK.
    """
    df = c.prepare(data, NAME)
    # λ_max decides whether there is anything to draw; the other rows may be empty panels.
    c.select(df, ROWS[0][0], ["pntk"], NAME)
    pntk = df[(df["kernel"] == "pntk") & df["metric"].isin([m for m, _, _ in ROWS])]
    setting = c.single_setting(pntk, NAME)
    flagged = precision_limited(df)
    archs = style.ordered(pntk["arch"].unique(), style.ARCH_ORDER)
    colors = style.depth_palette(pntk["depth"].unique())
    markers = {d: style.DEPTH_MARKERS[i % len(style.DEPTH_MARKERS)] for i, d in enumerate(sorted(colors))}
    with style.theme():
        fig, sfigs, axes = c.panel_grid(len(ROWS), len(archs), len(colors) + 1)
        for i, (metric, ylabel, guaranteed) in enumerate(ROWS):
            raw = pntk[pntk["metric"] == metric]
            rows = c.positive(raw)
            for j, arch in enumerate(archs):
                ax, sfig = axes[i][j], sfigs[i][j]
                panel = rows[rows["arch"] == arch]
                handles: list[Line2D] = []
                for depth in sorted(panel["depth"].unique()):
                    case = panel[panel["depth"] == depth]
                    key = {
                        "experiment": EXPERIMENT,
                        "arch": arch,
                        "depth": depth,
                        "kernel": "pntk",
                        "metric": metric,
                    }
                    # A NaN (numerically singular eNTK) leaves the summary without a slope for the
                    # whole series; fit the finite points here instead and say so.
                    dropped = int(((raw["arch"] == arch) & (raw["depth"] == depth)).sum()) - len(case)
                    slope = c.slope_text(case, None if dropped else summary, key)
                    if slope and dropped:
                        slope += f" ({dropped} singular cases left out)"
                    handles.append(
                        c.plot_series(
                            ax,
                            c.seed_summary(case, ["depth"]),
                            color=colors[depth],
                            marker=markers[depth],
                            label=c.with_slope(f"depth {depth}", slope),
                        )
                    )
                if guaranteed:
                    c.append_reference(ax, panel, handles)
                else:
                    marked = _mark_precision_limited(ax, panel, flagged)
                    if marked is not None:
                        handles.append(marked)
                if panel.empty:
                    ax.text(0.5, 0.5, "no finite values", transform=ax.transAxes, ha="center", color="0.4")
                title = style.arch_label(arch)
                if not guaranteed:
                    title += " · no guarantee (T3')"
                c.finish_panel(
                    sfig,
                    ax,
                    pntk.loc[pntk["arch"] == arch, "width"].unique(),
                    handles,
                    ylabel=ylabel if j == 0 else None,
                    title=title,
                )
        return c.finish_figure(fig, TITLE, setting, [a for row in axes for a in row])


def _mark_precision_limited(ax, panel: pd.DataFrame, flagged: set[tuple[str, int, int, int]]) -> Line2D | None:
    """Circle the points whose λ_min is limited by the kernel's rounding; the legend handle."""
    if not flagged or panel.empty:
        return None
    keys = list(zip(panel["arch"], panel["depth"], panel["width"], panel["seed"], strict=True))
    hit = panel[[(str(a), int(d), int(w), int(s)) in flagged for a, d, w, s in keys]]
    if hit.empty:
        return None
    (line,) = ax.plot(
        hit["width"].to_numpy(dtype=np.float64),
        hit["value"].to_numpy(dtype=np.float64),
        linestyle="none",
        marker="o",
        markersize=10,
        markerfacecolor="none",
        markeredgecolor="0.2",
        zorder=4,
        label="λ$_{min}$/λ$_{max}$ < 10 eps (rounding-limited)",
    )
    return line


FIGURE = c.FigureSpec(
    order=5,
    name=NAME,
    experiment=EXPERIMENT,
    title=TITLE,
    caption=(
        "Relative eigenvalue errors of pNTK⊗I against the eNTK at initialisation vs width "
        "(log-log; geometric mean over seeds, min–max band, fitted slopes with 95% CIs). Rows 1–2 "
        "(λ_max, whole spectrum) are guaranteed to fall at least like n^-1/2 (Weyl, "
        "Hoffman–Wielandt; dashed grey line). Rows 3–4 (λ_min, condition number) have NO "
        "guarantee (T3'): they are shown as measured; circled points have λ_min/λ_max within "
        "10 float eps, so their λ_min is limited by rounding."
    ),
    render=render,
)
