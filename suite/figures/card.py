"""The approximation card's figure (``python -m suite card``): the eNTK's block structure beside
the errors of every approximation on the probe.

Not a registered report figure (it has no ``FIGURE``): it draws one card's JSON dictionary
(:mod:`suite.cards`), not an experiment's saved rows. Left: mean |Θ_ij| over all input pairs
for each pair of outputs (i, j), divided by the mean diagonal; pNTK ⊗ I predicts 1 on the
diagonal and 0 off it. Right: each approximation's errors (T2, T1 diagonal, T3 λ_max) as bars,
with the eNTK's largest off-diagonal entry (T1) as a reference line.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from suite.figures import style

#: Bars per approximation: (metric key of the card, legend label, hatch).
_BARS = (
    ("rel_frobenius", "‖Θ − K⊗I‖$_F$ / ‖Θ‖$_F$ (T2)", ""),
    ("max_diag_dev", "max |Θ$_{ii}$ − K| / mean diag (T1)", "//"),
    ("lambda_max_rel_err", "λ$_{max}$ relative error (T3)", ".."),
)
_APPROX = ("pntk", "trace_ntk", "logit_ntk", "projected_ntk")
#: Colour limits of the heat map (log scale); values outside are drawn at the ends.
HEAT_RANGE = (0.01, 1.5)


def render(data: Mapping[str, Any]) -> Figure:
    """The card's figure from its JSON dictionary."""
    block = data["block_structure"]
    heat = np.asarray(block["map"], np.float64)
    o_shown = int(block["outputs_shown"])
    o = int(data["n_outputs"])
    with style.theme():
        fig, (ax_map, ax_bar) = plt.subplots(
            1, 2, figsize=(12.5, 5.0), gridspec_kw={"width_ratios": [1.0, 1.25]}, layout="constrained"
        )
        _heat_map(fig, ax_map, heat, o, o_shown, block)
        _error_bars(ax_bar, data["metrics"])
        title = (f"{data['name']}: pNTK vs eNTK on a probe of {data['n_probe']} of {data['n_inputs']:,} inputs "
                 f"(O = {o}, P = {data['n_params']:,})")
        fig.suptitle("\n".join(textwrap.wrap(title, 110)), fontsize=12)
    return fig


def _heat_map(fig: Figure, ax: Any, heat: np.ndarray, o: int, shown: int, block: Mapping[str, Any]) -> None:
    # A log colour scale: the diagonal is about 1, and the off-diagonal entries the pNTK drops
    # (0.001-0.5) would all look alike on a linear one. Fixed limits, so that two cards side by
    # side (the report's init and trained) use the same colours for the same values.
    vmin, vmax = HEAT_RANGE
    norm = LogNorm(vmin=vmin, vmax=vmax)
    image = ax.imshow(np.clip(heat, vmin, vmax), cmap="magma_r", norm=norm, interpolation="nearest")
    cbar = fig.colorbar(image, ax=ax, shrink=0.85, pad=0.02, extend="both")
    cbar.set_label("mean |Θ$_{ij}$| / mean diagonal (log scale)")
    cbar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    if shown <= 12:
        ticks = np.arange(shown)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_yticks(ticks, [str(t) for t in ticks])
        for i in range(shown):
            for j in range(shown):
                value = heat[i, j]
                dark = np.log(max(value, vmin) / vmin) > 0.6 * np.log(vmax / vmin)
                ax.text(j, i, _cell(value), ha="center", va="center",
                        fontsize=7 if shown > 8 else 8.5, color="white" if dark else "0.15")
    ax.grid(False)
    ax.set_xlabel("output j")
    ax.set_ylabel("output i")
    corner = f" (first {shown} of {o} outputs)" if shown < o else ""
    ax.set_title(f"eNTK block structure{corner}", fontsize=11)
    ax.text(0.0, -0.16 if shown <= 12 else -0.12,
            f"off-diagonal mean {block['mean_offdiag_over_diag']:.3f} of the diagonal; pNTK⊗I predicts 0",
            transform=ax.transAxes, fontsize=9, color="0.3", ha="left", va="top")


def _error_bars(ax: Any, metrics: Mapping[str, Mapping[str, float]]) -> None:
    kernels = [k for k in _APPROX if k in metrics]
    n_bars = len(_BARS)
    height = 0.8 / n_bars
    values = []
    for b, (metric, _label, hatch) in enumerate(_BARS):
        for i, k in enumerate(kernels):
            value = float(metrics[k][metric])
            values.append(value)
            y = i + (b - (n_bars - 1) / 2) * height
            ax.barh(y, max(value, 1e-12), height=height * 0.92, color=style.kernel_color(k), hatch=hatch,
                    edgecolor="white", linewidth=0.6, alpha=1.0 - 0.25 * b)
            ax.text(max(value, 1e-12) * 1.08, y, _number(value), va="center", fontsize=8, color="0.2",
                    bbox={"boxstyle": "square,pad=0.05", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})
    off = float(metrics["entk"]["max_offdiag"])
    ax.axvline(off, color="0.35", linestyle="--", linewidth=1.2, zorder=0)
    positive = [v for v in [*values, off] if v > 0]
    low = min(positive) if positive else 1e-3
    high = max(positive) if positive else 1.0
    ax.set_xscale("log")
    ax.set_xlim(low / 2.5, high * 4.0)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yticks(range(len(kernels)), [style.kernel_label(k) for k in kernels])
    ax.invert_yaxis()
    ax.set_xlabel("error on the probe (log scale; lower is closer to the eNTK)")
    ax.set_title("Errors of each kernel K, used as K ⊗ I, against the eNTK Θ", fontsize=11)
    ax.grid(True, axis="x", which="major")
    ax.grid(False, axis="y")
    # Neutral legend swatches (the colour is the kernel's, the hatch the metric's), below the
    # axes so that it never covers a bar.
    handles: list[Any] = [Patch(facecolor="0.55", hatch=hatch, edgecolor="white", alpha=1.0 - 0.25 * b, label=label)
                          for b, (_, label, hatch) in enumerate(_BARS)]
    handles.append(Line2D([], [], color="0.35", linestyle="--", linewidth=1.2,
                          label=f"eNTK: max off-diagonal / mean diag (T1) = {_number(off)}"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8.5, frameon=False)


def _cell(value: float) -> str:
    """A heat-map entry in at most 5 characters: 1.06, 0.08, 0.003, 12."""
    if value >= 9.995:
        return f"{value:.0f}"
    return f"{value:.2f}" if value >= 0.01 else f"{value:.3f}"[1:] if value >= 0.001 else "<.001"


def _number(value: float) -> str:
    """A bar's value: three decimals below 1 (0.150, 0.028), else three significant digits."""
    return f"{value:.3f}" if 0.001 <= value < 1 else f"{value:.3g}"
