"""Fitted convergence rates, calibrated confidence intervals and verdicts.

The theory predicts how an error such as ``||pNTK - eNTK|| / ||eNTK||`` falls with the width
n: like ``n ** -0.5`` (theorems T1-T4 under NTK parameterization), or at least that fast (a
bound), or at some other derived rate (reports/THEORY.md). For one series (one arch, depth,
kernel, metric, ...) we fit ``log(value) = a + b * log(width)``, put a confidence interval on
the slope ``b``, and compare the interval with the predicted slope (see :func:`verdict`).

**The interval.** Each seed is one independent initialisation of every width, so each seed
gives one OLS slope ``b_s`` over its widths, and the ``b_s`` are independent and identically
distributed. The interval is the Student-t interval on their mean,
``mean(b_s) +- t_{S-1, 0.975} * sd(b_s) / sqrt(S)``. If the log-errors of one seed are jointly
Gaussian, whatever their covariance across widths (a seed's networks of different widths
share a PRNG key, and the noise shrinks with width), each ``b_s`` is an exact Gaussian and the
interval covers the slope of the expected log-error in exactly 95% of repetitions, for any
number of seeds S >= 2. The seed-bootstrap percentile interval it replaces covered 76% (3
seeds) and 86% (5 seeds): with S seeds its ends are at best the extreme single-seed slopes.
``tests/test_stats.py`` checks the 95% by simulation at every grid's widths and seeds, with
noise taken from the committed data.

**The verdict** is an equivalence test against a tolerance band of half-width
``THRESHOLDS.band_halfwidth`` around the prediction (the band allows for the finite-width
curvature of the log-log curve, measured in reports/THEORY.md):

* ``consistent``: the whole interval lies inside the band;
* ``contradicts``: the whole interval lies outside it (for a ``bound``, only when slower);
* ``inconclusive``: otherwise, or when there is no interval;
* ``reported``: the theory predicts nothing for this series; the slope is shown as measured.

Monotonicity of the seed-mean error is reported but does not decide.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from suite.errors import SuiteError

__all__ = [
    "BOUND",
    "N_HALF",
    "REASONS",
    "THRESHOLDS",
    "VERDICTS",
    "ExponentFit",
    "Prediction",
    "SlopeFit",
    "Thresholds",
    "fit_exponent",
    "fit_power_law",
    "fit_slope",
    "reason",
    "summarize",
    "t_interval",
    "verdict",
]

#: Every verdict :func:`verdict` can return, best first; ``reported`` means nothing is predicted.
VERDICTS: tuple[str, ...] = ("consistent", "inconclusive", "contradicts", "reported")

#: Why a series with a prediction is not ``consistent`` (:func:`reason`), in the order checked.
REASONS: dict[str, str] = {
    "outside_assumptions": "outside the theorem's assumptions",
    "too_few_seeds": "too few seeds",
    "pre_asymptotic": "not yet asymptotic at the affordable widths",
    "unexplained": "unexplained",
}

#: Columns :func:`fit_slope` needs in its input frame.
REQUIRED_COLUMNS: tuple[str, str, str] = ("width", "seed", "value")

#: Columns :func:`summarize` adds after the group columns.
SUMMARY_COLUMNS: tuple[str, ...] = (
    "slope",
    "slope_ci_low",
    "slope_ci_high",
    "slope_sd",
    "r2",
    "n_widths",
    "n_seeds",
    "monotone",
    "slope_lower_half",
    "slope_upper_half",
    "bend_ci_low",
    "bend_ci_high",
    "seeds_needed",
    "prediction",
    "predicted_slope",
    "band_low",
    "band_high",
    "prediction_source",
    "verdict",
    "reason",
    "regime_note",
    "note",
)


@dataclass(frozen=True)
class Prediction:
    """What the theory predicts for one series' log-log slope.

    Attributes:
        kind: ``"slope"`` (the slope is ``slope``) or ``"bound"`` (the error falls at least as
            fast as ``width ** slope``: any steeper slope is consistent).
        slope: The predicted slope, e.g. -0.5.
        source: Where it comes from: the theorem (``"T2"``) or the section of
            reports/THEORY.md that derives it.
        within_assumptions: False when the series lies outside the theorem's assumptions
            (e.g. standard parameterization) and the prediction is a derivation of ours: a
            series that does not match is then grouped as "outside the theorem's assumptions".
    """

    kind: str
    slope: float
    source: str
    within_assumptions: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ("slope", "bound"):
            raise SuiteError(f"prediction kind must be 'slope' or 'bound', got {self.kind!r}")
        if not math.isfinite(self.slope):
            raise SuiteError(f"predicted slope must be finite, got {self.slope!r}")


#: The rate of theorems T1-T4: errors fall like n^-1/2.
N_HALF = Prediction("slope", -0.5, "T2")
#: At least as fast as n^-1/2 (a theorem that only bounds the quantity).
BOUND = Prediction("bound", -0.5, "T3 (Weyl / Hoffman-Wielandt bound)")


@dataclass(frozen=True)
class Thresholds:
    """All constants behind an interval and a verdict, in one place.

    Attributes:
        band_halfwidth: Half-width of the band of slopes counted as matching a prediction.
            Justified in reports/THEORY.md ("The tolerance band") from the measured curvature
            of the log-log curves at the widths the grids can afford: the secant slope over a
            grid differs from the asymptotic slope by up to about 0.15.
        ci_level: Coverage of the slope interval.
        min_widths: Fewest distinct widths a slope is fitted from (also per seed).
        min_seeds: Fewest seeds with a slope for an interval (a t-interval needs two).
        max_seeds_needed: A non-consistent series that this many seeds or fewer would decide
            (at the observed per-seed spread) is put down to "too few seeds"; as a multiple of
            the seeds it has.
    """

    band_halfwidth: float = 0.15
    ci_level: float = 0.95
    min_widths: int = 3
    min_seeds: int = 2
    max_seeds_needed: float = 4.0

    def __post_init__(self) -> None:
        """Reject settings under which no verdict makes sense."""
        if not self.band_halfwidth > 0:
            raise SuiteError(f"band_halfwidth must be positive, got {self.band_halfwidth}")
        if not 0 < self.ci_level < 1:
            raise SuiteError(f"ci_level must lie in (0, 1), got {self.ci_level}")
        if self.min_widths < 2:
            raise SuiteError(f"min_widths must be at least 2 to fit a line, got {self.min_widths}")
        if self.min_seeds < 2:
            raise SuiteError(f"min_seeds must be at least 2 for a t-interval, got {self.min_seeds}")

    def band(self, prediction: Prediction) -> tuple[float, float]:
        """The slopes counted as matching ``prediction``; a bound's band is open below."""
        high = prediction.slope + self.band_halfwidth
        low = -math.inf if prediction.kind == "bound" else prediction.slope - self.band_halfwidth
        return low, high


#: The thresholds the suite uses everywhere.
THRESHOLDS = Thresholds()


@lru_cache(maxsize=256)
def t_quantile(level: float, dof: int) -> float:
    """Two-sided Student-t critical value: P(|T_dof| <= q) = level."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2.0, dof))


def t_interval(slopes: NDArray[np.float64], level: float) -> tuple[NDArray[np.float64], ...]:
    """Student-t interval on the mean of per-seed slopes along the last axis.

    Args:
        slopes: (..., S) per-seed slopes, S >= 2; leading axes are independent series (the
            calibration test passes thousands of simulated series at once).
        level: Coverage, e.g. 0.95.

    Returns:
        ``(mean, low, high, sd)``, each of shape ``slopes.shape[:-1]``.
    """
    n = slopes.shape[-1]
    if n < 2:
        raise SuiteError(f"a t-interval needs at least 2 per-seed slopes, got {n}")
    mean = slopes.mean(axis=-1)
    sd = slopes.std(axis=-1, ddof=1)
    half = t_quantile(level, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half, sd


@dataclass(frozen=True)
class SlopeFit:
    """Result of :func:`fit_slope` for one series.

    Attributes:
        slope: Mean of the per-seed OLS slopes of ``log(value)`` on ``log(width)`` (equal to
            the pooled OLS slope when every seed has every width).
        intercept: Pooled OLS intercept (natural logs).
        r2: Coefficient of determination of the pooled log-log fit.
        slope_ci_low: Lower end of the Student-t interval over per-seed slopes; NaN with fewer
            than ``min_seeds`` seeds that have a slope.
        slope_ci_high: Upper end, NaN likewise.
        slope_sd: Standard deviation of the per-seed slopes (NaN with one seed).
        n_widths: Number of distinct widths.
        n_seeds: Number of seeds with a slope (at least ``min_widths`` widths each).
        monotone: Whether the seed-mean (geometric) error strictly decreases with width;
            reported, not used by the verdict.
        slope_lower_half: Slope of the seed-mean log error over the smaller half of the widths
            (the middle width in both halves when their number is odd).
        slope_upper_half: The same over the larger half: with the lower one, the measured trend.
        bend_ci_low: Lower end of the t-interval of the per-seed bend (upper-half slope minus
            lower-half slope); the bend is significant when the interval excludes 0.
        bend_ci_high: Upper end of that interval.
        seeds_needed: Fewest seeds whose interval, at the observed per-seed spread and centred
            on the observed slope, would lie wholly inside or wholly outside the band; NaN when
            none would (slope on the band's edge) or there is no prediction.
        prediction: What the theory predicts (None: nothing).
        verdict: One of :data:`VERDICTS`.
        reason: Key of :data:`REASONS` for a series with a prediction that is not consistent;
            empty otherwise.
    """

    slope: float
    intercept: float
    r2: float
    slope_ci_low: float
    slope_ci_high: float
    slope_sd: float
    n_widths: int
    n_seeds: int
    monotone: bool
    slope_lower_half: float
    slope_upper_half: float
    bend_ci_low: float
    bend_ci_high: float
    seeds_needed: float
    prediction: Prediction | None
    verdict: str
    reason: str

    @property
    def ci_width(self) -> float:
        """Width of the slope's confidence interval (NaN when there is none)."""
        return self.slope_ci_high - self.slope_ci_low


def verdict(
    slope_ci_low: float,
    slope_ci_high: float,
    prediction: Prediction | None = N_HALF,
    thresholds: Thresholds = THRESHOLDS,
) -> str:
    """Judge a slope interval against a prediction by equivalence to its band.

    * ``reported`` when there is no prediction;
    * ``inconclusive`` when the interval is NaN or infinite;
    * ``consistent`` when the whole interval lies inside ``thresholds.band(prediction)``;
    * ``contradicts`` when the whole interval lies outside it (for a ``bound``: above it,
      i.e. the error falls more slowly than the bound allows);
    * ``inconclusive`` otherwise (the interval straddles an edge of the band).

    Raises:
        SuiteError: If the interval's ends are in the wrong order.
    """
    if prediction is None:
        return "reported"
    low, high = float(slope_ci_low), float(slope_ci_high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return "inconclusive"
    if low > high:
        raise SuiteError(f"slope_ci_low ({low}) is above slope_ci_high ({high}); pass the lower end first")
    band_low, band_high = thresholds.band(prediction)
    if band_low <= low and high <= band_high:
        return "consistent"
    if high < band_low or low > band_high:
        return "contradicts"
    return "inconclusive"


def reason(fit: SlopeFit, thresholds: Thresholds = THRESHOLDS, regime_note: str = "") -> str:
    """Why a series with a prediction is not consistent (a key of :data:`REASONS`).

    Checked in order, each from the series' own numbers (``regime_note``: its experiment's
    measurement that the widths lie below the prediction's regime, see
    :attr:`suite.experiments.Experiment.regime`):

    1. ``outside_assumptions``: the prediction is derived outside the theorem's assumptions.
    2. ``too_few_seeds``: inconclusive, and at most ``max_seeds_needed`` times the seeds it has
       would decide it at the observed per-seed spread (:attr:`SlopeFit.seeds_needed`).
    3. ``pre_asymptotic``: the slope over the larger half of the widths is closer to the band
       than the slope over the smaller half, and this bend is significant (the t-interval of
       the per-seed bends excludes 0): the error is still bending towards the predicted rate
       as the width grows; or ``regime_note`` says the widths lie below the regime where the
       prediction applies (THEORY.md §10, reason 3).
    4. ``unexplained``: none of these.

    Returns an empty string for consistent series and series without a prediction.
    """
    pred = fit.prediction
    if pred is None or fit.verdict == "consistent":
        return ""
    if not pred.within_assumptions:
        return "outside_assumptions"
    if (
        fit.verdict == "inconclusive"
        and math.isfinite(fit.seeds_needed)
        and fit.seeds_needed <= thresholds.max_seeds_needed * max(fit.n_seeds, 1)
    ):
        return "too_few_seeds"
    band = thresholds.band(pred)

    def distance(slope: float) -> float:
        return max(band[0] - slope, slope - band[1], 0.0)

    lower, upper = fit.slope_lower_half, fit.slope_upper_half
    significant = fit.bend_ci_low > 0 or fit.bend_ci_high < 0  # False for NaN
    if (significant and distance(upper) < distance(lower)) or regime_note:
        return "pre_asymptotic"
    return "unexplained"


def _seeds_needed(slope: float, sd: float, prediction: Prediction | None, thresholds: Thresholds) -> float:
    """Fewest seeds S >= 2 whose t-interval slope +- t_{S-1} sd / sqrt(S) would lie wholly
    inside or wholly outside the band; NaN if no S up to 10,000 would."""
    if prediction is None or not (math.isfinite(slope) and math.isfinite(sd)):
        return math.nan
    low, high = thresholds.band(prediction)
    margin = min(slope - low, high - slope) if low <= slope <= high else max(low - slope, slope - high)
    if margin <= 0:
        return math.nan
    if sd == 0:
        return 2.0
    for s in range(2, 10_001):
        if t_quantile(thresholds.ci_level, s - 1) * sd / math.sqrt(s) <= margin:
            return float(s)
    return math.nan


def _ols(x: NDArray[np.float64], y: NDArray[np.float64]) -> tuple[float, float, float]:
    """Least-squares line ``y = intercept + slope * x``.

    Args:
        x: Abscissae with at least two distinct values.
        y: Ordinates, same length as ``x``.

    Returns:
        ``(slope, intercept, r2)``; ``r2`` is 1.0 when ``y`` is constant, since
        the line then fits exactly.
    """
    x_mean, y_mean = float(x.mean()), float(y.mean())
    xc, yc = x - x_mean, y - y_mean
    slope = float(xc @ yc / (xc @ xc))
    intercept = y_mean - slope * x_mean
    ss_tot = float(yc @ yc)
    resid = yc - slope * xc
    ss_res = float(resid @ resid)
    r2 = 1.0 if ss_tot == 0.0 else 1.0 - ss_res / ss_tot
    return slope, intercept, r2


def _require_columns(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise a SuiteError naming the columns ``df`` lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SuiteError(
            f"{what} needs columns {missing} that the frame lacks; "
            f"it has {list(map(str, df.columns))}"
        )


def _describe_rows(df: pd.DataFrame, mask: NDArray[np.bool_], limit: int = 5, first: str = "width") -> str:
    """List up to ``limit`` offending rows as ``(width=.., seed=.., value=..)`` (``first``, then
    whichever of width, seed and value the frame has)."""
    columns = [c for c in dict.fromkeys((first, *REQUIRED_COLUMNS)) if c in df.columns]
    bad = df.loc[mask, columns].head(limit)
    parts = ["(" + ", ".join(f"{c}={v!r}" for c, v in zip(columns, row, strict=True)) + ")"
             for row in bad.itertuples(index=False)]
    more = " ..." if int(mask.sum()) > limit else ""
    return ", ".join(parts) + more


def _positive_finite(df: pd.DataFrame, column: str) -> np.ndarray:
    """``df[column]`` as float64, refusing values whose log is undefined (the fits are in log-log)."""
    arr = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(arr) & (arr > 0))
    if bad.any():
        raise SuiteError(
            f"{column}: {int(bad.sum())} of {len(arr)} rows are not positive finite numbers, "
            f"so their log is undefined: {_describe_rows(df, bad, first=column)}; "
            "drop or fix those rows before fitting"
        )
    return arr


def fit_slope(
    df: pd.DataFrame, thresholds: Thresholds = THRESHOLDS, prediction: Prediction | None = N_HALF
) -> SlopeFit:
    """Fit the log-log convergence slope of one series, with its interval and verdict.

    One OLS slope per seed over that seed's widths (seeds with fewer than
    ``thresholds.min_widths`` widths give none and are not counted), then a Student-t interval
    on their mean (see the module docstring for why it covers at its nominal level). With
    fewer than ``thresholds.min_seeds`` seeds with a slope the interval is NaN and the verdict
    "inconclusive". Rows are put in a canonical order first, so the result does not depend on
    the input's row order.

    Args:
        df: Tidy frame for ONE series with at least the columns ``width``, ``seed`` and
            ``value``. Several rows per ``(width, seed)`` are allowed.
        thresholds: Constants for the interval and the verdict.
        prediction: What the theory predicts (None: the verdict is "reported").

    Raises:
        SuiteError: If a column is missing, a width or value is not a positive finite number
            (the log is undefined), a seed is missing, or there are fewer than
            ``thresholds.min_widths`` distinct widths.
    """
    _require_columns(df, REQUIRED_COLUMNS, "fit_slope")
    if len(df) == 0:
        raise SuiteError("fit_slope got an empty frame; pass the rows of one case")

    width = _positive_finite(df, "width")
    value = _positive_finite(df, "value")

    seed_codes, seed_ids = pd.factorize(df["seed"], sort=True)
    if (seed_codes < 0).any():
        raise SuiteError(
            f"{int((seed_codes < 0).sum())} rows have no seed: "
            f"{_describe_rows(df, seed_codes < 0)}; fill in the seed column"
        )
    widths = np.unique(width)
    n_widths = len(widths)
    if n_widths < thresholds.min_widths:
        raise SuiteError(
            f"at least {thresholds.min_widths} widths are needed to fit a slope; "
            f"got {n_widths} ({', '.join(f'{w:g}' for w in widths)}); "
            "run more widths for this case"
        )

    # Canonical row order (seed, then width) makes float sums order-independent.
    order = np.lexsort((width, seed_codes))
    x = np.log(width[order])
    y = np.log(value[order])
    codes = np.asarray(seed_codes[order], dtype=np.intp)
    slope_pooled, intercept, r2 = _ols(x, y)

    log_w = np.log(widths)
    h = (n_widths + 1) // 2
    per_seed, bends = [], []
    for s in range(len(seed_ids)):
        xs, ys = x[codes == s], y[codes == s]
        if len(np.unique(xs)) >= thresholds.min_widths:
            per_seed.append(_ols(xs, ys)[0])
        lower, upper = xs <= log_w[h - 1], xs >= log_w[-h]
        if len(np.unique(xs[lower])) >= 2 and len(np.unique(xs[upper])) >= 2:
            bends.append(_ols(xs[upper], ys[upper])[0] - _ols(xs[lower], ys[lower])[0])
    n_seeds = len(per_seed)
    if n_seeds >= thresholds.min_seeds:
        slope, ci_low, ci_high, sd = (float(v) for v in t_interval(np.asarray(per_seed), thresholds.ci_level))
    else:
        slope = float(per_seed[0]) if n_seeds else slope_pooled
        ci_low = ci_high = sd = math.nan

    # Geometric mean across seeds (errors are roughly log-normal), per width.
    width_idx = np.searchsorted(widths, width[order])
    mean_log = np.bincount(width_idx, weights=y) / np.bincount(width_idx)
    monotone = bool(np.all(np.diff(mean_log) < 0))
    lower_half = _ols(log_w[:h], mean_log[:h])[0]
    upper_half = _ols(log_w[-h:], mean_log[-h:])[0]
    bend_low, bend_high = (
        (float(v) for v in t_interval(np.asarray(bends), thresholds.ci_level)[1:3]) if len(bends) >= 2 else (math.nan, math.nan)
    )

    fit = SlopeFit(
        slope=slope,
        intercept=intercept,
        r2=r2,
        slope_ci_low=ci_low,
        slope_ci_high=ci_high,
        slope_sd=sd,
        n_widths=n_widths,
        n_seeds=n_seeds,
        monotone=monotone,
        slope_lower_half=lower_half,
        slope_upper_half=upper_half,
        bend_ci_low=bend_low,
        bend_ci_high=bend_high,
        seeds_needed=_seeds_needed(slope, sd, prediction, thresholds),
        prediction=prediction,
        verdict=verdict(ci_low, ci_high, prediction, thresholds),
        reason="",
    )
    return dataclasses.replace(fit, reason=reason(fit, thresholds))


def _predicts_rate(key: dict[str, object]) -> Prediction | None:
    return N_HALF


def summarize(
    df: pd.DataFrame,
    by: Sequence[str],
    thresholds: Thresholds = THRESHOLDS,
    predict: Callable[[dict[str, object]], Prediction | None] = _predicts_rate,
    regime: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Fit every series of a tidy results frame; one row per series.

    A series that cannot be fitted (say, fewer than three widths or a zero error) does not
    stop the summary: its row gets verdict "inconclusive" (or "reported" without a
    prediction), NaN numbers, a missing ``monotone`` and the reason in ``note``.

    Args:
        df: Tidy results with the columns ``width``, ``seed``, ``value`` and every column in
            ``by``.
        by: Columns identifying a series, e.g. ``["arch", "depth", "metric"]``.
        thresholds: Constants for the interval and the verdict.
        predict: The series' prediction from its ``by`` values (default: n^-1/2 for all).
        regime: Optional rows naming series (by those of the ``by`` columns it has) with a
            ``regime_note``: the evidence that their widths lie below the prediction's regime
            (:func:`reason`, step 3); the note is copied to the series' row.

    Returns:
        The ``by`` columns followed by :data:`SUMMARY_COLUMNS`, sorted by the ``by`` columns.

    Raises:
        SuiteError: If a needed column is missing from the whole frame.
    """
    by = list(by)
    _require_columns(df, [*by, *REQUIRED_COLUMNS], "summarize")
    if len(set(by)) != len(by):
        raise SuiteError(f"summarize got repeated group columns {by}; name each once")

    if regime is not None and not regime.empty:
        keys = [c for c in by if c in regime.columns]
        df = df.merge(regime[[*keys, "regime_note"]], on=keys, how="left", validate="many_to_one")

    groups: list[tuple[tuple[object, ...], pd.DataFrame]]
    if by:
        groups = [
            (key if isinstance(key, tuple) else (key,), group)
            for key, group in df.groupby(by, sort=True, dropna=False)
        ]
    else:
        groups = [((), df)] if len(df) else []

    rows: list[dict[str, object]] = []
    for key, group in groups:
        row: dict[str, object] = dict(zip(by, key, strict=True))
        note = group["regime_note"].iloc[0] if "regime_note" in group else ""
        regime_note = note if isinstance(note, str) else ""
        pred = predict(dict(row))
        band = thresholds.band(pred) if pred is not None else (math.nan, math.nan)
        row.update(
            prediction=None if pred is None else pred.kind,
            predicted_slope=math.nan if pred is None else pred.slope,
            band_low=band[0],
            band_high=band[1],
            prediction_source=None if pred is None else pred.source,
        )
        try:
            fit = fit_slope(group, thresholds, pred)
        except SuiteError as exc:
            row.update(
                slope=math.nan, slope_ci_low=math.nan, slope_ci_high=math.nan, slope_sd=math.nan,
                r2=math.nan, n_widths=int(group["width"].nunique()), n_seeds=int(group["seed"].nunique()),
                monotone=pd.NA, slope_lower_half=math.nan, slope_upper_half=math.nan, bend_ci_low=math.nan,
                bend_ci_high=math.nan, seeds_needed=math.nan,
                verdict=verdict(math.nan, math.nan, pred, thresholds), reason="", regime_note=regime_note,
                note=str(exc),
            )
        else:
            fields = asdict(fit)
            for drop in ("intercept", "prediction"):
                del fields[drop]
            fields["reason"] = reason(fit, thresholds, regime_note)
            row.update(fields, regime_note=regime_note, note="")
        rows.append(row)

    out = pd.DataFrame(rows, columns=[*by, *SUMMARY_COLUMNS])
    floats = ["slope", "slope_ci_low", "slope_ci_high", "slope_sd", "r2", "slope_lower_half",
              "slope_upper_half", "bend_ci_low", "bend_ci_high", "seeds_needed", "predicted_slope", "band_low", "band_high"]
    out = out.astype({**dict.fromkeys(floats, "float64"), "n_widths": "int64", "n_seeds": "int64",
                      "monotone": "boolean"})
    return out.reset_index(drop=True)


def fit_power_law(x: ArrayLike, y: ArrayLike) -> tuple[float, float, float]:
    """Fit ``y = prefactor * x ** exponent`` by least squares in log-log space.

    Used by experiments whose error scales like ``C * (O / n) ** alpha``: pass
    ``x = O / n``.

    Args:
        x: Positive finite abscissae, at least two distinct.
        y: Positive finite ordinates, same length as ``x``.

    Returns:
        ``(exponent, prefactor, r2)`` with ``r2`` of the log-log fit.

    Raises:
        SuiteError: If the inputs differ in length, are not one-dimensional,
            hold a non-positive or non-finite number, or have fewer than two
            distinct ``x``.
    """
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    if xa.ndim != 1 or ya.ndim != 1 or xa.shape != ya.shape:
        raise SuiteError(
            f"fit_power_law needs two 1-D arrays of equal length; got shapes "
            f"{xa.shape} and {ya.shape}"
        )
    points = pd.DataFrame({"x": xa, "y": ya})
    _positive_finite(points, "x")
    _positive_finite(points, "y")
    if np.unique(xa).size < 2:
        raise SuiteError(
            f"fit_power_law needs at least 2 distinct x values; got {np.unique(xa).size}"
        )
    exponent, log_prefactor, r2 = _ols(np.log(xa), np.log(ya))
    return exponent, math.exp(log_prefactor), r2


@dataclass(frozen=True)
class ExponentFit:
    """Result of :func:`fit_exponent`: the exponent b of ``value ~ x ** b`` at fixed ``within``.

    Attributes:
        exponent: Mean of the per-seed slopes (equal to the pooled fixed-effects slope when
            every seed has the same points).
        ci_low: Lower end of the Student-t interval over per-seed slopes (reports/THEORY.md
            §10); NaN with fewer than ``THRESHOLDS.min_seeds`` seeds.
        ci_high: Upper end, NaN likewise.
        sd: Standard deviation of the per-seed slopes (NaN with one seed).
        n_seeds: Seeds with a slope.
        n_points: Rows fitted.
    """

    exponent: float
    ci_low: float
    ci_high: float
    sd: float
    n_seeds: int
    n_points: int

    @property
    def ci(self) -> tuple[float, float]:
        return self.ci_low, self.ci_high


def _within_slope(log_x: NDArray[np.float64], log_y: NDArray[np.float64], groups: NDArray[np.int64]) -> float:
    """OLS slope of log_y on log_x after removing each group's means (one intercept per group);
    NaN when no group holds two distinct x."""
    count = np.bincount(groups).astype(np.float64)
    xc = log_x - np.bincount(groups, log_x)[groups] / count[groups]
    yc = log_y - np.bincount(groups, log_y)[groups] / count[groups]
    sxx = float(xc @ xc)
    if sxx <= 1e-12 * max(float(log_x @ log_x), 1e-300):
        return math.nan
    return float(xc @ yc / sxx)


def fit_exponent(
    rows: pd.DataFrame,
    x: str,
    within: str = "width",
    thresholds: Thresholds = THRESHOLDS,
) -> ExponentFit:
    """The exponent b of ``value = C(within) * x ** b``: the slope of log(value) on log(x) with
    one intercept per value of ``within`` (e.g. the exponent of the number of outputs or inputs
    at fixed width), fitted per seed, with the Student-t interval over seeds of §10 (seeds are
    the independent units; a seed's points share initialisations).

    Args:
        rows: Columns ``x``, ``within``, ``seed`` and ``value`` (positive, finite).
        x: The column whose exponent is fitted.
        within: The column held fixed (one intercept per value).

    Raises:
        SuiteError: Missing columns, a non-positive or non-finite ``x`` or ``value``, or no
            seed with two distinct ``x`` at one value of ``within``.
    """
    _require_columns(rows, [x, within, "seed", "value"], "fit_exponent")
    xs = _positive_finite(rows, x)
    ys = _positive_finite(rows, "value")
    log_x, log_y = np.log(xs), np.log(ys)
    groups = np.unique(rows[within].to_numpy(), return_inverse=True)[1].ravel()
    seeds = rows["seed"].to_numpy()
    slopes = []
    for seed in np.unique(seeds):
        idx = np.flatnonzero(seeds == seed)
        slope = _within_slope(log_x[idx], log_y[idx], groups[idx])
        if math.isfinite(slope):
            slopes.append(slope)
    if not slopes:
        raise SuiteError(
            f"fit_exponent: the exponent of {x!r} at fixed {within!r} needs at least two values of {x!r} "
            f"at one {within!r} within a seed; got {sorted(set(xs.tolist()))}"
        )
    per_seed = np.asarray(slopes)
    if len(per_seed) >= thresholds.min_seeds:
        mean, low, high, sd = (float(v) for v in t_interval(per_seed, thresholds.ci_level))
    else:
        mean, low, high, sd = float(per_seed[0]), math.nan, math.nan, math.nan
    return ExponentFit(mean, low, high, sd, len(per_seed), len(rows))
