"""fig_alternatives: every approximate kernel against the eNTK, at the deepest depth.

Reads ``rel_frobenius`` for every kernel but ``entk`` (pNTK, mean trace, first
logit, random projection: whichever are present); one panel per
architecture, at the deepest depth run for it; one line per kernel.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from suite.figures import _common as c
from suite.figures import style

NAME = "fig_alternatives"
TITLE = "Approximate kernels vs the eNTK at initialisation (deepest depth per arch.)"
YLABEL = style.METRIC_LABELS["rel_frobenius"]


def render(data: pd.DataFrame, summary: pd.DataFrame | None = None) -> Figure:
    """Log-log relative Frobenius error of each approximate kernel, per arch (deepest depth)."""
    df = c.prepare(data, NAME)
    rows = c.select(df, "rel_frobenius", None, NAME)
    rows = rows[rows["kernel"] != "entk"]
    if rows.empty:
        raise c.MissingDataError(f"{NAME}: no rel_frobenius rows for an approximate kernel")
    depth_of = c.deepest(rows)
    rows = rows[rows["depth"] == rows["arch"].map(depth_of)]
    setting = c.single_setting(rows, NAME, per_arch=True)
    archs = style.ordered(rows["arch"].unique(), style.ARCH_ORDER)
    kernels = style.ordered(rows["kernel"].unique(), style.KERNEL_ORDER)
    with style.theme():
        fig, sfigs, axes = c.panel_grid(1, len(archs), len(kernels) + 1)
        for j, arch in enumerate(archs):
            ax, sfig = axes[0][j], sfigs[0][j]
            panel = rows[rows["arch"] == arch]
            handles = []
            for kernel in kernels:
                case = panel[panel["kernel"] == kernel]
                if case.empty:
                    continue
                key = {
                    "experiment": "convergence",
                    "arch": arch,
                    "depth": depth_of[arch],
                    "kernel": kernel,
                    "metric": "rel_frobenius",
                }
                handles.append(
                    c.plot_fitted(
                        ax, case, summary, key,
                        by=["kernel"], label=style.kernel_label(kernel),
                        color=style.kernel_color(kernel, kernels),
                        marker=style.KERNEL_MARKERS.get(kernel, "o"),
                        linestyle=style.KERNEL_LINESTYLES.get(kernel, "-"),
                    )
                )
            c.append_reference(ax, panel, handles)
            c.finish_panel(
                sfig,
                ax,
                panel["width"].unique(),
                handles,
                ylabel=YLABEL if j == 0 else None,
                title=c.arch_title(arch, setting, f"depth {depth_of[arch]}"),
            )
        return c.finish_figure(fig, TITLE, setting, [a for row in axes for a in row])


FIGURE = c.FigureSpec(
    order=2,
    name=NAME,
    experiment="convergence",
    title=TITLE,
    caption=(
        "Relative Frobenius distance ‖eNTK − K⊗I‖_F / ‖eNTK‖_F of each approximate kernel K "
        "against width at the deepest depth run for each architecture (log-log; geometric mean "
        "over seeds, min–max band, dashed grey ∝ n^-1/2, fitted slopes with 95% CIs); at "
        "initialisation all are expected to share the n^-1/2 rate."
    ),
    render=render,
)
