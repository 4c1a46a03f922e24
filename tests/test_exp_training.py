"""The training experiment (pNTK vs eNTK through SGD) and its figure, on tiny problems.

Tiny cases use the 8x8 ``digits`` data (the real grid uses ``mnist5k``) so that the file stays
well under a minute; the code path is the same.
"""

from __future__ import annotations

import re

import jax
import numpy as np
import pandas as pd
import pytest
import scipy.linalg
from matplotlib.figure import Figure

from suite import kernels
from suite.errors import SuiteError
from suite.experiments import EXPERIMENTS, TIDY_COLUMNS, common, training
from suite.figures import FIGURES, MissingDataError, render
from suite.figures import training as fig_training

TINY = dict(dataset="digits", n_inputs=6, n_outputs=10, n_train=64, n_test=40, batch_size=16, dtype="float64")
KERNEL_METRICS = {("pntk", "rel_frobenius"), ("pntk", "lambda_max_rel_err"), ("entk", "offdiag_mass"),
                  ("entk", "readout_share")}
NETWORK_METRICS = {("network", "train_loss"), ("network", "train_acc"), ("network", "test_acc")}


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
    assert {"train_loss", "train_acc", "test_acc", "offdiag_mass", "lambda_max_rel_err", "entk_drift",
            "readout_share", "lr_ratio"} <= set(exp.report_only_metrics)
    for name in ("quick", "full"):
        configs = exp.grid(name)
        for arch in {c.arch for c in configs}:
            # every width at one rate below and one above the edge of stability (THEORY.md §9)
            assert {c.lr for c in configs if c.arch == arch} == set(training.LEARNING_RATES[arch])
            for lr in training.LEARNING_RATES[arch]:
                widths = {c.width for c in configs if c.arch == arch and c.lr == lr}
                assert len(widths) >= 3 and max(widths) >= 16 * min(widths)  # a slope can be fitted
        assert all(c.dataset == "mnist5k" and c.parameterization == "ntk" for c in configs)
        assert all(c.epochs >= 8 and c.n_train // c.batch_size * c.epochs >= 80 for c in configs)
        assert len({c.seed for c in configs}) >= 3


def test_tiny_run_is_tidy(tiny_run):
    config, rows = tiny_run
    assert config.checkpoints == (0, 1)
    assert set(TIDY_COLUMNS) | {"epoch", "n_params", "lr", "loss"} <= set(rows.columns)
    assert (rows["width"] == 16).all() and np.isfinite(rows["value"]).all()
    at = {e: set(zip(g["kernel"], g["metric"], strict=True)) for e, g in rows.groupby("epoch")}
    assert at[0] == KERNEL_METRICS | NETWORK_METRICS | {("network", "lr_ratio")}
    assert at[1] == KERNEL_METRICS | NETWORK_METRICS | {("entk", "entk_drift")}
    assert len(rows) == 16
    acc = rows.query("metric in ['test_acc', 'train_acc', 'readout_share']")["value"]
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


def test_readout_share_is_the_exactly_kronecker_part_of_the_entk(tiny_run):
    """Recompute the readout layer's eNTK term from its own Jacobian: it is K_ro x I_O exactly,
    its share matches readout_share, and the pNTK's error comes only from the other layers."""
    config, rows = tiny_run
    d = training.split("digits", 64, 40, 6, 0, "float64", "xent")
    model, params = common.network(config.model_config(), config.seed, tuple(d.probe.shape[1:]), "float64")
    head = params[:-1]
    jac = jax.jacrev(lambda ro: model.apply([*head, ro], d.probe))(params[-1])  # leaves (N, O, *leaf)
    n, o = 6, config.n_outputs
    flat = np.concatenate([np.asarray(j).reshape(n * o, -1) for j in jax.tree_util.tree_leaves(jac)], axis=1)
    theta_ro = (flat @ flat.T).reshape(n, o, n, o).transpose(0, 2, 1, 3)  # (N, N, O, O)
    k_ro = training.readout_kernel(model.apply, params, d.probe, o)
    assert np.allclose(theta_ro, np.einsum("ab,ij->abij", k_ro, np.eye(o)), rtol=1e-10, atol=1e-12)
    full = np.asarray(kernels.entk(model.apply, params, d.probe, implementation="jax"))
    share = np.linalg.norm(theta_ro) / np.linalg.norm(full)
    got = rows[(rows["epoch"] == 0)].set_index("metric")["value"]
    assert got["readout_share"] == pytest.approx(share, rel=1e-8)
    assert 0 < share < 1
    below = full - theta_ro  # the other layers' term carries all of the error
    p_below = np.asarray(kernels.KERNELS["pntk"].from_entk(below))
    assert common.kron_distance(below, p_below) / np.linalg.norm(full) == pytest.approx(got["rel_frobenius"], rel=1e-8)


@pytest.fixture(scope="module")
def two_regimes() -> dict[tuple[float, int], pd.DataFrame]:
    """An MLP at widths 64 and 1024, trained 2 epochs at lr 1 (below the edge of stability) and
    lr 16 (above it): {(lr, width): rows}."""
    setup = dict(TINY, n_inputs=12, n_train=128, batch_size=32)
    return {(lr, w): training.run(training.Config("mlp", 1, w, 0, epochs=2, lr=lr, **setup))
            for lr in (1.0, 16.0) for w in (64, 1024)}


def _at(rows: pd.DataFrame, metric: str, epoch: int) -> float:
    return float(rows[(rows["metric"] == metric) & (rows["epoch"] == epoch)]["value"].iloc[0])


def test_lr_ratio_is_the_edge_of_stability_of_the_probe_kernel(two_regimes):
    """lr_ratio = lr (1/O) lambda_max(pNTK) / (2 N) at init: proportional to lr for one network,
    within 10% of the Gauss-Newton edge lr lambda_max(J^T H J) / (2 N) from the exact eNTK with
    the uniform-softmax curvature H = (I - 1 1^T / O) / O per input, and below the edge with the
    softmax curvature at the actual initial outputs (O(1) logits make it larger; THEORY.md §9)."""
    low, high = two_regimes[1.0, 1024], two_regimes[16.0, 1024]
    assert _at(high, "lr_ratio", 0) == pytest.approx(16 * _at(low, "lr_ratio", 0), rel=1e-12)
    assert _at(low, "lr_ratio", 0) < 0.5 < 1.5 < _at(high, "lr_ratio", 0)
    config = training.Config("mlp", 1, 1024, 0, epochs=2, lr=16.0, **dict(TINY, n_inputs=12, n_train=128, batch_size=32))
    d = training.split("digits", 128, 40, 12, 0, "float64", "xent")
    model, params = common.network(config.model_config(), 0, tuple(d.probe.shape[1:]), "float64")
    theta = np.asarray(kernels.as_matrix(kernels.entk(model.apply, params, d.probe, implementation="jax")))
    def edge(p: np.ndarray) -> float:
        h = np.zeros_like(theta)
        for b in range(12):  # block-diagonal softmax curvature diag(p) - p p^T
            h[b * 10:(b + 1) * 10, b * 10:(b + 1) * 10] = np.diag(p[b]) - np.outer(p[b], p[b])
        root = np.real(scipy.linalg.sqrtm(h))
        return 16.0 * np.linalg.eigvalsh(root @ theta @ root)[-1] / (2 * 12)

    assert _at(high, "lr_ratio", 0) == pytest.approx(edge(np.full((12, 10), 0.1)), rel=0.1)
    assert edge(np.asarray(jax.nn.softmax(model.apply(params, d.probe)))) > 1.5 * _at(high, "lr_ratio", 0)


def test_below_the_edge_training_is_lazy_and_above_it_the_kernel_moves(two_regimes):
    """THEORY.md §9. Below the edge the drift falls with width (lazy training: O(n^-1/2), so 16x
    the width at least halves it); above it the wide network's kernel moves by O(1) (> 0.2, and
    more than 5x the lazy drift), its readout share falls and the pNTK's error grows."""
    lazy = {w: _at(two_regimes[1.0, w], "entk_drift", 2) for w in (64, 1024)}
    assert lazy[1024] < 0.5 * lazy[64]
    wide = two_regimes[16.0, 1024]
    assert _at(wide, "entk_drift", 2) > max(0.2, 5 * lazy[1024])
    assert _at(wide, "readout_share", 2) < 0.9 * _at(wide, "readout_share", 0)
    assert _at(wide, "rel_frobenius", 2) > 1.2 * _at(wide, "rel_frobenius", 0)
    for rows in two_regimes.values():  # the networks did train
        assert _at(rows, "train_acc", 2) > 2 * _at(rows, "train_acc", 0)


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


def test_a_loss_that_explodes_without_overflowing_is_divergence():
    with pytest.raises(SuiteError, match=r"diverged \(training loss .*lr=3"):
        training._require_trained(40.0, 3.0, training.Config("mlp", 1, 16, 0, lr=3.0), 2)
    training._require_trained(29.0, 3.0, training.Config("mlp", 1, 16, 0, lr=3.0), 2)  # below 10x: fine


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
EPOCHS = (0, 1, 2, 4, 8)
RATES = {"mlp": (4.0, 32.0), "cnn": (4.0, 12.0)}


def synthetic_frame() -> pd.DataFrame:
    """Tidy training rows at two rates per arch: errors ~ width^-1/2 growing with epoch, a
    falling loss, rising accuracies, a lr_ratio at epoch 0."""
    rng = np.random.default_rng(0)
    rows = []
    for arch, widths in WIDTHS.items():
        for lr in RATES[arch]:
            for width in widths:
                for seed in (0, 1):
                    for epoch in EPOCHS:
                        noise = float(np.exp(0.05 * rng.standard_normal()))
                        values = {
                            ("pntk", "rel_frobenius"): 3 * width**-0.5 * (1 + 0.2 * epoch) * noise,
                            ("pntk", "lambda_max_rel_err"): 2 * width**-0.5 * noise,
                            ("entk", "offdiag_mass"): 9 * width**-0.5 * (1 + 0.1 * epoch) * noise,
                            ("entk", "readout_share"): 0.5 - 0.02 * epoch,
                            ("network", "train_loss"): 2.3 / (1 + epoch) * noise,
                            ("network", "train_acc"): min(0.1 + 0.25 * epoch, 1.0),
                            ("network", "test_acc"): min(0.1 + 0.2 * epoch, 0.9),
                        }
                        if epoch:
                            values["entk", "entk_drift"] = lr / 8 * width**-0.5 * noise
                        else:
                            values["network", "lr_ratio"] = lr / 6
                        for (kernel, metric), value in values.items():
                            rows.append({
                                "experiment": "training", "case_key": f"{arch}-{width}-{seed}-{lr}", "arch": arch,
                                "depth": 2 if arch == "mlp" else 1, "width": width, "seed": seed, "n_outputs": 10,
                                "dataset": "mnist5k", "n_inputs": 32, "parameterization": "ntk", "dtype": "float32",
                                "lr": lr, "epoch": epoch, "kernel": kernel, "metric": metric, "value": value,
                            })
    return pd.DataFrame(rows)


def _legend_texts(fig: Figure) -> list[str]:
    return [t.get_text() for sub in fig.subfigs for leg in sub.legends for t in leg.get_texts()]


def test_figure_renders_from_a_synthetic_frame():
    assert FIGURES["fig_training"].experiment == "training"
    fig = render("fig_training", synthetic_frame())
    assert isinstance(fig, Figure)
    axes = fig.get_axes()
    n_rows = len(fig_training.ROWS)  # error, drift, off-diagonal mass, lambda_max, readout share, accuracy
    assert len(axes) == 4 * n_rows  # one column per (arch, learning rate)
    titles = [ax.get_title() for ax in axes if ax.get_title()]
    assert titles == ["MLP (depth 2), lr 4\nlr = 0.7× the edge of stability",
                      "MLP (depth 2), lr 32\nlr = 5.3× the edge of stability",
                      "CNN (depth 1), lr 4\nlr = 0.7× the edge of stability",
                      "CNN (depth 1), lr 12\nlr = 2.0× the edge of stability"]
    scales = [ax.get_yscale() for ax in axes]
    assert scales == ["log", "log", "log", "log", "linear", "linear"] * 4
    for ax in axes:
        assert ax.get_xscale() == "symlog"  # checkpoints 0, 1, 2, 4, 8 evenly spaced
        assert [float(t) for t in ax.get_xticks()] == [float(e) for e in EPOCHS]
    column = axes[:n_rows]
    # one line per width in every panel; the drift row has no epoch 0; accuracy adds train (dashed)
    for ax, row in zip(column, fig_training.ROWS, strict=True):
        lines = [ln for ln in ax.get_lines() if ln.get_marker() not in ("None", "")]
        assert len(lines) == (6 if row[0] == "test_acc" else 3), row[0]
        if row[0] == "entk_drift":
            assert all(min(ln.get_xdata()) == 1 for ln in lines)
    assert sorted(ln.get_linestyle() for ln in column[-1].get_lines() if ln.get_marker() not in ("None", "")) == ["-"] * 3 + ["--"] * 3
    texts = _legend_texts(fig)
    for w in (*WIDTHS["mlp"], *WIDTHS["cnn"]):
        assert f"width n = {w}" in texts
    # per epoch and column, the fitted slope of rel_frobenius vs width (two seeds: with a CI)
    assert sum(t.startswith("epoch ") and "slope −" in t and "[" in t for t in texts) == 4 * len(EPOCHS)
    assert "mnist5k" in fig.get_suptitle() and "O = 10" in fig.get_suptitle()


def test_figure_uses_summary_slopes_per_rate_and_reports_missing_data():
    data = synthetic_frame()
    summary = pd.DataFrame([
        {"experiment": "training", "arch": a, "depth": 2 if a == "mlp" else 1, "epoch": e, "lr": lr,
         "kernel": "pntk", "metric": "rel_frobenius", "slope": -0.123 if lr == 4.0 else -0.321,
         "slope_ci_low": -0.2, "slope_ci_high": -0.1}
        for a in WIDTHS for lr in RATES[a] for e in EPOCHS
    ])
    fig = fig_training.render(data, summary)
    texts = _legend_texts(fig)
    assert sum("slope −0.12 [−0.20, −0.10]" in t for t in texts) == 2 * len(EPOCHS)
    assert sum("slope −0.32 [−0.20, −0.10]" in t for t in texts) == 2 * len(EPOCHS)
    with pytest.raises(MissingDataError, match="rel_frobenius"):
        render("fig_training", data[data["metric"] != "rel_frobenius"])
    with pytest.raises(SuiteError, match="epoch"):
        render("fig_training", data.drop(columns="epoch"))


def test_figure_of_older_data_without_rates_or_new_metrics():
    """Data of the first version (one rate, no lr column, no drift/readout/train_acc rows) still
    renders: one column per arch, only the rows present."""
    data = synthetic_frame()
    data = data[(data["lr"] == 4.0) & data["metric"].isin(["rel_frobenius", "lambda_max_rel_err", "offdiag_mass",
                                                           "train_loss", "test_acc"])].drop(columns="lr")
    fig = render("fig_training", data)
    assert len(fig.get_axes()) == 2 * 4
    assert [ax.get_title() for ax in fig.get_axes() if ax.get_title()] == ["MLP (depth 2)", "CNN (depth 1)"]


def test_findings_say_where_the_error_grows():
    """The report text is computed from the data: in the synthetic frame the error grows 2.6x (up
    to noise) from epoch 0 to 8 at every width and in every column, and the readout share falls
    0.50 -> 0.34."""
    assert FIGURES["fig_training"].findings is fig_training.findings
    text = fig_training.findings(synthetic_frame())
    assert len(re.findall(r"the pNTK error grew 2\.\d–[23]\.\d×", text)) == 4
    assert text.count("the readout share 0.50 → 0.34") == 4
    assert "MLP (depth 2), lr 32 (5.3× the edge of stability), epoch 0 → 8 (100% training accuracy, 90% test)" in text
    assert "The approximation degrades with training where the error grew at every width: MLP (depth 2), lr 4;" in text
    falling = synthetic_frame()
    falling.loc[falling["metric"] == "rel_frobenius", "value"] /= (1 + 0.2 * falling["epoch"]) ** 2
    assert "No setting's error grew" in fig_training.findings(falling)
    assert "It improved at every width for MLP (depth 2), lr 4" in fig_training.findings(falling)
