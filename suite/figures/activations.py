"""fig_activations: the rate does not depend on the nonlinearity (ReLU, erf, GELU).

Reads ``reports/data/convergence.csv`` (metric ``rel_frobenius``, kernel ``pntk``, float32); one
panel per architecture that was run with more than one activation, one line per activation and
depth. THEORY.md §2: the mechanism needs only the readout's independence from the features and
their effective rank, not a particular activation, so every line is predicted to fall like n^-1/2.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from suite.figures import _common as c
from suite.figures import style

NAME = "fig_activations"
TITLE = "Activations: relative Frobenius error of the pNTK vs width for ReLU, erf and GELU (T2)"
YLABEL = "‖eNTK − pNTK⊗I‖$_F$ / ‖eNTK‖$_F$"
#: Order of the activations in legends (suite.models.ACTIVATIONS).
ORDER = ("relu", "erf", "gelu")
LABELS = {"relu": "ReLU", "erf": "erf", "gelu": "GELU"}
#: Categorical, colour-blind safe (Okabe-Ito) colours per activation.
COLORS = {"relu": "#0072B2", "erf": "#E69F00", "gelu": "#009E73"}


def render(data: pd.DataFrame, summary: pd.DataFrame | None = None) -> Figure:
    """Log-log error against width per activation and depth, one panel per architecture.

    Raises:
        SuiteError: missing columns or a mix of settings other than the activation.
        MissingDataError: no architecture was run with more than one activation.
    """
    if "activation" not in data.columns:
        raise c.MissingDataError(f"{NAME}: the data has no activation column (a grid without activations)")
    df = c.prepare(data, NAME, variants=True)
    df = df.assign(activation=df["activation"].fillna("relu").astype(str))
    if "dtype" in df.columns and df["dtype"].nunique() > 1:
        df = df[df["dtype"].fillna("float32") == "float32"]
    rows = c.select(df, "rel_frobenius", ["pntk"], NAME)
    varied = [a for a, g in rows.groupby("arch") if g["activation"].nunique() > 1]
    if not varied:
        raise c.MissingDataError(f"{NAME}: no architecture was run with more than one activation")
    rows = rows[rows["arch"].isin(varied)]
    setting = c.single_setting(rows, NAME, per_arch=True)
    archs = style.ordered(varied, style.ARCH_ORDER)
    activations = style.ordered(rows["activation"].unique(), ORDER)
    depths = sorted(rows["depth"].unique())
    colors = {a: COLORS.get(a, "0.3") for a in activations}
    markers = {d: style.DEPTH_MARKERS[i % len(style.DEPTH_MARKERS)] for i, d in enumerate(depths)}
    dashes = {d: ["-", "--", ":", "-."][i % 4] for i, d in enumerate(depths)}
    n_lines = max(len(g.groupby(["activation", "depth"])) for _, g in rows.groupby("arch"))
    with style.theme():
        fig, sfigs, axes = c.panel_grid(1, len(archs), n_lines + 1)
        for j, arch in enumerate(archs):
            ax, sfig = axes[0][j], sfigs[0][j]
            panel = rows[rows["arch"] == arch]
            handles = []
            for act in activations:
                for depth in depths:
                    case = panel[(panel["activation"] == act) & (panel["depth"] == depth)]
                    if case.empty:
                        continue
                    key = {"experiment": "convergence", "arch": arch, "depth": depth, "activation": act,
                           "kernel": "pntk", "metric": "rel_frobenius"}
                    handles.append(c.plot_fitted(
                        ax, case, summary, key, by=["depth"], label=f"{LABELS.get(act, act)}, depth {depth}",
                        color=colors[act], marker=markers[depth], linestyle=dashes[depth],
                    ))
            c.append_reference(ax, panel, handles)
            c.finish_panel(sfig, ax, panel["width"].unique(), handles,
                           ylabel=YLABEL if j == 0 else None, title=c.arch_title(arch, setting))
        return c.finish_figure(fig, TITLE, setting, [a for row in axes for a in row])


FIGURE = c.FigureSpec(
    order=1,
    name=NAME,
    experiment="convergence",
    title=TITLE,
    caption=(
        "Relative Frobenius distance between the eNTK and pNTK⊗I at initialisation against width "
        "for ReLU, erf and GELU networks (colour: activation, line style and marker: depth); "
        "geometric means over seeds with min-max bands, legend slopes with Student-t 95% CIs, "
        "dashed grey n^-1/2 guide. THEORY.md §2 predicts the same rate for every activation."
    ),
    render=render,
)
