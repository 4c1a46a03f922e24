"""Tests of suite.stats: slope fits, t-intervals over per-seed slopes, verdicts and reasons.

Coverage of the interval at the grids' designs is tested in test_calibration.py."""

from __future__ import annotations

import math
from dataclasses import FrozenInstanceError

import numpy as np
import pandas as pd
import pytest

from suite.errors import SuiteError
from suite.stats import (
    BOUND,
    N_HALF,
    THRESHOLDS,
    Prediction,
    SlopeFit,
    Thresholds,
    fit_power_law,
    fit_slope,
    reason,
    summarize,
    verdict,
)

#: 6 widths spanning 32x, as in the suite's grids.
WIDTHS = 64 * 2 ** np.arange(6)
N_SEEDS = 5
SIGMA = 0.1
#: Standard error of the OLS slope for log-noise SIGMA on this grid:
#: sigma / sqrt(sum over all points of (log w - mean log w)^2). Each seed has
#: 6 log-widths spaced ln 2 apart, i.e. 17.5 (ln 2)^2 of squared deviation, so
#: SE = 0.1 / sqrt(5 * 17.5 * 0.48) ~= 0.015. Tolerances below are multiples of it.
SLOPE_SE = SIGMA / math.sqrt(N_SEEDS * float(np.sum((np.log(WIDTHS) - np.log(WIDTHS).mean()) ** 2)))


def synthetic(
    b: float,
    *,
    sigma: float = SIGMA,
    n_seeds: int = N_SEEDS,
    widths: np.ndarray = WIDTHS,
    prefactor: float = 2.0,
    rng_seed: int = 0,
    bump: dict[int, float] | None = None,
) -> pd.DataFrame:
    """Tidy frame with value = C * width^b * exp(eps), eps ~ N(0, sigma).

    ``bump`` multiplies the values at the given width indices by a factor,
    for every seed, to break monotonicity of the seed mean.
    """
    rng = np.random.default_rng(rng_seed)
    eps = rng.normal(0.0, 1.0, size=(n_seeds, len(widths)))
    factor = np.ones(len(widths))
    for idx, f in (bump or {}).items():
        factor[idx] = f
    rows = [
        {
            "width": int(w),
            "seed": s,
            "value": prefactor * float(w) ** b * factor[j] * math.exp(sigma * eps[s, j]),
        }
        for s in range(n_seeds)
        for j, w in enumerate(widths)
    ]
    return pd.DataFrame(rows)


# -- thresholds and verdict ---------------------------------------------------------


def test_thresholds_defaults_and_validation() -> None:
    assert THRESHOLDS.band_halfwidth == 0.15
    assert THRESHOLDS.ci_level == 0.95
    assert THRESHOLDS.min_widths == 3
    assert THRESHOLDS.min_seeds == 2
    assert THRESHOLDS.band(N_HALF) == (-0.65, -0.35)
    assert THRESHOLDS.band(BOUND) == (-math.inf, -0.35)
    with pytest.raises(FrozenInstanceError):
        THRESHOLDS.band_halfwidth = 1.0  # type: ignore[misc]
    with pytest.raises(SuiteError, match="band_halfwidth"):
        Thresholds(band_halfwidth=0.0)
    with pytest.raises(SuiteError, match="kind"):
        Prediction("rate", -0.5, "T2")


@pytest.mark.parametrize(
    ("low", "high", "prediction", "expected"),
    [
        (-0.6, -0.4, N_HALF, "consistent"),  # wholly inside [-0.65, -0.35]
        (-0.65, -0.35, N_HALF, "consistent"),  # the edges count as inside
        (-0.7, -0.4, N_HALF, "inconclusive"),  # straddles the lower edge
        (-0.5, -0.3, N_HALF, "inconclusive"),  # straddles the upper edge
        (-0.8, 0.1, N_HALF, "inconclusive"),  # wide: holds both -0.5 and 0
        (-1.1, -0.9, N_HALF, "contradicts"),  # steeper than predicted
        (-0.1, 0.1, N_HALF, "contradicts"),  # flat
        (-1.1, -0.9, BOUND, "consistent"),  # a bound allows any faster rate
        (-0.6, -0.3, BOUND, "inconclusive"),
        (-0.2, 0.1, BOUND, "contradicts"),  # slower than the bound
        (math.nan, math.nan, N_HALF, "inconclusive"),
        (-0.6, -0.4, None, "reported"),
    ],
)
def test_verdict_table(low: float, high: float, prediction: Prediction | None, expected: str) -> None:
    assert verdict(low, high, prediction) == expected


def test_verdict_rejects_reversed_interval() -> None:
    with pytest.raises(SuiteError, match="lower end first"):
        verdict(-0.4, -0.6, N_HALF)


# -- fit_slope -------------------------------------------------------------------------


def test_expected_rate_is_consistent() -> None:
    fit = fit_slope(synthetic(-0.5))
    assert isinstance(fit, SlopeFit)
    assert fit.slope_ci_low <= fit.slope <= fit.slope_ci_high
    assert fit.slope_ci_low <= -0.5 <= fit.slope_ci_high
    # 5 standard errors: a miss would be a bug, not bad luck.
    assert fit.slope == pytest.approx(-0.5, abs=5 * SLOPE_SE)
    assert fit.intercept == pytest.approx(math.log(2.0), abs=0.2)
    assert fit.r2 > 0.9
    assert fit.monotone
    assert (fit.n_widths, fit.n_seeds) == (6, 5)
    assert fit.verdict == "consistent" and fit.reason == ""


def test_interval_is_the_t_interval_of_per_seed_slopes() -> None:
    df = synthetic(-0.5)
    x = np.log(WIDTHS)
    per_seed = [np.polyfit(x, np.log(g.sort_values("width")["value"]), 1)[0] for _, g in df.groupby("seed")]
    half = 2.7764451051977987 * np.std(per_seed, ddof=1) / math.sqrt(N_SEEDS)  # t_{4, 0.975}
    fit = fit_slope(df)
    assert fit.slope == pytest.approx(np.mean(per_seed), abs=1e-12)
    assert (fit.slope_ci_low, fit.slope_ci_high) == pytest.approx((np.mean(per_seed) - half, np.mean(per_seed) + half), abs=1e-12)
    assert fit.slope_sd == pytest.approx(np.std(per_seed, ddof=1), abs=1e-12)


def test_steeper_rate_contradicts() -> None:
    fit = fit_slope(synthetic(-1.0))
    assert fit.slope == pytest.approx(-1.0, abs=5 * SLOPE_SE)
    assert fit.slope_ci_high < THRESHOLDS.band(N_HALF)[0]
    assert fit.verdict == "contradicts"
    # ... but is consistent with a bound (at least as fast as n^-1/2) and with a -1 prediction.
    assert fit_slope(synthetic(-1.0), prediction=BOUND).verdict == "consistent"
    assert fit_slope(synthetic(-1.0), prediction=Prediction("slope", -1.0, "test")).verdict == "consistent"


def test_flat_series_contradicts() -> None:
    fit = fit_slope(synthetic(0.0))
    assert fit.slope == pytest.approx(0.0, abs=5 * SLOPE_SE)
    assert fit.verdict == "contradicts"
    assert fit_slope(synthetic(0.0), prediction=BOUND).verdict == "contradicts"


def test_unpredicted_series_is_reported() -> None:
    fit = fit_slope(synthetic(0.0), prediction=None)
    assert fit.verdict == "reported" and fit.reason == ""
    assert math.isnan(fit.seeds_needed)


def test_growing_noise_becomes_inconclusive() -> None:
    # Same standard-normal draws scaled by sigma: every per-seed slope is -0.5 + sigma * (the
    # draws' slope), so the interval's width is exactly proportional to sigma.
    sigmas = [0.1, 0.3, 1.0, 3.0, 10.0]
    fits = [fit_slope(synthetic(-0.5, sigma=s)) for s in sigmas]
    widths = np.array([f.ci_width for f in fits])
    assert widths / np.array(sigmas) == pytest.approx(widths[0] / sigmas[0], rel=1e-6)
    assert fits[0].verdict == "consistent"
    assert fits[-1].verdict == "inconclusive"
    assert fits[-1].reason in ("too_few_seeds", "pre_asymptotic", "unexplained")


def test_single_seed_is_inconclusive_with_nan_ci() -> None:
    fit = fit_slope(synthetic(-0.5, n_seeds=1))
    assert fit.n_seeds == 1
    assert math.isnan(fit.slope_ci_low)
    assert math.isnan(fit.slope_ci_high)
    # The point estimate still exists: sqrt(5) larger SE with one seed.
    assert fit.slope == pytest.approx(-0.5, abs=5 * math.sqrt(N_SEEDS) * SLOPE_SE)
    assert fit.verdict == "inconclusive"


def test_monotonicity_is_reported_but_does_not_decide() -> None:
    # Adjacent widths differ by 2x, so the clean mean falls by 2^-0.5 ~= 0.71 per step; a 1.3x
    # bump at index 3 makes it rise there (0.71 * 1.3 > 1) while the slope stays near -0.5.
    fit = fit_slope(synthetic(-0.5, sigma=0.02, bump={3: 1.45}))
    assert not fit.monotone
    assert fit.verdict == verdict(fit.slope_ci_low, fit.slope_ci_high, N_HALF) == "consistent"


# -- reasons ---------------------------------------------------------------------------


def test_reason_outside_assumptions_comes_first() -> None:
    outside = Prediction("slope", -0.5, "derived", within_assumptions=False)
    fit = fit_slope(synthetic(-1.0), prediction=outside)
    assert (fit.verdict, fit.reason) == ("contradicts", "outside_assumptions")
    assert fit_slope(synthetic(-0.5), prediction=outside).reason == ""  # consistent: no reason


def test_reason_too_few_seeds() -> None:
    # Two seeds with exact slopes -0.45 and -0.55: mean -0.5, sd 0.071, but t_1 = 12.7 makes the
    # interval +-0.64; at that spread 4 seeds would put it inside the band (t_3 sd / 2 = 0.11).
    rows = [{"width": int(w), "seed": s, "value": float(w) ** b} for s, b in enumerate((-0.45, -0.55)) for w in WIDTHS]
    fit = fit_slope(pd.DataFrame(rows))
    assert fit.verdict == "inconclusive"
    assert fit.seeds_needed == 4
    assert fit.reason == "too_few_seeds"


def test_reason_pre_asymptotic_from_the_experiments_regime_evidence() -> None:
    # A straight -0.2 series contradicts -0.5 with no bend: unexplained, unless its experiment
    # measured that the widths lie below the prediction's regime; a series with another reason
    # (outside the assumptions) keeps it.
    fit = fit_slope(synthetic(-0.2))
    assert (fit.verdict, fit.reason) == ("contradicts", "unexplained")
    assert reason(fit, regime_note="ratio 3 >= 1") == "pre_asymptotic"
    outside = fit_slope(synthetic(-0.2), prediction=Prediction("slope", -0.5, "derived", within_assumptions=False))
    assert reason(outside, regime_note="ratio 3 >= 1") == "outside_assumptions"


def test_reason_pre_asymptotic_when_bending_towards_the_prediction() -> None:
    # error = n^-1/2 (1 + 30 / sqrt(n)): steeper than -1/2 at small n, approaching -1/2.
    rows = [{"width": int(w), "seed": s, "value": w**-0.5 * (1 + 30 / math.sqrt(w)) * math.exp(0.01 * s)}
            for s in range(5) for w in WIDTHS]
    fit = fit_slope(pd.DataFrame(rows))
    assert fit.verdict == "contradicts"
    assert fit.slope_lower_half < fit.slope_upper_half < -0.5
    assert fit.reason == "pre_asymptotic"


def test_reason_unexplained_otherwise() -> None:
    fit = fit_slope(synthetic(0.0))  # flat and straight: no trend towards -0.5
    assert fit.reason == "unexplained"


def test_fewer_than_three_widths_raises() -> None:
    df = synthetic(-0.5, widths=WIDTHS[:2])
    with pytest.raises(SuiteError, match="at least 3 widths are needed to fit a slope; got 2"):
        fit_slope(df)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_non_positive_or_non_finite_values_raise(bad: float) -> None:
    df = synthetic(-0.5)
    df.loc[[3, 7], "value"] = bad
    with pytest.raises(SuiteError, match=r"value: 2 of 30 rows are not positive finite") as info:
        fit_slope(df)
    assert "width=512" in str(info.value)  # row 3 is seed 0, width 64 * 2^3


def test_missing_column_raises() -> None:
    with pytest.raises(SuiteError, match="value"):
        fit_slope(synthetic(-0.5).drop(columns=["value"]))


def test_fit_is_deterministic_and_order_free() -> None:
    df = synthetic(-0.5)
    first = fit_slope(df)
    assert fit_slope(df) == first
    assert fit_slope(df.sample(frac=1.0, random_state=3)) == first


# -- summarize -------------------------------------------------------------------------


def test_summarize_groups() -> None:
    good = synthetic(-0.5).assign(arch="mlp", depth=2)
    steep = synthetic(-1.0, rng_seed=1).assign(arch="mlp", depth=3)
    short = synthetic(-0.5, widths=WIDTHS[:2]).assign(arch="resnet", depth=2)
    df = pd.concat([steep, short, good], ignore_index=True)

    out = summarize(df, ["arch", "depth"])
    assert list(out.columns[:2]) == ["arch", "depth"]
    assert list(out[["arch", "depth"]].itertuples(index=False, name=None)) == [
        ("mlp", 2),
        ("mlp", 3),
        ("resnet", 2),
    ]
    assert list(out["verdict"]) == ["consistent", "contradicts", "inconclusive"]
    assert list(out["note"].iloc[:2]) == ["", ""]
    assert "at least 3 widths" in out["note"].iloc[2]
    assert math.isnan(out["slope"].iloc[2])
    assert pd.isna(out["monotone"].iloc[2])
    assert out["n_widths"].tolist() == [6, 6, 2]
    assert out["slope"].iloc[0] == fit_slope(good).slope


def test_summarize_two_groups_and_empty() -> None:
    df = pd.concat(
        [synthetic(-0.5).assign(metric="a"), synthetic(-1.0).assign(metric="b")],
        ignore_index=True,
    )
    out = summarize(df, ["metric"])
    assert len(out) == 2
    assert out.set_index("metric")["verdict"].to_dict() == {"a": "consistent", "b": "contradicts"}
    assert len(summarize(df.iloc[:0], ["metric"])) == 0
    with pytest.raises(SuiteError, match="arch"):
        summarize(df, ["arch"])


# -- fit_power_law ---------------------------------------------------------------------


def test_fit_power_law_recovers_exponent() -> None:
    x = np.geomspace(1e-3, 1.0, 12)
    noise = np.exp(np.random.default_rng(7).normal(0.0, 0.01, x.size))
    exponent, prefactor, r2 = fit_power_law(x, 3.0 * x**0.75 * noise)
    # log-noise 0.01 over 3 decades: slope SE ~ 0.01 / sqrt(12 * var(log x)) ~ 1e-3.
    assert exponent == pytest.approx(0.75, abs=0.01)
    assert prefactor == pytest.approx(3.0, rel=0.05)
    assert r2 > 0.999


def test_fit_power_law_rejects_bad_input() -> None:
    with pytest.raises(SuiteError, match="not positive finite"):
        fit_power_law([1.0, 2.0, 3.0], [1.0, 0.0, 2.0])
    with pytest.raises(SuiteError, match="equal length"):
        fit_power_law([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(SuiteError, match="2 distinct"):
        fit_power_law([2.0, 2.0], [1.0, 3.0])
