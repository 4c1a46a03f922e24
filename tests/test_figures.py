"""Smoke tests for every registered figure, on a tiny synthetic tidy frame built here.

Each figure must render to the expected panels with log axes, legends and
lines; saving must write non-empty PNG and SVG files, byte-identical on a
rerun; render_all must skip missing data and reject malformed frames; and
importing the figures must not import jax.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import suite.figures as figures
from suite.errors import SuiteError
from suite.figures import FIGURES, MissingDataError, render, render_all, save, style

ROOT = Path(__file__).resolve().parent.parent

ARCHS = ("mlp", "cnn", "resnet")
DEPTHS = (1, 3)
WIDTHS = (64, 128, 256, 512)
SEEDS = (0, 1)
APPROX = ("pntk", "trace_ntk", "logit_ntk", "projected_ntk")

#: (metric, kernel) pairs the convergence experiment writes.
PAIRS = (
    *(("rel_frobenius", k) for k in APPROX),
    ("max_offdiag", "entk"),
    *(("max_diag_dev", k) for k in APPROX),
    ("rel_frobenius_inf", "pntk"),
    ("rel_frobenius_inf", "trace_ntk"),
    ("rel_frobenius_inf", "entk"),
)


def synthetic_frame(seed: int = 0) -> pd.DataFrame:
    """Tidy convergence rows with values ``c * width**-0.5 * lognormal noise``."""
    rng = np.random.default_rng(seed)
    rows = []
    for arch in ARCHS:
        for depth in DEPTHS:
            for width in WIDTHS:
                for s in SEEDS:
                    for i, (metric, kernel) in enumerate(PAIRS):
                        const = (
                            2.0
                            * (1 + 0.3 * depth)
                            * (1 + 0.1 * i)
                            * (1.5 if arch == "cnn" else 1.0)
                        )
                        value = const * width**-0.5 * float(np.exp(0.08 * rng.standard_normal()))
                        rows.append(
                            {
                                "experiment": "convergence",
                                "case_key": f"{arch}-w{width:04d}-d{depth:02d}-f64-s{s}",
                                "arch": arch,
                                "depth": depth,
                                "width": width,
                                "seed": s,
                                "n_outputs": 10,
                                "dataset": "digits",
                                "n_inputs": 16,
                                "parameterization": "ntk",
                                "dtype": "float64",
                                "n_params": 1000 * width,
                                "kernel": kernel,
                                "metric": metric,
                                "value": value,
                            }
                        )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return synthetic_frame()


def _legend_texts(fig: Figure) -> list[str]:
    """Texts of every legend in the figure and its subfigures."""
    legends = list(fig.legends)
    for sub in fig.subfigs:
        legends.extend(sub.legends)
    legends.extend(ax.get_legend() for ax in fig.get_axes() if ax.get_legend() is not None)
    return [t.get_text() for leg in legends for t in leg.get_texts()]


#: name -> (number of axes, legend labels that must appear, minimum data lines per axes).
EXPECTED: dict[str, tuple[int, tuple[str, ...], int]] = {
    "fig_convergence": (3, ("depth 1", "depth 3", "n$^{-1/2}$"), len(DEPTHS)),
    "fig_entries": (6, ("depth 1", "depth 3"), len(DEPTHS)),
    "fig_alternatives": (3, tuple(style.KERNEL_LABELS[k] for k in APPROX), len(APPROX)),
    "fig_infinite": (3, ("pNTK vs Θ", "eNTK vs Θ", "mean trace vs Θ", "pNTK vs eNTK"), 4),
}


CONVERGENCE_FIGURES = {name for name, spec in FIGURES.items() if spec.experiment == "convergence"}


def test_registry_matches_expectations() -> None:
    """The convergence figures are the ones tested here; every figure reads a registered
    experiment's data and has a title and caption."""
    from suite.experiments import EXPERIMENTS

    assert CONVERGENCE_FIGURES == set(EXPECTED) | {"fig_activations"}
    for name, spec in FIGURES.items():
        assert spec.name == name
        assert spec.experiment in EXPERIMENTS
        assert spec.title and spec.caption


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_render(name: str, data: pd.DataFrame) -> None:
    n_axes, labels, min_lines = EXPECTED[name]
    fig = render(name, data)
    assert isinstance(fig, Figure)
    axes = fig.get_axes()
    assert len(axes) == n_axes
    for ax in axes:
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        # Width ticks are the measured widths, written as plain numbers.
        ticks = [int(t) for t in ax.get_xticks()]
        assert ticks == list(WIDTHS)
        assert [t.get_text() for t in ax.get_xticklabels()] == [str(w) for w in WIDTHS]
        # Data lines (markers) plus the dashed reference.
        data_lines = [ln for ln in ax.get_lines() if ln.get_marker() not in (None, "None", "")]
        assert len(data_lines) >= min_lines
        assert any(ln.get_linestyle() == "--" for ln in ax.get_lines())
        assert ax.get_xlabel() == "width n (hidden units / channels)"
    texts = _legend_texts(fig)
    assert texts
    for label in labels:
        assert any(label in t for t in texts), (label, texts)
    # Two seeds and four widths: every data series gets a fitted slope with a CI.
    assert any("slope −" in t and "[" in t for t in texts)
    assert "digits" in fig.get_suptitle() and "O = 10" in fig.get_suptitle()


def test_convergence_labels(data: pd.DataFrame) -> None:
    fig = render("fig_convergence", data)
    axes = fig.get_axes()
    assert axes[0].get_ylabel() == "‖eNTK − pNTK⊗I‖$_F$ / ‖eNTK‖$_F$"
    assert [ax.get_title() for ax in axes] == ["MLP", "CNN", "ResNet"]


def test_summary_slopes_are_used(data: pd.DataFrame) -> None:
    summary = pd.DataFrame(
        [
            {
                "experiment": "convergence",
                "arch": a,
                "depth": d,
                "kernel": "pntk",
                "metric": "rel_frobenius",
                "slope": -0.123,
                "slope_ci_low": -0.2,
                "slope_ci_high": -0.1,
                "verdict": "contradicts",
            }
            for a in ARCHS
            for d in DEPTHS
        ]
    )
    texts = _legend_texts(render("fig_convergence", data, summary))
    assert sum("slope −0.12 [−0.20, −0.10]" in t for t in texts) == len(ARCHS) * len(DEPTHS)


def _with_variants(data: pd.DataFrame) -> pd.DataFrame:
    """``data`` (float64 ReLU rows) as float32, plus erf and GELU rows for the MLP and CNN and a
    float64 copy of the ReLU rows (the full grid's spot check), values scaled so they differ."""
    base = data.assign(dtype="float32", activation="relu")
    extra = [base[base["arch"].isin(["mlp", "cnn"])].assign(activation=a, value=lambda f, k=k: f["value"] * k)
             for a, k in (("erf", 0.5), ("gelu", 0.7))]
    return pd.concat([base, *extra, base.assign(dtype="float64", value=base["value"] * 3)], ignore_index=True)


def test_figures_draw_the_default_settings_only(data: pd.DataFrame) -> None:
    """Rows of other activations and the float64 spot check stay out of the ReLU float32 figures."""
    mixed = _with_variants(data)
    plain = render("fig_convergence", mixed[(mixed["activation"] == "relu") & (mixed["dtype"] == "float32")])
    fig = render("fig_convergence", mixed)
    for ax, ref in zip(fig.get_axes(), plain.get_axes(), strict=True):
        got = [ln.get_ydata().tolist() for ln in ax.get_lines()]
        assert got == [ln.get_ydata().tolist() for ln in ref.get_lines()]


def test_activations_figure(data: pd.DataFrame) -> None:
    fig = render("fig_activations", _with_variants(data))
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["MLP", "CNN"]
    texts = _legend_texts(fig)
    for label in ("ReLU, depth 1", "erf, depth 3", "GELU, depth 1", "n$^{-1/2}$"):
        assert any(label in t for t in texts), (label, texts)
    for ax in axes:
        data_lines = [ln for ln in ax.get_lines() if ln.get_marker() not in (None, "None", "")]
        assert len(data_lines) == 3 * len(DEPTHS)
    with pytest.raises(MissingDataError, match="more than one activation"):
        render("fig_activations", data.assign(activation="relu"))


def test_too_few_widths_drops_slope(data: pd.DataFrame) -> None:
    two = data[data["width"].isin(WIDTHS[:2])]
    texts = _legend_texts(render("fig_convergence", two))
    assert "depth 1" in texts and not any("slope" in t for t in texts)


def test_labels_match_registries() -> None:
    # style.py duplicates the labels so that figures need not import jax; keep them in step.
    from suite import kernels, models

    assert {k: spec.label for k, spec in kernels.KERNELS.items()} == style.KERNEL_LABELS
    assert set(style.KERNEL_PALETTE) == set(kernels.KERNELS)
    for table in (style.ARCH_LABELS, style.ARCH_COLORS, style.ARCH_MARKERS, style.ARCH_LINESTYLES):
        assert set(models.ARCHS) <= set(table)


def test_format_slope() -> None:
    assert style.format_slope(-0.4712, -0.551, -0.4) == "slope −0.47 [−0.55, −0.40]"
    assert style.format_slope(-0.5) == "slope −0.50"


def test_save_is_deterministic(tmp_path: Path, data: pd.DataFrame) -> None:
    name = "fig_convergence"
    first = save(render(name, data), tmp_path / "a", name)
    second = save(render(name, data), tmp_path / "b", name)
    assert [p.name for p in first] == [f"{name}.png", f"{name}.svg"]
    for a, b in zip(first, second, strict=True):
        assert a.stat().st_size > 1000
        assert a.read_bytes() == b.read_bytes(), a.name
    svg = first[1].read_text()
    assert "<dc:date>" not in svg
    # No temporary files are left behind.
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [f"{name}.png", f"{name}.svg"]


def test_save_changes_with_data(tmp_path: Path, data: pd.DataFrame) -> None:
    name = "fig_convergence"
    base = save(render(name, data), tmp_path / "a", name)[1].read_bytes()
    other = save(render(name, synthetic_frame(seed=1)), tmp_path / "b", name)[1].read_bytes()
    assert base != other


def _save_store(directory: Path, frame: pd.DataFrame, experiment: str = "convergence", grid: str = "quick") -> None:
    """Write ``frame`` as a result store (CSV and sidecar) of one grid, as a run would."""
    import json

    from suite.experiments import EXPERIMENTS

    directory.mkdir(parents=True, exist_ok=True)
    frame.assign(grid=grid).to_csv(directory / f"{experiment}.csv", index=False)
    meta = {"experiment": experiment, "version": EXPERIMENTS[experiment].version, "grid": grid}
    (directory / f"{experiment}.json").write_text(json.dumps(meta))


def test_render_all(tmp_path: Path, data: pd.DataFrame) -> None:
    data_dir, out_dir = tmp_path / "data", tmp_path / "figures"
    # No CSV yet: everything is skipped, nothing written.
    result = render_all(data_dir, out_dir)
    assert set(result) == set(FIGURES) and not any(result.values())
    assert figures.skipped(result) == list(FIGURES)
    # Without Θ∞ rows, fig_infinite is skipped, without activation variants fig_activations,
    # and the others are drawn.
    _save_store(data_dir, data[data["metric"] != "rel_frobenius_inf"])
    result = render_all(data_dir, out_dir)
    others = [name for name in FIGURES if name not in CONVERGENCE_FIGURES]  # no data for them
    assert figures.skipped(result) == sorted(["fig_infinite", "fig_activations", *others], key=list(FIGURES).index)
    for name in CONVERGENCE_FIGURES - {"fig_infinite", "fig_activations"}:
        assert [p.name for p in result[name]] == [f"{name}.png", f"{name}.svg"]
        assert all(p.stat().st_size > 0 for p in result[name])


def test_render_all_only_and_summary_file(tmp_path: Path, data: pd.DataFrame) -> None:
    _save_store(tmp_path, data)
    result = render_all(tmp_path, tmp_path / "out", only=["fig_entries"])
    assert list(result) == ["fig_entries"] and len(result["fig_entries"]) == 2
    with pytest.raises(SuiteError, match="unknown figure"):
        render_all(tmp_path, tmp_path / "out", only=["fig_nope"])
    assert figures.load_summary(tmp_path / "missing.json") is None
    (tmp_path / "summary.json").write_text('{"rows": [{"arch": "mlp", "slope": -0.5}]}')
    summary = figures.load_summary(tmp_path / "summary.json")
    assert summary is not None and summary["slope"].tolist() == [-0.5]


def test_render_all_rejects_missing_column(tmp_path: Path, data: pd.DataFrame) -> None:
    _save_store(tmp_path, data.drop(columns="value"))
    with pytest.raises(SuiteError, match="value"):
        render_all(tmp_path, tmp_path / "out")
    # a CSV without its sidecar is not a result store: its version is unknown
    (tmp_path / "convergence.json").unlink()
    with pytest.raises(SuiteError, match="no metadata sidecar"):
        render_all(tmp_path, tmp_path / "out")


def test_render_all_draws_one_grid_of_the_store(tmp_path: Path, data: pd.DataFrame, monkeypatch) -> None:
    """Through the store, as the report reads it: only the chosen grid's cases."""
    from dataclasses import replace

    quick = data[data["arch"] == "mlp"].assign(grid="quick")
    full = data[data["arch"] == "cnn"].assign(grid="full")
    _save_store(tmp_path, pd.concat([quick, full]), grid="quick")
    (tmp_path / "convergence.csv").write_text(pd.concat([quick, full]).to_csv(index=False))
    seen: list[pd.DataFrame] = []
    spec = FIGURES["fig_convergence"]
    monkeypatch.setitem(FIGURES, "fig_convergence",
                        replace(spec, render=lambda frame, summary: seen.append(frame) or spec.render(frame, summary)))
    for grid, arch in (("full", "cnn"), ("quick", "mlp"), (None, "mlp")):  # default: the last-run grid
        drawn = render_all(tmp_path, tmp_path / "out", only=["fig_convergence"], grid=grid)
        assert drawn["fig_convergence"] and set(seen[-1]["arch"]) == {arch}


def test_render_errors(data: pd.DataFrame) -> None:
    with pytest.raises(SuiteError, match="unknown figure"):
        render("fig_nope", data)
    with pytest.raises(SuiteError, match="arch"):
        render("fig_convergence", data.drop(columns="arch"))
    with pytest.raises(MissingDataError, match="rel_frobenius"):
        render("fig_convergence", data[data["metric"] != "rel_frobenius"])
    mixed = pd.concat([data, data.assign(dataset="mnist5k")])
    with pytest.raises(SuiteError, match="dataset"):
        render("fig_convergence", mixed)
    # float32 beside float64 is the full grid's spot check: the figure draws the float32 rows.
    spot = render("fig_convergence", pd.concat([data, data.assign(dtype="float32")]))
    assert "float32" in spot.get_suptitle() and "float64" not in spot.get_suptitle()


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_import_suite_figures_does_not_import_jax() -> None:
    proc = _run_python(
        """
        import suite.figures, sys
        assert "jax" not in sys.modules, "importing suite.figures imported jax"
        """
    )
    assert proc.returncode == 0, proc.stderr


def test_panels_may_differ_in_n_when_each_arch_has_one(data: pd.DataFrame) -> None:
    """The full grid runs the ResNets at N = 64 beside the MLP and CNN at N = 128: each panel
    names its N, the suptitle none; a mix of N within one architecture is still refused."""
    mixed = data.assign(n_inputs=np.where(data["arch"] == "resnet", 64, 128))
    for name in ("fig_convergence", "fig_entries", "fig_infinite", "fig_alternatives"):
        fig = render(name, mixed)
        titles = [ax.get_title() for ax in fig.get_axes()]
        assert any(t.startswith("ResNet (N = 64") for t in titles) and any(t.startswith("MLP (N = 128") for t in titles)
        assert "N = " not in fig.get_suptitle()
    with pytest.raises(SuiteError, match="n_inputs"):
        render("fig_convergence", data.assign(n_inputs=np.where(data["seed"] == 0, 64, 128)))
