"""The scale experiment (blocked pNTK kernel regression on all of mnist5k, with the kernel of a
network at initialisation or trained) and its figure, on tiny configs and synthetic frames.

Tiny cases use the 8x8 ``digits`` data; the code path is the real one. The regression is
checked against an independent computation: the one-shot pNTK of the suite's ``jax`` path and
a dense ``np.linalg.solve``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from suite import kernels
from suite.experiments import EXPERIMENTS, TIDY_COLUMNS, common, scale
from suite.figures import FIGURES, MissingDataError, render

TINY = dict(n_train=200, n_test=100, dataset="digits", dtype="float64")
PNTK_METRICS = ("test_acc", "seconds_kernel", "seconds_solve", "peak_rss_gb", "pntk_gb", "gradients_gb",
                "entk_gb", "entk_refused")


def independent_accuracy(config: scale.Config, params) -> float:
    """Test accuracy of ridge regression with the pNTK of ``params`` (one-shot jax path, dense solve)."""
    train, test = scale.split(config)
    x = np.concatenate([train.x, test.x])
    model = common.network(config.model_config(), config.seed, x.shape[1:], config.dtype)[0]
    k = np.asarray(kernels.pntk(model.apply, params, x, implementation="jax"))
    n = config.n_train
    lam = config.ridge_rel * np.mean(np.diag(k[:n, :n]))
    pred = k[n:, :n] @ np.linalg.solve(k[:n, :n] + lam * np.eye(n), train.targets)
    return float(np.mean(pred.argmax(1) == test.y))


def test_scale_case_is_tidy_and_matches_an_independent_regression():
    config = scale.Config("mlp", 1, 8, 0, n_train=40, n_test=20, dataset="digits", dtype="float64")
    rows = scale.run(config)
    assert set(TIDY_COLUMNS) <= set(rows.columns) and {"n_inputs", "parameterization"} <= set(rows.columns)
    pntk = rows[rows["kernel"] == "pntk"]
    assert list(pntk["metric"]) == list(PNTK_METRICS)
    # at initialisation: the network's own accuracy, no training time
    assert set(rows.loc[rows["kernel"] == "network", "metric"]) == {"test_acc", "train_acc"}
    values = dict(zip(pntk["metric"], pntk["value"], strict=True))
    assert np.isfinite(rows["value"]).all()

    # independent: the one-shot pNTK and a plain dense ridge solve
    train, test = scale.split(config)
    x = np.concatenate([train.x, test.x])
    model, params = common.network(config.model_config(), 0, x.shape[1:], "float64")
    assert values["test_acc"] == pytest.approx(independent_accuracy(config, params))
    k = np.asarray(kernels.pntk(model.apply, params, x, implementation="jax"))
    k_train = k[:40, :40]
    lam = 1e-3 * np.mean(np.diag(k_train))
    pred = k[40:, :40] @ np.linalg.solve(k_train + lam * np.eye(40), train.targets)
    np.testing.assert_allclose(scale.ridge_predict(k, 40, train.targets, 1e-3), pred, rtol=1e-7, atol=1e-10)
    assert values["pntk_gb"] == pytest.approx(60 * 60 * 8 / 1e9)
    assert values["entk_gb"] == pytest.approx((60 * 10) ** 2 * 4 / 1e9) and values["entk_refused"] == 0.0
    assert 0 < values["peak_rss_gb"] < 64


def test_trained_case_uses_the_trained_networks_kernel():
    """After SGD the network itself classifies (its accuracy was chance at init), and the kernel
    regression is the one of the trained parameters: recomputed independently from them."""
    init = scale.Config("mlp", 1, 16, 0, **TINY)
    trained = scale.Config("mlp", 1, 16, 0, epochs=5, lr=4.0, batch_size=20, **TINY)
    rows = {c.epochs: scale.run(c).set_index(["kernel", "metric"])["value"] for c in (init, trained)}
    assert rows[0]["network", "test_acc"] < 0.3 < 0.7 < rows[5]["network", "test_acc"]
    assert rows[5]["network", "train_acc"] > 0.9 and rows[5]["network", "seconds_train"] > 0
    assert ("network", "seconds_train") not in rows[0].index
    train, _ = scale.split(trained)
    model, params0 = common.network(trained.model_config(), 0, train.x.shape[1:], "float64")
    params = scale.train(model.apply, params0, train, trained)
    assert rows[5]["pntk", "test_acc"] == pytest.approx(independent_accuracy(trained, params))
    # the trained kernel is a different kernel
    k0 = np.asarray(kernels.pntk(model.apply, params0, train.x[:20], implementation="jax"))
    k1 = np.asarray(kernels.pntk(model.apply, params, train.x[:20], implementation="jax"))
    assert np.linalg.norm(k1 - k0) / np.linalg.norm(k0) > 0.05


def test_scale_entk_is_refused_under_4gb_and_grids_are_valid():
    assert scale.entk_refused(5000, 10, 10_000) == (pytest.approx(10.0), 1.0)
    exp = EXPERIMENTS["scale"]
    assert not exp.verify and set(exp.report_only_metrics) == set(scale.METRICS)
    quick, full = exp.grid("quick"), exp.grid("full")
    assert all(c.n_train + c.n_test == 5000 and c.dataset == "mnist5k" for c in quick + full)
    # the networks at init, and the MLP (quick) or both nets (full) also trained at two rates
    init = {(c.arch, c.depth, c.width, c.readout) for c in quick if c.epochs == 0}
    assert {("mlp", 2, 64, "gap"), ("cnn", 2, 32, "gap")} <= init
    assert {(c.arch, c.lr) for c in quick if c.epochs} == {("mlp", 4.0), ("mlp", 32.0)}
    assert {(c.arch, c.lr) for c in full if c.epochs} == {("mlp", 4.0), ("mlp", 32.0), ("cnn", 4.0), ("cnn", 12.0)}
    for c in full:  # each trained net also has its kernel at init
        if c.epochs:
            assert scale.Config(c.arch, c.depth, c.width, c.seed, readout=c.readout) in full
    assert {c.seed for c in full} == {0, 1, 2} and {c.seed for c in quick} == {0}


# --------------------------------------------------------------------------- figure


def synthetic_frame() -> pd.DataFrame:
    rows = []
    nets = [("mlp", 2, 64, "gap", 0, 4.0), ("mlp", 2, 64, "gap", 10, 4.0), ("mlp", 2, 64, "gap", 10, 32.0),
            ("cnn", 2, 32, "gap", 0, 4.0), ("cnn", 1, 16, "flatten", 0, 4.0), ("cnn", 1, 16, "flatten", 10, 12.0)]
    for arch, depth, width, readout, epochs, lr in nets:
        for seed in (0, 1):
            base = {"experiment": "scale", "case_key": f"{arch}{depth}{width}{epochs}{lr}{seed}", "arch": arch,
                    "depth": depth, "width": width, "seed": seed, "n_outputs": 10, "dataset": "mnist5k",
                    "n_inputs": 5000, "parameterization": "ntk", "dtype": "float32", "n_train": 4000,
                    "n_test": 1000, "readout": readout, "epochs": epochs, "lr": lr}
            values = {("pntk", "test_acc"): 0.9 + 0.01 * seed, ("network", "test_acc"): 0.1 if not epochs else 0.95,
                      ("network", "train_acc"): 0.1 if not epochs else 0.99, ("pntk", "seconds_kernel"): 10.0 + seed,
                      ("pntk", "peak_rss_gb"): 3.5, ("pntk", "pntk_gb"): 0.1, ("pntk", "entk_gb"): 10.0,
                      ("pntk", "entk_refused"): 1.0}
            rows += [{**base, "kernel": k, "metric": m, "value": v} for (k, m), v in values.items()]
    return pd.DataFrame(rows)


def test_figure_renders_bars_per_network_and_state():
    assert FIGURES["fig_scale"].experiment == "scale"
    fig = render("fig_scale", synthetic_frame())
    assert isinstance(fig, Figure)
    (ax,) = fig.get_axes()
    labels = [t.get_text() for t in ax.get_xticklabels()]
    # networks by arch, then depth and width: MLP, CNN depth 1 (init, trained), CNN depth 2
    assert labels == ["at init", "trained\n10 ep., lr 4", "trained\n10 ep., lr 32", "at init",
                      "trained\n10 ep., lr 12", "at init"]
    assert len(ax.patches) == 2 * 6  # kernel regression and the network, per state
    texts = [t.get_text() for t in ax.texts]
    assert any("MLP, depth 2, n = 64" in t for t in texts) and any("flatten readout" in t for t in texts)
    legend = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert legend == ["kernel regression with the network's pNTK", "the network itself"]
    title = fig.get_suptitle().replace("\n", " ")
    assert "the eNTK would be 10 GB (refused under a 4 GB budget)" in title and "0.1 GB in 10–11 s" in title


def test_figure_reads_first_version_data_and_reports_missing_data():
    """Data without the readout / epochs / lr / network rows (version 1) still renders."""
    data = synthetic_frame()
    old = data[(data["epochs"] == 0) & (data["kernel"] == "pntk")].drop(columns=["readout", "epochs", "lr"])
    fig = render("fig_scale", old)
    assert len(fig.get_axes()[0].patches) == 3
    with pytest.raises(MissingDataError, match="test_acc"):
        render("fig_scale", data[data["metric"] != "test_acc"])


def test_findings_compare_the_kernel_with_the_network():
    from suite.figures import scale as fig_scale

    assert FIGURES["fig_scale"].findings is fig_scale.findings
    text = fig_scale.findings(synthetic_frame())
    assert "MLP, depth 2, n = 64, after 10 epochs at lr 32: 90.5% (the network itself: 95.0%)" in text
    assert "CNN, depth 2, n = 32, avg. pool readout, at init: 90.5% (the network itself: 10.0%)" in text
