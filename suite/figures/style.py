"""One place for the look of every figure: theme, labels, colours and axis helpers.

Figures read saved data and never compute kernels, so this module imports only
matplotlib, seaborn, numpy and pandas (no jax). Labels here must match the kernel
ids of :data:`suite.kernels.KERNELS` and the metric names the experiments write
(see :mod:`suite.figures`); they are duplicated rather than imported because
importing :mod:`suite.kernels` imports jax.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.ticker import (
    FixedFormatter,
    FixedLocator,
    FuncFormatter,
    LogLocator,
    NullFormatter,
    NullLocator,
)

__all__ = [
    "ARCH_COLORS",
    "ARCH_LABELS",
    "ARCH_LINESTYLES",
    "ARCH_MARKERS",
    "ARCH_ORDER",
    "DPI",
    "KERNEL_LABELS",
    "KERNEL_LINESTYLES",
    "KERNEL_MARKERS",
    "KERNEL_ORDER",
    "KERNEL_PALETTE",
    "METRIC_LABELS",
    "PARAMETERIZATION_LABELS",
    "RC",
    "REFERENCE_SLOPE",
    "SVG_HASHSALT",
    "add_reference",
    "depth_palette",
    "format_log_y",
    "format_slope",
    "format_width_axis",
    "kernel_color",
    "theme",
]

#: Legend labels of the kernel ids in :data:`suite.kernels.KERNELS`.
KERNEL_LABELS: dict[str, str] = {
    "entk": "eNTK",
    "pntk": "pNTK",
    "trace_ntk": "mean trace",
    "logit_ntk": "first logit",
    "projected_ntk": "random projection",
}

#: Kernels in the order legends list them.
KERNEL_ORDER: tuple[str, ...] = tuple(KERNEL_LABELS)

#: Colour per kernel id (Okabe-Ito, colour-blind safe): pNTK vermillion, eNTK black.
KERNEL_PALETTE: dict[str, str] = {
    "entk": "#000000",
    "pntk": "#D55E00",
    "trace_ntk": "#0072B2",
    "logit_ntk": "#009E73",
    "projected_ntk": "#CC79A7",
}

#: Marker per kernel id, so overlapping lines stay apart in greyscale too.
KERNEL_MARKERS: dict[str, str] = {
    "entk": "o",
    "pntk": "s",
    "trace_ntk": "^",
    "logit_ntk": "v",
    "projected_ntk": "D",
}

#: Line style per kernel id (the reference line is always dashed grey).
KERNEL_LINESTYLES: dict[str, Any] = {
    "entk": "-",
    "pntk": "-",
    "trace_ntk": (0, (5, 1.5)),
    "logit_ntk": (0, (1, 1.2)),
    "projected_ntk": (0, (4, 1.2, 1, 1.2)),
}

#: Axis labels of the metrics the convergence experiment writes. ``Θ`` is one
#: O×O block of the eNTK, ``K`` the approximate kernel (one scalar per pair).
METRIC_LABELS: dict[str, str] = {
    "rel_frobenius": "‖eNTK − K⊗I‖$_F$ / ‖eNTK‖$_F$",
    "max_offdiag": r"max$_{i\neq j}$ |Θ$_{ij}$| / mean$_i$ Θ$_{ii}$",
    "max_diag_dev": "max$_i$ |Θ$_{ii}$ − K| / mean$_i$ Θ$_{ii}$",
    "rel_frobenius_inf": "relative Frobenius distance to Θ$_∞$",
}

#: How parameterization ids read in titles.
PARAMETERIZATION_LABELS: dict[str, str] = {"ntk": "NTK", "standard": "standard", "sp": "standard"}

#: Panel titles of the architecture ids in :data:`suite.models.ARCHS`.
ARCH_LABELS: dict[str, str] = {"mlp": "MLP", "cnn": "CNN", "resnet": "ResNet", "wrn": "WideResNet"}

#: Colour, marker and line style of each architecture where several share one panel
#: (tests/test_figures.py checks they cover :data:`suite.models.ARCHS`).
ARCH_COLORS: dict[str, str] = {"mlp": "#D55E00", "cnn": "#009E73", "resnet": "#0072B2", "wrn": "#CC79A7"}
ARCH_MARKERS: dict[str, str] = {"mlp": "o", "cnn": "s", "resnet": "^", "wrn": "v"}
ARCH_LINESTYLES: dict[str, str] = {"mlp": "-", "cnn": "-.", "resnet": ":", "wrn": "--"}

#: Architectures in panel order (left to right); unknown ids follow, sorted.
ARCH_ORDER: tuple[str, ...] = tuple(ARCH_LABELS)

#: The rate the theory predicts: errors fall like ``width ** REFERENCE_SLOPE``.
REFERENCE_SLOPE = -0.5

#: Resolution of saved PNGs.
DPI = 150

#: Fixed salt for the ids matplotlib writes into SVGs, so reruns are byte-identical.
SVG_HASHSALT = "pntk-suite"

#: Colour of the ``n^-1/2`` reference line.
REFERENCE_COLOR = "0.45"

#: Fallback colours for kernel ids not in :data:`KERNEL_PALETTE`.
_FALLBACK_COLORS: tuple[str, ...] = ("#E69F00", "#56B4E9", "#F0E442", "#999999")


def _build_rc() -> dict[str, Any]:
    """The rcParams of the suite's theme: seaborn "ticks" with a grid, "notebook" context."""
    rc: dict[str, Any] = {}
    rc.update(sns.axes_style("whitegrid"))
    rc.update(sns.plotting_context("notebook", font_scale=0.95))
    rc.update(
        {
            # DejaVu ships with matplotlib: the same glyphs (‖, ⊗, Θ, ∞, −) on every machine.
            "font.family": "sans-serif",
            "font.sans-serif": ["DejaVu Sans"],
            "mathtext.fontset": "dejavusans",
            "axes.titleweight": "bold",
            "axes.edgecolor": "0.3",
            "grid.color": "0.88",
            "xtick.bottom": True,
            "ytick.left": True,
            "legend.frameon": False,
            "legend.fontsize": 9.5,
            "legend.title_fontsize": 10,
            "figure.titlesize": 13,
            "figure.dpi": 100,
            "savefig.dpi": DPI,
            "svg.fonttype": "path",
            "svg.hashsalt": SVG_HASHSALT,
            "lines.linewidth": 1.8,
            "lines.markersize": 5.5,
        }
    )
    return rc


#: The theme as rcParams; apply it with :func:`theme`.
RC: dict[str, Any] = _build_rc()


@contextmanager
def theme() -> Iterator[None]:
    """Apply the suite's theme inside a ``with`` block, leaving global rcParams alone."""
    with mpl.rc_context(cast(Any, RC)):
        yield


def kernel_color(kernel: str, others: Sequence[str] = ()) -> str:
    """Colour of a kernel id; ids outside the palette get a fixed fallback by position."""
    if kernel in KERNEL_PALETTE:
        return KERNEL_PALETTE[kernel]
    unknown = sorted(k for k in set(others) | {kernel} if k not in KERNEL_PALETTE)
    return _FALLBACK_COLORS[unknown.index(kernel) % len(_FALLBACK_COLORS)]


def depth_palette(depths: Iterable[int]) -> dict[int, tuple[float, float, float]]:
    """Sequential colours for depths (shallow light, deep dark), the same in every panel."""
    ordered = sorted(set(depths))
    if len(ordered) == 1:
        return {ordered[0]: mpl.colors.to_rgb(KERNEL_PALETTE["pntk"])}
    colors = sns.color_palette("flare", len(ordered))
    return {
        d: (float(c[0]), float(c[1]), float(c[2])) for d, c in zip(ordered, colors, strict=True)
    }


#: Markers given to successive depths.
DEPTH_MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X")


def format_slope(slope: float, ci_low: float = math.nan, ci_high: float = math.nan) -> str:
    """Format a fitted slope and its interval, e.g. ``"slope −0.47 [−0.55, −0.40]"``.

    Uses a true minus sign. Without a finite interval only the slope is shown.
    """

    def num(x: float) -> str:
        return f"{x:.2f}".replace("-", "−")

    if not math.isfinite(slope):
        return "slope n/a"
    text = f"slope {num(slope)}"
    if math.isfinite(ci_low) and math.isfinite(ci_high):
        text += f" [{num(ci_low)}, {num(ci_high)}]"
    return text


def _thin_ticks(
    widths: Sequence[float], axis_inches: float = 3.0, fontsize: float = 10.5
) -> list[float]:
    """Every k-th width, with the smallest k whose labels do not collide on the axis.

    Label widths are estimated from their digit count (DejaVu digits are about
    0.64 em wide); neighbouring labels need that much room plus a small gap on
    an axis ``axis_inches`` long (log scale, with the margins of
    :func:`format_width_axis`).
    """
    ws = sorted({float(w) for w in widths})
    if len(ws) <= 2:
        return ws
    span = math.log(ws[-1] / ws[0]) * 1.12  # the x limits add 6% of the range each side
    char = 0.64 * fontsize / 72.0
    gap = 0.12

    def fits(ticks: list[float]) -> bool:
        for a, b in itertools.pairwise(ticks):
            room = math.log(b / a) / span * axis_inches
            need = char * (len(_plain(a)) + len(_plain(b))) / 2 + gap
            if room < need:
                return False
        return True

    for k in range(1, len(ws)):
        kept = ws[::k]
        if kept[-1] != ws[-1]:
            # Keep the widest width too, in place of the last kept one if they are too close.
            kept = [*kept, ws[-1]] if fits([kept[-1], ws[-1]]) else [*kept[:-1], ws[-1]]
        if fits(kept):
            return kept
    return [ws[0], ws[-1]]


def _plain(value: float) -> str:
    """A width or error as a plain number: ``64``, ``0.05``, ``2e-05``."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:g}"


def format_width_axis(ax: Axes, widths: Iterable[float], axis_inches: float = 3.0) -> None:
    """Log-scale x axis with ticks at the measured widths, labelled as plain numbers.

    With many widths only every k-th is labelled, so labels never overlap on an
    axis about ``axis_inches`` long.
    """
    ticks = _thin_ticks(list(widths), axis_inches, float(mpl.rcParams["xtick.labelsize"]))
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FixedFormatter([_plain(t) for t in ticks]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    if len(ticks) >= 2:
        pad = 0.06 * math.log10(ticks[-1] / ticks[0])
        ax.set_xlim(ticks[0] / 10**pad, ticks[-1] * 10**pad)
    ax.grid(True, which="major", axis="x")


def _log_tick(value: float) -> str:
    """A log axis' tick label: plain from 0.001 to 1000 (0.05, 0.1, 200), a power of ten beyond
    (10^4 rather than 10000, 10^-5 rather than 0.00001), so wide ranges stay readable."""
    if value <= 0:
        return ""
    exponent = math.log10(value)
    if (exponent > 3.5 or exponent < -3.5) and abs(exponent - round(exponent)) < 1e-6:
        return f"$10^{{{round(exponent)}}}$"
    return _plain(float(f"{value:.6g}"))


def format_log_y(ax: Axes) -> None:
    """Log-scale y axis with plain tick labels (0.05, 0.1, 0.2, ...; powers of ten as 10^k beyond
    about 1e3 and 1e-3, :func:`_log_tick`) and unlabelled minors.

    Call after all data of the axis (and of axes sharing it) is drawn: the tick
    density is chosen from the final limits, so there are always at least two
    labelled ticks and never a crowd of them.
    """
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    decades = math.log10(high / low) if low > 0 and high > low else 1.0
    if decades > 4:
        subs: tuple[float, ...] = (1.0,)
    elif decades > 1.5:
        subs = (1.0, 3.0)
    elif decades > 0.6:
        subs = (1.0, 2.0, 5.0)
    else:
        subs = tuple(float(s) for s in range(1, 10))
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _log_tick(v)))
    ax.yaxis.set_minor_locator(LogLocator(base=10, subs="auto"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(low, high)


def add_reference(ax: Axes, points: pd.DataFrame, label: str | None = None) -> Line2D | None:
    """Draw the dashed grey guide ``∝ n^-1/2`` over the widths of ``points``.

    The guide passes through the geometric mean of ``value`` at the smallest
    width (all seeds and series of the panel pooled), so it starts among the
    data and a parallel data line means the predicted rate.

    Args:
        ax: Axes to draw on.
        points: Rows with ``width`` and positive ``value``.
        label: Legend label; the default names the rate.

    Returns:
        The line, or None when there are fewer than two widths.
    """
    widths = np.sort(points["width"].unique().astype(np.float64))
    if len(widths) < 2:
        return None
    first = points.loc[points["width"] == widths[0], "value"].to_numpy(dtype=np.float64)
    anchor = float(np.exp(np.mean(np.log(first))))
    xs = np.array([widths[0], widths[-1]])
    ys = anchor * (xs / widths[0]) ** REFERENCE_SLOPE
    (line,) = ax.plot(
        xs,
        ys,
        linestyle="--",
        color=REFERENCE_COLOR,
        linewidth=1.4,
        zorder=1,
        label=label if label is not None else "∝ n$^{-1/2}$ (theory)",
    )
    return line


def ordered(values: Iterable[str], order: Sequence[str]) -> list[str]:
    """Known ids in ``order`` first, then unknown ones sorted."""
    present = set(values)
    return [v for v in order if v in present] + sorted(present - set(order))


def arch_label(arch: str) -> str:
    """Panel title of an architecture id."""
    return ARCH_LABELS.get(arch, arch)


def kernel_label(kernel: str) -> str:
    """Legend label of a kernel id."""
    return KERNEL_LABELS.get(kernel, kernel)
