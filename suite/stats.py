"""Fitted convergence rates, bootstrap confidence intervals and verdicts.

The theory says an error such as ``||pNTK - eNTK|| / ||eNTK||`` falls like
``width ** -0.5``. For one case (one arch, depth and metric) we fit
``log(value) = a + b * log(width)`` by ordinary least squares over every
``(width, seed)`` point, put a cluster-bootstrap confidence interval on the slope
``b`` (resampling whole seeds, because points of one seed share an initialisation
and are not independent), and turn slope interval plus monotonicity into one of
three verdicts (see :func:`verdict`). Every constant the verdict depends on lives
in :data:`THRESHOLDS`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from suite.errors import SuiteError

__all__ = [
    "THRESHOLDS",
    "VERDICTS",
    "SlopeFit",
    "Thresholds",
    "fit_power_law",
    "fit_slope",
    "summarize",
    "verdict",
]

#: Every verdict :func:`verdict` can return, best first.
VERDICTS: tuple[str, str, str] = ("consistent", "inconclusive", "contradicts")

#: Columns :func:`fit_slope` needs in its input frame.
REQUIRED_COLUMNS: tuple[str, str, str] = ("width", "seed", "value")

#: Columns :func:`summarize` adds after the group columns.
SUMMARY_COLUMNS: tuple[str, ...] = (
    "slope",
    "slope_ci_low",
    "slope_ci_high",
    "r2",
    "n_widths",
    "n_seeds",
    "monotone",
    "verdict",
    "note",
)


@dataclass(frozen=True)
class Thresholds:
    """All constants behind a verdict, in one place.

    Attributes:
        expected_slope: The slope theory predicts for ``log(error)`` against
            ``log(width)``: errors fall like ``width ** -0.5``.
        band_low: Lower edge of the band of slopes counted as consistent with
            ``expected_slope``.
        band_high: Upper edge of that band.
        max_ci_width: Confidence intervals wider than this make the verdict
            "inconclusive".
        n_boot: Number of bootstrap resamples.
        ci_level: Coverage of the percentile bootstrap interval.
        boot_seed: Seed of the bootstrap's random generator, so a rerun on the
            same data gives the identical interval.
        min_widths: Fewest distinct widths a slope is fitted from.
        min_seeds: Fewest distinct seeds the bootstrap runs on; with fewer the
            interval is NaN and the verdict "inconclusive".
    """

    expected_slope: float = -0.5
    # +-0.1 around -0.5: finite-width corrections bend the log-log line a little
    # at the small widths we can afford, so an exact -0.5 is not expected.
    band_low: float = -0.6
    band_high: float = -0.4
    # 0.5 is the distance between the predicted slope -0.5 and 0 (no decay): an
    # interval wider than that can hold both, so it cannot tell the n^-1/2 rate
    # from no convergence at all.
    max_ci_width: float = 0.5
    n_boot: int = 2000
    ci_level: float = 0.95
    boot_seed: int = 0
    min_widths: int = 3
    # One seed gives no spread across initialisations to resample from.
    min_seeds: int = 2

    def __post_init__(self) -> None:
        """Reject settings under which no verdict makes sense."""
        if not self.band_low < self.band_high:
            raise SuiteError(
                f"band_low ({self.band_low}) must be below band_high ({self.band_high})"
            )
        if not self.max_ci_width > 0:
            raise SuiteError(f"max_ci_width must be positive, got {self.max_ci_width}")
        if not 0 < self.ci_level < 1:
            raise SuiteError(f"ci_level must lie in (0, 1), got {self.ci_level}")
        if self.n_boot < 1:
            raise SuiteError(f"n_boot must be a positive integer, got {self.n_boot}")
        if self.min_widths < 2:
            raise SuiteError(f"min_widths must be at least 2 to fit a line, got {self.min_widths}")
        if self.min_seeds < 2:
            raise SuiteError(
                f"min_seeds must be at least 2 for a seed bootstrap, got {self.min_seeds}"
            )


#: The thresholds the suite uses everywhere.
THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class SlopeFit:
    """Result of :func:`fit_slope` for one case.

    Attributes:
        slope: OLS slope ``b`` of ``log(value)`` on ``log(width)``.
        intercept: OLS intercept ``a`` (natural logs).
        r2: Coefficient of determination of the log-log fit.
        slope_ci_low: Lower end of the seed-bootstrap percentile interval, NaN
            with fewer than ``min_seeds`` seeds.
        slope_ci_high: Upper end of that interval, NaN likewise.
        n_widths: Number of distinct widths.
        n_seeds: Number of distinct seeds.
        monotone: Whether the geometric mean over seeds strictly decreases as
            the width grows.
        verdict: One of :data:`VERDICTS`.
    """

    slope: float
    intercept: float
    r2: float
    slope_ci_low: float
    slope_ci_high: float
    n_widths: int
    n_seeds: int
    monotone: bool
    verdict: str

    @property
    def ci_width(self) -> float:
        """Width of the slope's confidence interval (NaN when there is none)."""
        return self.slope_ci_high - self.slope_ci_low


def verdict(
    slope_ci_low: float,
    slope_ci_high: float,
    monotone: bool,
    thresholds: Thresholds = THRESHOLDS,
) -> str:
    """Turn a slope interval and a monotonicity flag into a verdict.

    Checked in this order:

    1. "inconclusive" when the interval is NaN (or infinite) or wider than
       ``thresholds.max_ci_width``: the data cannot decide.
    2. "consistent" when the interval overlaps the band
       ``[band_low, band_high]`` and the seed-mean error strictly decreases with
       width.
    3. "contradicts" otherwise: a narrow interval away from the band, or an
       error that does not fall steadily.

    Args:
        slope_ci_low: Lower end of the slope's confidence interval.
        slope_ci_high: Upper end of the slope's confidence interval.
        monotone: Whether the seed-mean error strictly decreases with width.
        thresholds: The constants to judge by.

    Returns:
        One of :data:`VERDICTS`.

    Raises:
        SuiteError: If the interval's ends are in the wrong order.
    """
    low, high = float(slope_ci_low), float(slope_ci_high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return "inconclusive"
    if low > high:
        raise SuiteError(
            f"slope_ci_low ({low}) is above slope_ci_high ({high}); pass the lower end first"
        )
    if high - low > thresholds.max_ci_width:
        return "inconclusive"
    if low <= thresholds.band_high and high >= thresholds.band_low and bool(monotone):
        return "consistent"
    return "contradicts"


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


def _bootstrap_slope_ci(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    seed_codes: NDArray[np.intp],
    n_seeds: int,
    thresholds: Thresholds,
) -> tuple[float, float]:
    """Percentile interval of the OLS slope under a seed (cluster) bootstrap.

    Each resample draws ``n_seeds`` seed ids with replacement and keeps all rows
    of the drawn seeds. A resample's slope only needs five sums over its rows,
    and those are count-weighted sums of per-seed sums, so all resamples are
    fitted at once with a matrix product instead of a Python loop.

    Args:
        x: ``log(width)`` per row.
        y: ``log(value)`` per row.
        seed_codes: Seed index in ``range(n_seeds)`` per row.
        n_seeds: Number of distinct seeds.
        thresholds: Supplies ``n_boot``, ``ci_level`` and ``boot_seed``.

    Returns:
        ``(low, high)``; both NaN if no resample has two distinct widths.
    """
    # Centre first: the sums-of-squares formula below cancels badly otherwise.
    xc = x - x.mean()
    yc = y - y.mean()
    per_seed = np.stack(
        [
            np.bincount(seed_codes, minlength=n_seeds).astype(np.float64),
            np.bincount(seed_codes, weights=xc, minlength=n_seeds),
            np.bincount(seed_codes, weights=yc, minlength=n_seeds),
            np.bincount(seed_codes, weights=xc * xc, minlength=n_seeds),
            np.bincount(seed_codes, weights=xc * yc, minlength=n_seeds),
        ],
        axis=1,
    )  # (n_seeds, 5)

    rng = np.random.default_rng(thresholds.boot_seed)
    n_boot = thresholds.n_boot
    draws = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    # How often each seed is drawn in each resample, via one flat bincount.
    flat = (np.arange(n_boot)[:, None] * n_seeds + draws).ravel()
    counts = np.bincount(flat, minlength=n_boot * n_seeds).reshape(n_boot, n_seeds)
    n, sx, sy, sxx, sxy = (counts @ per_seed).T

    denom = n * sxx - sx * sx
    # A resample whose seeds all sit at one width has no slope; leave it out.
    ok = denom > 1e-12 * np.maximum(n * sxx, 1e-300)
    slopes = (n[ok] * sxy[ok] - sx[ok] * sy[ok]) / denom[ok]
    if slopes.size == 0:
        return math.nan, math.nan
    alpha = 1.0 - thresholds.ci_level
    low, high = np.quantile(slopes, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def _require_columns(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise a SuiteError naming the columns ``df`` lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SuiteError(
            f"{what} needs columns {missing} that the frame lacks; "
            f"it has {list(map(str, df.columns))}"
        )


def _describe_rows(df: pd.DataFrame, mask: NDArray[np.bool_], limit: int = 5) -> str:
    """List up to ``limit`` offending rows as ``width=.., seed=.., value=..``."""
    bad = df.loc[mask, list(REQUIRED_COLUMNS)].head(limit)
    parts = [
        f"(width={w!r}, seed={s!r}, value={v!r})"
        for w, s, v in zip(bad["width"], bad["seed"], bad["value"], strict=True)
    ]
    more = " ..." if int(mask.sum()) > limit else ""
    return ", ".join(parts) + more


def fit_slope(df: pd.DataFrame, thresholds: Thresholds = THRESHOLDS) -> SlopeFit:
    """Fit the log-log convergence slope of one case, with a bootstrap CI.

    Ordinary least squares of ``log(value)`` on ``log(width)`` over every row.
    The confidence interval comes from a cluster bootstrap over seeds (rows of
    one seed share an initialisation, so seeds, not rows, are the independent
    units). With fewer than ``thresholds.min_seeds`` distinct seeds there is
    nothing to resample: the interval is NaN and the verdict "inconclusive".
    We deliberately do not fall back to resampling single points, which would
    pretend correlated points are independent and give a falsely narrow CI.

    Rows are put in a canonical order first, so the result does not depend on
    the input's row order, and the bootstrap generator is seeded from
    ``thresholds.boot_seed``, so the same data always give the same interval.

    Args:
        df: Tidy frame for ONE case with at least the columns ``width``,
            ``seed`` and ``value`` (an error expected to fall like
            ``width ** -0.5``). Several rows per ``(width, seed)`` are allowed.
        thresholds: Constants for the bootstrap and the verdict.

    Returns:
        The fit, its interval, the monotonicity flag and the verdict.

    Raises:
        SuiteError: If a column is missing, a width or value is not a positive
            finite number (the log is undefined), a seed is missing, or there
            are fewer than ``thresholds.min_widths`` distinct widths.
    """
    _require_columns(df, REQUIRED_COLUMNS, "fit_slope")
    if len(df) == 0:
        raise SuiteError("fit_slope got an empty frame; pass the rows of one case")

    width = pd.to_numeric(df["width"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    value = pd.to_numeric(df["value"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    for name, arr in (("width", width), ("value", value)):
        with np.errstate(invalid="ignore"):
            bad = ~(np.isfinite(arr) & (arr > 0))
        if bad.any():
            raise SuiteError(
                f"{int(bad.sum())} of {len(arr)} {name}s are not positive finite numbers, "
                f"so their log is undefined: {_describe_rows(df, bad)}; "
                "drop or fix those rows before fitting"
            )

    seed_codes, seed_ids = pd.factorize(df["seed"], sort=True)
    if (seed_codes < 0).any():
        raise SuiteError(
            f"{int((seed_codes < 0).sum())} rows have no seed: "
            f"{_describe_rows(df, seed_codes < 0)}; fill in the seed column"
        )
    n_seeds = len(seed_ids)
    widths = np.unique(width)
    n_widths = len(widths)
    if n_widths < thresholds.min_widths:
        raise SuiteError(
            f"at least {thresholds.min_widths} widths are needed to fit a slope; "
            f"got {n_widths} ({', '.join(f'{w:g}' for w in widths)}); "
            "run more widths for this case"
        )

    # Canonical row order (seed, then width) makes float sums, and hence the
    # result, independent of how the caller ordered the rows.
    order = np.lexsort((width, seed_codes))
    x = np.log(width[order])
    y = np.log(value[order])
    codes = np.asarray(seed_codes[order], dtype=np.intp)

    slope, intercept, r2 = _ols(x, y)

    # Geometric mean across seeds (errors are roughly log-normal), per width.
    width_idx = np.searchsorted(widths, width[order])
    mean_log = np.bincount(width_idx, weights=y) / np.bincount(width_idx)
    monotone = bool(np.all(np.diff(mean_log) < 0))

    if n_seeds < thresholds.min_seeds:
        ci_low, ci_high = math.nan, math.nan
    else:
        ci_low, ci_high = _bootstrap_slope_ci(x, y, codes, n_seeds, thresholds)

    return SlopeFit(
        slope=slope,
        intercept=intercept,
        r2=r2,
        slope_ci_low=ci_low,
        slope_ci_high=ci_high,
        n_widths=n_widths,
        n_seeds=n_seeds,
        monotone=monotone,
        verdict=verdict(ci_low, ci_high, monotone, thresholds),
    )


def summarize(
    df: pd.DataFrame,
    by: Sequence[str],
    thresholds: Thresholds = THRESHOLDS,
) -> pd.DataFrame:
    """Fit every case of a tidy results frame; one row per case.

    A case that cannot be fitted (say, fewer than three widths or a zero
    error) does not stop the summary: its row gets verdict "inconclusive", NaN
    numbers, a missing ``monotone`` and the reason in ``note``.

    Args:
        df: Tidy results with the columns ``width``, ``seed``, ``value`` and
            every column in ``by``.
        by: Columns identifying a case, e.g.
            ``["experiment", "arch", "depth", "metric"]``; empty for one case.
        thresholds: Constants for the bootstrap and the verdict.

    Returns:
        A frame with the ``by`` columns followed by ``slope``,
        ``slope_ci_low``, ``slope_ci_high``, ``r2``, ``n_widths``, ``n_seeds``,
        ``monotone`` (nullable boolean), ``verdict`` and ``note`` (empty when
        the fit succeeded), sorted by the ``by`` columns.

    Raises:
        SuiteError: If a needed column is missing from the whole frame.
    """
    by = list(by)
    _require_columns(df, [*by, *REQUIRED_COLUMNS], "summarize")
    if len(set(by)) != len(by):
        raise SuiteError(f"summarize got repeated group columns {by}; name each once")

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
        try:
            fit = fit_slope(group, thresholds)
        except SuiteError as exc:
            row.update(
                slope=math.nan,
                slope_ci_low=math.nan,
                slope_ci_high=math.nan,
                r2=math.nan,
                n_widths=int(group["width"].nunique()),
                n_seeds=int(group["seed"].nunique()),
                monotone=pd.NA,
                verdict="inconclusive",
                note=str(exc),
            )
        else:
            fields = asdict(fit)
            del fields["intercept"]
            row.update(fields, note="")
        rows.append(row)

    out = pd.DataFrame(rows, columns=[*by, *SUMMARY_COLUMNS])
    out = out.astype(
        {
            "slope": "float64",
            "slope_ci_low": "float64",
            "slope_ci_high": "float64",
            "r2": "float64",
            "n_widths": "int64",
            "n_seeds": "int64",
            "monotone": "boolean",
        }
    )
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
    for name, arr in (("x", xa), ("y", ya)):
        with np.errstate(invalid="ignore"):
            bad = ~(np.isfinite(arr) & (arr > 0))
        if bad.any():
            raise SuiteError(
                f"{int(bad.sum())} of {arr.size} {name} values are not positive finite "
                f"numbers (log undefined), at indices {np.flatnonzero(bad)[:5].tolist()}; "
                "drop or fix them"
            )
    if np.unique(xa).size < 2:
        raise SuiteError(
            f"fit_power_law needs at least 2 distinct x values; got {np.unique(xa).size}"
        )
    exponent, log_prefactor, r2 = _ols(np.log(xa), np.log(ya))
    return exponent, math.exp(log_prefactor), r2
