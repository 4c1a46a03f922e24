"""Experiments, the resumable runner, the report and the CLI, on tiny grids."""

from __future__ import annotations

import json
from dataclasses import replace

import jax
import numpy as np
import pandas as pd
import pytest

from suite import cli, kernels, report, runner
from suite.errors import SuiteError
from suite.experiments import EXPERIMENTS, GRID_NAMES, TIDY_COLUMNS, common, convergence
from suite.store import ResultStore

TINY = dict(n_inputs=6, n_outputs=3, dataset="digits")


def tiny_grid() -> list[convergence.Config]:
    return [convergence.Config("mlp", 1, w, s, **TINY) for w in (8, 32, 128) for s in range(2)]


@pytest.fixture
def tiny(monkeypatch):
    """Register the convergence experiment with an extra 'quick' grid of 6 tiny cases."""
    calls = []

    def counted_run(config):
        calls.append(config.id)
        return convergence.run(config)

    exp = replace(EXPERIMENTS["convergence"], grids={"quick": tiny_grid, "full": tiny_grid}, run=counted_run)
    monkeypatch.setitem(EXPERIMENTS, "convergence", exp)
    return calls


# --------------------------------------------------------------------------- metrics


def test_kron_metrics_match_explicit_kronecker():
    rng = np.random.default_rng(0)
    full = rng.normal(size=(4, 4, 3, 3))
    approx = rng.normal(size=(4, 4))
    mat = np.asarray(kernels.as_matrix(full))
    explicit = np.linalg.norm(mat - np.kron(approx, np.eye(3)))
    assert common.kron_distance(full, approx) == pytest.approx(explicit, rel=1e-12)
    assert common.rel_frobenius_kron(full, approx) == pytest.approx(explicit / np.linalg.norm(mat), rel=1e-12)


def test_entry_metrics_on_a_known_kernel():
    """Theta = K x I + E with one known off-diagonal and one known diagonal perturbation."""
    k = np.array([[2.0, 0.5], [0.5, 2.0]])
    full = np.einsum("ab,ij->abij", k, np.eye(3))
    full[0, 1, 0, 2] = 0.3
    full[1, 1, 2, 2] += 0.4
    mean_diag = (6 * 2.0 + 0.4) / 6
    assert common.max_offdiagonal(full) == pytest.approx(0.3 / mean_diag)
    assert common.max_diagonal_deviation(full, k) == pytest.approx(0.4 / mean_diag)


def test_convergence_case_is_tidy_and_matches_an_independent_pntk():
    config = convergence.Config("mlp", 1, 16, 0, **TINY, dtype="float64")
    rows = convergence.run(config)
    assert set(TIDY_COLUMNS) <= set(rows.columns)
    assert (rows["width"] == 16).all() and np.isfinite(rows["value"]).all() and (rows["value"] > 0).all()
    expected = {("entk", "max_offdiag"), ("entk", "rel_frobenius_inf"), ("pntk", "rel_frobenius_inf"),
                ("trace_ntk", "rel_frobenius_inf")}
    expected |= {(k, m) for k in kernels.APPROXIMATIONS for m in ("rel_frobenius", "max_diag_dev")}
    assert set(zip(rows["kernel"], rows["metric"], strict=True)) == expected

    # recompute the headline metric with the pNTK's own implementation (not from the eNTK)
    x = common.inputs("digits", 6, 0, "float64")
    model, params = common.network(config.model_config(), 0, tuple(x.shape[1:]), "float64")
    mat = np.asarray(kernels.as_matrix(kernels.entk(model.apply, params, x, implementation="jax")))
    p = np.asarray(kernels.pntk(model.apply, params, x, implementation="jax"))
    want = np.linalg.norm(mat - np.kron(p, np.eye(3))) / np.linalg.norm(mat)
    got = rows.query("kernel == 'pntk' and metric == 'rel_frobenius'")["value"].item()
    assert got == pytest.approx(want, rel=1e-9)


def test_grids_meet_the_verification_design():
    """Each of mlp, cnn, resnet: >= 2 depths, >= 5 widths spanning >= 16x; every series >= 3
    widths; >= 8 seeds (the headline, quick and full); O = 10. The full grid: mnist5k(14) at
    N >= 128 for the MLP and CNN, widths to 4096 (MLP) and 512 (CNN), a WideResNet, and the
    float64 spot check."""
    for grid, min_seeds in (("quick", 8), ("full", 8)):
        configs = convergence.GRIDS[grid]()
        frame = pd.DataFrame([c.__dict__ for c in configs])
        assert {"mlp", "cnn", "resnet"} <= set(frame["arch"])
        assert (frame["n_outputs"] == 10).all()
        for arch, g in frame.groupby("arch"):
            widths = sorted(g["width"].unique())
            if arch != "wrn":
                assert g["depth"].nunique() >= 2 and len(widths) >= 5 and widths[-1] / widths[0] >= 16
            for _, series in g.groupby(["depth", "activation", "dtype", "n_inputs"]):
                assert series["width"].nunique() >= 3
                assert series.groupby("width")["seed"].nunique().min() >= min_seeds
    full = pd.DataFrame([c.__dict__ for c in convergence.GRIDS["full"]()])
    assert set(full["dataset"]) == {"mnist5k14"} and "wrn" in set(full["arch"])
    assert full.loc[full["arch"].isin(["mlp", "cnn"]), "n_inputs"].min() >= 128
    assert full.loc[full["arch"] == "mlp", "width"].max() == 4096 and full.loc[full["arch"] == "cnn", "width"].max() == 512
    assert set(full.loc[full["dtype"] == "float64", "arch"]) == {"mlp", "cnn"}
    assert set(EXPERIMENTS["convergence"].grids) == set(GRID_NAMES)


def test_grid_product_loops_per_arch_axes_in_order():
    widths = {"mlp": (8, 16), "cnn": (4,)}
    got = common.grid_product(dict, arch=widths, depth={"mlp": 1, "cnn": (1, 2)}, width=widths,
                              seed=range(2), dataset="digits")
    expected = [dict(arch=a, depth=d, width=w, seed=s, dataset="digits")
                for a, d, w in (("mlp", 1, 8), ("mlp", 1, 16), ("cnn", 1, 4), ("cnn", 2, 4)) for s in (0, 1)]
    assert got == expected


def test_every_grid_has_distinct_cases():
    """Every registered grid (built through common.grid_product) names each case once."""
    from suite.store import case_key

    for name, exp in EXPERIMENTS.items():
        for grid, build in exp.grids.items():
            keys = [case_key(c.__dict__) for c in build()]
            assert keys and len(set(keys)) == len(keys), (name, grid)


def test_paper_grids_use_cifar10_resnet18_and_wrn28():
    """The accelerator grid: CIFAR-10, ResNet-18 (2-2-2-2) and WRN-28-k, 8 seeds per series."""
    from suite import models
    from suite.experiments import depth

    frame = pd.DataFrame([c.__dict__ for c in depth.GRIDS["paper"]()])
    assert set(frame["dataset"]) == {"cifar10"}
    assert set(frame.loc[frame["arch"] == "resnet", "stages"]) == {"2-2-2-2"}
    wrn = frame[frame["arch"] == "wrn"]
    assert {models.wrn_name(d, w) for d, w in zip(wrn["depth"], wrn["width"], strict=True)} >= {"WRN-28-10", "WRN-28-1"}
    assert (frame.groupby(["arch", "depth", "width"])["seed"].nunique() >= 8).all()
    conv = pd.DataFrame([c.__dict__ for c in convergence.GRIDS["paper"]()])
    assert set(conv["dataset"]) == {"cifar10"} and set(conv["activation"]) == {"relu", "erf", "gelu"}


def test_paper_grid_without_cifar10_stops_at_once_with_the_fix(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("SUITE_CIFAR10_DIR", raising=False)
    assert cli.main(["run", "depth", "--grid", "paper", "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "SUITE_CIFAR10_DIR" in err and "nothing is downloaded" in err
    assert not (tmp_path / "data" / "depth.csv").exists()
    monkeypatch.setenv("SUITE_CIFAR10_DIR", str(tmp_path / "nope"))
    assert cli.main(["run", "depth", "--grid", "paper", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_run_all_skips_experiments_without_the_grid(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("SUITE_CIFAR10_DIR", raising=False)
    # regression has no paper grid: skipped with a note; depth has one and stops on the data.
    for name in [n for n in EXPERIMENTS if n not in ("regression", "depth")]:
        monkeypatch.delitem(EXPERIMENTS, name)
    assert cli.main(["run", "all", "--grid", "paper", "--out", str(tmp_path), "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert "regression: has no 'paper' grid, skipped" in captured.out
    assert "SUITE_CIFAR10_DIR" in captured.err


def test_unknown_grid_and_arch_errors():
    exp = EXPERIMENTS["convergence"]
    with pytest.raises(SuiteError, match="unknown grid 'huge'; valid grids: full, paper, quick"):
        exp.grid("huge")
    with pytest.raises(SuiteError, match=r"no cases for architecture\(s\) \['vit'\]"):
        exp.grid("quick", ["vit"])


# --------------------------------------------------------------------------- runner: resume and provenance


def test_resume_after_interruption_computes_only_missing_cases(tiny, tmp_path):
    first = runner.run_experiment("convergence", out=tmp_path / "a", progress=False, max_cases=2)
    assert len(tiny) == 2 and first["case_key"].nunique() == 2
    resumed = runner.run_experiment("convergence", out=tmp_path / "a", progress=False)
    assert len(tiny) == 6  # 2 + the 4 missing ones, none twice
    straight = runner.run_experiment("convergence", out=tmp_path / "b", progress=False)
    cols = [c for c in resumed.columns if c != "seconds"]
    pd.testing.assert_frame_equal(resumed[cols], straight[cols])


def test_a_crash_mid_run_keeps_finished_cases(tiny, tmp_path, monkeypatch):
    exp = EXPERIMENTS["convergence"]

    def crash_on_third(config):
        if len(tiny) == 2:
            raise KeyboardInterrupt
        return exp.run(config)

    monkeypatch.setitem(EXPERIMENTS, "convergence", replace(exp, run=crash_on_third))
    with pytest.raises(KeyboardInterrupt):
        runner.run_experiment("convergence", out=tmp_path, progress=False)
    stored = ResultStore(tmp_path / "data", "convergence", version=exp.version)
    assert len(stored.done_keys()) == 2
    assert not list((tmp_path / "data").glob("*.tmp*")) and not list((tmp_path / "data").glob(".*"))
    # The resumed run's compute time counts the interrupted run's cases too.
    monkeypatch.setitem(EXPERIMENTS, "convergence", exp)
    frame = runner.run_experiment("convergence", out=tmp_path, progress=False)
    stored = ResultStore(tmp_path / "data", "convergence", version=exp.version)
    case_seconds = frame.groupby("case_key")["seconds"].first()
    assert len(case_seconds) == 6
    assert stored.metadata["compute_seconds"] == pytest.approx(case_seconds.sum())


def test_results_from_another_environment_are_archived_not_mixed(tiny, tmp_path, monkeypatch):
    runner.run_experiment("convergence", out=tmp_path, progress=False, max_cases=1)
    env = common.environment()
    monkeypatch.setattr(common, "environment", lambda: {**env, "jax": "0.0.1"})
    runner.run_experiment("convergence", out=tmp_path, progress=False)
    assert len(tiny) == 1 + 6  # everything recomputed
    archived = sorted(p.suffix for p in (tmp_path / "data" / "archive").iterdir())
    assert archived == [".csv", ".json"]


def test_published_snapshot_is_neither_resumed_nor_overwritten(tiny, tmp_path):
    runner.run_experiment("convergence", out=tmp_path / "run", progress=False, max_cases=2)
    snapshot = tmp_path / "snapshot"
    assert runner.publish(tmp_path / "run", snapshot) == [snapshot / "data" / "convergence.json"]
    with pytest.raises(SuiteError, match="committed snapshot, which changes only through python -m suite publish"):
        runner.run_experiment("convergence", out=snapshot, progress=False)
    assert len(tiny) == 2 and not (snapshot / "data" / "archive").exists()
    # the run folder is not published: an interrupted run resumes from it
    runner.run_experiment("convergence", out=tmp_path / "run", progress=False)
    assert len(tiny) == 6


def test_fresh_recomputes(tiny, tmp_path):
    runner.run_experiment("convergence", out=tmp_path, progress=False, max_cases=1)
    runner.run_experiment("convergence", out=tmp_path, progress=False, max_cases=1, fresh=True)
    assert len(tiny) == 2
    assert (tmp_path / "data" / "archive").is_dir()


def test_archiving_some_cases_takes_their_time_out_of_compute_seconds(tiny, tmp_path):
    frame = runner.run_experiment("convergence", out=tmp_path, progress=False, max_cases=3)
    store = ResultStore(tmp_path / "data", "convergence", version=EXPERIMENTS["convergence"].version)
    before = store.metadata["compute_seconds"]
    per_case = frame.groupby("case_key")["seconds"].first()
    runner.archive(store, {per_case.index[0]})
    assert store.metadata["compute_seconds"] == pytest.approx(before - per_case.iloc[0])
    assert store.done_keys() == set(per_case.index[1:])


def test_metadata_records_versions_backend_and_dtype(tiny, tmp_path):
    runner.run_experiment("convergence", out=tmp_path, progress=False, dtype="float64")
    meta = json.loads((tmp_path / "data" / "convergence.json").read_text())
    env = meta["environment"]
    assert env["jax"] == jax.__version__ and env["backend"] == jax.default_backend() and env["x64"] is True
    assert meta["version"] == convergence.VERSION and meta["grid"] == "quick" and meta["n_cases"] == 6
    rows = pd.read_csv(tmp_path / "data" / "convergence.csv")
    assert (rows["dtype"] == "float64").all()


# --------------------------------------------------------------------------- report and CLI


def test_report_prints_a_figures_findings_under_its_caption(tiny, tmp_path, monkeypatch):
    from dataclasses import replace as swap

    from suite.figures import FIGURES

    spec = FIGURES["fig_convergence"]
    monkeypatch.setitem(FIGURES, spec.name, swap(spec, findings=lambda rows: f"FOUND {rows['case_key'].nunique()} cases"))
    n = runner.run_experiment("convergence", out=tmp_path, progress=False)["case_key"].nunique()
    text = report.build(tmp_path)["report"].read_text()
    assert f"{spec.caption}\n\nFOUND {n} cases" in text


def test_report_writes_summary_figures_and_markdown(tiny, tmp_path):
    runner.run_experiment("convergence", out=tmp_path, progress=False)
    written = report.build(tmp_path)
    payload = json.loads(written["summary"].read_text())
    assert payload["schema_version"] == report.SCHEMA_VERSION
    summary = payload["rows"]
    head = [r for r in summary if (r["experiment"], r["kernel"], r["metric"]) == report.HEADLINE]
    assert len(head) == 1 and head[0]["n_widths"] == 3 and head[0]["n_seeds"] == 2 and head[0]["headline"]
    assert head[0]["verdict"] in ("consistent", "inconclusive", "contradicts")
    assert (head[0]["prediction"], head[0]["predicted_slope"], head[0]["prediction_source"]) == ("slope", -0.5, "T2")
    for field in ("slope", "slope_ci_low", "slope_ci_high", "r2", "n_widths", "n_seeds", "verdict", "reason",
                  "band_low", "band_high", "arch", "depth"):
        assert field in head[0]
    text = written["report"].read_text()
    assert text.index("## Conclusion") < text.index("## Headline")
    assert "![" in text and "digits" in text and "THEORY.md" in text
    pngs = [p for p in written["figures"] if p.suffix == ".png"]
    assert pngs and all(p.stat().st_size > 1000 for p in pngs)


def test_cli_list_and_errors(capsys, tmp_path):
    assert cli.main(["list"]) == 0
    assert "convergence" in capsys.readouterr().out
    assert cli.main(["run", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown experiment 'nope'; valid experiments: " in err and "convergence" in err
    assert cli.main(["report", "--out", str(tmp_path)]) == 2
    assert "no results in" in capsys.readouterr().err
    assert cli.main(["run", "convergence", "--arch", "vit", "--out", str(tmp_path)]) == 2


def test_cli_run_end_to_end(tiny, tmp_path, capsys):
    assert cli.main(["run", "convergence", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "mlp" in out and "verdicts over" in out
    assert (tmp_path / "summary.json").exists() and (tmp_path / "REPORT.md").exists()
