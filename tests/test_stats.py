"""Tests of suite.stats: slope fits, seed-bootstrap intervals and verdicts."""

from __future__ import annotations

import math
import time
from dataclasses import FrozenInstanceError

import numpy as np
import pandas as pd
import pytest

from suite.errors import SuiteError
from suite.stats import (
    THRESHOLDS,
    VERDICTS,
    SlopeFit,
    Thresholds,
    fit_power_law,
    fit_slope,
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


def test_thresholds_are_documented_constants() -> None:
    assert THRESHOLDS.expected_slope == -0.5
    assert (THRESHOLDS.band_low, THRESHOLDS.band_high) == (-0.6, -0.4)
    assert THRESHOLDS.max_ci_width == 0.5
    assert THRESHOLDS.n_boot == 2000
    assert THRESHOLDS.ci_level == 0.95
    assert THRESHOLDS.boot_seed == 0
    assert THRESHOLDS.min_widths == 3
    assert THRESHOLDS.min_seeds == 2
    with pytest.raises(FrozenInstanceError):
        THRESHOLDS.max_ci_width = 1.0  # type: ignore[misc]


def test_thresholds_reject_nonsense() -> None:
    with pytest.raises(SuiteError, match="band_low"):
        Thresholds(band_low=-0.3, band_high=-0.4)
    with pytest.raises(SuiteError, match="ci_level"):
        Thresholds(ci_level=1.5)


@pytest.mark.parametrize(
    ("low", "high", "monotone", "expected"),
    [
        (-0.55, -0.45, True, "consistent"),
        (-0.7, -0.59, True, "consistent"),  # overlaps the band's low edge
        (-0.41, -0.3, True, "consistent"),  # overlaps the band's high edge
        (-0.55, -0.45, False, "contradicts"),  # in band but not monotone
        (-1.1, -0.9, True, "contradicts"),
        (-0.1, 0.1, True, "contradicts"),
        (math.nan, math.nan, True, "inconclusive"),
        (-0.9, -0.3, True, "inconclusive"),  # width 0.6 > 0.5
        (-0.9, -0.3, False, "inconclusive"),  # inconclusive is checked first
    ],
)
def test_verdict_table(low: float, high: float, monotone: bool, expected: str) -> None:
    assert verdict(low, high, monotone) == expected
    assert expected in VERDICTS


def test_verdict_rejects_reversed_interval() -> None:
    with pytest.raises(SuiteError, match="lower end first"):
        verdict(-0.4, -0.6, True)


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
    assert fit.verdict == "consistent"


def test_ci_covers_true_slope_most_of_the_time() -> None:
    # Nominal coverage is 95%; a 5-cluster bootstrap undercovers a little
    # (intervals ~sqrt(4/5) too narrow, ~90% coverage). Over 40 data sets,
    # fewer than 30 hits would have probability < 1e-3 even at 85% coverage.
    hits = 0
    for rng_seed in range(40):
        fit = fit_slope(synthetic(-0.5, rng_seed=rng_seed))
        hits += fit.slope_ci_low <= -0.5 <= fit.slope_ci_high
    assert hits >= 30


def test_steeper_rate_contradicts() -> None:
    fit = fit_slope(synthetic(-1.0))
    assert fit.slope == pytest.approx(-1.0, abs=5 * SLOPE_SE)
    assert fit.slope_ci_high < THRESHOLDS.band_low
    assert fit.verdict == "contradicts"


def test_flat_series_does_not_pass() -> None:
    fit = fit_slope(synthetic(0.0))
    assert fit.slope == pytest.approx(0.0, abs=5 * SLOPE_SE)
    assert fit.verdict != "consistent"
    assert fit.verdict == "contradicts"


def test_growing_noise_becomes_inconclusive() -> None:
    # Same standard-normal draws scaled by sigma: with the bootstrap seed
    # fixed, every resampled slope is -0.5 + sigma * (slope of the draws), so
    # the interval width is exactly proportional to sigma.
    sigmas = [0.1, 0.3, 1.0, 3.0, 10.0]
    fits = [fit_slope(synthetic(-0.5, sigma=s)) for s in sigmas]
    widths = np.array([f.ci_width for f in fits])
    assert widths / np.array(sigmas) == pytest.approx(widths[0] / sigmas[0], rel=1e-6)
    assert fits[0].verdict == "consistent"
    assert fits[-1].ci_width > THRESHOLDS.max_ci_width
    assert fits[-1].verdict == "inconclusive"
    for fit in fits:
        expected = "inconclusive" if fit.ci_width > THRESHOLDS.max_ci_width else fit.verdict
        assert fit.verdict == expected


def test_single_seed_is_inconclusive_with_nan_ci() -> None:
    fit = fit_slope(synthetic(-0.5, n_seeds=1))
    assert fit.n_seeds == 1
    assert math.isnan(fit.slope_ci_low)
    assert math.isnan(fit.slope_ci_high)
    # The point estimate still exists: sqrt(5) larger SE with one seed.
    assert fit.slope == pytest.approx(-0.5, abs=5 * math.sqrt(N_SEEDS) * SLOPE_SE)
    assert fit.verdict == "inconclusive"


def test_bump_breaks_monotonicity_and_consistency() -> None:
    # Adjacent widths differ by 2x, so the clean mean falls by 2^-0.5 ~= 0.71
    # per step; a 1.6x bump at index 3 makes it rise there (0.71 * 1.6 > 1)
    # while the overall slope stays near -0.5.
    fit = fit_slope(synthetic(-0.5, bump={3: 1.6}))
    assert -0.6 < fit.slope < -0.4
    assert not fit.monotone
    assert fit.verdict != "consistent"


def test_fewer_than_three_widths_raises() -> None:
    df = synthetic(-0.5, widths=WIDTHS[:2])
    with pytest.raises(SuiteError, match="at least 3 widths are needed to fit a slope; got 2"):
        fit_slope(df)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_non_positive_or_non_finite_values_raise(bad: float) -> None:
    df = synthetic(-0.5)
    df.loc[[3, 7], "value"] = bad
    with pytest.raises(SuiteError, match=r"2 of 30 values are not positive finite") as info:
        fit_slope(df)
    assert "width=512" in str(info.value)  # row 3 is seed 0, width 64 * 2^3


def test_missing_column_raises() -> None:
    with pytest.raises(SuiteError, match="value"):
        fit_slope(synthetic(-0.5).drop(columns=["value"]))


def test_bootstrap_is_deterministic_and_order_free() -> None:
    df = synthetic(-0.5)
    first, second = fit_slope(df), fit_slope(df)
    assert first == second
    shuffled = df.sample(frac=1.0, random_state=3)
    assert fit_slope(shuffled) == first
    # A different bootstrap seed gives a (slightly) different interval.
    other = fit_slope(df, Thresholds(boot_seed=1))
    assert other.slope == first.slope
    assert (other.slope_ci_low, other.slope_ci_high) != (first.slope_ci_low, first.slope_ci_high)


def test_bootstrap_is_fast() -> None:
    df = synthetic(-0.5, widths=WIDTHS[:5])  # 5 widths x 5 seeds, 2000 resamples
    fit_slope(df)  # warm caches
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        fit_slope(df)
        best = min(best, time.perf_counter() - start)
    assert best < 0.1


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
