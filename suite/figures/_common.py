"""Machinery shared by the figure modules: the spec, input checks, seed summaries, panels.

Nothing here computes a kernel; every function works on the tidy frames the
experiments save (see :mod:`suite.figures` for the data contract).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from matplotlib.lines import Line2D

from suite.errors import SuiteError
from suite.figures import style

log = logging.getLogger("suite.figures")

#: Columns describing one experimental setting; a figure shows exactly one setting.
SETTING_COLUMNS: tuple[str, ...] = ("dataset", "n_outputs", "n_inputs", "parameterization", "dtype")

#: Columns every figure needs in its data frame.
REQUIRED_COLUMNS: tuple[str, ...] = (
    "arch",
    "depth",
    "width",
    "seed",
    *SETTING_COLUMNS,
    "kernel",
    "metric",
    "value",
)

#: Width of one panel in inches (three panels make a 12-inch figure).
PANEL_WIDTH = 4.0

#: Render function of a figure: ``(data, summary or None) -> Figure``.
RenderFn = Callable[[pd.DataFrame, "pd.DataFrame | None"], Figure]


class MissingDataError(SuiteError):
    """The frame has the right columns but no rows for what a figure shows.

    :func:`suite.figures.render_all` skips such a figure instead of failing.
    """


@dataclass(frozen=True)
class FigureSpec:
    """One registered figure.

    Attributes:
        name: File stem and registry key, e.g. ``"fig_convergence"``.
        experiment: Experiment whose CSV (``reports/data/<experiment>.csv``) it reads.
        title: Headline of the figure (also its suptitle's first line).
        caption: One or two sentences for the report.
        render: ``(data, summary or None) -> Figure``.
        order: position in the report (lower first).
        findings: optional ``data -> text``: what the figure fits beyond the width slopes of
            ``summary.json`` (e.g. an exponent in N or O), in words and numbers, for the report
            to print under the caption; None when the caption says it all.
    """

    name: str
    experiment: str
    title: str
    caption: str
    render: RenderFn
    order: int = 100
    findings: Callable[[pd.DataFrame], str] | None = None


def check_columns(df: pd.DataFrame, what: str, columns: Sequence[str] = REQUIRED_COLUMNS) -> None:
    """Raise a :class:`SuiteError` naming the columns ``df`` lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SuiteError(
            f"{what}: the data lacks columns {missing} (it has {list(map(str, df.columns))}); "
            "figures read the tidy frames the experiments write, see suite.figures"
        )


#: Settings a figure draws unless it is about the variants themselves (``prepare(...,
#: variants=True)``): the paper's networks (ReLU) in float32. An experiment's grid may add other
#: activations (fig_activations) or a float64 spot check (a report table); without this filter
#: those rows would join the ReLU float32 lines.
DEFAULT_SETTINGS: dict[str, str] = {"activation": "relu", "dtype": "float32"}


def prepare(df: pd.DataFrame, what: str, *, variants: bool = False) -> pd.DataFrame:
    """Check columns and coerce types: ints for depth, width, seed; float for value. Unless
    ``variants``, keep only the rows of :data:`DEFAULT_SETTINGS` where a column mixes them with
    other values (rows stored before a setting existed count as its default)."""
    check_columns(df, what)
    out = df.copy()
    if not variants:
        for col, default in DEFAULT_SETTINGS.items():
            if col in out.columns:
                values = out[col].fillna(default).astype(str)
                if values.nunique() > 1 and (values == default).any():
                    out = out[values == default]
    for col in ("depth", "width", "seed"):
        num = pd.to_numeric(out[col], errors="coerce")
        if num.isna().any():
            bad = out.loc[num.isna(), col].head(3).tolist()
            raise SuiteError(f"{what}: column {col!r} holds non-numbers such as {bad}")
        out[col] = num.astype("int64")
    out["value"] = pd.to_numeric(out["value"], errors="coerce").astype("float64")
    for col in ("arch", "kernel", "metric"):
        out[col] = out[col].astype(str)
    return out


def select(df: pd.DataFrame, metric: str, kernels: Iterable[str] | None, what: str) -> pd.DataFrame:
    """Rows of one metric (and kernels), keeping only values a log axis can show.

    Raises:
        MissingDataError: If nothing is left.
    """
    rows = df[df["metric"] == metric]
    wanted = None if kernels is None else sorted(kernels)
    if wanted is not None:
        rows = rows[rows["kernel"].isin(wanted)]
    if rows.empty:
        raise MissingDataError(
            f"{what}: no rows with metric {metric!r}"
            + (f" and kernel in {wanted}" if wanted is not None else "")
        )
    n_before = len(rows)
    rows = positive(rows)
    if len(rows) < n_before:
        log.info(
            "%s: dropped %d non-positive or non-finite values of %s",
            what,
            n_before - len(rows),
            metric,
        )
    if rows.empty:
        raise MissingDataError(f"{what}: every value of metric {metric!r} is zero, negative or NaN")
    return rows


def positive(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows whose ``value`` is positive and finite (what a log axis and a log fit accept)."""
    v = rows["value"].to_numpy(dtype=np.float64)
    return rows[np.isfinite(v) & (v > 0)]


#: Setting columns a figure with one panel per architecture may let differ between its panels
#: (each panel still shows one value): the full grid runs the ResNets at fewer inputs N than the
#: MLP and CNN. :func:`arch_title` names the panel's value.
PER_ARCH_SETTINGS = ("n_inputs",)


def single_setting(df: pd.DataFrame, what: str, *, per_arch: bool = False) -> dict[str, Any]:
    """The one value of each setting column, or a :class:`SuiteError` naming the mix.

    A figure averages over seeds and fits slopes across widths; mixing datasets,
    output counts, parameterizations or dtypes in one line would be wrong, so
    the caller must filter first. With ``per_arch`` (figures with one panel per architecture),
    a column of :data:`PER_ARCH_SETTINGS` may differ between architectures if each has one
    value: it is then left out of the shared setting and recorded under ``"per_arch"`` for
    :func:`arch_title`.
    """
    setting: dict[str, Any] = {"per_arch": {}}
    for col in SETTING_COLUMNS:
        values = sorted(map(str, df[col].dropna().unique()))
        if (len(values) > 1 and per_arch and col in PER_ARCH_SETTINGS
                and (df.groupby("arch")[col].nunique(dropna=True) <= 1).all()):
            setting["per_arch"][col] = {str(a): g[col].dropna().iloc[0] for a, g in df.groupby("arch")}
            setting[col] = None
            continue
        if len(values) > 1:
            raise SuiteError(
                f"{what}: the data mixes {len(values)} values of {col!r} ({', '.join(values)}); "
                f"a figure shows one setting, so filter the frame first, "
                f"e.g. data[data[{col!r}] == {values[0]!r}]"
            )
        setting[col] = df[col].dropna().iloc[0] if values else None
    return setting


def arch_title(arch: str, setting: Mapping[str, Any], *more: str) -> str:
    """Panel title of an architecture, with the settings that differ between panels
    (:func:`single_setting` with ``per_arch``) and ``more``, e.g. ``ResNet (N = 64, depth 1)``."""
    extra = [f"{'N' if col == 'n_inputs' else col} = {values[arch]}"
             for col, values in (setting.get("per_arch") or {}).items() if arch in values]
    extra += list(more)
    return style.arch_label(arch) + (f" ({', '.join(extra)})" if extra else "")


def setting_text(setting: Mapping[str, Any]) -> str:
    """One line naming the setting, e.g. ``digits · N = 64 inputs · O = 10 outputs · ntk · float64``."""
    parts: list[str] = []
    if setting.get("dataset") is not None:
        parts.append(str(setting["dataset"]))
    if setting.get("n_inputs") is not None:
        parts.append(f"N = {int(setting['n_inputs'])} inputs")
    if setting.get("n_outputs") is not None:
        parts.append(f"O = {int(setting['n_outputs'])} outputs")
    if setting.get("parameterization") is not None:
        param = str(setting["parameterization"])
        parts.append(f"{style.PARAMETERIZATION_LABELS.get(param, param)} parameterization")
    if setting.get("dtype") is not None:
        parts.append(str(setting["dtype"]))
    return " · ".join(parts)


def seed_summary(rows: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Per ``by`` + width: geometric mean over seeds (``center``), min (``lo``), max (``hi``)."""
    keys = [*by, "width"]
    work = rows.assign(_log=np.log(rows["value"].to_numpy(dtype=np.float64)))
    grouped = work.groupby(keys, sort=True)
    out = grouped.agg(
        center=("_log", "mean"),
        lo=("value", "min"),
        hi=("value", "max"),
        n_seeds=("seed", "nunique"),
    ).reset_index()
    out["center"] = np.exp(out["center"].to_numpy(dtype=np.float64))
    return out


def deepest(rows: pd.DataFrame) -> dict[str, int]:
    """Deepest depth per arch among ``rows``."""
    return {str(a): int(d) for a, d in rows.groupby("arch")["depth"].max().items()}


def slope_text(
    rows: pd.DataFrame,
    summary: pd.DataFrame | None,
    key: Mapping[str, Any],
) -> str | None:
    """Fitted slope of one case as legend text, or None when it cannot be fitted.

    Takes the slope from ``summary`` when it has exactly one row matching
    ``key`` and the case's setting (on the columns the summary has); otherwise
    fits ``rows`` with
    :func:`suite.stats.fit_slope`. Fewer than three widths (or any other
    :class:`SuiteError` from the fit) gives None, i.e. no annotation.
    """
    if summary is not None and "slope" in summary.columns:
        # A summary grouped by setting columns too (dataset, dtype, ...) is matched on them as well.
        key = {
            **{col: rows[col].iloc[0] for col in (*SETTING_COLUMNS, *DEFAULT_SETTINGS) if col in rows.columns},
            **key,
        }
        cols = [c for c in key if c in summary.columns]
        match = summary
        for c in cols:
            match = match[match[c].astype(str) == str(key[c])]
        if cols and len(match) == 1:
            row = match.iloc[0]
            slope = float(row["slope"])
            if not math.isfinite(slope):
                return None
            return style.format_slope(
                slope,
                float(row.get("slope_ci_low", math.nan)),
                float(row.get("slope_ci_high", math.nan)),
            )
    from suite.stats import fit_slope  # numpy/pandas only; imported here to keep import light

    try:
        fit = fit_slope(rows[["width", "seed", "value"]])
    except SuiteError as exc:
        log.info("no slope for %s: %s", dict(key), exc)
        return None
    return style.format_slope(fit.slope, fit.slope_ci_low, fit.slope_ci_high)


def with_slope(label: str, slope: str | None) -> str:
    """``"depth 2: slope −0.47 [−0.55, −0.40]"`` or just ``"depth 2"``."""
    return f"{label}: {slope}" if slope else label


def panel_grid(
    n_rows: int, n_cols: int, legend_entries: int
) -> tuple[Figure, list[list[SubFigure]], list[list[Axes]]]:
    """A constrained-layout figure of ``n_rows × n_cols`` panels, one subfigure each.

    Each panel lives in its own subfigure so its legend can sit below it
    (``loc="outside lower center"``), clear of the data and of the x label.
    Panels of one row share their y axis. The height grows with the number of
    legend entries per panel, so the plotting area stays about 2.4 in tall.
    """
    width = max(PANEL_WIDTH * n_cols, 7.5)  # one panel alone gets room for title and legend
    row_height = 2.4 + 1.0 + 0.22 * legend_entries
    fig = Figure(figsize=(width, row_height * n_rows + 0.6), layout="constrained")
    fig.get_layout_engine().set(w_pad=0.04, h_pad=0.04, hspace=0.02, wspace=0.02)  # type: ignore[union-attr, call-arg]
    subs = fig.subfigures(n_rows, n_cols, squeeze=False)
    sfigs: list[list[SubFigure]] = [[subs[r][c] for c in range(n_cols)] for r in range(n_rows)]
    axes: list[list[Axes]] = []
    for r in range(n_rows):
        row: list[Axes] = []
        for c in range(n_cols):
            share = row[0] if row else None
            row.append(sfigs[r][c].add_subplot(1, 1, 1, sharey=share))
        axes.append(row)
    return fig, sfigs, axes


def plot_series(
    ax: Axes,
    agg: pd.DataFrame,
    *,
    color: Any,
    marker: str,
    label: str,
    linestyle: Any = "-",
    band: bool = True,
    filled: bool = True,
) -> Line2D:
    """Seed-mean line with markers and a min–max band over seeds."""
    agg = agg.sort_values("width")
    x = agg["width"].to_numpy(dtype=np.float64)
    if band:
        ax.fill_between(
            x,
            agg["lo"].to_numpy(dtype=np.float64),
            agg["hi"].to_numpy(dtype=np.float64),
            color=color,
            alpha=0.16,
            linewidth=0,
            zorder=2,
        )
    (line,) = ax.plot(
        x,
        agg["center"].to_numpy(dtype=np.float64),
        color=color,
        marker=marker,
        linestyle=linestyle,
        markerfacecolor=color if filled else "white",
        markeredgecolor=color,
        label=label,
        zorder=3,
    )
    return line


def plot_fitted(
    ax: Axes,
    case: pd.DataFrame,
    summary: pd.DataFrame | None,
    key: Mapping[str, Any],
    *,
    by: Sequence[str],
    label: str,
    **style_kw: Any,
) -> Line2D:
    """One series: its :func:`seed_summary` over ``by`` drawn by :func:`plot_series`, with the
    fitted slope of ``key`` (:func:`slope_text`) in its legend label."""
    slope = slope_text(case, summary, key)
    return plot_series(ax, seed_summary(case, list(by)), label=with_slope(label, slope), **style_kw)


def append_reference(ax: Axes, rows: pd.DataFrame, handles: list[Any]) -> None:
    """Draw the n^-1/2 guide from ``rows`` (:func:`style.add_reference`) and add it to the
    legend ``handles`` when there was data to draw it from."""
    ref = style.add_reference(ax, rows)
    if ref is not None:
        handles.append(ref)


def finish_panel(
    sfig: SubFigure,
    ax: Axes,
    widths: Iterable[int],
    handles: Sequence[Any],
    ylabel: str | None,
    title: str | None,
) -> None:
    """Ticks at the widths, labels, title, and a legend below the panel."""
    # The axis spans the subfigure less the y tick labels and label (about 0.9 in).
    axis_inches = sfig.bbox.width / sfig.figure.dpi - 0.9
    style.format_width_axis(ax, widths, axis_inches)
    ax.set_xlabel("width n (hidden units / channels)")
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if handles:
        sfig.legend(handles=list(handles), loc="outside lower center", ncols=1, handlelength=2.6)


def finish_figure(
    fig: Figure, title: str, setting: Mapping[str, Any], axes: Iterable[Axes]
) -> Figure:
    """Log y ticks on every axes and the two-line suptitle."""
    for ax in axes:
        style.format_log_y(ax)
    # Wrap to the figure's width (about 10 characters per inch at the title size),
    # so a one-panel figure does not clip its title.
    chars = max(30, int(fig.get_figwidth() * 10))
    lines = [textwrap.fill(title, chars)]
    sub = setting_text(setting)
    if sub:
        lines.append(textwrap.fill(sub, chars))
    fig.suptitle("\n".join(lines))
    return fig


def save(fig: Figure, out_dir: str | os.PathLike[str], name: str) -> list[Path]:
    """Write ``<name>.png`` (150 dpi) and ``<name>.svg`` atomically, without timestamps.

    Each file is written to a temporary file in ``out_dir`` and moved into
    place with :func:`os.replace`, so a reader never sees half a figure. The
    metadata holds no date or software version and SVG ids use a fixed salt,
    so saving the same figure twice gives byte-identical files.

    Returns:
        ``[png_path, svg_path]``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    formats: list[tuple[str, dict[str, Any]]] = [
        ("png", {"dpi": style.DPI, "metadata": {"Software": None}}),
        ("svg", {"metadata": {"Date": None, "Creator": None}}),
    ]
    written: list[Path] = []
    for fmt, kwargs in formats:
        target = out / f"{name}.{fmt}"
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=f".{fmt}.tmp", dir=out)
        try:
            with os.fdopen(fd, "wb") as fh, mpl.rc_context({"svg.hashsalt": style.SVG_HASHSALT}):
                fig.savefig(fh, format=fmt, **kwargs)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        written.append(target)
    return written


def load_summary(path: str | os.PathLike[str]) -> pd.DataFrame | None:
    """The summary rows saved at ``path`` (a JSON list of records, or ``{"rows": [...]}``).

    Returns None when the file does not exist; figures then fit slopes themselves.
    """
    import json

    p = Path(path)
    if not p.exists():
        return None
    payload = json.loads(p.read_text())
    if isinstance(payload, dict) and "rows" in payload:
        payload = payload["rows"]
    if not isinstance(payload, list):
        raise SuiteError(
            f"{p}: expected a JSON list of summary rows or an object with a 'rows' list, "
            f"got {type(payload).__name__}"
        )
    return pd.DataFrame(payload)
