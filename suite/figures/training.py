"""fig_training: the pNTK approximation through SGD training (THEORY.md §9; §5, F6).

Reads ``reports/data/training.csv``. Columns are (architecture, learning rate) pairs, each
headed by the rate over the edge of stability at initialisation (``lr_ratio``); lines are
widths (light = narrow, dark = wide); x is the training epoch on a log2 axis from 0 (the
initialisation). Rows: the pNTK's relative Frobenius error (T2) beside the kernel's own drift
‖Θ_t − Θ_0‖/‖Θ_0‖, the eNTK's off-diagonal mass (THEORY.md §6), the relative λ_max error (T3),
the readout layer's share of the eNTK (exactly Kronecker, so it dilutes the error, §9), and
training (dashed) and test (solid) accuracy. Each column's legend lists the fitted slope of
the relative Frobenius error against width at every epoch (at epoch 0 the theorem predicts
−1/2; after training the theory says nothing).
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
from matplotlib.ticker import (
    FixedLocator,
    FuncFormatter,
    MultipleLocator,
    NullLocator,
    PercentFormatter,
)

from suite.errors import SuiteError
from suite.figures import _common as c
from suite.figures import style

NAME = "fig_training"
EXPERIMENT = "training"
TITLE = "pNTK vs eNTK through SGD training: error, kernel drift and structure at checkpoints"

#: (metric, kernel, y label, log y, relative row height). Rows whose metric is absent are
#: left out, except the first, which the figure needs. The accuracy row draws ``test_acc``
#: (solid) and ``train_acc`` (dashed).
ROWS: tuple[tuple[str, str, str, bool, float], ...] = (
    ("rel_frobenius", "pntk", "pNTK error\n‖eNTK − pNTK⊗I‖$_F$ / ‖eNTK‖$_F$", True, 1.0),
    ("entk_drift", "entk", "kernel drift\n‖Θ$_t$ − Θ$_0$‖$_F$ / ‖Θ$_0$‖$_F$", True, 1.0),
    ("offdiag_mass", "entk", "off-diagonal mass\nΣ|Θ$_{ij}$|$_{i≠j}$ / Σ|Θ$_{ii}$|", True, 1.0),
    ("lambda_max_rel_err", "pntk", "λ$_{max}$ error\n|Δλ$_{max}$| / λ$_{max}$(eNTK)", True, 1.0),
    ("readout_share", "entk", "readout share\n‖K$_{ro}$⊗I‖$_F$ / ‖eNTK‖$_F$", False, 0.8),
    ("test_acc", "network", "accuracy\n(— test, - - train)", False, 0.8),
)
#: Metrics drawn on a linear axis from 0 to 1.
UNIT_METRICS = ("readout_share", "test_acc")

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
    if "lr" not in df.columns:
        df["lr"] = np.nan
    df["lr"] = pd.to_numeric(df["lr"], errors="coerce").astype("float64")
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


def _slope_entries(rows: pd.DataFrame, summary: pd.DataFrame | None, arch: str, depth: int, lr: float) -> list[str]:
    """Legend lines "epoch e: slope ... [CI]" of rel_frobenius against width, per epoch."""
    lines = []
    for epoch in sorted(rows["epoch"].unique()):
        case = rows[rows["epoch"] == epoch]
        key: dict[str, Any] = {"experiment": EXPERIMENT, "arch": arch, "depth": depth, "epoch": epoch,
                               "kernel": "pntk", "metric": "rel_frobenius"}
        if np.isfinite(lr):
            key["lr"] = lr
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


def _column_title(df: pd.DataFrame, arch: str, depth: int, lr: float) -> str:
    """e.g. ``MLP (depth 2), lr 32`` and, from ``lr_ratio``, ``5.6× the edge of stability``."""
    title = f"{style.arch_label(arch)} (depth {depth})"
    if not np.isfinite(lr):
        return title
    title += f", lr {_number(lr)}"
    ratio = df[(df["metric"] == "lr_ratio") & (df["arch"] == arch) & (df["depth"] == depth) & (df["lr"] == lr)]
    values = ratio["value"].to_numpy(dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size:
        low, high = float(values.min()), float(values.max())
        span = f"{low:.1f}" if round(low, 1) == round(high, 1) else f"{low:.1f}–{high:.1f}"
        title += f"\nlr = {span}× the edge of stability"
    return title


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


def _draw(ax: Axes, rows: pd.DataFrame, colors: dict[int, Any], markers: dict[int, str], geometric: bool,
          linestyle: str = "-", band: bool = True, label: bool = True) -> None:
    agg = _curves(rows, geometric)
    for width in sorted(agg["width"].unique()):
        line = agg[agg["width"] == width].sort_values("epoch")
        x = line["epoch"].to_numpy(dtype=np.float64)
        if band:
            ax.fill_between(x, line["lo"].to_numpy(dtype=np.float64), line["hi"].to_numpy(dtype=np.float64),
                            color=colors[width], alpha=0.16, linewidth=0, zorder=2)
        ax.plot(x, line["center"].to_numpy(dtype=np.float64), color=colors[width], marker=markers[width],
                linestyle=linestyle, markersize=5 if band else 3.5,
                label=f"n = {width}" if label else None, zorder=3)


def _epoch_axis(ax: Axes, epochs: list[int]) -> None:
    """Epochs on a log2 axis that starts linearly at 0 (checkpoints 0, 1, 2, 4, ... evenly spaced)."""
    if max(epochs) > 2:
        ax.set_xscale("symlog", base=2, linthresh=1, linscale=1)
    ax.xaxis.set_major_locator(FixedLocator([float(e) for e in epochs]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())


def render(data: pd.DataFrame, summary: pd.DataFrame | None = None) -> Figure:
    """Metrics against epoch, one line per width, one column per (arch, learning rate) at the
    deepest depth run for each arch.

    Raises:
        SuiteError: On missing columns (``epoch`` included) or a mix of settings.
        MissingDataError: If there are no ``rel_frobenius`` rows for ``pntk``.
    """
    df = _prepare(data)
    head = c.select(df, "rel_frobenius", ["pntk"], NAME)
    depth_of = c.deepest(head)
    df = df[df["depth"] == df["arch"].map(depth_of)]
    head = head[head["depth"] == head["arch"].map(depth_of)]
    present = []
    for metric, kernel, label, log_y, height in ROWS:
        rows = df[(df["metric"] == metric) & (df["kernel"] == kernel)]
        rows = c.positive(rows) if log_y else rows[np.isfinite(rows["value"].to_numpy(dtype=np.float64))]
        if not rows.empty:
            present.append((metric, label, log_y, height, rows))
    train_acc = df[(df["metric"] == "train_acc") & (df["kernel"] == "network")]
    used = pd.concat([p[4] for p in present])
    setting = c.single_setting(used, NAME)
    archs = style.ordered(head["arch"].unique(), style.ARCH_ORDER)
    columns_of = [(arch, lr) for arch in archs
                  for lr in sorted(head.loc[head["arch"] == arch, "lr"].unique(), key=lambda v: (np.isnan(v), v))]
    epochs = sorted(int(e) for e in used["epoch"].unique())
    heights = [p[3] for p in present]

    def in_column(rows: pd.DataFrame, arch: str, lr: float) -> pd.DataFrame:
        keep = rows["arch"] == arch
        return rows[keep & (rows["lr"] == lr)] if np.isfinite(lr) else rows[keep & rows["lr"].isna()]

    with style.theme():
        n_widths = max(used[used["arch"] == a]["width"].nunique() for a in archs)
        legend_lines = n_widths + len(epochs) + 1
        width = max(c.PANEL_WIDTH * 0.9 * len(columns_of), 7.5)
        fig = Figure(figsize=(width, 1.75 * sum(heights) + 1.6 + 0.22 * legend_lines), layout="constrained")
        sfigs = fig.subfigures(1, len(columns_of), squeeze=False)[0]
        columns: list[list[Axes]] = []
        for j, (arch, lr) in enumerate(columns_of):
            sfig = sfigs[j]
            axes = list(sfig.subplots(len(present), 1, sharex=True, gridspec_kw={"height_ratios": heights}))
            if columns:  # one y scale per row across columns
                for ax, ref in zip(axes, columns[0], strict=True):
                    ax.sharey(ref)
            columns.append(axes)
            widths = sorted(int(w) for w in used.loc[used["arch"] == arch, "width"].unique())
            colors = width_palette(widths)
            markers = {w: WIDTH_MARKERS[i % len(WIDTH_MARKERS)] for i, w in enumerate(widths)}
            for ax, (metric, label, log_y, _h, rows) in zip(axes, present, strict=True):
                panel = in_column(rows, arch, lr)
                if panel.empty:
                    ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center")
                else:
                    _draw(ax, panel, colors, markers, log_y)
                if metric == "test_acc":
                    extra = in_column(train_acc, arch, lr)
                    if not extra.empty:
                        _draw(ax, extra, colors, markers, False, linestyle="--", band=False, label=False)
                if j == 0:
                    ax.set_ylabel(label, fontsize=9)
                if metric in UNIT_METRICS:
                    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0) if metric == "test_acc"
                                                 else FuncFormatter(lambda v, _pos: f"{v:g}"))
                    ax.yaxis.set_major_locator(MultipleLocator(0.25))
                    ax.set_ylim(0, 1.02)
                _epoch_axis(ax, epochs)
            axes[0].set_title(_column_title(df, arch, depth_of[arch], lr), fontsize=10.5)
            axes[-1].set_xlabel("epoch (0 = initialisation)")
            handles: list[Any] = [Line2D([], [], color=colors[w], marker=markers[w], label=f"width n = {w}")
                                  for w in widths]
            slopes = _slope_entries(in_column(head, arch, lr), summary, arch, depth_of[arch], lr)
            if slopes:
                handles.append(Line2D([], [], linestyle="none", label="pNTK error, slope vs width\n(theory: −0.5 at epoch 0 only):"))
                handles += [Line2D([], [], linestyle="none", label=s) for s in slopes]
            sfig.legend(handles=handles, loc="outside lower center", ncols=1, handlelength=2.2, fontsize=8.5)
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


def _column_numbers(df: pd.DataFrame, metric: str, kernel: str, geometric: bool) -> pd.DataFrame:
    """Seed means (geometric or arithmetic) per width and epoch of one metric, widths as rows."""
    rows = df[(df["metric"] == metric) & (df["kernel"] == kernel)]
    rows = c.positive(rows) if geometric else rows[np.isfinite(rows["value"].to_numpy(dtype=np.float64))]
    if rows.empty:
        return pd.DataFrame()
    return _curves(rows, geometric).pivot(index="width", columns="epoch", values="center")


def _span(values: Any, fmt: str) -> str:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    low, high = fmt.format(v.min()), fmt.format(v.max())
    return low if low == high else f"{low}–{high}"


def findings(data: pd.DataFrame) -> str:
    """What the data show through training, per (architecture, learning rate), for the report:
    how far the kernel moved, how the pNTK's error, the off-diagonal mass and the readout share
    changed from initialisation to the last checkpoint, and where the approximation degrades."""
    df = _prepare(data)
    head = c.positive(df[(df["metric"] == "rel_frobenius") & (df["kernel"] == "pntk")])
    if head.empty:
        return ""
    depth_of = c.deepest(head)
    df = df[df["depth"] == df["arch"].map(depth_of)]
    parts, worse, better = [], [], []
    for arch in style.ordered(df["arch"].unique(), style.ARCH_ORDER):
        for lr in sorted(df.loc[df["arch"] == arch, "lr"].unique(), key=lambda v: (np.isnan(v), v)):
            col = df[(df["arch"] == arch) & ((df["lr"] == lr) if np.isfinite(lr) else df["lr"].isna())]
            err = _column_numbers(col, "rel_frobenius", "pntk", True)
            epochs = sorted(err.columns)
            if err.empty or len(epochs) < 2 or epochs[0] != 0:
                continue
            last, wide = epochs[-1], int(err.index.max())
            change = (err[last] / err[0]).to_numpy(dtype=np.float64)
            name = f"{style.arch_label(arch)} (depth {depth_of[arch]})" + (f", lr {_number(lr)}" if np.isfinite(lr) else "")
            ratio = col.loc[(col["metric"] == "lr_ratio"), "value"]
            text = name + (f" ({_span(ratio, '{:.1f}')}× the edge of stability)" if not ratio.empty else "")
            text += f", epoch 0 → {last}"
            acc = _column_numbers(col, "train_acc", "network", False)
            test = _column_numbers(col, "test_acc", "network", False)
            if not acc.empty and last in acc.columns:
                text += f" ({_span(acc[last], '{:.0%}')} training accuracy"
                text += f", {_span(test[last], '{:.0%}')} test)" if not test.empty and last in test.columns else ")"
            drift = _column_numbers(col, "entk_drift", "entk", True)
            if not drift.empty and last in drift.columns:
                narrow = int(drift.index.min())
                text += (f": the kernel moved by {drift.loc[narrow, last]:.2f} at n = {narrow} and "
                         f"{drift.loc[wide, last]:.2f} at n = {wide}")
            verb = ("grew " + _span(change, "{:.1f}") + "×" if change.min() > 1.2 else
                    "fell to " + _span(change, "{:.2f}") + " of its initial value" if change.max() < 0.85 else
                    "changed by " + _span(change, "{:.2f}") + "×")
            text += f"; the pNTK error {verb} ({err.loc[wide, 0]:.3f} → {err.loc[wide, last]:.3f} at n = {wide})"
            off = _column_numbers(col, "offdiag_mass", "entk", True)
            if not off.empty and last in off.columns:
                text += f", the off-diagonal mass changed {_span(off[last] / off[0], '{:.1f}')}×"
            share = _column_numbers(col, "readout_share", "entk", False)
            if not share.empty and last in share.columns:
                text += f", the readout share {_span(share[0], '{:.2f}')} → {_span(share[last], '{:.2f}')}"
            parts.append(text + ".")
            if change.min() > 1.2:
                worse.append(name)
            elif change.max() < 0.85:
                better.append(name)
    if not parts:
        return ""
    verdict = (f" The approximation degrades with training where the error grew at every width: "
               f"{'; '.join(worse)}." if worse else " No setting's error grew by more than 20% at every width.")
    if better:
        verdict += f" It improved at every width for {'; '.join(better)} (THEORY.md §9: the readout share)."
    return ("**Through training** (seed means; changes from initialisation to the last checkpoint, per width). "
            + " ".join(parts) + verdict)


FIGURE = c.FigureSpec(
    order=30,
    name=NAME,
    experiment=EXPERIMENT,
    title=TITLE,
    caption=(
        "Networks trained with mini-batch SGD on mnist5k, each width at a learning rate below and "
        "one above the edge of stability at initialisation (columns; THEORY.md §9); at each "
        "checkpoint (epoch 0 = initialisation, log2 axis) the eNTK Θ is computed on a fixed batch "
        "of held-out probe images. Rows: relative Frobenius error of pNTK⊗I (T2); the kernel's "
        "drift from initialisation; off-diagonal mass of the eNTK blocks (the lpNTK observation, "
        "THEORY.md §6); relative error of λ_max (T3); the readout layer's share of the eNTK, "
        "which is exactly Kronecker, so the pNTK's error comes from the rest; training (dashed) "
        "and test (solid) accuracy. Lines are geometric means over seeds (shares and accuracies: "
        "arithmetic), bands span min to max over seeds; the legend gives, per epoch, the fitted "
        "slope of the error against width with its Student-t 95% CI. The n^-1/2 theorem covers "
        "epoch 0 only. What the quick grid showed (THEORY.md §9): below the edge the MLP trains "
        "lazily, its drift shrinking with width and its error barely moving; above it the first "
        "epoch moves the MLP's kernel by about 0.75 at every width, its readout share falls from "
        "about 0.5 to 0.3, and the error, off-diagonal mass and λ_max error grow 2–3× at every "
        "width (so the error still falls like n^-1/2): there the approximation degrades. The "
        "one-layer CNN's error instead falls during training at both rates, because its readout "
        "share grows, most at the narrow widths, which flattens its slope."
    ),
    render=render,
    findings=findings,
)
