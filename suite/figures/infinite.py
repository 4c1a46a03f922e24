"""fig_infinite: finite-width kernels against the infinite-width NTK Θ∞.

Solid lines: ``rel_frobenius_inf`` of the eNTK (against Θ∞⊗I), the pNTK and
the mean trace if present (against Θ∞). Dash-dotted, for comparison:
``rel_frobenius`` of the pNTK (finite pNTK against the finite eNTK). One panel
per architecture that has Θ∞ data, at its deepest such depth.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from suite.figures import _common as c
from suite.figures import style

NAME = "fig_infinite"
TITLE = "Distance of finite-width kernels to the infinite-width NTK Θ∞"
YLABEL = "relative Frobenius distance"

#: (metric, kernel, legend label, line style, filled marker), in legend order.
SERIES: tuple[tuple[str, str, str, str, bool], ...] = (
    ("rel_frobenius_inf", "entk", "eNTK vs Θ$_∞$⊗I", "-", True),
    ("rel_frobenius_inf", "pntk", "pNTK vs Θ$_∞$", "-", True),
    ("rel_frobenius_inf", "trace_ntk", "mean trace vs Θ$_∞$", "-", True),
    ("rel_frobenius", "pntk", "pNTK vs eNTK", "-.", False),
)


def render(data: pd.DataFrame, summary: pd.DataFrame | None = None) -> Figure:
    """Log-log distance to Θ∞ per kernel, with the pNTK-vs-eNTK error for comparison."""
    df = c.prepare(data, NAME)
    inf_rows = c.select(df, "rel_frobenius_inf", ["entk", "pntk", "trace_ntk"], NAME)
    depth_of = c.deepest(inf_rows)
    finite = c.positive(
        df[
            (df["metric"] == "rel_frobenius")
            & (df["kernel"] == "pntk")
            & df["arch"].isin(list(depth_of))
        ]
    )
    rows = pd.concat([inf_rows, finite])
    rows = rows[rows["depth"] == rows["arch"].map(depth_of)]
    setting = c.single_setting(rows, NAME, per_arch=True)
    archs = style.ordered(depth_of, style.ARCH_ORDER)
    n_series = len(rows.drop_duplicates(["metric", "kernel"]))
    with style.theme():
        fig, sfigs, axes = c.panel_grid(1, len(archs), n_series + 1)
        for j, arch in enumerate(archs):
            ax, sfig = axes[0][j], sfigs[0][j]
            panel = rows[rows["arch"] == arch]
            handles = []
            for metric, kernel, label, linestyle, filled in SERIES:
                case = panel[(panel["metric"] == metric) & (panel["kernel"] == kernel)]
                if case.empty:
                    continue
                key = {
                    "experiment": "convergence",
                    "arch": arch,
                    "depth": depth_of[arch],
                    "kernel": kernel,
                    "metric": metric,
                }
                handles.append(
                    c.plot_fitted(
                        ax, case, summary, key,
                        by=["kernel"], label=label,
                        color=style.kernel_color(kernel),
                        marker=style.KERNEL_MARKERS.get(kernel, "o"),
                        linestyle=linestyle,
                        filled=filled,
                    )
                )
            c.append_reference(ax, panel[panel["metric"] == "rel_frobenius_inf"], handles)
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
    order=3,
    name=NAME,
    experiment="convergence",
    title=TITLE,
    caption=(
        "Solid: relative Frobenius distance of the eNTK to Θ∞⊗I and of the pNTK (and mean trace, "
        "if measured) to the infinite-width NTK Θ∞; dash-dotted: the pNTK's distance to the finite eNTK, the "
        "quantity of fig_convergence; deepest depth with Θ∞ data per architecture, geometric "
        "mean over seeds with min–max band, dashed grey ∝ n^-1/2."
    ),
    render=render,
)
