"""Calibration of the slope interval: does the "95% CI" cover the true slope 95% of the time?

For every experiment, grid and architecture, series are simulated with a known slope at that
grid's widths and seed count, with noise whose structure and size come from the committed
results (``reports/data/<experiment>.csv``): per series, a seed's log-errors deviate from the
common line by a random intercept, a random slope and independent point noise, each with the
variance measured across the committed seeds (pooled over the experiment's predicted series of
that architecture). The interval :func:`suite.stats.t_interval` puts on the per-seed slopes,
computed here independently by the closed-form least-squares slope, must cover the truth in
93-97% of 2000 simulations (binomial standard error 0.5%, so the band is +-4 standard errors).
The seed-bootstrap interval it replaced covered 76% with 3 seeds and 86% with 5.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pandas as pd
import pytest

from suite import paths, stats
from suite.experiments import EXPERIMENTS

N_SIMS = 2000
TRUE_SLOPE = -0.5
COVERAGE_RANGE = (0.93, 0.97)


def _ols_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slope of y on x along the last axis (x shared)."""
    xc = x - x.mean()
    return ((y - y.mean(axis=-1, keepdims=True)) @ xc) / (xc @ xc)


@cache
def predicted_series(experiment: str) -> list[pd.DataFrame]:
    """The committed quick-grid rows of each series the experiment predicts a slope for."""
    exp = EXPERIMENTS[experiment]
    path = paths.REPORTS / "data" / f"{experiment}.csv"
    if not path.exists():
        return []
    rows = pd.read_csv(path)
    rows = rows[(rows["grid"] == "quick") & (rows["value"] > 0)]
    by = [c for c in exp.series_columns if c in rows.columns and c != "grid"]
    return [series for key, series in rows.groupby(by, dropna=False)
            if exp.prediction(dict(zip(by, key, strict=True))) is not None]


@cache
def committed_noise(experiment: str, arch: str) -> tuple[float, float, float]:
    """(sd of seed intercepts, sd of seed slopes, sd of point noise) in log-error units,
    estimated from the committed quick-grid rows of the experiment's predicted series."""
    resid_ss = resid_dof = 0.0
    slope_vars, icpt_vars = [], []
    for series in predicted_series(experiment):
        if series["arch"].iloc[0] != arch:
            continue
        table = series.pivot_table(index="seed", columns="width", values="value", aggfunc="mean").dropna()
        if table.shape[0] < 2 or table.shape[1] < 3:
            continue
        x = np.log(table.columns.to_numpy(float))
        y = np.log(table.to_numpy())
        b = _ols_slopes(x, y)
        a = y.mean(axis=1)  # intercept at the mean log-width
        resid = y - a[:, None] - b[:, None] * (x - x.mean())
        resid_ss += float((resid**2).sum())
        resid_dof += resid.size - 2 * len(b)
        sxx = float(((x - x.mean()) ** 2).sum())
        slope_vars.append((np.var(b, ddof=1), sxx))
        icpt_vars.append((np.var(a, ddof=1), len(x)))
    assert slope_vars, f"no committed series for {experiment}/{arch}"
    sigma2 = resid_ss / resid_dof
    # Between-seed variance beyond what the point noise alone explains (floored at zero).
    tau_b2 = max(float(np.mean([v - sigma2 / sxx for v, sxx in slope_vars])), 0.0)
    tau_a2 = max(float(np.mean([v - sigma2 / w for v, w in icpt_vars])), 0.0)
    return math.sqrt(tau_a2), math.sqrt(tau_b2), math.sqrt(sigma2)


def _designs() -> list[tuple[str, str, str, tuple[int, ...], int]]:
    """(experiment, grid, arch, widths, seeds) of every grid whose series have predictions."""
    out = []
    for name, exp in EXPERIMENTS.items():
        archs_with_data = {s["arch"].iloc[0] for s in predicted_series(name)}
        for grid in exp.grids:
            configs = exp.grid(grid)
            for arch in sorted({c.arch for c in configs} & archs_with_data):
                mine = [c for c in configs if c.arch == arch]
                widths = tuple(sorted({c.width for c in mine}))
                if len(widths) >= stats.THRESHOLDS.min_widths:
                    out.append((name, grid, arch, widths, len({c.seed for c in mine})))
    return out


PREDICTED = _designs()


def test_every_experiment_with_predictions_is_simulated() -> None:
    simulated = {d[0] for d in PREDICTED}
    assert {"convergence", "spectrum", "regression"} <= simulated
    assert "scale" not in simulated  # one width: no slope, nothing predicted


@pytest.mark.parametrize(("experiment", "grid", "arch", "widths", "seeds"), PREDICTED,
                         ids=[f"{d[0]}-{d[1]}-{d[2]}" for d in PREDICTED])
def test_interval_covers_95_percent(experiment: str, grid: str, arch: str, widths: tuple[int, ...], seeds: int) -> None:
    sd_icpt, sd_slope, sd_point = committed_noise(experiment, arch)
    rng = np.random.default_rng(20261201)
    x = np.log(np.asarray(widths, float))
    xc = x - x.mean()
    u = rng.normal(0, sd_icpt, (N_SIMS, seeds, 1))
    v = rng.normal(0, sd_slope, (N_SIMS, seeds, 1))
    e = rng.normal(0, sd_point, (N_SIMS, seeds, len(x)))
    y = math.log(0.3) + TRUE_SLOPE * xc + u + v * xc + e
    _, low, high, _ = stats.t_interval(_ols_slopes(x, y), stats.THRESHOLDS.ci_level)
    coverage = float(np.mean((low <= TRUE_SLOPE) & (TRUE_SLOPE <= high)))
    assert COVERAGE_RANGE[0] <= coverage <= COVERAGE_RANGE[1], (
        f"{experiment}/{grid}/{arch}: {widths} x {seeds} seeds, noise {sd_icpt:.3f}/{sd_slope:.3f}/{sd_point:.3f}: "
        f"coverage {coverage:.3f}"
    )

    # The same simulated series through the suite's own fit_slope give the same interval.
    for k in range(3):
        frame = pd.DataFrame({
            "width": np.tile(widths, seeds), "seed": np.repeat(np.arange(seeds), len(widths)),
            "value": np.exp(y[k]).ravel(),
        })
        fit = stats.fit_slope(frame)
        assert (fit.slope_ci_low, fit.slope_ci_high) == pytest.approx((low[k], high[k]), abs=1e-9)


def test_bootstrap_it_replaced_undercovers_with_three_seeds() -> None:
    """The reason for the change, reproduced: the percentile bootstrap over 3 seeds covers
    far less than 95% (measured 76% in the issue), while the t-interval covers 95%."""
    rng = np.random.default_rng(7)
    widths = np.array([64, 128, 256, 512, 1024, 2048], float)
    x = np.log(widths)
    y = TRUE_SLOPE * (x - x.mean()) + rng.normal(0, 0.1, (N_SIMS, 3, len(x)))
    slopes = _ols_slopes(x, y)  # (sims, 3)
    draws = rng.integers(0, 3, (N_SIMS, 500, 3))
    boot = np.take_along_axis(slopes[:, None, :], draws, axis=2).mean(axis=2)
    low, high = np.quantile(boot, [0.025, 0.975], axis=1)
    bootstrap = float(np.mean((low <= TRUE_SLOPE) & (TRUE_SLOPE <= high)))
    _, tlow, thigh, _ = stats.t_interval(slopes, 0.95)
    t_cover = float(np.mean((tlow <= TRUE_SLOPE) & (TRUE_SLOPE <= thigh)))
    assert bootstrap < 0.85
    assert COVERAGE_RANGE[0] <= t_cover <= COVERAGE_RANGE[1]
