"""The regression experiment (theorem T4) and its figure, on tiny configs and synthetic frames.

The experiment is checked against independent computations: the eNTK and pNTK recomputed with
the suite's own ``jax`` path (not from the eNTK, not by structured derivatives) and the kernel
regression solved explicitly on the (N*O) x (N*O) system with ``np.kron``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from suite import kernels
from suite.errors import SuiteError
from suite.experiments import EXPERIMENTS, TIDY_COLUMNS, common, regression
from suite.figures import FIGURES, render

TINY = dict(n_outputs=3, n_train=8, n_test=4, dataset="digits", dtype="float64")


def tiny_config(width: int = 16, seed: int = 0) -> regression.Config:
    return regression.Config("mlp", 1, width, seed, **TINY)


@pytest.fixture(scope="module")
def tiny_problem():
    """(config, rows, train, test, eNTK on [train; test], pNTK on [train; test]) by the jax path."""
    config = tiny_config()
    rows = regression.run(config)
    train, test = regression.split("digits", 3, 8, 4, 0)
    x = np.concatenate([train.x, test.x]).astype(np.float64)
    model, params = common.network(config.model_config(), 0, tuple(x.shape[1:]), "float64")
    full = np.asarray(kernels.entk(model.apply, params, x, implementation="jax"))
    pntk = np.asarray(kernels.pntk(model.apply, params, x, implementation="jax"))
    return config, rows, train, test, full, pntk


def explicit_solve(k_train: np.ndarray, k_test_train: np.ndarray, targets: np.ndarray, lam: float) -> np.ndarray:
    """Kernel regression on the full (N*O) system: K(x, X) (K(X, X) + lam I)^{-1} vec Y."""
    m = k_train.shape[0]
    alpha = np.linalg.solve(k_train + lam * np.eye(m), targets.reshape(-1))
    return (k_test_train @ alpha).reshape(-1, targets.shape[1])


# --------------------------------------------------------------------------- the case


def test_case_is_tidy_with_every_kernel_metric_and_ridge(tiny_problem):
    config, rows, *_ = tiny_problem
    assert set(TIDY_COLUMNS) <= set(rows.columns) and {"ridge", "n_train", "n_test", "n_inputs"} <= set(rows.columns)
    assert (rows["n_inputs"] == 12).all() and (rows["width"] == config.width).all()
    per_approx = {"pred_rel_diff", "acc_gap", "agreement", "test_acc", "cond_train", "perturbation_ratio"}
    expected = {("entk", "test_acc"), ("entk", "cond_train")}
    expected |= {(k, m) for k in regression.APPROX for m in per_approx}
    for ridge in regression.RIDGES:
        got = rows[rows["ridge"] == ridge]
        assert set(zip(got["kernel"], got["metric"], strict=True)) == expected
    assert set(rows["ridge"]) == set(regression.RIDGES)
    v = rows.set_index(["metric"])["value"]
    assert np.isfinite(rows["value"]).all()
    assert ((v.loc[["test_acc", "agreement", "acc_gap"]] >= 0) & (v.loc[["test_acc", "agreement", "acc_gap"]] <= 1)).all()
    assert (v.loc["cond_train"] >= 1).all() and (v.loc["pred_rel_diff"] > 0).all()
    # A ridge can only improve the conditioning.
    cond = rows.query("kernel == 'entk' and metric == 'cond_train'").sort_values("ridge")["value"].to_numpy()
    assert np.all(np.diff(cond) < 0)


def test_metrics_match_an_independent_full_solve(tiny_problem):
    """pred_rel_diff, accuracies and agreement recomputed from kernels of the jax path and the
    explicit (N*O) x (N*O) solves, with pNTK x I built by np.kron."""
    config, rows, train, test, full, pntk = tiny_problem
    n, o = config.n_train, config.n_outputs
    mat = np.asarray(kernels.as_matrix(full))
    e_train, e_test = mat[: n * o, : n * o], mat[n * o :, : n * o]
    p_train, p_test = np.kron(pntk[:n, :n], np.eye(o)), np.kron(pntk[n:, :n], np.eye(o))
    y = np.asarray(train.targets, np.float64)
    assert np.allclose(y.sum(axis=1), 0)  # centred one-hot targets
    scale = np.trace(e_train) / (n * o)
    for ridge in regression.RIDGES:
        f_e = explicit_solve(e_train, e_test, y, ridge * scale)
        f_p = explicit_solve(p_train, p_test, y, ridge * scale)
        got = rows[(rows["ridge"] == ridge)].set_index(["kernel", "metric"])["value"]
        want_diff = np.linalg.norm(f_e - f_p) / np.linalg.norm(f_e)
        # Kernels agree to ~1e-12 across implementations; solves amplify by cond < 1e4.
        assert got["pntk", "pred_rel_diff"] == pytest.approx(want_diff, rel=1e-6)
        acc_e = np.mean(f_e.argmax(1) == test.y)
        acc_p = np.mean(f_p.argmax(1) == test.y)
        assert got["entk", "test_acc"] == acc_e and got["pntk", "test_acc"] == acc_p
        assert got["pntk", "acc_gap"] == pytest.approx(abs(acc_e - acc_p))
        assert got["pntk", "agreement"] == np.mean(f_e.argmax(1) == f_p.argmax(1))
        lam = ridge * scale
        assert got["entk", "cond_train"] == pytest.approx(np.linalg.cond(e_train + lam * np.eye(n * o)), rel=1e-6)


def test_decoupled_pntk_solve_equals_the_kron_solve(tiny_problem):
    """T4's premise: with pNTK x I_O one N x N solve serves all O outputs (to 1e-8, float64)."""
    config, _, train, _, _, pntk = tiny_problem
    n, o = config.n_train, config.n_outputs
    y = np.asarray(train.targets, np.float64)
    for lam in (0.0, 1e-2 * np.mean(np.diag(pntk[:n, :n]))):
        fast = regression.predict_scalar(pntk[:n, :n], pntk[n:, :n], y, lam)
        slow = explicit_solve(np.kron(pntk[:n, :n], np.eye(o)), np.kron(pntk[n:, :n], np.eye(o)), y, lam)
        assert fast.shape == (config.n_test, o)
        assert np.linalg.norm(fast - slow) / np.linalg.norm(slow) < 1e-8


def test_entk_prediction_shape_and_kronecker_limit(tiny_problem):
    """predict_entk returns (M, O), matches the explicit solve, and equals the decoupled solve when
    the eNTK is exactly pNTK x I (the infinite-width structure), where T4's difference is 0."""
    config, _, train, _, full, pntk = tiny_problem
    n, o = config.n_train, config.n_outputs
    y = np.asarray(train.targets, np.float64)
    f_e = regression.predict_entk(full[:n, :n], full[n:, :n], y, 0.0)
    assert f_e.shape == (config.n_test, o)
    mat = np.asarray(kernels.as_matrix(full))
    want = explicit_solve(mat[: n * o, : n * o], mat[n * o :, : n * o], y, 0.0)
    assert np.linalg.norm(f_e - want) / np.linalg.norm(want) < 1e-8
    kron_full = np.einsum("ab,ij->abij", pntk, np.eye(o))
    f_k = regression.predict_entk(kron_full[:n, :n], kron_full[n:, :n], y, 0.0)
    f_p = regression.predict_scalar(pntk[:n, :n], pntk[n:, :n], y, 0.0)
    assert np.linalg.norm(f_k - f_p) / np.linalg.norm(f_p) < 1e-8


def test_ridge_solver_conditioning():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    k = a @ a.T + 1e-3 * np.eye(6)
    solver = regression.RidgeSolver(k)
    rhs = rng.normal(size=(6, 2))
    for lam in (0.0, 0.5):
        assert np.allclose(solver.solve(rhs, lam), np.linalg.solve(k + lam * np.eye(6), rhs), rtol=1e-8)
        assert solver.cond(lam) == pytest.approx(np.linalg.cond(k + lam * np.eye(6)), rel=1e-8)
    assert regression.RidgeSolver(-np.eye(3)).cond(0.0) == np.inf


def test_grids_meet_the_verification_design():
    """Per arch: >= 4 widths spanning >= 16x; >= 3 seeds quick and >= 5 full; O = 10; disjoint splits."""
    exp = EXPERIMENTS["regression"]
    assert exp.verify and exp.theorem == "T4" and "ridge" in exp.extra_series
    assert "pred_rel_diff" not in exp.report_only_metrics
    for grid, min_seeds, dataset in (("quick", 3, "digits"), ("full", 5, "mnist5k14")):
        frame = pd.DataFrame([c.__dict__ for c in regression.GRIDS[grid]()])
        assert set(frame["arch"]) == {"mlp", "cnn", "resnet"}
        assert (frame["n_outputs"] == 10).all() and (frame["dataset"] == dataset).all()
        for _, g in frame.groupby("arch"):
            widths = sorted(g["width"].unique())
            assert len(widths) >= 4 and widths[-1] / widths[0] >= 16 and g["seed"].nunique() >= min_seeds
    train, test = regression.split("digits", 10, 32, 16, 0)
    assert np.bincount(train.y, minlength=10).min() >= 3 and len(test) == 16


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_the_widest_quick_width_reaches_t4s_first_order_regime(arch):
    """The quick grid's widest case (seed 0) is in T4's first-order regime at the largest ridges,
    perturbation_ratio = ||Theta - pNTK x I||_2 / (lambda_min + lam) < 1 (THEORY.md §8), and
    ridgeless it is not: lambda_min of the train eNTK is far below the kernel's error there."""
    widest = max((c for c in regression.GRIDS["quick"]() if c.arch == arch and c.seed == 0), key=lambda c: c.width)
    rows = regression.run(widest)
    ratio = rows.query("kernel == 'pntk' and metric == 'perturbation_ratio'").set_index("ridge")["value"]
    assert ratio[100.0] < ratio[10.0] < 1 < 10 < ratio[0.0], ratio.to_dict()
    # the same ||Theta - pNTK x I||_2 over lambda_min + lam: 10x the ridge, at most 10x smaller
    assert ratio[100.0] >= ratio[10.0] / 10
    diff = rows.query("kernel == 'pntk' and metric == 'pred_rel_diff'").set_index("ridge")["value"]
    assert diff[10.0] < diff[0.0]


# --------------------------------------------------------------------------- the figure


def synthetic_frame(seed: int = 0) -> pd.DataFrame:
    """Regression rows: pred_rel_diff ~ width^-0.5, accuracies closing in on each other."""
    rng = np.random.default_rng(seed)
    rows = []
    for arch, depth in (("mlp", 2), ("cnn", 2), ("resnet", 1)):
        for width in (16, 32, 64, 128, 256):
            for s in range(3):
                for ridge in (0.0, 0.1, 1.0):
                    base = {"experiment": "regression", "case_key": f"{arch}-{width}-{s}", "arch": arch, "depth": depth,
                            "width": width, "seed": s, "n_outputs": 10, "dataset": "digits", "n_train": 32,
                            "n_test": 16, "n_inputs": 48, "data_seed": 0, "parameterization": "ntk",
                            "dtype": "float32", "ridge": ridge}
                    noise = float(np.exp(0.05 * rng.standard_normal()))
                    diff = (2.0 - ridge) * width**-0.5 * noise
                    rows += [
                        {**base, "kernel": "pntk", "metric": "pred_rel_diff", "value": diff},
                        {**base, "kernel": "trace_ntk", "metric": "pred_rel_diff", "value": 0.9 * diff},
                        {**base, "kernel": "entk", "metric": "test_acc", "value": 0.8},
                        {**base, "kernel": "pntk", "metric": "test_acc", "value": 0.8 - diff / 4},
                        {**base, "kernel": "trace_ntk", "metric": "test_acc", "value": 0.8 - diff / 5},
                        {**base, "kernel": "pntk", "metric": "acc_gap", "value": 0.0},
                        # below 1 from width 64 at ridge 1 only: 7 n^-1/2 / (0.01 + ridge)
                        {**base, "kernel": "pntk", "metric": "perturbation_ratio",
                         "value": 7.0 * width**-0.5 / (0.01 + ridge) * noise},
                    ]
    return pd.DataFrame(rows)


def _legend_texts(fig: Figure) -> list[str]:
    legends = [leg for sub in fig.subfigs for leg in sub.legends]
    return [t.get_text() for leg in legends for t in leg.get_texts()]


def test_figure_renders_from_a_synthetic_frame():
    spec = FIGURES["fig_regression"]
    assert spec.experiment == "regression" and spec.title and spec.caption
    assert "approaches" not in spec.title  # the data decide whether it does (THEORY.md §8)
    fig = render("fig_regression", synthetic_frame())
    axes = fig.get_axes()
    assert len(axes) == 9  # 3 rows (difference, perturbation ratio, accuracy) x 3 archs
    top, middle, bottom = axes[0:3], axes[3:6], axes[6:9]
    assert [ax.get_yscale() for ax in axes] == ["log"] * 6 + ["linear"] * 3
    for ax in axes:
        assert ax.get_xscale() == "log"
        assert [int(t) for t in ax.get_xticks()] == [16, 32, 64, 128, 256]
    for ax in top:
        data_lines = [ln for ln in ax.get_lines() if ln.get_marker() not in (None, "None", "")]
        series = [ln for ln in data_lines if ln.get_linestyle() != "None"]
        assert len(series) == 3 and any(ln.get_linestyle() == "--" for ln in ax.get_lines())
        assert all(ln.get_markerfacecolor() == "white" for ln in series)  # hollow: outside the regime
        # filled overlay: ridge 1 at widths with ratio 7 n^-1/2 / 1.01 < 1, i.e. from 64 on
        (filled,) = [ln for ln in data_lines if ln.get_linestyle() == "None"]
        assert list(filled.get_xdata()) == [64, 128, 256]
    for ax in middle:
        assert len([ln for ln in ax.get_lines() if ln.get_marker() not in (None, "None", "")]) == 3
        assert any(list(ln.get_ydata()) == [1.0, 1.0] for ln in ax.get_lines())  # the line at 1
    for ax in bottom:
        assert ax.get_ylim() == pytest.approx((0.0, 1.02))
        # eNTK, pNTK, mean trace at the smallest ridge; eNTK and pNTK at the largest
        assert len([ln for ln in ax.get_lines() if ln.get_marker() not in (None, "None", "")]) == 5
    texts = _legend_texts(fig)
    for label in ("ridgeless", "λ = 0.1·mean diag", "λ = 1·mean diag", "n$^{-1/2}$", "eNTK", "pNTK", "mean trace",
                  "filled: perturbation ratio < 1", "pNTK, λ = 1·mean diag", "1: below it T4's bound is first order"):
        assert any(label in t for t in texts), (label, texts)
    # Three seeds and five widths of a clean n^-1/2 series: fitted slopes near -0.5 in the legend.
    assert sum("slope −0.5" in t or "slope −0.4" in t for t in texts) == 9
    assert "digits" in fig.get_suptitle() and "32 train / 16 test" in fig.get_suptitle()


def test_figure_rejects_a_mix_of_training_sizes():
    frame = synthetic_frame()
    frame.loc[frame["arch"] == "mlp", "n_train"] = 64
    with pytest.raises(SuiteError, match="n_train"):
        render("fig_regression", frame)


def test_findings_name_the_ridge_that_reaches_the_first_order_regime():
    from suite.figures import regression as fig_regression

    assert FIGURES["fig_regression"].findings is fig_regression.findings
    text = fig_regression.findings(synthetic_frame())
    # ratio 7 n^-1/2 / (0.01 + ridge): 0.43 at n = 256 for ridge 1, 4.3 for ridge 0.1
    assert text.count("from λ = 1·mean diag the ratio is below 1 at n = 256 (0.4") == 3
    assert text.count("ridgeless: ratio 4") == 3 and text.count("(T4: −0.5)") == 3
    frame = synthetic_frame()
    assert "no ridge run reaches" in fig_regression.findings(frame[frame["ridge"] < 1])


def test_a_ridge_series_outside_t4s_first_order_regime_is_not_unexplained():
    """A ridge series whose error falls too slowly (slope -0.2, a contradiction) is 'not yet
    asymptotic' when its perturbation ratio at the widest width is >= 1 (THEORY.md §8, §10), and
    stays unexplained (failing the gate) when the ratio is below 1."""
    from suite import report

    frame = synthetic_frame()
    frame = frame[(frame["arch"] == "mlp") & (frame["ridge"] > 0) & (frame["kernel"] == "pntk")].copy()
    slow = frame["metric"] == "pred_rel_diff"
    noise = np.exp(0.05 * np.random.default_rng(1).standard_normal(int(slow.sum())))
    frame.loc[slow, "value"] = frame.loc[slow, "width"] ** -0.2 * noise
    summary = report.summarize(EXPERIMENTS["regression"], frame.assign(grid="quick"))
    diff = summary[summary["metric"] == "pred_rel_diff"].set_index("ridge")
    assert (diff["verdict"] == "contradicts").all()
    # ratio 7 * 256^-0.5 / (0.01 + ridge), times noise of about 5%: 3.98 at ridge 0.1, 0.43 at ridge 1
    assert diff.loc[0.1, "reason"] == "pre_asymptotic"
    shown = float(diff.loc[0.1, "regime_note"].split("perturbation ratio ")[1].split()[0])
    assert shown == pytest.approx(7 / 16 / 0.11, rel=0.15)
    assert diff.loc[1.0, "reason"] == "unexplained" and diff.loc[1.0, "regime_note"] == ""
    problems = report.gate(summary.assign(headline=False).to_dict("records"))
    assert [p for p in problems if "unexplained contradiction" in p] == [
        next(p for p in problems if "ridge=1.0" in p or "ridge=1" in p)
    ]
