"""fig_parameterization: convergence under standard vs NTK parameterization.

Reads ``reports/data/parameterization.csv`` (metric ``rel_frobenius``, kernel ``pntk``). One
panel per architecture; colour = parameterization, marker and line style = depth. The theorem
assumes NTK parameterization; under standard parameterization the readout's exactly-∝-I term
grows like the width, so the error may fall at another rate (see
:mod:`suite.experiments.parameterization`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from suite.figures import _common as c
from suite.figures import style

NAME = "fig_parameterization"
EXPERIMENT = "parameterization"
TITLE = "Standard vs NTK parameterization: relative Frobenius error of the pNTK vs width"
YLABEL = "‖eNTK − pNTK⊗I‖$_F$ / ‖eNTK‖$_F$"

#: Colour per parameterization (Okabe-Ito): NTK as the pNTK elsewhere, standard blue.
PARAM_COLORS = {"ntk": style.KERNEL_PALETTE["pntk"], "standard": "#0072B2"}
PARAM_ORDER = ("ntk", "standard")
#: Line styles given to successive depths (the dashed grey line is the n^-1/2 guide).
DEPTH_LINESTYLES = ("-", (0, (1, 1.2)), (0, (4, 1.2, 1, 1.2)), (0, (3, 1, 1, 1, 1, 1)))


#: Architectures whose depth-1 network has a single layer below the readout, with a
#: width-independent fan-in (the input): under standard parameterization its share of the
#: kernel falls like 1/n, so the error is expected to fall like n^-3/2 (derived in
#: suite.experiments.parameterization). A ResNet of depth 1 has width-fan-in convolutions.
FAST_RATE_ARCHS = ("mlp", "cnn")
FAST_RATE = -1.5


def _fast_reference(ax: Axes, points: pd.DataFrame) -> Line2D | None:
    """A grey dash-dot guide ∝ n^-3/2 from the seed mean of ``points`` at the smallest width."""
    widths = np.sort(points["width"].unique().astype(np.float64))
    if len(widths) < 2:
        return None
    first = points.loc[points["width"] == widths[0], "value"].to_numpy(dtype=np.float64)
    xs = np.array([widths[0], widths[-1]])
    ys = float(np.exp(np.mean(np.log(first)))) * (xs / widths[0]) ** FAST_RATE
    (line,) = ax.plot(xs, ys, linestyle=(0, (6, 2, 1, 2)), color=style.REFERENCE_COLOR,
                      linewidth=1.2, zorder=1, label="∝ n$^{-3/2}$ (standard, depth 1: derived)")
    return line


def _param_label(param: str) -> str:
    return style.PARAMETERIZATION_LABELS.get(param, param)


def render(data: pd.DataFrame, summary: pd.DataFrame | None = None) -> Figure:
    """Log-log pNTK error vs width per arch, one line per (parameterization, depth).

    Raises:
        SuiteError: missing columns, or a mix of datasets, O, N or dtypes.
        MissingDataError: no ``rel_frobenius`` rows for the ``pntk``.
    """
    df = c.prepare(data, NAME)
    rows = c.select(df, "rel_frobenius", ["pntk"], NAME)
    rows = rows.assign(parameterization=rows["parameterization"].astype(str))
    # Parameterization varies on purpose (it is the subject); every other setting must not.
    setting = c.single_setting(rows.assign(parameterization=np.nan), NAME)
    archs = style.ordered(rows["arch"].unique(), style.ARCH_ORDER)
    params = style.ordered(rows["parameterization"].unique(), PARAM_ORDER)
    fallback = iter(("#009E73", "#CC79A7", "#E69F00"))
    colors = {p: PARAM_COLORS.get(p) or next(fallback) for p in params}
    n_entries = len(params) * max(rows.groupby("arch")["depth"].nunique().max(), 1) + 2
    with style.theme():
        fig, sfigs, axes = c.panel_grid(1, len(archs), n_entries)
        for j, arch in enumerate(archs):
            ax, sfig = axes[0][j], sfigs[0][j]
            panel = rows[rows["arch"] == arch]
            depths = sorted(panel["depth"].unique().tolist())
            handles = []
            for param in params:
                for k, depth in enumerate(depths):
                    case = panel[(panel["parameterization"] == param) & (panel["depth"] == depth)]
                    if case.empty:
                        continue
                    key = {"experiment": EXPERIMENT, "arch": arch, "depth": depth,
                           "parameterization": param, "kernel": "pntk", "metric": "rel_frobenius"}
                    handles.append(
                        c.plot_fitted(
                            ax, case, summary, key,
                            by=["parameterization", "depth"], label=f"{_param_label(param)}, depth {depth}",
                            color=colors[param],
                            marker=style.DEPTH_MARKERS[k % len(style.DEPTH_MARKERS)],
                            linestyle=DEPTH_LINESTYLES[k % len(DEPTH_LINESTYLES)],
                            filled=k == 0,
                        )
                    )
            # The guide starts at the NTK-parameterization data (the theorem's setting).
            base = panel[panel["parameterization"] == "ntk"]
            c.append_reference(ax, base if not base.empty else panel, handles)
            one_layer = panel[(panel["parameterization"] == "standard") & (panel["depth"] == 1)]
            if arch in FAST_RATE_ARCHS and not one_layer.empty:
                fast = _fast_reference(ax, one_layer)
                if fast is not None:
                    handles.append(fast)
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
        return c.finish_figure(fig, TITLE, setting, [a for row in axes for a in row])


FIGURE = c.FigureSpec(
    order=21,
    name=NAME,
    experiment=EXPERIMENT,
    title=TITLE,
    caption=(
        "Relative Frobenius error of the pNTK against the eNTK at initialisation under NTK "
        "parameterization (the theorem's assumption) and standard parameterization, against "
        "width (log-log; geometric mean over seeds, min–max band, dashed grey ∝ n^-1/2 from the "
        "NTK data, fitted slopes with Student-t 95% CIs). Under standard parameterization "
        "the readout's ∝ I term grows with width: for one hidden layer fed by the input (MLP, "
        "CNN of depth 1) the error is expected to fall like n^-3/2 (grey dash-dot guide; "
        "THEORY.md §7), the prediction these series are judged against; it lies outside the "
        "theorem, whose assumption is NTK parameterization."
    ),
    render=render,
)
