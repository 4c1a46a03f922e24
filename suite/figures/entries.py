"""fig_entries: entrywise convergence of the eNTK's O×O blocks (theorem T1).

Top row: largest off-diagonal entry of the eNTK blocks (``max_offdiag``,
kernel ``entk``); bottom row: largest deviation of a diagonal entry from the
pNTK (``max_diag_dev``, kernel ``pntk``); both relative to the mean diagonal
entry. Columns are architectures, lines depths.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from suite.figures import _common as c
from suite.figures import style

NAME = "fig_entries"
TITLE = "Entries of the eNTK blocks at initialisation: off-diagonals vanish, diagonals meet the pNTK (T1)"

#: (metric, kernel, row name shown above the y label).
ROWS: tuple[tuple[str, str, str], ...] = (
    ("max_offdiag", "entk", "off-diagonal entries"),
    ("max_diag_dev", "pntk", "diagonal entries vs pNTK"),
)


def render(data: pd.DataFrame, summary: pd.DataFrame | None = None) -> Figure:
    """Two rows (off-diagonal size, diagonal deviation) × one column per arch, log-log.

    Rows whose metric is absent are left out; with neither present a
    :class:`~suite.figures.MissingDataError` is raised.
    """
    df = c.prepare(data, NAME)
    present: list[tuple[str, str, str, pd.DataFrame]] = []
    errors: list[str] = []
    for metric, kernel, row_name in ROWS:
        try:
            present.append((metric, kernel, row_name, c.select(df, metric, [kernel], NAME)))
        except c.MissingDataError as exc:
            errors.append(str(exc))
    if not present:
        raise c.MissingDataError("; ".join(errors))
    used = pd.concat([p[3] for p in present])
    setting = c.single_setting(used, NAME, per_arch=True)
    archs = style.ordered(used["arch"].unique(), style.ARCH_ORDER)
    colors = style.depth_palette(used["depth"].unique())
    markers = {
        d: style.DEPTH_MARKERS[i % len(style.DEPTH_MARKERS)] for i, d in enumerate(sorted(colors))
    }
    with style.theme():
        fig, sfigs, axes = c.panel_grid(len(present), len(archs), len(colors) + 1)
        for i, (metric, kernel, row_name, rows) in enumerate(present):
            for j, arch in enumerate(archs):
                ax, sfig = axes[i][j], sfigs[i][j]
                panel = rows[rows["arch"] == arch]
                title = f"{c.arch_title(arch, setting)}: {row_name}"
                ylabel = style.METRIC_LABELS[metric] if j == 0 else None
                if panel.empty:
                    ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center")
                    c.finish_panel(sfig, ax, used["width"].unique(), [], ylabel, title)
                    continue
                handles = []
                for depth in sorted(panel["depth"].unique()):
                    case = panel[panel["depth"] == depth]
                    key = {
                        "experiment": "convergence",
                        "arch": arch,
                        "depth": depth,
                        "kernel": kernel,
                        "metric": metric,
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
                c.finish_panel(sfig, ax, panel["width"].unique(), handles, ylabel, title)
        return c.finish_figure(fig, TITLE, setting, [a for row in axes for a in row])


FIGURE = c.FigureSpec(
    order=1,
    name=NAME,
    experiment="convergence",
    title=TITLE,
    caption=(
        "Top: largest off-diagonal entry of the eNTK's O×O blocks Θ; bottom: largest gap between "
        "a diagonal entry and the pNTK K; both over the mean diagonal entry, against width "
        "(log-log), geometric mean over seeds with a min–max band, dashed grey ∝ n^-1/2, fitted "
        "slopes with 95% CIs in the legends."
    ),
    render=render,
)
