"""fig_inputs: the pNTK's relative error does not depend on the number of inputs N.

Reads ``<data>/inputs.csv``. One panel per architecture: the pNTK's relative Frobenius error
(T2) against N, one line per width; and a last panel with the fitted N exponent of every
metric and architecture (THEORY.md §3, "Dependence on N").

The exponent gamma of err = C(n) N^gamma is fitted here, from the saved rows
(:func:`fit_inputs`, :func:`suite.stats.fit_exponent`): log err on log N with one intercept per
width, one fit per seed, Student-t 95% interval over seeds. Theory: gamma = 0 for the relative
Frobenius error (numerator and denominator both sum over the N² input pairs); the max-entry
metrics of T1 are maxima over N²·O² entries and may grow like sqrt(log N), a local exponent
of at most about 1/ln(N²·O²) (0.07-0.11 on these grids).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

from suite.errors import SuiteError
from suite.figures import _common as c
from suite.figures import style
from suite.stats import ExponentFit, fit_exponent

NAME = "fig_inputs"
EXPERIMENT = "inputs"
TITLE = "Dependence on the number of inputs N at fixed width: the pNTK's relative error is flat in N (theory: N⁰)"
YLABEL = "‖eNTK − pNTK⊗I‖$_F$ / ‖eNTK‖$_F$"

#: The metrics whose N exponent is fitted: (kernel, metric) -> short label. The first is the
#: one drawn in the architecture panels (T2); the others are T1's maxima over entries.
METRICS: dict[tuple[str, str], str] = {
    ("pntk", "rel_frobenius"): "T2 rel. Frobenius (pNTK)",
    ("pntk", "max_diag_dev"): "T1 max diagonal dev. (pNTK)",
    ("entk", "max_offdiag"): "T1 max off-diagonal (eNTK)",
}

#: Tick labels of the exponent panel, per metric.
SHORT = {"rel_frobenius": "T2: rel.\nFrobenius", "max_diag_dev": "T1: max\ndiag. dev.", "max_offdiag": "T1: max\noff-diag."}

#: What the theory predicts for gamma, per metric (THEORY.md §3, "Dependence on N").
PREDICTED = {
    "rel_frobenius": "theory 0",
    "max_diag_dev": "no rate claimed: grows with max_a Θ_aa / mean_a Θ_aa and like √log N",
    "max_offdiag": "no rate claimed: likewise",
}


def fit_inputs(rows: pd.DataFrame) -> ExponentFit:
    """The N exponent at fixed width of one series' rows (columns n_inputs, width, seed, value).

    Raises:
        SuiteError: fewer than two values of N at a width, or a non-positive value.
    """
    return fit_exponent(rows, "n_inputs", within="width")


def _num(x: float) -> str:
    """Three decimals: the T2 exponents are of order 0.01, which two decimals show as −0.00."""
    return f"{x:.3f}".replace("-", "−")


def gamma_text(gamma: float, low: float = math.nan, high: float = math.nan) -> str:
    """``γ = 0.010 [−0.010, 0.030]`` (the interval only where there is one)."""
    text = f"γ = {_num(gamma)}"
    if math.isfinite(low) and math.isfinite(high):
        text += f" [{_num(low)}, {_num(high)}]"
    return text


def _fit_text(fit: ExponentFit) -> str:
    return gamma_text(fit.exponent, fit.ci_low, fit.ci_high)


def exponents(data: pd.DataFrame) -> pd.DataFrame:
    """One row per (arch, metric) of :data:`METRICS` present in ``data``: gamma, its interval,
    the seeds and the N range (the table behind the last panel and the report's text)."""
    df = c.prepare(data, NAME)
    df = df.assign(n_inputs=pd.to_numeric(df["n_inputs"]).astype("int64"))
    out = []
    for (kernel, metric), label in METRICS.items():
        rows = c.positive(df[(df["kernel"] == kernel) & (df["metric"] == metric)])
        for arch in style.ordered(rows["arch"].unique(), style.ARCH_ORDER):
            mine = rows[rows["arch"] == arch]
            try:
                fit = fit_inputs(mine)
            except SuiteError as exc:  # one N only: nothing to fit
                c.log.info("%s: no N exponent for %s %s: %s", NAME, arch, metric, exc)
                continue
            out.append({"arch": arch, "kernel": kernel, "metric": metric, "label": label,
                        "gamma": fit.exponent, "ci_low": fit.ci_low, "ci_high": fit.ci_high,
                        "n_seeds": fit.n_seeds, "n_min": int(mine["n_inputs"].min()),
                        "n_max": int(mine["n_inputs"].max()), "n_widths": mine["width"].nunique()})
    return pd.DataFrame(out, columns=["arch", "kernel", "metric", "label", "gamma", "ci_low", "ci_high",
                                      "n_seeds", "n_min", "n_max", "n_widths"])


def findings(data: pd.DataFrame) -> str:
    """The fitted N exponents in one paragraph, for the report under the figure."""
    table = exponents(data)
    if table.empty:
        return ""
    parts = []
    for arch, rows in table.groupby("arch", sort=False):
        records = rows.to_dict(orient="records")
        fits = "; ".join(
            f"{r['label']} {gamma_text(float(r['gamma']), float(r['ci_low']), float(r['ci_high']))}"
            f" ({PREDICTED[str(r['metric'])]})"
            for r in records
        )
        first = records[0]
        parts.append(f"{style.arch_label(str(arch))} (N = {first['n_min']}–{first['n_max']}, {first['n_widths']} "
                     f"widths, {first['n_seeds']} seeds): {fits}.")
    return ("**Fitted N exponent γ** (err ∝ N^γ at fixed width: log error on log N, one intercept per width, "
            "one fit per seed, Student-t 95% interval over seeds). " + " ".join(parts))


def _format_n_axis(ax: Axes, values: list[int]) -> None:
    """Log-2 x axis with a tick at every N, labelled as plain numbers."""
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(values))
    ax.xaxis.set_major_formatter(FixedFormatter([str(v) for v in values]))
    ax.xaxis.set_minor_locator(NullLocator())
    if len(values) >= 2:
        pad = 2 ** (0.06 * math.log2(values[-1] / values[0]))
        ax.set_xlim(values[0] / pad, values[-1] * pad)
    ax.grid(True, which="major", axis="x")
    ax.set_xlabel("number of inputs N")


def _width_panel(ax: Axes, panel: pd.DataFrame, colors: dict) -> list:
    """Error against N, one line per width (geometric mean over seeds, min-max band)."""
    handles: list = []
    for k, (width, case) in enumerate(panel.groupby("width", sort=True)):
        agg = (case.assign(_log=np.log(case["value"]))
               .groupby("n_inputs").agg(center=("_log", "mean"), lo=("value", "min"), hi=("value", "max"))
               .reset_index())
        x = agg["n_inputs"].to_numpy(dtype=np.float64)
        color = colors[width]
        ax.fill_between(x, agg["lo"], agg["hi"], color=color, alpha=0.16, linewidth=0, zorder=2)
        try:
            label = f"width n = {width}: {_fit_text(fit_inputs(case))}"
        except SuiteError:
            label = f"width n = {width}"
        (line,) = ax.plot(x, np.exp(agg["center"]), color=color, label=label, zorder=3,
                          marker=style.DEPTH_MARKERS[k % len(style.DEPTH_MARKERS)])
        handles.append(line)
    return handles


def render(data: pd.DataFrame, summary: pd.DataFrame | None = None) -> Figure:
    """pNTK error against N per width (one panel per arch) and the fitted N exponents.

    Raises:
        SuiteError: missing columns, or a mix of datasets, O, parameterizations or dtypes.
        MissingDataError: no ``rel_frobenius`` rows for the ``pntk``.
    """
    del summary  # the width slopes per N are in the report's table; this figure fits N
    df = c.prepare(data, NAME)
    rows = c.select(df, "rel_frobenius", ["pntk"], NAME)
    rows = rows.assign(n_inputs=pd.to_numeric(rows["n_inputs"]).astype("int64"))
    setting = c.single_setting(rows.assign(n_inputs=np.nan), NAME)  # N varies on purpose
    archs = style.ordered(rows["arch"].unique(), style.ARCH_ORDER)
    table = exponents(df)
    n_widths = int(rows.groupby("arch")["width"].nunique().max())
    n_entries = max(n_widths + 1, len(archs) + 2)  # legend rows per panel (all padded to it)
    with style.theme():
        fig, sfigs, axes = c.panel_grid(1, len(archs) + 1, n_entries)
        for j, arch in enumerate(archs):
            ax, sfig = axes[0][j], sfigs[0][j]
            panel = rows[rows["arch"] == arch]
            widths = sorted(panel["width"].unique().tolist())
            palette = sns.color_palette("flare", len(widths))
            colors = {w: tuple(palette[i]) for i, w in enumerate(widths)}
            handles = _width_panel(ax, panel, colors)
            fit = table[(table["arch"] == arch) & (table["metric"] == "rel_frobenius")]
            if len(fit):
                r = fit.to_dict(orient="records")[0]
                handles.append(Line2D([], [], linestyle="none", label=(
                    f"all widths: {gamma_text(float(r['gamma']), float(r['ci_low']), float(r['ci_high']))}"
                    " (theory: 0)")))
            handles += [Line2D([], [], linestyle="none", label=" ")] * (n_entries - len(handles))
            _format_n_axis(ax, sorted(panel["n_inputs"].unique().tolist()))
            if j == 0:
                ax.set_ylabel(YLABEL)
            depths = sorted(panel["depth"].unique().tolist())
            ax.set_title(style.arch_label(arch) + (f" (depth {depths[0]})" if len(depths) == 1 else ""))
            sfig.legend(handles=handles, loc="outside lower center", ncols=1, handlelength=2.6)

        # Last panel: gamma with its interval per metric (x) and arch (offset), 0 for reference.
        ax, sfig = axes[0][-1], sfigs[0][-1]
        ax.remove()
        ax = sfig.add_subplot(1, 1, 1)  # its own y axis (an exponent, not an error)
        present = [m for _, m in METRICS if m in set(table["metric"])]
        handles = []
        for i, arch in enumerate(archs):
            mine = table[table["arch"] == arch]
            if mine.empty:
                continue
            offset = (i - (len(archs) - 1) / 2) * 0.18
            xs = [present.index(str(m)) + offset for m in mine["metric"]]
            gamma = mine["gamma"].to_numpy(dtype=np.float64)
            below = np.nan_to_num(gamma - mine["ci_low"].to_numpy(dtype=np.float64))
            above = np.nan_to_num(mine["ci_high"].to_numpy(dtype=np.float64) - gamma)
            bars = ax.errorbar(xs, gamma, yerr=[below, above], color=style.ARCH_COLORS.get(arch, "0.3"),
                               marker=style.ARCH_MARKERS.get(arch, "D"), linestyle="none", capsize=3,
                               label=style.arch_label(arch), zorder=3)
            handles.append(bars)
        ax.axhline(0.0, color=style.REFERENCE_COLOR, linestyle="--", linewidth=1.4, zorder=1)
        handles.append(Line2D([], [], color=style.REFERENCE_COLOR, linestyle="--", linewidth=1.4,
                              label="γ = 0: no dependence on N (theory for T2)"))
        handles.append(Line2D([], [], linestyle="none",
                              label="T1 maxima: no rate claimed (THEORY.md §3)"))
        ax.set_xticks(range(len(present)))
        ax.set_xticklabels([SHORT[m] for m in present])
        ax.set_xlim(-0.5, len(present) - 0.5)
        ax.set_ylabel("N exponent γ at fixed width")
        ax.set_title("fitted N exponent, 95% CI")
        low, high = ax.get_ylim()
        span = max(high - low, 0.1)
        ax.set_ylim(min(low, -0.05 * span), max(high, 0.05 * span))
        handles += [Line2D([], [], linestyle="none", label=" ")] * (n_entries - len(handles))
        sfig.legend(handles=handles, loc="outside lower center", ncols=1, handlelength=2.6)
        return c.finish_figure(fig, TITLE, setting, axes[0][:-1])


FIGURE = c.FigureSpec(
    order=23,
    name=NAME,
    experiment=EXPERIMENT,
    title=TITLE,
    caption=(
        "Relative Frobenius error of the pNTK against the eNTK at initialisation, against the number of "
        "inputs N, one line per width (geometric mean over seeds, min–max band); each legend gives the "
        "fitted N exponent γ of err ∝ N^γ (log error on log N, per seed, Student-t 95% interval over seeds) "
        "for that width and for all widths together (one intercept per width). Right: γ of the T2 error "
        "and of T1's maxima over entries, per architecture. Theory (THEORY.md §3, \"Dependence on N\"): "
        "γ = 0 for the relative Frobenius error, whose numerator and denominator both sum over the N² "
        "input pairs; T1's maxima over N²·O² entries may grow slowly (√log N). The width slope of every "
        "N is in the verdict table."
    ),
    render=render,
    findings=findings,
)
