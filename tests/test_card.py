"""The approximation card (suite.cards, ``python -m suite card``): its numbers against the
experiments' own metrics and against independent computations, every example, the CLI, the
figure, the report section and bad inputs."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import textwrap

import jax
import jax.experimental
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.figure import Figure

import suite
from suite import _nt, cards, cli, kernels, paths, report
from suite.errors import MemoryBudgetError, SuiteError
from suite.experiments import common, convergence, regression, spectrum
from suite.figures import card as fig_card

needs_nt = pytest.mark.skipif(not _nt.available(), reason=f"neural-tangents does not import: {_nt.IMPORT_ERROR}")

#: Examples needing an optional framework skip with the reason when it is absent.
FRAMEWORK_SKIP = {
    name: pytest.mark.skipif(
        importlib.util.find_spec(package) is None,
        reason=f"{package} is not installed (optional: pip install -e '.[frameworks]')",
    )
    for name, package in {"flax_linen": "flax", "flax_nnx": "flax", "equinox_mlp": "equinox"}.items()
}


# --------------------------------------------------------------------------- helpers


def mlp(widths=(12, 16, 5), seed=0, dtype=jnp.float32):
    """A tiny plain-jax MLP (apply_fn, params) with nested-dict params."""
    keys = jax.random.split(jax.random.PRNGKey(seed), len(widths) - 1)
    params = {f"l{i}": {"w": (jax.random.normal(k, (a, b)) / np.sqrt(a)).astype(dtype), "b": jnp.full((b,), 0.1, dtype)}
              for i, (k, a, b) in enumerate(zip(keys, widths[:-1], widths[1:], strict=True))}

    def apply_fn(p, x):
        h = x.reshape(x.shape[0], -1)
        for i in range(len(p) - 1):
            h = jnp.tanh(h @ p[f"l{i}"]["w"] + p[f"l{i}"]["b"])
        last = p[f"l{len(p) - 1}"]
        return h @ last["w"] + last["b"]

    return apply_fn, params


def independent_entk(apply_fn, params, x) -> np.ndarray:
    """(N, N, O, O) eNTK from jax.jacrev of the whole batch, in float64 numpy (no suite kernel)."""
    jac = jax.jacrev(lambda p: apply_fn(p, x))(params)
    n, o = apply_fn(params, x).shape
    flat = np.concatenate([np.asarray(leaf, np.float64).reshape(n, o, -1) for leaf in jax.tree_util.tree_leaves(jac)], axis=2)
    return np.einsum("aip,bjp->abij", flat, flat)


def kron_error(full: np.ndarray, k: np.ndarray) -> float:
    """||Theta - K x I||_F / ||Theta||_F with the Kronecker product formed explicitly."""
    n, _, o, _ = full.shape
    mat = full.transpose(0, 2, 1, 3).reshape(n * o, n * o)
    return float(np.linalg.norm(mat - np.kron(k, np.eye(o))) / np.linalg.norm(mat))


def metric_value(rows, kernel: str, metric: str) -> float:
    (value,) = rows.query("kernel == @kernel and metric == @metric")["value"].to_numpy()
    return float(value)


@pytest.fixture(scope="module")
def tiny():
    apply_fn, params = mlp()
    x = jax.random.normal(jax.random.PRNGKey(7), (24, 12), jnp.float32)
    y = np.arange(24) % 5
    return apply_fn, params, x, y


@pytest.fixture(scope="module")
def tiny_card(tiny):
    apply_fn, params, x, y = tiny
    return cards.card(apply_fn, params, x, y, n_probe=12, key=3, name="tiny")


# --------------------------------------------------------------------------- agreement with the experiments


@needs_nt
@pytest.mark.parametrize("arch, depth, width", [("mlp", 1, 64), ("cnn", 1, 16)])
def test_card_matches_convergence_and_spectrum_metrics(arch, depth, width):
    """Done-when: on a stax network the card's numbers are the experiments' own, to 1e-6."""
    cfg = convergence.Config(arch, depth, width, seed=2, n_inputs=10, dtype="float32")
    conv = convergence.run(cfg)
    spec = spectrum.run(cfg)
    x = common.inputs(cfg.dataset, cfg.n_inputs, cfg.data_seed, cfg.dtype)
    model, params = common.network(cfg.model_config(), cfg.seed, tuple(x.shape[1:]), cfg.dtype)
    c = cards.card(model.apply, params, x, n_probe=cfg.n_inputs, key=jax.random.PRNGKey(cfg.seed), timing=False)
    assert c.data["probe_indices"] == list(range(cfg.n_inputs))  # all of x, in its order
    assert c.metric("entk", "max_offdiag") == pytest.approx(metric_value(conv, "entk", "max_offdiag"), abs=1e-6)
    for kernel in kernels.APPROXIMATIONS:
        for metric in ("rel_frobenius", "max_diag_dev"):
            assert c.metric(kernel, metric) == pytest.approx(metric_value(conv, kernel, metric), abs=1e-6), (kernel, metric)
    for kernel in spectrum.KERNELS:
        for metric in ("lambda_max_rel_err", "spectrum_rel_err"):
            assert c.metric(kernel, metric) == pytest.approx(metric_value(spec, kernel, metric), abs=1e-6), (kernel, metric)


@needs_nt
def test_regression_rows_match_the_regression_experiment():
    cfg = regression.Config("mlp", 2, 32, 1, n_train=12, n_test=6, dtype="float32")
    rows = regression.run(cfg)
    train, test = regression.split(cfg.dataset, cfg.n_outputs, cfg.n_train, cfg.n_test, cfg.data_seed)
    x = np.concatenate([train.x, test.x]).astype(np.float32)
    model, params = common.network(cfg.model_config(), cfg.seed, tuple(x.shape[1:]), cfg.dtype)
    full = np.asarray(common.exact_entk(model.apply, params, x), np.float64)
    labels = np.concatenate([train.y, test.y])
    targets = np.eye(10)[labels] - 0.1  # what the card makes of labels: centred one-hot
    np.testing.assert_allclose(targets[: cfg.n_train], train.targets, atol=1e-12)
    got = cards.regression_rows(full, targets, labels, range(12), range(12, 18), regression.RIDGES)
    for r in got:
        at = rows[rows["ridge"] == r["ridge"]]
        assert r["pred_rel_diff"] == pytest.approx(metric_value(at, "pntk", "pred_rel_diff"), abs=1e-6)
        assert r["agreement"] == pytest.approx(metric_value(at, "pntk", "agreement"), abs=1e-6)
        assert r["entk_acc"] == pytest.approx(metric_value(at, "entk", "test_acc"), abs=1e-6)
        assert r["pntk_acc"] == pytest.approx(metric_value(at, "pntk", "test_acc"), abs=1e-6)


# --------------------------------------------------------------------------- independent computations


def test_metrics_against_an_independent_entk(tiny, tiny_card):
    apply_fn, params, x, _ = tiny
    d = tiny_card.data
    xp = x[np.asarray(d["probe_indices"])]
    full = independent_entk(apply_fn, params, xp)
    o = full.shape[-1]
    pntk = full.sum(axis=(2, 3)) / o
    assert tiny_card.metric("pntk", "rel_frobenius") == pytest.approx(kron_error(full, pntk), rel=1e-4)
    trace = np.einsum("abii->ab", full) / o
    assert tiny_card.metric("trace_ntk", "rel_frobenius") == pytest.approx(kron_error(full, trace), rel=1e-4)
    assert tiny_card.metric("logit_ntk", "rel_frobenius") == pytest.approx(kron_error(full, full[:, :, 0, 0]), rel=1e-4)
    mean_diag = np.mean([full[a, a, i, i] for a in range(full.shape[0]) for i in range(o)])
    off = max(abs(full[a, b, i, j]) for a in range(full.shape[0]) for b in range(full.shape[0])
              for i in range(o) for j in range(o) if i != j)
    assert tiny_card.metric("entk", "max_offdiag") == pytest.approx(off / mean_diag, rel=1e-4)
    mat = full.transpose(0, 2, 1, 3).reshape(full.shape[0] * o, -1)
    top, top_p = np.linalg.eigvalsh(mat)[-1], np.linalg.eigvalsh(pntk)[-1]
    assert tiny_card.metric("pntk", "lambda_max_rel_err") == pytest.approx(abs(top - top_p) / top, rel=1e-3)
    heat = np.abs(full).mean(axis=(0, 1))
    np.testing.assert_allclose(d["block_structure"]["map"], heat / np.mean(np.diag(heat)), rtol=1e-4)


def test_regression_against_independent_solves(tiny, tiny_card):
    apply_fn, params, x, y = tiny
    reg = tiny_card.data["regression"]
    test_idx = np.asarray(reg["test_indices"])
    train_idx = np.asarray([i for i in tiny_card.data["probe_indices"] if i not in set(test_idx)])
    assert len(test_idx) == reg["n_test"] == 4 and len(train_idx) == reg["n_train"] == 8
    xs = np.concatenate([np.asarray(x)[train_idx], np.asarray(x)[test_idx]])
    full = independent_entk(apply_fn, params, jnp.asarray(xs))
    n, o = len(train_idx), 5
    targets = np.eye(o)[y[train_idx]] - 1 / o
    mat = full.transpose(0, 2, 1, 3).reshape(len(xs) * o, -1)
    k = full.sum(axis=(2, 3)) / o
    for row in reg["rows"]:
        lam = row["ridge"] * np.mean([full[a, a, i, i] for a in range(n) for i in range(o)])
        f_e = (mat[n * o:, : n * o] @ np.linalg.solve(mat[: n * o, : n * o] + lam * np.eye(n * o), targets.reshape(-1))).reshape(-1, o)
        f_p = k[n:, :n] @ np.linalg.solve(k[:n, :n] + lam * np.eye(n), targets)
        if row["ridge"] > 0:  # ridgeless solves amplify rounding differences
            assert row["pred_rel_diff"] == pytest.approx(np.linalg.norm(f_e - f_p) / np.linalg.norm(f_e), rel=1e-3)
            assert row["entk_acc"] == pytest.approx(np.mean(f_e.argmax(1) == y[test_idx]))
            assert row["pntk_acc"] == pytest.approx(np.mean(f_p.argmax(1) == y[test_idx]))


def test_cost_is_measured_up_to_n_and_sizes_are_exact(tiny, tiny_card):
    cost = tiny_card.data["cost"]
    assert cost["n_inputs"] == 24
    o, item = 5, 4
    for name, entry in cost["kernels"].items():
        sizes = [r["n"] for r in entry["at"]]
        assert sizes[:3] == cards.timing_sizes(12) == [3, 6, 12]
        assert sizes[-1] == 24  # a tiny network is timed on all N inputs (doubling, capped at N)
        assert all(r["seconds"] > 0 and r["bytes"] > 0 for r in entry["at"])
        per_pair = o * o if name == "entk" else 1
        assert entry["result_bytes_at_n"] == 24 * 24 * per_pair * item
        assert entry["seconds_at_n"] > 0 and entry["bytes_at_n"] >= entry["result_bytes_at_n"] * 0.5
        # Timed at N itself: both bounds and the estimate are that measurement.
        assert entry["seconds_at_n_low"] == entry["seconds_at_n"] == entry["seconds_at_n_high"] == entry["at"][-1]["seconds"]
    md = tiny_card.markdown()
    assert "(measured)" in md and "## Cost" in md


def test_time_at_n_shows_the_bounds_when_extrapolated():
    entry = {"at": [{"n": 64, "seconds": 2.0}], "seconds_at_n": 600.0, "seconds_at_n_low": 62.5, "seconds_at_n_high": 1953.0}
    assert cards._time_at_n(entry, 2000) == "10 min (62.5 s – 32.5 min)"
    assert cards._time_at_n({**entry, "at": [{"n": 2000, "seconds": 2.0}]}, 2000) == "10 min"


def test_fit_quadratic_recovers_a_polynomial():
    ns = [4, 8, 16, 32]
    coef = cards.fit_quadratic(ns, [0.5 + 0.02 * n + 1e-3 * n * n for n in ns])
    np.testing.assert_allclose(coef, [0.5, 0.02, 1e-3], rtol=1e-6)
    assert cards.evaluate_fit(coef, 1000) == pytest.approx(0.5 + 20 + 1000)
    # Non-negative: a decreasing series is fitted by a constant, never extrapolated below zero.
    assert all(c >= 0 for c in cards.fit_quadratic(ns, [4.0, 3.0, 2.0, 1.0]))


# --------------------------------------------------------------------------- recommendation and text


def _synthetic(t2: float, agreement: float | None = None, o: int = 10) -> dict:
    m = {"rel_frobenius": t2, "max_diag_dev": t2, "lambda_max_rel_err": t2 / 2, "spectrum_rel_err": t2}
    data = {
        "n_outputs": o, "n_probe": 32, "n_inputs": 50_000,
        "metrics": {"entk": {"max_offdiag": 0.1}, "pntk": m, "trace_ntk": m, "logit_ntk": m, "projected_ntk": m},
        "regression": None, "cost": None,
    }
    if agreement is not None:
        data["regression"] = {"ridge": 0.1, "n_test": 10, "rows": [
            {"ridge": 0.1, "agreement": agreement, "entk_acc": 0.8, "pntk_acc": 0.7}]}
    return data


@pytest.mark.parametrize("t2, agreement, start", [
    (0.05, None, "The pNTK is a close stand-in"),
    (0.05, 0.5, "The pNTK only roughly"),
    (0.2, 0.99, "The pNTK only roughly"),
    (0.5, None, "The pNTK is not a faithful"),
])
def test_recommendation_states_its_numbers(t2, agreement, start):
    text = cards.recommendation(_synthetic(t2, agreement))
    assert text.startswith(start)
    assert f"{100 * t2:.3g}%" in text and "λ_max" in text and "\n" not in text
    if agreement is not None:
        assert f"{100 * agreement:.3g}%" in text and "0.70 vs eNTK 0.80" in text


def test_recommendation_gives_the_cost_at_n(tiny_card):
    text = tiny_card.recommendation
    cost = tiny_card.data["cost"]["kernels"]
    assert "on all 24 inputs the eNTK takes" in text
    assert cards.format_bytes(cost["entk"]["result_bytes_at_n"]) in text
    assert cards.format_bytes(cost["pntk"]["result_bytes_at_n"]) in text


def test_json_round_trip_and_figure(tmp_path, tiny_card):
    written = tiny_card.save(tmp_path / "c")
    assert {p.name for p in (tmp_path / "c").iterdir()} == {"card.json", "card.md", "card.png", "card.svg"}
    data = cards.load(written["json"].parent)
    assert data["metrics"] == json.loads(tiny_card.to_json())["metrics"]
    md = written["markdown"].read_text()
    assert tiny_card.recommendation in md and "![eNTK block structure and the errors](card.png)" in md
    fig = fig_card.render(data)
    assert isinstance(fig, Figure)
    heat, bars = fig.axes[0], fig.axes[1]
    norm = heat.images[0].norm
    assert (norm.vmin, norm.vmax) == fig_card.HEAT_RANGE  # the same colours on every card
    np.testing.assert_allclose(heat.images[0].get_array(), np.clip(data["block_structure"]["map"], norm.vmin, norm.vmax))
    assert len(bars.patches) == 3 * 4  # three errors for each of the four approximations


def test_load_refuses_missing_or_foreign_files(tmp_path):
    with pytest.raises(SuiteError, match="does not exist"):
        cards.load(tmp_path)
    (tmp_path / "card.json").write_text('{"schema_version": 99}')
    with pytest.raises(SuiteError, match="schema version"):
        cards.load(tmp_path)


def test_report_shows_both_checkpoint_cards_side_by_side(tmp_path, monkeypatch, tiny_card):
    monkeypatch.setattr(paths, "CARDS", tmp_path / "cards")
    out = tmp_path / "run"
    assert report._cards_section(out) == []  # nothing when the cards are absent
    tiny_card.save(tmp_path / "cards" / "init")
    assert report._cards_section(out) == []  # ... or only one of them
    trained = cards.Card({**tiny_card.data, "recommendation": "after training: different"})
    trained.save(tmp_path / "cards" / "trained")
    text = "\n".join(report._cards_section(out))
    assert "| | at initialization | after training |" in text
    assert tiny_card.recommendation in text and "after training: different" in text
    assert "../cards/init/card.png" in text and "../cards/trained/card.md" in text
    assert f"{tiny_card.metric('pntk', 'rel_frobenius'):.4g}" in text


# --------------------------------------------------------------------------- examples and CLI


EXAMPLES = ["plain_jax", "stax_cnn", "flax_linen", "flax_nnx", "equinox_mlp"]


@pytest.mark.parametrize("name", [pytest.param(n, marks=[FRAMEWORK_SKIP[n]] if n in FRAMEWORK_SKIP else
                                                  [needs_nt] if n == "stax_cnn" else []) for n in EXAMPLES])
def test_every_example_cards_and_matches_an_independent_entk(name):
    # jax's float64 mode (on in these tests) makes stax layers return float64 from float32
    # inputs, which its next Conv refuses; the example is written as users run it, without it.
    with jax.experimental.disable_x64() if name == "stax_cnn" else contextlib.nullcontext():
        check_example(name)


def check_example(name: str) -> None:
    spec = f"suite.examples.{name}:build"
    apply_fn, params, x, y = cards.load_factory(spec)
    assert x.shape[0] == 1797 and y.shape == (1797,)
    c = cards.card_from_factory(spec, n_probe=6, timing=False)
    assert c.data["name"] == spec and c.data["n_outputs"] == 10 and c.data["regression"]["n_test"] == 2
    xp = jnp.asarray(np.asarray(x)[np.asarray(c.data["probe_indices"])])
    full = independent_entk(apply_fn, params, xp)
    assert c.metric("pntk", "rel_frobenius") == pytest.approx(kron_error(full, full.sum(axis=(2, 3)) / 10), rel=2e-3)
    assert c.recommendation.startswith("The pNTK")


def test_trained_checkpoint_example_differs_from_its_initialization():
    from suite.examples import trained_cnn

    small = {"width": 4, "dataset": "digits", "n_train": 100, "n_test": 40, "n_inputs": 10, "batch_size": 50, "epochs": 1}
    apply_fn, trained, x, y = trained_cnn.build(**small)
    _, init, x0, y0 = trained_cnn.build_init(**small)
    assert x.shape == (40, 8, 8, 1) and np.array_equal(x, x0) and np.array_equal(y, y0)
    moved = [float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree_util.tree_leaves(trained), jax.tree_util.tree_leaves(init), strict=True)]
    assert max(moved) > 0
    c_init = cards.card(apply_fn, init, x, y, n_probe=6, timing=False)
    c_trained = cards.card(apply_fn, trained, x, y, n_probe=6, timing=False)
    assert c_init.data["probe_indices"] == c_trained.data["probe_indices"]
    assert c_init.metric("pntk", "rel_frobenius") != c_trained.metric("pntk", "rel_frobenius")


def test_cli_writes_the_card(tmp_path, capsys):
    out = tmp_path / "card"
    assert cli.main(["card", "suite.examples.plain_jax:build", "--n-probe", "6", "--out", str(out), "--no-timing",
                     "--seed", "4"]) == 0
    printed = capsys.readouterr().out
    data = cards.load(out)
    assert data["n_probe"] == 6 and data["cost"] is None and data["name"] == "suite.examples.plain_jax:build"
    assert data["recommendation"] in printed and "card.md" in printed
    assert (out / "card.png").stat().st_size > 10_000


def test_suite_card_is_the_function():
    assert suite.card is cards.card


# --------------------------------------------------------------------------- bad inputs


@pytest.fixture
def factories(tmp_path, monkeypatch):
    (tmp_path / "my_factories.py").write_text(textwrap.dedent("""
        import numpy as np
        import jax.numpy as jnp

        def apply_fn(p, x):
            return x.reshape(x.shape[0], -1) @ p["w"]

        PARAMS = {"w": jnp.ones((4, 3), jnp.float32)}
        X = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
        NOT_CALLABLE = 3

        def good():
            return apply_fn, PARAMS, X, np.arange(10) % 3

        def boom():
            raise RuntimeError("no checkpoint at /nowhere")

        def not_tuple():
            return {"apply_fn": apply_fn}

        def two():
            return apply_fn, PARAMS

        def five():
            return apply_fn, PARAMS, X, None, None

        def not_fn():
            return PARAMS, apply_fn, X

        def x_list():
            return apply_fn, PARAMS, X.tolist()

        def bad_output():
            return (lambda p, x: apply_fn(p, x)[:, 0]), PARAMS, X

        def batch_sum():
            return (lambda p, x: apply_fn(p, x).sum(0, keepdims=True)), PARAMS, X

        def y_short():
            return apply_fn, PARAMS, X, np.arange(9) % 3
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_factories"


@pytest.mark.parametrize("factory, match", [
    ("boom", "factory my_factories:boom failed: RuntimeError: no checkpoint at /nowhere"),
    ("not_tuple", "must return a tuple"),
    ("two", "returned 2 values"),
    ("five", "returned 5 values"),
    ("not_fn", "first value must be apply_fn"),
    ("NOT_CALLABLE", "is a int, not a function"),
    ("missing", "has no 'missing'; its functions: .*good"),
])
def test_bad_factories_are_named(factories, factory, match):
    with pytest.raises(SuiteError, match=match):
        cards.load_factory(f"{factories}:{factory}")


@pytest.mark.parametrize("spec, match", [
    ("no_colon", "expected MODULE:FACTORY"),
    ("a:b:c", "expected MODULE:FACTORY"),
    ("not_a_module_xyz:build", "cannot import 'not_a_module_xyz'"),
])
def test_bad_specs(spec, match):
    with pytest.raises(SuiteError, match=match):
        cards.load_factory(spec)


@pytest.mark.parametrize("factory, match", [
    ("x_list", "x must be an array"),
    ("bad_output", r"shape \(N, O\)"),
    ("batch_sum", r"for 5 inputs it returned \(1, 3\)"),
    ("y_short", "y has shape"),
])
def test_bad_factory_outputs_are_refused_by_the_card(factories, factory, match):
    with pytest.raises(SuiteError, match=match):
        cards.card_from_factory(f"{factories}:{factory}", n_probe=5, timing=False)


def test_cli_reports_bad_input_in_one_line(factories, capsys):
    assert cli.main(["card", f"{factories}:two"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: factory my_factories:two returned 2 values") and err.count("\n") == 1


@pytest.mark.parametrize("kwargs, match", [
    ({"n_probe": 11}, "n_probe = 11 exceeds the 10 inputs"),
    ({"n_probe": 1}, "n_probe must be at least 2"),
    ({"n_probe": True}, "n_probe must be an integer"),
    ({"n_probe": 2.5}, "n_probe must be an integer"),
    ({"key": "seed"}, "key must be a jax PRNG key"),
    ({"key": -1}, "key must be"),
    ({"ridge": -0.1}, "ridge must be a finite number"),
    ({"implementation": "fastest"}, "unknown implementation"),
])
def test_bad_arguments(kwargs, match):
    apply_fn, params = mlp((4, 3))
    x = np.ones((10, 4), np.float32)
    with pytest.raises(SuiteError, match=match):
        cards.card(apply_fn, params, x, timing=False, **kwargs)


@pytest.mark.parametrize("x, y, match", [
    (np.ones((10, 4), np.int32), None, "dtype int32"),
    (np.ones(10, np.float32), None, "leading batch axis"),
    (np.ones((1, 4), np.float32), None, "at least 2"),
    (np.full((10, 4), np.nan, np.float32), None, "x contains NaN"),
    (np.ones((10, 4), np.float32), np.arange(10), r"labels in \[0, 9\] but the network has O=3"),
    (np.ones((10, 4), np.float32), np.linspace(0, 1, 10), "labels must be integers"),
    (np.ones((10, 4), np.float32), np.ones((10, 2)), r"targets of shape \(10, 3\)"),
    (np.ones((10, 4), np.float32), "labels", "y must be an array"),
])
def test_bad_inputs(x, y, match):
    apply_fn, params = mlp((4, 3))
    with pytest.raises(SuiteError, match=match):
        cards.card(apply_fn, params, x, y, n_probe=4, timing=False)


def test_labels_need_three_probe_inputs():
    apply_fn, params = mlp((4, 3))
    x = np.ones((10, 4), np.float32)
    with pytest.raises(SuiteError, match="at least 3"):
        cards.card(apply_fn, params, x, np.arange(10) % 3, n_probe=2, timing=False)


def test_probe_over_the_budget_is_refused_before_allocation(monkeypatch):
    apply_fn, params = mlp((4, 16, 10))
    x = np.ones((64, 4), np.float32)

    def must_not_run(*args, **kwargs):
        raise AssertionError("the eNTK was computed despite the budget")

    monkeypatch.setattr(common, "exact_entk", must_not_run)
    monkeypatch.setenv("SUITE_MEMORY_BUDGET", "2MB")
    need = cards.analysis_bytes(64, 10)
    assert need > 2e6
    with pytest.raises(MemoryBudgetError, match=r"n_probe=64 inputs with O=10 .* pass n_probe=(\d+) or less") as err:
        cards.card(apply_fn, params, x, n_probe=64, timing=False)
    fits = int(err.value.args[0].split("pass n_probe=")[1].split()[0])

    def need(m: int) -> int:  # P = 4*16 + 16 + 16*10 + 10 = 250 parameters
        return cards.card_bytes(kernels.Problem(m, m, 10, 250, np.dtype("float32")), kernels.reproducible_implementation())

    assert 2 <= fits < 64 and need(fits) <= 2_000_000 < need(fits + 1)  # the largest probe that fits


def test_default_probe_size():
    assert cards.default_n_probe(1797, 10) == 64
    assert cards.default_n_probe(40, 10) == 40
    assert cards.default_n_probe(50_000, 100) == 16
    assert cards.default_n_probe(50_000, 1000) == 16
    assert cards.default_n_probe(50_000, 40) == 32
