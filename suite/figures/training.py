"""fig_training: the pNTK approximation through SGD training (THEORY.md §5, F6).

Reads ``reports/data/training.csv``. Columns are architectures, lines widths (light =
narrow, dark = wide), x is the training epoch (0 = initialisation). Rows: the pNTK's relative
Frobenius error (T2) and relative lambda_max error (T3), the eNTK's off-diagonal mass (THEORY.md
§6), then the training loss and test accuracy, which show that the networks did train. Each
column's legend also lists the fitted slope of the relative Frobenius error against width at
every epoch (at epoch 0 the theorem predicts -1/2; after training the theory says nothing).
"""

from __future__ import annotations

import textwrap
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, MultipleLocator, PercentFormatter

from suite.errors import SuiteError
from suite.figures import _common as c
from suite.figures import style

NAME = "fig_training"
EXPERIMENT = "training"
TITLE = "pNTK vs eNTK through SGD training: errors at checkpoints, per width"

#: (metric, kernel, y label, log y, relative row height). Rows whose metric is absent are
#: left out, except the first, which the figure needs.
ROWS: tuple[tuple[str, str, str, bool, float], ...] = (
    ("rel_frobenius", "pntk", "‖eNTK − pNTK⊗I‖$_F$\n/ ‖eNTK‖$_F$", True, 1.0),
    ("lambda_max_rel_err", "pntk", "|λ$_{max}$(eNTK) − λ$_{max}$(pNTK)|\n/ λ$_{max}$(eNTK)", True, 1.0),
    ("offdiag_mass", "entk", "Σ|off-diag. Θ$_{ij}$|\n/ Σ|diag. Θ$_{ii}$|", True, 1.0),
    ("train_loss", "network", "training loss", True, 0.7),
    ("test_acc", "network", "test accuracy", False, 0.7),
)

#: How the experiment's loss ids read in the title.
LOSS_LABELS = {"xent": "softmax cross-entropy", "mse": "squared loss (centred one-hot)"}

#: Markers given to successive widths.
WIDTH_MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X")


def width_palette(widths: list[int]) -> dict[int, tuple[float, float, float]]:
    """Sequential colours for one architecture's widths: narrow light, wide dark."""
    colors = sns.color_palette("crest", max(len(widths), 2))
    if len(widths) == 1:
        colors = colors[-1:]
    return {w: (float(col[0]), float(col[1]), float(col[2])) for w, col in zip(widths, colors, strict=False)}


def _prepare(data: pd.DataFrame) -> pd.DataFrame:
    c.check_columns(data, NAME, (*c.REQUIRED_COLUMNS, "epoch"))
    df = c.prepare(data, NAME)
    epoch = pd.to_numeric(df["epoch"], errors="coerce")
    if epoch.isna().any():
        raise SuiteError(f"{NAME}: column 'epoch' holds non-numbers such as {df.loc[epoch.isna(), 'epoch'].head(3).tolist()}")
    df["epoch"] = epoch.astype("float64")
    if (df["epoch"] == df["epoch"].round()).all():
        df["epoch"] = df["epoch"].astype("int64")
    return df


def _curves(rows: pd.DataFrame, geometric: bool) -> pd.DataFrame:
    """Per width and epoch: geometric (log-y rows) or arithmetic mean over seeds, min, max."""
    values = rows["value"].to_numpy(dtype=np.float64)
    work = rows.assign(_v=np.log(values) if geometric else values)
    out = work.groupby(["width", "epoch"], sort=True).agg(
        center=("_v", "mean"), lo=("value", "min"), hi=("value", "max")
    ).reset_index()
    if geometric:
        out["center"] = np.exp(out["center"].to_numpy(dtype=np.float64))
    return out


def _slope_entries(rows: pd.DataFrame, summary: pd.DataFrame | None, arch: str, depth: int) -> list[str]:
    """Legend lines "epoch e: slope ... [CI]" of rel_frobenius against width, per epoch."""
    lines = []
    for epoch in sorted(rows["epoch"].unique()):
        case = rows[rows["epoch"] == epoch]
        key: dict[str, Any] = {"experiment": EXPERIMENT, "arch": arch, "depth": depth, "epoch": epoch,
                               "kernel": "pntk", "metric": "rel_frobenius"}
        text = c.slope_text(case, summary, key)
        if text:
            lines.append(f"epoch {epoch}: {text}")
    return lines


def _one(rows: pd.DataFrame, column: str) -> Any:
    """The single value of ``column`` in ``rows``, or None (absent or several values)."""
    if column not in rows.columns:
        return None
    values = rows[column].dropna().unique()
    return values[0] if len(values) == 1 else None


def _number(value: Any) -> str:
    return f"{float(value):g}"


def _column_title(rows: pd.DataFrame, arch: str, depth: int) -> str:
    """e.g. ``MLP (depth 2, lr 8)``; the learning rate is per architecture in the grids."""
    lr = _one(rows, "lr")
    return f"{style.arch_label(arch)} (depth {depth}" + (f", lr {_number(lr)})" if lr is not None else ")")


def _training_text(rows: pd.DataFrame) -> str:
    """One line on how the networks were trained, from the columns the experiment writes."""
    parts = []
    loss, momentum = _one(rows, "loss"), _one(rows, "momentum")
    if loss is not None:
        parts.append("SGD" + (f" (momentum {_number(momentum)})" if momentum not in (None, 0, 0.0) else "")
                     + f" on {LOSS_LABELS.get(str(loss), str(loss))}")
    n_train, batch = _one(rows, "n_train"), _one(rows, "batch_size")
    if n_train is not None:
        parts.append(f"{int(n_train)} training images")
    if batch is not None:
        parts.append(f"batch {int(batch)}")
    return " · ".join(parts)


def _draw(ax: Axes, rows: pd.DataFrame, colors: dict[int, Any], markers: dict[int, str], geometric: bool) -> None:
    agg = _curves(rows, geometric)
    for width in sorted(agg["width"].unique()):
        line = agg[agg["width"] == width].sort_values("epoch")
        x = line["epoch"].to_numpy(dtype=np.float64)
        ax.fill_between(x, line["lo"].to_numpy(dtype=np.float64), line["hi"].to_numpy(dtype=np.float64),
                        color=colors[width], alpha=0.16, linewidth=0, zorder=2)
        ax.plot(x, line["center"].to_numpy(dtype=np.float64), color=colors[width], marker=markers[width],
                label=f"n = {width}", zorder=3)


def render(data: pd.DataFrame, summary: pd.DataFrame | None = None) -> Figure:
    """Metrics against epoch, one line per width, one column per arch (deepest depth run).

    Raises:
        SuiteError: On missing columns (``epoch`` included) or a mix of settings.
        MissingDataError: If there are no ``rel_frobenius`` rows for ``pntk``.
    """
    df = _prepare(data)
    head = c.select(df, "rel_frobenius", ["pntk"], NAME)
    depth_of = c.deepest(head)
    df = df[df["depth"] == df["arch"].map(depth_of)]
    present = []
    for metric, kernel, label, log_y, height in ROWS:
        rows = df[(df["metric"] == metric) & (df["kernel"] == kernel)]
        rows = c.positive(rows) if log_y else rows[np.isfinite(rows["value"].to_numpy(dtype=np.float64))]
        if not rows.empty:
            present.append((metric, label, log_y, height, rows))
    used = pd.concat([p[4] for p in present])
    setting = c.single_setting(used, NAME)
    archs = style.ordered(head["arch"].unique(), style.ARCH_ORDER)
    epochs = sorted(used["epoch"].unique())
    heights = [p[3] for p in present]

    with style.theme():
        n_widths = max(used[used["arch"] == a]["width"].nunique() for a in archs)
        legend_lines = n_widths + len(epochs) + 1
        width = max(c.PANEL_WIDTH * len(archs), 7.5)
        fig = Figure(figsize=(width, 2.0 * sum(heights) + 1.2 + 0.22 * legend_lines), layout="constrained")
        sfigs = fig.subfigures(1, len(archs), squeeze=False)[0]
        columns: list[list[Axes]] = []
        for j, arch in enumerate(archs):
            sfig = sfigs[j]
            axes = list(sfig.subplots(len(present), 1, sharex=True, gridspec_kw={"height_ratios": heights}))
            if columns:  # one y scale per row across architectures
                for ax, ref in zip(axes, columns[0], strict=True):
                    ax.sharey(ref)
            columns.append(axes)
            widths = sorted(int(w) for w in used.loc[used["arch"] == arch, "width"].unique())
            colors = width_palette(widths)
            markers = {w: WIDTH_MARKERS[i % len(WIDTH_MARKERS)] for i, w in enumerate(widths)}
            for ax, (metric, label, log_y, _h, rows) in zip(axes, present, strict=True):
                panel = rows[rows["arch"] == arch]
                if panel.empty:
                    ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center")
                else:
                    _draw(ax, panel, colors, markers, log_y)
                if j == 0:
                    ax.set_ylabel(label, fontsize=9.5)
                if metric == "test_acc":
                    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
                    ax.yaxis.set_major_locator(MultipleLocator(0.25))
                    ax.set_ylim(0, 1)
            axes[0].set_title(_column_title(used[used["arch"] == arch], arch, depth_of[arch]))
            axes[-1].set_xlabel("epoch (0 = initialisation)")
            axes[-1].xaxis.set_major_locator(FixedLocator([float(e) for e in epochs]))
            handles: list[Any] = [Line2D([], [], color=colors[w], marker=markers[w], label=f"width n = {w}")
                                  for w in widths]
            slopes = _slope_entries(head[(head["arch"] == arch) & (head["depth"] == depth_of[arch])],
                                    summary, arch, depth_of[arch])
            if slopes:
                handles.append(Line2D([], [], linestyle="none", label="rel. Frobenius error, slope vs width\n(theory: −0.5 at epoch 0 only):"))
                handles += [Line2D([], [], linestyle="none", label=s) for s in slopes]
            sfig.legend(handles=handles, loc="outside lower center", ncols=1, handlelength=2.2)
        for i, (_metric, _label, log_y, _h, _rows) in enumerate(present):
            if log_y:
                style.format_log_y(columns[0][i])
        for axes in columns[1:]:
            for ax in axes:
                ax.tick_params(labelleft=False)
        chars = max(30, int(fig.get_figwidth() * 10))
        lines = [TITLE, c.setting_text(setting), _training_text(used)]
        fig.suptitle("\n".join(textwrap.fill(line, chars) for line in lines if line))
        return fig


FIGURE = c.FigureSpec(
    order=30,
    name=NAME,
    experiment=EXPERIMENT,
    title=TITLE,
    caption=(
        "Networks trained with mini-batch SGD on mnist5k; at each checkpoint (epoch 0 = "
        "initialisation) the eNTK is computed on a fixed batch of held-out probe images. Rows: "
        "relative Frobenius error of pNTK⊗I (T2), relative error of λ_max (T3), off-diagonal "
        "mass of the eNTK blocks (the lpNTK observation, THEORY.md §6), training loss and test "
        "accuracy. Lines are geometric means over seeds (test accuracy: arithmetic), bands span "
        "min to max over seeds; the legend gives, per epoch, the fitted slope of the relative "
        "Frobenius error against width with its Student-t 95% CI. The n^-1/2 theorem covers "
        "epoch 0 only."
    ),
    render=render,
)
