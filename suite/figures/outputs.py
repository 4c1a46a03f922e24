"""fig_outputs: the pNTK's error grows like √(O/n) with the number of outputs O.

Reads ``reports/data/outputs.csv`` (metric ``rel_frobenius``, kernel ``pntk``). One panel per
architecture (error vs width, one line per O), and a last panel pooling every point against
O/n with a fitted power law per architecture (THEORY.md §3, "The √(O/n) constant").

The O-dependence is fitted here, from the saved rows (:func:`fit_outputs`): the pooled exponent
alpha of err = C (O/n)^alpha (:func:`suite.stats.fit_power_law`), and the O exponent beta at
fixed width (log err on log O with one intercept per width), both with a Student-t 95%
interval. Theory: alpha = beta = 1/2 while the error is small; where it approaches 1 (large O,
small n) it saturates and both fits flatten. Counted exactly (THEORY.md §3, "The O constant,
counted exactly"), err = r / sqrt(1 + r²) with r ~ sqrt((O - 1)(O + 4) / (O n)): so beta is also
fitted over the widths where the largest O's error is at most :data:`UNSATURATED_ERROR`, and on
r = err / sqrt(1 - err²) over all widths, against the predicted :func:`beta_theory` (0.45, not
1/2, for O from 2 to 100).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from suite.errors import SuiteError
from suite.figures import _common as c
from suite.figures import style
from suite.stats import THRESHOLDS, fit_exponent, fit_power_law, t_interval

NAME = "fig_outputs"
EXPERIMENT = "outputs"
TITLE = "Dependence on the number of outputs O: relative Frobenius error of the pNTK ~ √(O/n)"
YLABEL = "‖eNTK − pNTK⊗I‖$_F$ / ‖eNTK‖$_F$"

#: Widths where the seed-mean error of the largest O is at most this are "unsaturated": there a
#: local exponent of err is that of r = err / sqrt(1 - err²) times 1 - err² >= 0.96 (THEORY.md §3).
UNSATURATED_ERROR = 0.2


@dataclass(frozen=True)
class OutputsFit:
    """O-dependence of one architecture's error (natural-log fits, Student-t 95% CIs over seeds).

    Attributes:
        alpha: exponent of err = prefactor * (O/n)^alpha, all widths, O and seeds pooled.
        alpha_ci: its interval.
        prefactor: C of that fit.
        r2: R^2 of the pooled log-log fit.
        beta: exponent of O at fixed width (log err on log O with width fixed effects).
        beta_ci: its interval.
        n_points: points fitted.
        beta_unsaturated: beta over the widths where the seed-mean error of the largest O is at
            most :data:`UNSATURATED_ERROR` (NaN where there is none).
        beta_unsaturated_ci: its interval.
        unsaturated_widths: those widths.
        beta_r: beta of r = err / sqrt(1 - err²) (saturation removed), all widths.
        beta_r_ci: its interval.
        beta_theory: the predicted beta for the O values fitted (:func:`beta_theory`).
    """

    alpha: float
    alpha_ci: tuple[float, float]
    prefactor: float
    r2: float
    beta: float
    beta_ci: tuple[float, float]
    n_points: int
    beta_unsaturated: float = math.nan
    beta_unsaturated_ci: tuple[float, float] = (math.nan, math.nan)
    unsaturated_widths: tuple[int, ...] = ()
    beta_r: float = math.nan
    beta_r_ci: tuple[float, float] = (math.nan, math.nan)
    beta_theory: float = math.nan


def _within_width_slope(log_o: np.ndarray, log_err: np.ndarray, width_codes: np.ndarray) -> float:
    """OLS slope of log err on log O after removing each width's mean (width fixed effects)."""
    count = np.bincount(width_codes)
    seen = count > 0
    mean_x = np.bincount(width_codes, log_o)[seen] / count[seen]
    mean_y = np.bincount(width_codes, log_err)[seen] / count[seen]
    index = np.cumsum(seen) - 1  # width code -> position among the widths present
    xc = log_o - mean_x[index[width_codes]]
    yc = log_err - mean_y[index[width_codes]]
    sxx = float(xc @ xc)
    if sxx <= 1e-12 * max(float(log_o @ log_o), 1e-300):
        raise SuiteError("the O exponent at fixed width needs at least two values of O per width")
    return float(xc @ yc / sxx)


def fit_outputs(rows: pd.DataFrame) -> OutputsFit:
    """Fit the O-dependence of one architecture's rows (columns width, n_outputs, seed, value).

    Raises:
        SuiteError: fewer than two values of O/n or of O, or a non-positive value.
    """
    o = rows["n_outputs"].to_numpy(dtype=np.float64)
    n = rows["width"].to_numpy(dtype=np.float64)
    err = rows["value"].to_numpy(dtype=np.float64)
    alpha, prefactor, r2 = fit_power_law(o / n, err)
    log_o, log_err = np.log(o), np.log(err)
    width_codes = np.unique(n, return_inverse=True)[1].ravel()
    beta = _within_width_slope(log_o, log_err, width_codes)

    # One fit per seed (seeds are the independent units: a seed's points share initialisations),
    # then the Student-t interval over seeds, as suite.stats does for slopes (THEORY.md §10).
    alphas, betas = [], []
    seeds = rows["seed"].to_numpy()
    for seed in np.unique(seeds):
        idx = np.flatnonzero(seeds == seed)
        alphas.append(fit_power_law(o[idx] / n[idx], err[idx])[0])
        betas.append(_within_width_slope(log_o[idx], log_err[idx], width_codes[idx]))

    def interval(per_seed: list[float]) -> tuple[float, float]:
        if len(per_seed) < THRESHOLDS.min_seeds:
            return math.nan, math.nan
        _, low, high, _ = t_interval(np.asarray(per_seed), THRESHOLDS.ci_level)
        return float(low), float(high)

    # Saturation (THEORY.md §3, "The O constant, counted exactly"): only the widths where the
    # largest O's error is small, and the linearised r = err / sqrt(1 - err²) at every width.
    largest = rows[rows["n_outputs"] == rows["n_outputs"].max()]
    at_width = largest.groupby("width")["value"].apply(lambda v: float(np.exp(np.log(v).mean())))
    small = tuple(int(w) for w, e in at_width.items() if e <= UNSATURATED_ERROR)
    unsaturated, unsaturated_ci = math.nan, (math.nan, math.nan)
    if small:
        fit = fit_exponent(rows[rows["width"].isin(small)], "n_outputs")
        unsaturated, unsaturated_ci = fit.exponent, fit.ci
    ratio = rows.assign(value=err / np.sqrt(np.clip(1.0 - err**2, 1e-12, None)))
    linear = fit_exponent(ratio, "n_outputs")
    return OutputsFit(alpha, interval(alphas), prefactor, r2, beta, interval(betas), len(rows),
                      unsaturated, unsaturated_ci, small, linear.exponent, linear.ci,
                      beta_theory(sorted(set(o.tolist()))))


def beta_theory(outputs: list[float]) -> float:
    """The O exponent at fixed width predicted where the error is small: the least-squares slope
    of ½ log((O - 1)(O + 4)/O) on log O over ``outputs`` (THEORY.md §3, "The O constant, counted
    exactly"): 0.452 for O in {2, 10, 100}; NaN with fewer than two values of O >= 2."""
    o = np.asarray([v for v in outputs if v >= 2], dtype=np.float64)
    if len(o) < 2:
        return math.nan
    x, y = np.log(o), 0.5 * np.log((o - 1) * (o + 4) / o)
    xc = x - x.mean()
    return float(xc @ (y - y.mean()) / (xc @ xc))


def _num(x: float) -> str:
    return f"{x:.2f}".replace("-", "−")


def _with_ci(value: float, ci: tuple[float, float]) -> str:
    text = _num(value)
    if all(math.isfinite(v) for v in ci):
        text += f" [{_num(ci[0])}, {_num(ci[1])}]"
    return text


def fit_text(fit: OutputsFit) -> str:
    """Legend text of one architecture's fit, e.g. ``α = 0.45 [0.43, 0.47] (R² 0.97); β = 0.41 [...]``."""
    text = (
        f"(O/n)$^α$: α = {_with_ci(fit.alpha, fit.alpha_ci)}, R² {fit.r2:.2f}\n"
        f"O at fixed n: β = {_with_ci(fit.beta, fit.beta_ci)}"
    )
    if fit.unsaturated_widths:
        text += (f"\n  n ≥ {min(fit.unsaturated_widths)} (err ≤ {UNSATURATED_ERROR:g}): "
                 f"β = {_with_ci(fit.beta_unsaturated, fit.beta_unsaturated_ci)}")
    if math.isfinite(fit.beta_r):
        text += (f"\n  β of err/√(1−err²) = {_with_ci(fit.beta_r, fit.beta_r_ci)}"
                 f"\n  theory (THEORY.md §3): β = {_num(fit.beta_theory)}")
    return text


def _setting(rows: pd.DataFrame) -> dict:
    """The shared setting, leaving out what varies on purpose: O (the subject) and N (per arch,
    named in the panel titles)."""
    setting = c.single_setting(rows.assign(n_outputs=np.nan, n_inputs=np.nan), NAME)
    for arch, group in rows.groupby("arch"):
        if group["n_inputs"].nunique() > 1:
            raise SuiteError(
                f"{NAME}: arch {arch!r} mixes several input counts N "
                f"({sorted(group['n_inputs'].unique().tolist())}); filter the frame to one N per arch"
            )
    return setting


def _output_colors(outputs: list[int]) -> dict[int, tuple[float, float, float]]:
    """Sequential colours for O, small O light and large O dark, spread over the whole
    colormap so that neighbouring O stay apart in the pooled panel."""
    cmap = sns.color_palette("flare", as_cmap=True)
    spots = np.linspace(0.0, 1.0, len(outputs)) if len(outputs) > 1 else np.array([0.6])
    colors = {}
    for o, t in zip(outputs, spots, strict=True):
        r, g, b, _ = cmap(float(t))
        colors[o] = (float(r), float(g), float(b))
    return colors


def _format_ratio_axis(ax: Axes) -> None:
    """Log x axis for O/n with plain-number labels."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0,)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs="auto"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("O / n (outputs per hidden unit or channel)")


def render(data: pd.DataFrame, summary: pd.DataFrame | None = None) -> Figure:
    """Error vs width per O (one panel per arch) and error vs O/n pooled, with the fits.

    Raises:
        SuiteError: missing columns, or a mix of datasets, parameterizations, dtypes or N per arch.
        MissingDataError: no ``rel_frobenius`` rows for the ``pntk``.
    """
    df = c.prepare(data, NAME)
    rows = c.select(df, "rel_frobenius", ["pntk"], NAME)
    rows = rows.assign(n_outputs=pd.to_numeric(rows["n_outputs"]).astype("int64"))
    setting = _setting(rows)
    archs = style.ordered(rows["arch"].unique(), style.ARCH_ORDER)
    outputs = sorted(rows["n_outputs"].unique().tolist())
    colors = _output_colors(outputs)
    markers = {o: style.DEPTH_MARKERS[i % len(style.DEPTH_MARKERS)] for i, o in enumerate(outputs)}
    fits: dict[str, OutputsFit | None] = {}
    for arch in archs:
        try:
            fits[arch] = fit_outputs(rows[rows["arch"] == arch])
        except SuiteError as exc:  # one O or one width: nothing to fit, draw the points only
            c.log.info("%s: no O fit for %s: %s", NAME, arch, exc)
            fits[arch] = None

    with style.theme():
        fig, sfigs, axes = c.panel_grid(1, len(archs) + 1, max(len(outputs), 6 * len(archs)) + 2)
        flat = [a for row in axes for a in row]
        for j, arch in enumerate(archs):
            ax, sfig = axes[0][j], sfigs[0][j]
            panel = rows[rows["arch"] == arch]
            depths = sorted(panel["depth"].unique().tolist())
            handles = []
            for o in outputs:
                case = panel[panel["n_outputs"] == o]
                if case.empty:
                    continue
                key = {"experiment": EXPERIMENT, "arch": arch, "n_outputs": o, "kernel": "pntk",
                       "metric": "rel_frobenius"}
                if len(depths) == 1:
                    key["depth"] = depths[0]
                handles.append(
                    c.plot_fitted(
                        ax, case, summary, key,
                        by=["n_outputs"], label=f"O = {o}",
                        color=colors[o],
                        marker=markers[o],
                    )
                )
            # The n^-1/2 guide starts at the middle O, so it runs through the data.
            middle = outputs[len(outputs) // 2]
            c.append_reference(ax, panel[panel["n_outputs"] == middle], handles)
            depth_text = f"depth {depths[0]}, " if len(depths) == 1 else ""
            c.finish_panel(
                sfig,
                ax,
                panel["width"].unique(),
                handles,
                ylabel=YLABEL if j == 0 else None,
                title=f"{style.arch_label(arch)} ({depth_text}N = {int(panel['n_inputs'].iloc[0])})",
            )

        # Pooled panel: every (arch, O, width) seed mean against O/n, and one fit per arch.
        ax, sfig = axes[0][-1], sfigs[0][-1]
        handles = []
        for arch in archs:
            panel = rows[rows["arch"] == arch]
            agg = c.seed_summary(panel, ["n_outputs"])
            agg["ratio"] = agg["n_outputs"] / agg["width"]
            for o in outputs:
                pts = agg[agg["n_outputs"] == o]
                ax.scatter(pts["ratio"], pts["center"], color=colors[o],
                           marker=style.ARCH_MARKERS.get(arch, "D"), s=28, zorder=3,
                           edgecolors="white", linewidths=0.5)
            fit = fits[arch]
            if fit is None:
                continue
            xs = np.geomspace(agg["ratio"].min(), agg["ratio"].max(), 50)
            (line,) = ax.plot(xs, fit.prefactor * xs**fit.alpha, color="0.15",
                              linestyle=style.ARCH_LINESTYLES.get(arch, "--"), linewidth=1.4, zorder=2,
                              label=f"{style.arch_label(arch)} fit: {fit_text(fit)}")
            handles.append(line)
        ratio = rows["n_outputs"] / rows["width"]
        at_min = rows.loc[ratio == ratio.min(), "value"]
        anchor = float(np.exp(np.log(at_min).mean()))
        # The guide stops where it would rise above the data (errors saturate below ~1).
        top = ratio.min() * (rows["value"].max() / anchor) ** 2
        xs = np.array([ratio.min(), max(min(ratio.max(), top), ratio.min())])
        (ref,) = ax.plot(xs, anchor * (xs / xs[0]) ** 0.5, linestyle="--",
                         color=style.REFERENCE_COLOR, linewidth=1.4, zorder=1,
                         label="∝ (O/n)$^{1/2}$ (theory)")
        handles.append(ref)
        for arch in archs:
            handles.append(Line2D([], [], color="0.4", marker=style.ARCH_MARKERS.get(arch, "D"),
                                  linestyle="none", label=f"{style.arch_label(arch)} (colour = O)"))
        _format_ratio_axis(ax)
        ax.set_title("all widths and O pooled")
        sfig.legend(handles=handles, loc="outside lower center", ncols=1, handlelength=2.6)
        return c.finish_figure(fig, TITLE, setting, flat)


def findings(data: pd.DataFrame) -> str:
    """The fitted O exponents in one paragraph, for the report under the figure."""
    df = c.prepare(data, NAME)
    rows = c.positive(df[(df["metric"] == "rel_frobenius") & (df["kernel"] == "pntk")])
    parts = []
    for arch in style.ordered(rows["arch"].unique(), style.ARCH_ORDER):
        mine = rows[rows["arch"] == arch]
        try:
            fit = fit_outputs(mine.assign(n_outputs=pd.to_numeric(mine["n_outputs"])))
        except SuiteError:
            continue
        text = (f"{style.arch_label(arch)}: α = {_with_ci(fit.alpha, fit.alpha_ci)}; β = {_with_ci(fit.beta, fit.beta_ci)} "
                f"over widths {int(mine['width'].min())}–{int(mine['width'].max())}")
        if fit.unsaturated_widths:
            text += (f", {_with_ci(fit.beta_unsaturated, fit.beta_unsaturated_ci)} over n ≥ "
                     f"{min(fit.unsaturated_widths)} (largest O's error ≤ {UNSATURATED_ERROR:g})")
        text += (f", {_with_ci(fit.beta_r, fit.beta_r_ci)} on err/√(1−err²) (theory for these O: "
                 f"{_num(fit.beta_theory)}).")
        parts.append(text)
    if not parts:
        return ""
    return ("**Fitted O exponents** (α: pooled err ∝ (O/n)^α; β: O at fixed width, one intercept per width; "
            "per-seed fits, Student-t 95% intervals over seeds). " + " ".join(parts))


FIGURE = c.FigureSpec(
    order=20,
    name=NAME,
    experiment=EXPERIMENT,
    title=TITLE,
    caption=(
        "Relative Frobenius error of the pNTK against the eNTK at initialisation for O from 2 to 100 "
        "outputs. Left: against width per architecture (geometric mean over seeds, "
        "min–max band, dashed grey ∝ n^-1/2, fitted width slope per O with its 95% CI). Right: "
        "every seed mean against O/n, with the power law fitted per architecture over all points "
        "(exponent α) and the O exponent at fixed width (β, one intercept per width); theory "
        "(√(O/n)) predicts α = β = 1/2 while the error is small. Where it is not (O = 100 at the "
        "smallest widths: O/n near or above 1, error above 0.5) the error saturates below 1, "
        "which flattens the O = 100 width slope and both exponents. Counted exactly (THEORY.md §3), "
        "err = r/√(1 + r²) with r ∝ √((O − 1)(O + 4)/(O n)): β is also given over the widths where the "
        f"largest O's error is at most {UNSATURATED_ERROR:g}, and fitted on r = err/√(1 − err²) against "
        "its predicted value (0.45 for O from 2 to 100, not 1/2). Intervals: Student-t over per-seed fits."
    ),
    render=render,
    findings=findings,
)
