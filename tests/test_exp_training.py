"""The training experiment (pNTK vs eNTK through SGD) and its figure, on tiny problems.

Tiny cases use the 8x8 ``digits`` data (the real grid uses ``mnist5k``) so that the file stays
well under a minute; the code path is the same.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from suite import kernels
from suite.errors import SuiteError
from suite.experiments import EXPERIMENTS, TIDY_COLUMNS, common, training
from suite.figures import FIGURES, MissingDataError, render
from suite.figures import training as fig_training

TINY = dict(dataset="digits", n_inputs=6, n_outputs=10, n_train=64, n_test=40, batch_size=16, dtype="float64")
KERNEL_METRICS = {("pntk", "rel_frobenius"), ("pntk", "lambda_max_rel_err"), ("entk", "offdiag_mass")}
NETWORK_METRICS = {("network", "train_loss"), ("network", "test_acc")}


@pytest.fixture(scope="module")
def tiny_run() -> tuple[training.Config, pd.DataFrame]:
    config = training.Config("mlp", 1, 16, 0, epochs=1, lr=2.0, **TINY)
    return config, training.run(config)


def test_registered_as_a_report_only_experiment():
    exp = EXPERIMENTS["training"]
    assert exp.verify is False and exp.extra_series == ("epoch",)
    assert "epoch" in exp.series_columns
    # rel_frobenius keeps a verdict at every epoch; the rest is reported as measured
    assert "rel_frobenius" not in exp.report_only_metrics
    assert {"train_loss", "test_acc", "offdiag_mass", "lambda_max_rel_err"} <= set(exp.report_only_metrics)
    for name in ("quick", "full"):
        configs = exp.grid(name)
        for arch in {c.arch for c in configs}:
            widths = {c.width for c in configs if c.arch == arch}
            assert len(widths) >= 3 and max(widths) >= 16 * min(widths)  # a slope can be fitted
        assert all(c.dataset == "mnist5k" and c.parameterization == "ntk" for c in configs)


def test_tiny_run_is_tidy(tiny_run):
    config, rows = tiny_run
    assert config.checkpoints == (0, 1)
    assert set(TIDY_COLUMNS) | {"epoch", "n_params", "lr", "loss"} <= set(rows.columns)
    assert (rows["width"] == 16).all() and np.isfinite(rows["value"]).all()
    at = {e: set(zip(g["kernel"], g["metric"], strict=True)) for e, g in rows.groupby("epoch")}
    assert at[0] == KERNEL_METRICS | NETWORK_METRICS
    assert at[1] == KERNEL_METRICS | NETWORK_METRICS | {("entk", "entk_drift")}
    assert len(rows) == 11
    acc = rows.query("metric == 'test_acc'")["value"]
    assert ((acc >= 0) & (acc <= 1)).all()
    kernel_rows = rows[rows["metric"].isin(["rel_frobenius", "lambda_max_rel_err", "offdiag_mass", "entk_drift"])]
    assert (kernel_rows["value"] > 0).all()


def test_epoch_zero_matches_an_independent_computation(tiny_run):
    """Epoch 0 is the init theorem: recompute it from scratch with other implementations."""
    config, rows = tiny_run
    d = training.split("digits", 64, 40, 6, 0, "float64", "xent")
    model, params = common.network(config.model_config(), config.seed, tuple(d.probe.shape[1:]), "float64")
    mat = np.asarray(kernels.as_matrix(kernels.entk(model.apply, params, d.probe, implementation="jax")))
    p = np.asarray(kernels.pntk(model.apply, params, d.probe, implementation="jax"))
    o = config.n_outputs
    approx = np.kron(p, np.eye(o))
    block_diag = np.kron(np.ones((6, 6)), np.eye(o)).astype(bool)  # entries (a i, b i)
    want = {
        "rel_frobenius": np.linalg.norm(mat - approx) / np.linalg.norm(mat),
        "lambda_max_rel_err": abs(np.linalg.eigvalsh(mat)[-1] - np.linalg.eigvalsh(approx)[-1])
        / np.linalg.eigvalsh(mat)[-1],
        "offdiag_mass": np.abs(mat[~block_diag]).sum() / np.abs(mat[block_diag]).sum(),
    }
    got = rows[rows["epoch"] == 0].set_index("metric")["value"]
    for metric, value in want.items():
        assert got[metric] == pytest.approx(value, rel=1e-8), metric
    # same network: the probe images are held out from training and from the test set
    train = {x.tobytes() for x in np.asarray(d.x_train)}
    assert not train & {x.tobytes() for x in np.asarray(d.probe)}
    assert not train & {x.tobytes() for x in np.asarray(d.x_test)}


@pytest.mark.parametrize("loss", ["xent", "mse"])
def test_training_reduces_the_loss(loss):
    # width and lr of tiny_run, so the compiled step is reused
    config = training.Config("mlp", 1, 16, 1, epochs=4, lr=2.0 if loss == "xent" else 0.5, loss=loss, **TINY)
    rows = training.run(config)
    assert config.checkpoints == (0, 1, 2, 4)
    curve = rows.query("metric == 'train_loss'").set_index("epoch")["value"]
    assert curve[4] < 0.5 * curve[0], curve.to_dict()
    # the kernel moves once training starts, and the drift is measured against epoch 0
    drift = rows.query("metric == 'entk_drift'").set_index("epoch")["value"]
    assert list(drift.index) == [1, 2, 4] and (drift > 0).all()


def test_divergence_is_reported():
    config = training.Config("mlp", 1, 16, 0, epochs=2, lr=1e6, loss="mse", **{**TINY, "dtype": "float32"})
    with pytest.raises(SuiteError, match=r"diverged.*lr=1000000"):
        training.run(config)


def test_metric_helpers_on_known_kernels():
    k = np.array([[2.0, 0.5], [0.5, 1.0]])
    exact = np.einsum("ab,ij->abij", k, np.eye(3))
    assert training.offdiag_mass(exact) == 0.0
    assert training.lambda_max_rel_err(exact, k) == pytest.approx(0.0, abs=1e-12)
    off = exact.copy()
    off[0, 1, 0, 2] = off[1, 0, 2, 0] = -0.3
    # diagonal entries of all four blocks: 3 * (2 + 0.5 + 0.5 + 1)
    assert training.offdiag_mass(off) == pytest.approx(0.6 / 12.0)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [("loss", "hinge", "loss"), ("batch_size", 128, "batch_size"), ("momentum", 1.0, "momentum"),
     ("lr", 0.0, "lr"), ("epochs", -1, "epochs"), ("readout", "max", "readout")],
)
def test_config_rejects_bad_values(field, value, match):
    with pytest.raises(SuiteError, match=match):
        training.Config("cnn", 1, 8, 0, **{**TINY, field: value})


def test_checkpoints():
    def points(e):
        return training.Config("mlp", 1, 8, 0, epochs=e).checkpoints

    assert points(0) == (0,)
    assert points(4) == (0, 1, 2, 4)
    assert points(6) == (0, 1, 2, 4, 6)


# --------------------------------------------------------------------------- figure

WIDTHS = {"mlp": (128, 512, 2048), "cnn": (16, 64, 256)}
EPOCHS = (0, 1, 2, 4)


def synthetic_frame() -> pd.DataFrame:
    """Tidy training rows: errors ~ width^-1/2 growing with epoch, a falling loss."""
    rng = np.random.default_rng(0)
    rows = []
    for arch, widths in WIDTHS.items():
        for width in widths:
            for seed in (0, 1):
                for epoch in EPOCHS:
                    noise = float(np.exp(0.05 * rng.standard_normal()))
                    values = {
                        ("pntk", "rel_frobenius"): 3 * width**-0.5 * (1 + 0.2 * epoch) * noise,
                        ("pntk", "lambda_max_rel_err"): 2 * width**-0.5 * noise,
                        ("entk", "offdiag_mass"): 9 * width**-0.5 * (1 + 0.1 * epoch) * noise,
                        ("network", "train_loss"): 2.3 / (1 + epoch) * noise,
                        ("network", "test_acc"): min(0.1 + 0.2 * epoch, 0.9),
                    }
                    if epoch:
                        values["entk", "entk_drift"] = 0.5 * width**-0.5 * noise
                    for (kernel, metric), value in values.items():
                        rows.append({
                            "experiment": "training", "case_key": f"{arch}-{width}-{seed}", "arch": arch,
                            "depth": 2 if arch == "mlp" else 1, "width": width, "seed": seed, "n_outputs": 10,
                            "dataset": "mnist5k", "n_inputs": 32, "parameterization": "ntk", "dtype": "float32",
                            "epoch": epoch, "kernel": kernel, "metric": metric, "value": value,
                        })
    return pd.DataFrame(rows)


def test_figure_renders_from_a_synthetic_frame():
    assert FIGURES["fig_training"].experiment == "training"
    fig = render("fig_training", synthetic_frame())
    assert isinstance(fig, Figure)
    axes = fig.get_axes()
    assert len(axes) == 2 * 5  # 2 archs x (rel_frobenius, lambda_max, offdiag, loss, accuracy)
    assert [ax.get_title() for ax in axes if ax.get_title()] == ["MLP (depth 2)", "CNN (depth 1)"]
    scales = [ax.get_yscale() for ax in axes]
    assert scales == ["log", "log", "log", "log", "linear"] * 2
    for ax in axes:
        assert ax.get_xscale() == "linear"
        assert [float(t) for t in ax.get_xticks()] == [float(e) for e in EPOCHS]
    # one line per width in every panel
    assert all(len([ln for ln in ax.get_lines() if ln.get_marker() not in ("None", "")]) == 3 for ax in axes)
    texts = [t.get_text() for sub in fig.subfigs for leg in sub.legends for t in leg.get_texts()]
    for w in (*WIDTHS["mlp"], *WIDTHS["cnn"]):
        assert f"width n = {w}" in texts
    # per epoch, the fitted slope of rel_frobenius vs width (two seeds: with a CI)
    assert sum(t.startswith("epoch ") and "slope −" in t and "[" in t for t in texts) == 2 * len(EPOCHS)
    assert "mnist5k" in fig.get_suptitle() and "O = 10" in fig.get_suptitle()


def test_figure_uses_summary_slopes_and_reports_missing_data():
    data = synthetic_frame()
    summary = pd.DataFrame([
        {"experiment": "training", "arch": a, "depth": 2 if a == "mlp" else 1, "epoch": e, "kernel": "pntk",
         "metric": "rel_frobenius", "slope": -0.123, "slope_ci_low": -0.2, "slope_ci_high": -0.1}
        for a in WIDTHS for e in EPOCHS
    ])
    fig = fig_training.render(data, summary)
    texts = [t.get_text() for sub in fig.subfigs for leg in sub.legends for t in leg.get_texts()]
    assert sum("slope −0.12 [−0.20, −0.10]" in t for t in texts) == 2 * len(EPOCHS)
    with pytest.raises(MissingDataError, match="rel_frobenius"):
        render("fig_training", data[data["metric"] != "rel_frobenius"])
    with pytest.raises(SuiteError, match="epoch"):
        render("fig_training", data.drop(columns="epoch"))
