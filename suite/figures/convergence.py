"""fig_convergence: the pNTK converges to the eNTK like n^-1/2 (theorem T2).

Reads ``reports/data/convergence.csv`` (metric ``rel_frobenius``, kernel
``pntk``); one panel per architecture, one line per depth.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from suite.figures import _common as c
from suite.figures import style

NAME = "fig_convergence"
TITLE = "pNTK → eNTK at initialisation: relative Frobenius error vs width (T2)"
YLABEL = "‖eNTK − pNTK⊗I‖$_F$ / ‖eNTK‖$_F$"


def render(data: pd.DataFrame, summary: pd.DataFrame | None = None) -> Figure:
    """Log-log relative Frobenius error of the pNTK against width, per arch and depth.

    Args:
        data: Tidy convergence frame (see :mod:`suite.figures`).
        summary: Optional summary rows; fitted slopes are taken from it when it
            has the case, else fitted here.

    Returns:
        The figure (not yet saved).

    Raises:
        SuiteError: On missing columns or a mix of settings.
        MissingDataError: If there are no ``rel_frobenius`` rows for ``pntk``.
    """
    df = c.prepare(data, NAME)
    rows = c.select(df, "rel_frobenius", ["pntk"], NAME)
    setting = c.single_setting(rows, NAME, per_arch=True)
    archs = style.ordered(rows["arch"].unique(), style.ARCH_ORDER)
    colors = style.depth_palette(rows["depth"].unique())
    markers = {
        d: style.DEPTH_MARKERS[i % len(style.DEPTH_MARKERS)] for i, d in enumerate(sorted(colors))
    }
    with style.theme():
        fig, sfigs, axes = c.panel_grid(1, len(archs), len(colors) + 1)
        for j, arch in enumerate(archs):
            ax, sfig = axes[0][j], sfigs[0][j]
            panel = rows[rows["arch"] == arch]
            handles = []
            for depth in sorted(panel["depth"].unique()):
                case = panel[panel["depth"] == depth]
                key = {
                    "experiment": "convergence",
                    "arch": arch,
                    "depth": depth,
                    "kernel": "pntk",
                    "metric": "rel_frobenius",
                }
                handles.append(
                    c.plot_fitted(
                        ax, case, summary, key,
                        by=["depth"], label=f"depth {depth}",
                        color=colors[depth],
                        marker=markers[depth],
                    )
                )
            c.append_reference(ax, panel, handles)
            c.finish_panel(
                sfig,
                ax,
                panel["width"].unique(),
                handles,
                ylabel=YLABEL if j == 0 else None,
                title=c.arch_title(arch, setting),
            )
        return c.finish_figure(fig, TITLE, setting, [a for row in axes for a in row])


FIGURE = c.FigureSpec(
    order=0,
    name=NAME,
    experiment="convergence",
    title=TITLE,
    caption=(
        "Relative Frobenius distance between the eNTK and pNTK⊗I at initialisation, against "
        "width (log-log); lines are geometric means over seeds, bands span min to max over "
        "seeds, the dashed grey line falls like n^-1/2 from the smallest width, and the legend "
        "gives each depth's fitted slope with its Student-t 95% CI."
    ),
    render=render,
)
