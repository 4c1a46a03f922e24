"""The outputs, parameterization and depth experiments (variants of the convergence case) and
their figures, on tiny configs and synthetic frames."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from suite import kernels, models, report, runner
from suite.errors import SuiteError
from suite.experiments import EXPERIMENTS, TIDY_COLUMNS, common, convergence, depth, outputs
from suite.experiments import parameterization as param_exp
from suite.figures import FIGURES, render, render_all
from suite.figures import depth as fig_depth
from suite.figures import outputs as fig_outputs

TINY = dict(dataset="digits", n_inputs=6, dtype="float64")
TINY_WIDTHS = (8, 32, 128)
TINY_OUTPUTS = (2, 5)


def _rows_of(frame: pd.DataFrame, kernel: str, metric: str) -> float:
    return frame.query("kernel == @kernel and metric == @metric")["value"].item()


def _independent_pntk_error(cfg: models.ModelConfig, seed: int, n_outputs: int) -> float:
    """||Theta - pNTK x I||_F / ||Theta||_F from the suite's jax path and the pNTK's own code
    path (one Jacobian of the summed logits), not from the eNTK blocks."""
    x = common.inputs("digits", TINY["n_inputs"], 0, "float64")
    model, params = common.network(cfg, seed, tuple(x.shape[1:]), "float64")
    mat = np.asarray(kernels.as_matrix(kernels.entk(model.apply, params, x, implementation="jax")))
    p = np.asarray(kernels.pntk(model.apply, params, x, implementation="jax"))
    return float(np.linalg.norm(mat - np.kron(p, np.eye(n_outputs))) / np.linalg.norm(mat))


# --------------------------------------------------------------------------- registration


@pytest.mark.parametrize(("name", "order"), [("outputs", 20), ("parameterization", 21), ("depth", 22)])
def test_registered_outside_verify(name: str, order: int) -> None:
    exp = EXPERIMENTS[name]
    assert exp.verify is False and exp.order == order and exp.version == "1"
    for grid in ("quick", "full"):
        configs = exp.grid(grid)
        keys = [runner.case_id(cfg) for cfg in configs]
        assert len(set(keys)) == len(keys), "two cases of one grid share a key"
    assert FIGURES[f"fig_{name}"].experiment == name


# --------------------------------------------------------------------------- grid designs


def test_outputs_grid_design() -> None:
    for grid, seeds, dataset, os_ in (("quick", 10, "digits", {2, 10, 100}),
                                      ("full", 8, "mnist5k14", {2, 5, 10, 20, 50, 100})):
        configs = outputs.EXPERIMENT.grid(grid)
        assert {c.arch for c in configs} >= {"mlp", "cnn"}
        assert {c.dataset for c in configs} == {dataset}
        for arch in {c.arch for c in configs}:
            mine = [c for c in configs if c.arch == arch]
            assert {c.n_outputs for c in mine} == os_
            # N and the widths are the same for every O, so O is never confounded with them.
            assert len({c.n_inputs for c in mine}) == 1
            by_o = {o: sorted({(c.width, c.seed) for c in mine if c.n_outputs == o}) for o in os_}
            assert all(v == by_o[2] for v in by_o.values())
            widths = sorted({c.width for c in mine})
            assert len(widths) >= 4 and widths[-1] / widths[0] >= 8
            assert {c.seed for c in mine} == set(range(seeds))
            assert {c.parameterization for c in mine} == {"ntk"}
    # The full grid's widest MLP reaches O/n <= 1/80 at O = 100, where the error is about 0.1 and
    # its saturation factor 1 - err² about 0.99 (THEORY.md §3, "The O constant, counted exactly").
    full = outputs.EXPERIMENT.grid("full")
    assert max(c.width for c in full if c.arch == "mlp") >= 80 * 100


def test_parameterization_grid_design() -> None:
    for grid in ("quick", "full"):
        configs = param_exp.EXPERIMENT.grid(grid)
        cases = {p: {(c.arch, c.depth, c.width, c.seed) for c in configs if c.parameterization == p}
                 for p in ("ntk", "standard")}
        # Both parameterizations, on identical (arch, depth, width, seed) cases, nothing else.
        assert cases["ntk"] and cases["ntk"] == cases["standard"]
        assert {c.parameterization for c in configs} == {"ntk", "standard"}
        assert {a for a, *_ in cases["ntk"]} == {"mlp", "cnn", "resnet"}
    quick = param_exp.EXPERIMENT.grid("quick")
    assert {(c.arch, c.depth) for c in quick} == {
        (a, d) for a, ds in convergence.QUICK_DEPTHS.items() for d in ds
    }


def test_depth_grid_design() -> None:
    for grid in ("quick", "full"):
        configs = depth.EXPERIMENT.grid(grid)
        mlp = {c.depth for c in configs if c.arch == "mlp"}
        assert mlp == {1, 2, 4, 8}
        resnet = {(c.depth, c.stages) for c in configs if c.arch == "resnet"}
        assert (8, "2-2-2-2") in resnet  # the ResNet-18 layout
        assert all(d == sum(map(int, s.split("-"))) for d, s in resnet)
        assert len({d for d, _ in resnet}) >= 3


def test_depth_config_validation() -> None:
    cfg = depth.Config("resnet", 8, 16, 0, stages="2-2-2-2")
    assert cfg.model_config().stages == models.RESNET_STAGES["resnet18"]
    assert cfg.id == "resnet-st2-2-2-2-w0016-s0"
    assert depth.Config("mlp", 4, 64, 1).model_config().stages is None
    with pytest.raises(SuiteError, match="sum of stages"):
        depth.Config("resnet", 4, 16, 0, stages="2-2-2-2")
    with pytest.raises(SuiteError, match="only apply to arch 'resnet'"):
        depth.Config("mlp", 2, 16, 0, stages="1-1")
    with pytest.raises(SuiteError, match="positive block counts"):
        depth.Config("resnet", 2, 16, 0, stages="1-x")


# --------------------------------------------------------------------------- one case each


@pytest.mark.parametrize("n_outputs", TINY_OUTPUTS)
def test_outputs_case(n_outputs: int) -> None:
    cfg = convergence.Config("mlp", 1, 32, 0, n_outputs=n_outputs, **TINY)
    rows = outputs.EXPERIMENT.run(cfg)
    assert set(TIDY_COLUMNS) <= set(rows.columns)
    assert (rows["n_outputs"] == n_outputs).all()
    assert np.isfinite(rows["value"]).all() and (rows["value"] > 0).all()
    got = _rows_of(rows, "pntk", "rel_frobenius")
    assert got == pytest.approx(_independent_pntk_error(cfg.model_config(), 0, n_outputs), rel=1e-9)


def test_parameterization_case_uses_declared_width_for_theta_inf() -> None:
    cfg = convergence.Config("mlp", 1, 32, 0, n_outputs=2, parameterization="standard", **TINY)
    rows = param_exp.EXPERIMENT.run(cfg)
    assert (rows["parameterization"] == "standard").all()
    got = _rows_of(rows, "pntk", "rel_frobenius")
    assert got == pytest.approx(_independent_pntk_error(cfg.model_config(), 0, 2), rel=1e-9)
    # Under standard parameterization the infinite-width NTK grows with the declared width
    # (neural-tangents uses it), so the pNTK's distance to Theta_inf must use width 32, not 1.
    x = common.inputs("digits", TINY["n_inputs"], 0, "float64")
    model, params = common.network(cfg.model_config(), 0, tuple(x.shape[1:]), "float64")
    p = np.asarray(kernels.pntk(model.apply, params, x, implementation="jax"))
    theta_inf = np.asarray(model.kernel(x, None, "ntk"))
    assert _rows_of(rows, "pntk", "rel_frobenius_inf") == pytest.approx(
        common.rel_frobenius(p, theta_inf), rel=1e-6
    )
    # The width dependence is the readout term phi.phi without its 1/n: Theta_inf is affine in
    # n with a non-zero slope (THEORY.md §3, "infinite-width link").
    inf = {w: np.asarray(models.from_config(models.with_width(cfg.model_config(), w)).kernel(x, None, "ntk"))
           for w in (1, 2, 64)}
    slope = inf[2] - inf[1]
    assert np.linalg.norm(63 * slope) > 0.5 * np.linalg.norm(inf[1])  # a sizeable share at n = 64
    np.testing.assert_allclose(theta_inf, inf[1] + 31 * slope, rtol=1e-9)
    np.testing.assert_allclose(inf[64], inf[1] + 63 * slope, rtol=1e-9)


def test_depth_case_carries_stages_to_the_model() -> None:
    cfg = depth.Config("resnet", 2, 8, 0, n_outputs=2, stages="1-1", **TINY)
    rows = depth.EXPERIMENT.run(cfg)
    assert (rows["stages"] == "1-1").all() and (rows["depth"] == 2).all()
    staged = models.build("resnet", width=8, depth=2, n_outputs=2, stages=(1, 1))
    plain = models.build("resnet", width=8, depth=2, n_outputs=2)
    shape = (8, 8, 1)
    # Two stages double the channels of the second block (and add a 1x1 shortcut conv).
    assert rows["n_params"].iloc[0] == staged.param_count(shape) != plain.param_count(shape)
    got = _rows_of(rows, "pntk", "rel_frobenius")
    assert got == pytest.approx(_independent_pntk_error(cfg.model_config(), 0, 2), rel=1e-9)


# --------------------------------------------------------------------------- tiny grids end to end


def _tiny_grid(name: str) -> list:
    if name == "outputs":
        return [convergence.Config("mlp", 1, w, s, n_outputs=o, **TINY)
                for o in TINY_OUTPUTS for w in TINY_WIDTHS for s in range(2)]
    if name == "parameterization":
        return [convergence.Config("mlp", 1, w, s, n_outputs=2, parameterization=p, **TINY)
                for p in ("ntk", "standard") for w in TINY_WIDTHS for s in range(2)]
    return [depth.Config("mlp", d, w, s, n_outputs=2, **TINY)
            for d in (1, 2) for w in TINY_WIDTHS for s in range(2)]


@pytest.mark.parametrize(("name", "column", "values"), [
    ("outputs", "n_outputs", set(TINY_OUTPUTS)),
    ("parameterization", "parameterization", {"ntk", "standard"}),
    ("depth", "depth", {1, 2}),
])
def test_tiny_grid_gives_one_series_per_setting(monkeypatch, tmp_path: Path, name: str, column: str, values: set) -> None:
    exp = replace(EXPERIMENTS[name], grids={"quick": lambda: _tiny_grid(name), "full": lambda: _tiny_grid(name)})
    monkeypatch.setitem(EXPERIMENTS, name, exp)
    rows = runner.run_experiment(name, "quick", out=tmp_path, progress=False)
    assert rows["case_key"].nunique() == 12
    summary = report.summarize(exp, rows)
    head = summary[(summary["kernel"] == "pntk") & (summary["metric"] == "rel_frobenius")]
    assert set(head[column]) == values and len(head) == len(values)
    assert (head["n_widths"] == 3).all() and (head["n_seeds"] == 2).all()
    # The figure renders from the saved CSV (empty 'stages' cells come back as NaN).
    written = render_all(tmp_path / "data", tmp_path / "figures", only=[f"fig_{name}"])
    assert [p.suffix for p in written[f"fig_{name}"]] == [".png", ".svg"]


# --------------------------------------------------------------------------- figures (synthetic)


def _frame(entries: list[dict], widths, seeds=(0, 1), noise: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Tidy pNTK rel_frobenius rows: one per entry x width x seed, value = entry['value'](width)."""
    rng = np.random.default_rng(seed)
    base = dict(n_outputs=10, dataset="digits", n_inputs=16, parameterization="ntk",
                dtype="float32", kernel="pntk", metric="rel_frobenius", seed=0)
    rows = []
    for e in entries:
        for w in e.get("widths", widths):
            for s in seeds:
                fields = {k: v for k, v in e.items() if k not in ("value", "widths")}
                value = e["value"](w) * float(np.exp(noise * rng.standard_normal()))
                rows.append({**base, **fields, "width": w, "seed": s, "value": value,
                             "case_key": f"k{len(rows)}"})
    return pd.DataFrame(rows)


def _legend_texts(fig: Figure) -> list[str]:
    legends = [*fig.legends, *(leg for sub in fig.subfigs for leg in sub.legends)]
    return [t.get_text() for leg in legends for t in leg.get_texts()]


def _outputs_frame(noise: float = 0.03) -> pd.DataFrame:
    entries = [
        {"arch": arch, "depth": 2, "n_outputs": o, "n_inputs": n,
         "value": (lambda w, o=o, k=k: k * (o / w) ** 0.5)}
        for arch, n, k in (("mlp", 32, 1.0), ("cnn", 16, 0.6))
        for o in (2, 10, 100)
    ]
    return _frame(entries, (64, 128, 256, 512, 1024), seeds=(0, 1, 2), noise=noise)


def test_fit_outputs_recovers_sqrt_o_over_n() -> None:
    frame = _outputs_frame()
    fit = fig_outputs.fit_outputs(frame[frame["arch"] == "mlp"])
    assert fit.alpha == pytest.approx(0.5, abs=0.03) and fit.beta == pytest.approx(0.5, abs=0.03)
    assert fit.alpha_ci[0] < fit.alpha < fit.alpha_ci[1] and fit.beta_ci[0] < fit.beta < fit.beta_ci[1]
    assert fit.prefactor == pytest.approx(1.0, rel=0.1) and fit.r2 > 0.95
    # A width effect the O term does not explain (err ~ O^0.5 n^-1) leaves beta at 1/2 while the
    # pooled exponent alpha mixes both: the fixed-effects fit separates O from n.
    skew = frame.assign(value=frame["n_outputs"] ** 0.5 / frame["width"])
    fit = fig_outputs.fit_outputs(skew[skew["arch"] == "mlp"])
    assert fit.beta == pytest.approx(0.5, abs=1e-9) and fit.alpha > 0.6


def test_fit_outputs_separates_saturation_from_the_o_constant() -> None:
    """Rows from THEORY.md §3's exact count, err = r / sqrt(1 + r²) with r² = k² (O - 1)(O + 4)/(O n):
    beta on err is pulled below the prediction by saturation, beta on err / sqrt(1 - err²)
    recovers it exactly, and over the unsaturated widths beta lies in between."""
    assert fig_outputs.beta_theory([2, 10, 100]) == pytest.approx(0.452, abs=5e-4)
    assert fig_outputs.beta_theory([2, 5, 10, 20, 50, 100]) == pytest.approx(0.447, abs=5e-4)
    outs, widths = (2, 5, 10, 20, 50, 100), (64, 256, 1024, 4096, 8192)
    rows = pd.DataFrame([
        {"arch": "mlp", "width": w, "n_outputs": o, "seed": s,
         "value": (lambda r: r / np.sqrt(1 + r**2))(np.sqrt(0.9 * (o - 1) * (o + 4) / (o * w)))}
        for o in outs for w in widths for s in range(3)
    ])
    fit = fig_outputs.fit_outputs(rows)
    assert fit.beta_theory == pytest.approx(fig_outputs.beta_theory(list(outs)))
    assert fit.beta_r == pytest.approx(fit.beta_theory, abs=1e-9)
    # Largest O's error 0.094 at 8192 and 0.13 at 4096 (<= 0.2), 0.26 at 1024.
    assert fit.unsaturated_widths == (4096, 8192)
    assert fit.beta < fit.beta_unsaturated < fit.beta_r
    assert fit.beta_unsaturated == pytest.approx(fit.beta_theory, abs=0.01)
    assert "β of err/√(1−err²) = 0.45" in fig_outputs.fit_text(fit)
    assert "n ≥ 4096 (err ≤ 0.2)" in fig_outputs.fit_text(fit)


def test_fig_outputs() -> None:
    fig = render("fig_outputs", _outputs_frame())
    axes = fig.get_axes()
    assert len(axes) == 3  # MLP, CNN, pooled O/n
    assert all(ax.get_xscale() == "log" and ax.get_yscale() == "log" for ax in axes)
    assert [ax.get_title() for ax in axes[:2]] == ["MLP (depth 2, N = 32)", "CNN (depth 2, N = 16)"]
    assert axes[2].get_xlabel().startswith("O / n")
    texts = _legend_texts(fig)
    for label in ("O = 2: slope −", "O = 10: slope −", "O = 100: slope −", "α = 0.5", "β = 0.5"):
        assert any(label in t for t in texts), (label, texts)
    assert "O = " not in fig.get_suptitle() and "digits" in fig.get_suptitle()
    with pytest.raises(SuiteError, match="dataset"):
        render("fig_outputs", pd.concat([_outputs_frame(), _outputs_frame().assign(dataset="mnist5k")]))


def test_fig_parameterization() -> None:
    entries = [
        {"arch": arch, "depth": d, "parameterization": p,
         "value": (lambda w, d=d, p=p: (0.5 * d if p == "ntk" else 3.0 * d) * w ** (-0.5 if p == "ntk" else -1.5))}
        for arch in ("mlp", "cnn", "resnet") for d in (1, 3) for p in ("ntk", "standard")
    ]
    fig = render("fig_parameterization", _frame(entries, (64, 128, 256, 512)))
    axes = fig.get_axes()
    assert len(axes) == 3 and [ax.get_title() for ax in axes] == ["MLP", "CNN", "ResNet"]
    assert all(ax.get_xscale() == "log" and ax.get_yscale() == "log" for ax in axes)
    texts = _legend_texts(fig)
    assert any(t.startswith("NTK, depth 1: slope −0.5") for t in texts), texts
    assert any(t.startswith("standard, depth 3: slope −1.5") for t in texts), texts
    assert any("n$^{-1/2}$" in t for t in texts)
    # Two colours, one per parameterization, on every panel.
    data_lines = [ln for ln in axes[0].get_lines() if ln.get_marker() not in (None, "None", "")]
    assert len(data_lines) == 4 and len({ln.get_color() for ln in data_lines}) == 2
    # The subtitle names the shared setting, not one parameterization.
    assert "parameterization" not in fig.get_suptitle().splitlines()[-1]


def test_fig_depth_prefactor_panel() -> None:
    const = {1: 0.5, 2: 0.7, 4: 1.0, 8: 1.4}
    entries = [{"arch": "mlp", "depth": d, "stages": np.nan, "value": (lambda w, d=d: const[d] * w**-0.5)}
               for d in const]
    entries += [{"arch": "resnet", "depth": d, "stages": s, "widths": (16, 32, 64, 128),
                 "value": (lambda w, d=d: 2 * const[d] * w**-0.5)}
                for d, s in ((2, "1-1"), (4, "2-2"), (8, "2-2-2-2"))]
    frame = _frame(entries, (64, 128, 256, 512), noise=0.0)
    fig = render("fig_depth", frame)
    axes = fig.get_axes()
    assert len(axes) == 3  # MLP, ResNet, prefactor
    assert all(ax.get_xscale() == "log" and ax.get_yscale() == "log" for ax in axes)
    texts = _legend_texts(fig)
    for label in ("depth 1: slope −0.50", "depth 8: slope −0.50", "2-2-2-2 (8 blocks): slope −0.50"):
        assert any(t.startswith(label) for t in texts), (label, texts)
    pref = axes[2]
    assert [int(t) for t in pref.get_xticks()] == [1, 2, 4, 8]
    lines = {ln.get_label().split(":")[0]: ln for ln in pref.get_lines()}
    # Noise-free data: the prefactor is exactly the constant C of C n^-1/2.
    np.testing.assert_allclose(lines["MLP"].get_ydata(), [const[d] for d in (1, 2, 4, 8)], rtol=1e-12)
    np.testing.assert_allclose(lines["ResNet"].get_ydata(), [2 * const[d] for d in (2, 4, 8)], rtol=1e-12)
    # ... and its growth with depth is fitted as a power law (C grows about like depth^0.5 here).
    assert "prefactor ∝ depth$^{0.50}$" in lines["MLP"].get_label()
    # The prefactor axis is not tied to the error axes' limits.
    assert pref.get_ylim() != axes[0].get_ylim()
    assert fig_depth.prefactor(frame[frame["arch"] == "mlp"].query("depth == 4")) == pytest.approx(1.0)
