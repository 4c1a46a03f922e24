"""The inputs experiment (error against the number of inputs N at fixed width), its figure and
the fixed-effects exponent fit behind it (:func:`suite.stats.fit_exponent`)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from suite import report, runner, stats
from suite.errors import SuiteError
from suite.experiments import EXPERIMENTS, convergence, inputs
from suite.figures import FIGURES, render, render_all
from suite.figures import inputs as fig_inputs
from suite.figures import outputs as fig_outputs

N_VALUES = (8, 16, 32, 64, 128)
WIDTHS = (128, 512, 2048)
SEEDS = 6
#: Point noise (sd of log error) of the synthetic rows.
SIGMA = 0.05


def _standard_error(n_values=N_VALUES, n_widths: int = len(WIDTHS), seeds: int = SEEDS, sigma: float = SIGMA) -> float:
    """Standard error of the mean per-seed fixed-effects slope: a seed's slope has variance
    sigma² / Sxx with Sxx = widths · sum (log N - mean)², and the seeds are independent."""
    x = np.log(np.asarray(n_values, float))
    sxx = n_widths * float(((x - x.mean()) ** 2).sum())
    return sigma / math.sqrt(sxx * seeds)


def _rows(gamma: float | dict, *, archs=("mlp", "cnn"), metrics=None, noise: float = SIGMA, seed: int = 0) -> pd.DataFrame:
    """Tidy inputs rows: value = C(width) · exp(u_seed,width) · N^gamma · exp(noise), with a
    random intercept per (seed, width) (one network per seed and width, shared by every N)."""
    rng = np.random.default_rng(seed)
    metrics = metrics or [("pntk", "rel_frobenius")]
    out = []
    for arch in archs:
        for kernel, metric in metrics:
            g = gamma[metric] if isinstance(gamma, dict) else gamma
            for width in WIDTHS:
                for s in range(SEEDS):
                    u = 0.3 * rng.standard_normal()
                    for n in N_VALUES:
                        value = 2.0 * width**-0.5 * math.exp(u) * n**g * math.exp(noise * rng.standard_normal())
                        out.append(dict(arch=arch, depth=2, width=width, seed=s, n_outputs=10, dataset="digits",
                                        n_inputs=n, parameterization="ntk", dtype="float32", kernel=kernel,
                                        metric=metric, value=value, case_key=f"{arch}-{width}-{s}-{n}"))
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- registry and grids


def test_registered_outside_verify() -> None:
    exp = EXPERIMENTS["inputs"]
    assert exp.verify is False and exp.version == "1" and exp.order == 23
    assert exp.config_type is convergence.Config and exp.run is convergence.run
    assert FIGURES["fig_inputs"].experiment == "inputs"
    assert FIGURES["fig_inputs"].findings is fig_inputs.findings
    # Every N gets its own width series, judged at the n^-1/2 of T2.
    assert "n_inputs" in exp.series_columns
    assert exp.prediction({"metric": "rel_frobenius", "arch": "mlp", "depth": 2}).slope == -0.5
    for grid in ("quick", "full"):
        keys = [runner.case_id(c) for c in exp.grid(grid)]
        assert len(set(keys)) == len(keys), "two cases of one grid share a key"


@pytest.mark.parametrize(("grid", "dataset"), [("quick", "digits"), ("full", "mnist5k14")])
def test_grid_design(grid: str, dataset: str) -> None:
    configs = inputs.EXPERIMENT.grid(grid)
    assert {c.arch for c in configs} == {"mlp", "cnn"}
    assert {c.dataset for c in configs} == {dataset}
    assert {(c.depth, c.n_outputs, c.parameterization, c.dtype, c.activation) for c in configs} == {
        (2, 10, "ntk", "float32", "relu")}
    for arch in ("mlp", "cnn"):
        mine = [c for c in configs if c.arch == arch]
        ns = sorted({c.n_inputs for c in mine})
        assert len(ns) >= 4 and ns[-1] / ns[0] >= 8, ns
        # The same widths and seeds for every N, so N is never confounded with them.
        by_n = {n: sorted({(c.width, c.seed) for c in mine if c.n_inputs == n}) for n in ns}
        assert all(v == by_n[ns[0]] for v in by_n.values())
        widths = sorted({w for w, _ in by_n[ns[0]]})
        assert len(widths) >= 3  # a width slope per N
        assert len({s for _, s in by_n[ns[0]]}) >= 5
    # The quick grid stays small: it is meant to run in about two minutes on 2 cores.
    assert grid != "quick" or len(configs) <= 250


# --------------------------------------------------------------------------- the exponent fit


@pytest.mark.parametrize("gamma", [0.0, 0.25, -0.3])
def test_fit_exponent_recovers_a_known_exponent(gamma: float) -> None:
    rows = _rows(gamma, archs=("mlp",))
    fit = stats.fit_exponent(rows, "n_inputs", within="width")
    se = _standard_error()
    assert fit.exponent == pytest.approx(gamma, abs=4 * se)
    assert fit.ci_low < gamma < fit.ci_high
    # The interval is the t-interval of the per-seed slopes: half-width t_{S-1} * sd / sqrt(S),
    # with the sd near its theoretical value sigma / sqrt(Sxx) (a chi distribution with 5 dof
    # stays within a factor 0.3-1.8 of it with probability > 0.99).
    assert fit.n_seeds == SEEDS and fit.n_points == len(rows)
    assert 0.3 < fit.sd / (se * math.sqrt(SEEDS)) < 1.8
    half = stats.t_quantile(0.95, SEEDS - 1) * fit.sd / math.sqrt(SEEDS)
    assert (fit.ci_high - fit.ci_low) / 2 == pytest.approx(half, rel=1e-12)


def test_fit_exponent_ignores_width_intercepts_and_matches_fig_outputs() -> None:
    # Noise-free: any per-(seed, width) intercept is absorbed exactly.
    rows = _rows(0.4, archs=("mlp",), noise=0.0)
    fit = stats.fit_exponent(rows, "n_inputs")
    assert fit.exponent == pytest.approx(0.4, abs=1e-12) and fit.sd == pytest.approx(0.0, abs=1e-12)
    # The same estimator as fig_outputs' O exponent at fixed width (beta), on a balanced design.
    noisy = _rows(0.5, archs=("mlp",), seed=3).drop(columns="n_outputs").rename(columns={"n_inputs": "n_outputs"})
    beta = fig_outputs.fit_outputs(noisy)
    fit = stats.fit_exponent(noisy, "n_outputs")
    assert fit.exponent == pytest.approx(beta.beta, abs=1e-12)
    assert fit.ci == pytest.approx(beta.beta_ci, abs=1e-12)


def test_fit_exponent_errors() -> None:
    rows = _rows(0.0, archs=("mlp",))
    with pytest.raises(SuiteError, match="two values of 'n_inputs'"):
        stats.fit_exponent(rows[rows["n_inputs"] == 8], "n_inputs")
    with pytest.raises(SuiteError, match="not positive finite"):
        stats.fit_exponent(rows.assign(value=rows["value"].where(rows["n_inputs"] != 8, 0.0)), "n_inputs")
    # The same message as fit_slope's, naming the rows by the fitted column (no width needed).
    by_depth = rows.rename(columns={"width": "depth"})
    with pytest.raises(SuiteError, match=r"n_inputs: 18 of 90 rows are not positive finite.*\(n_inputs=-1, seed=0, value="):
        stats.fit_exponent(by_depth.assign(n_inputs=by_depth["n_inputs"].where(by_depth["n_inputs"] != 8, -1.0)),
                           "n_inputs", within="depth")
    with pytest.raises(SuiteError, match="lacks"):
        stats.fit_exponent(rows.drop(columns="seed"), "n_inputs")
    one_seed = stats.fit_exponent(rows[rows["seed"] == 0], "n_inputs")
    assert math.isfinite(one_seed.exponent) and math.isnan(one_seed.ci_low) and one_seed.n_seeds == 1


# --------------------------------------------------------------------------- the figure


def test_fig_inputs_recovers_the_exponents() -> None:
    gammas = {"rel_frobenius": 0.0, "max_diag_dev": 0.1, "max_offdiag": 0.2}
    frame = _rows(gammas, metrics=list(fig_inputs.METRICS))
    table = fig_inputs.exponents(frame)
    assert len(table) == 6 and set(table["arch"]) == {"mlp", "cnn"}
    se = _standard_error()
    for r in table.itertuples():
        assert r.gamma == pytest.approx(gammas[r.metric], abs=4 * se), r
        assert r.ci_low < gammas[r.metric] < r.ci_high
        assert (r.n_min, r.n_max, r.n_widths, r.n_seeds) == (8, 128, 3, SEEDS)

    fig = render("fig_inputs", frame)
    axes = fig.get_axes()
    assert len(axes) == 3  # MLP, CNN, exponents
    assert [ax.get_title() for ax in axes[:2]] == ["MLP (depth 2)", "CNN (depth 2)"]
    assert all(ax.get_xscale() == "log" and ax.get_yscale() == "log" for ax in axes[:2])
    assert [int(t) for t in axes[0].get_xticks()] == list(N_VALUES)
    assert axes[2].get_yscale() == "linear" and axes[2].get_ylabel().startswith("N exponent")
    texts = [t.get_text() for sub in fig.subfigs for leg in sub.legends for t in leg.get_texts()]
    mlp = table[(table["arch"] == "mlp") & (table["metric"] == "rel_frobenius")].iloc[0]
    assert any(t.startswith(f"all widths: γ = {fig_inputs._num(mlp.gamma)} [") for t in texts), texts
    assert sum(t.startswith("width n = ") for t in texts) == 6
    # One seed-mean line per width on each arch panel, drawn at the N values.
    lines = [ln for ln in axes[0].get_lines() if ln.get_marker() not in (None, "None", "")]
    assert len(lines) == 3 and list(lines[0].get_xdata()) == list(N_VALUES)
    # N varies on purpose: the subtitle names the setting without it.
    assert "N =" not in fig.get_suptitle() and "O = 10" in fig.get_suptitle()

    text = fig_inputs.findings(frame)
    assert "MLP (N = 8–128, 3 widths, 6 seeds)" in text and "theory 0" in text
    assert text.count("γ = ") == 6

    with pytest.raises(SuiteError, match="dataset"):
        render("fig_inputs", pd.concat([frame, frame.assign(dataset="mnist5k")]))


# --------------------------------------------------------------------------- a tiny real run


TINY_N = (4, 8)
TINY_WIDTHS = (8, 32, 128)


def _tiny_grid() -> list[convergence.Config]:
    return [convergence.Config("mlp", 1, w, s, n_outputs=3, dataset="digits", n_inputs=n, dtype="float64")
            for n in TINY_N for w in TINY_WIDTHS for s in range(2)]


def test_tiny_run_end_to_end(monkeypatch, tmp_path: Path) -> None:
    exp = replace(EXPERIMENTS["inputs"], grids={"quick": _tiny_grid, "full": _tiny_grid})
    monkeypatch.setitem(EXPERIMENTS, "inputs", exp)
    rows = runner.run_experiment("inputs", "quick", out=tmp_path, progress=False)
    assert rows["case_key"].nunique() == 12
    # One width series per N in the summary.
    summary = report.summarize(exp, rows)
    head = summary[(summary["kernel"] == "pntk") & (summary["metric"] == "rel_frobenius")]
    assert sorted(head["n_inputs"]) == list(TINY_N) and (head["n_widths"] == 3).all()
    # A network is the same for every N: same parameter count, and its error moves little with N.
    assert rows.groupby(["width", "seed"])["n_params"].nunique().eq(1).all()
    table = fig_inputs.exponents(rows)
    assert len(table) == 3 and np.isfinite(table[["gamma", "ci_low", "ci_high"]].to_numpy()).all()
    assert (table["n_seeds"] == 2).all()
    # The figure renders from the saved CSV.
    written = render_all(tmp_path / "data", tmp_path / "figures", only=["fig_inputs"])
    assert [p.suffix for p in written["fig_inputs"]] == [".png", ".svg"]
