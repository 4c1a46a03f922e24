"""The report's conclusion and grouping by reason, summary.json's schema, and the CI gate."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from suite import cli, report, stats
from suite.errors import SuiteError
from suite.experiments import EXPERIMENTS


def _row(verdict: str, reason: str = "", headline: bool = False, **kw) -> dict:
    base = {"experiment": "convergence", "arch": "mlp", "depth": 1, "kernel": "pntk", "metric": "rel_frobenius",
            "slope": -0.5, "slope_ci_low": -0.55, "slope_ci_high": -0.45, "band_low": -0.65, "band_high": -0.35,
            "n_widths": 6, "n_seeds": 8, "verdict": verdict, "reason": reason, "headline": headline}
    return {**base, **kw}


def test_gate_passes_consistent_headlines_and_explained_contradictions():
    rows = [_row("consistent", headline=True), _row("contradicts", "outside_assumptions", metric="x"),
            _row("inconclusive", "unexplained", metric="y")]
    assert report.gate(rows) == []


@pytest.mark.parametrize("verdict", ["inconclusive", "contradicts"])
def test_gate_fails_a_headline_that_is_not_consistent(verdict):
    problems = report.gate([_row(verdict, "too_few_seeds", headline=True)])
    assert len(problems) == 1 and "headline series convergence/mlp/1/pntk/rel_frobenius" in problems[0]
    assert verdict in problems[0] and "slope -0.50" in problems[0]


def test_gate_fails_an_unexplained_contradiction_and_an_empty_summary():
    problems = report.gate([_row("consistent", headline=True), _row("contradicts", "unexplained", arch="cnn")])
    assert problems == [
        "unexplained contradiction: convergence/cnn/1/pntk/rel_frobenius: slope -0.50, 95% CI [-0.55, -0.45], "
        "band [-0.65, -0.35], 6 widths x 8 seeds"
    ]
    assert "no headline series" in report.gate([])[0]


def test_gate_cli_exit_codes(tmp_path, capsys):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"schema_version": report.SCHEMA_VERSION, "rows": [_row("consistent", headline=True)]}))
    assert cli.main(["gate", "--summary", str(path)]) == 0
    assert "gate passed" in capsys.readouterr().out
    path.write_text(json.dumps({"schema_version": report.SCHEMA_VERSION, "rows": [_row("inconclusive", headline=True)]}))
    assert cli.main(["gate", "--summary", str(path)]) == 1
    assert "FAIL: headline series" in capsys.readouterr().out
    path.write_text(json.dumps([_row("consistent", headline=True)]))  # schema version 1: a bare list
    assert cli.main(["gate", "--summary", str(path)]) == 2
    assert "schema version 1" in capsys.readouterr().err
    assert cli.main(["gate", "--summary", str(tmp_path / "missing.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_every_experiment_declares_its_predictions():
    """Report-only metrics predict nothing; every series of the theorem experiments that is
    not report-only has a prediction, at -0.5 unless derived otherwise in THEORY.md."""
    for exp in EXPERIMENTS.values():
        for metric in exp.report_only_metrics:
            assert exp.prediction({"metric": metric, "arch": "mlp", "depth": 2, "epoch": 0, "ridge": 0.1}) is None
    conv = EXPERIMENTS["convergence"]
    for metric in ("rel_frobenius", "max_offdiag", "max_diag_dev", "rel_frobenius_inf"):
        pred = conv.prediction({"metric": metric, "arch": "cnn", "depth": 2, "parameterization": "ntk"})
        assert (pred.kind, pred.slope, pred.within_assumptions) == ("slope", -0.5, True)
    sp = EXPERIMENTS["parameterization"].prediction
    assert sp({"metric": "rel_frobenius", "arch": "mlp", "depth": 1, "parameterization": "standard"}).slope == -1.5
    assert sp({"metric": "rel_frobenius", "arch": "resnet", "depth": 1, "parameterization": "standard"}).slope == -0.5
    assert not sp({"metric": "rel_frobenius", "arch": "mlp", "depth": 3, "parameterization": "standard"}).within_assumptions
    spectrum = EXPERIMENTS["spectrum"].prediction
    assert spectrum({"metric": "lambda_max_rel_err"}).kind == "slope"
    assert spectrum({"metric": "spectrum_rel_err"}).kind == "bound"
    reg = EXPERIMENTS["regression"].prediction
    assert reg({"metric": "pred_rel_diff", "ridge": 0.1}).within_assumptions
    assert not reg({"metric": "pred_rel_diff", "ridge": 0.0}).within_assumptions
    train = EXPERIMENTS["training"].prediction
    assert train({"metric": "rel_frobenius", "epoch": 0}).within_assumptions
    assert not train({"metric": "rel_frobenius", "epoch": 2}).within_assumptions
    assert EXPERIMENTS["scale"].prediction({"metric": "test_acc"}) is None


def _series(slope: float, seeds: int, arch: str, rng: np.random.Generator, point_noise: float = 0.05) -> pd.DataFrame:
    """A series with a per-seed offset and optional point noise (none: an exactly straight line)."""
    widths = [64, 128, 256, 512, 1024]
    offsets = rng.normal(0, 0.1, seeds)
    return pd.DataFrame([
        {"arch": arch, "depth": 1, "kernel": "pntk", "metric": "rel_frobenius", "width": w, "seed": s,
         "value": 0.5 * w**slope * math.exp(offsets[s] + point_noise * rng.normal())}
        for s in range(seeds) for w in widths
    ])


def test_summary_and_markdown_group_non_consistent_series_by_reason():
    rng = np.random.default_rng(0)
    # consistent; flat and straight (no bend: unexplained); two seeds (too few)
    frame = pd.concat([_series(-0.5, 8, "mlp", rng), _series(0.0, 8, "cnn", rng, point_noise=0.0),
                       _series(-0.5, 2, "resnet", rng)])
    frame["grid"] = "quick"
    summary = stats.summarize(frame, ["grid", "arch", "depth", "kernel", "metric"])
    summary.insert(0, "experiment", "convergence")
    summary["value_at_max_width"] = 0.01
    summary["headline"] = report.is_headline(summary)
    verdicts = summary.set_index("arch")["verdict"].to_dict()
    assert verdicts == {"mlp": "consistent", "cnn": "contradicts", "resnet": "inconclusive"}
    text = "\n".join(report._not_consistent_section(summary))
    assert "### Unexplained (1)" in text and "| convergence | cnn | 1 |" in text
    assert "### Too few seeds (1)" in text and "| convergence | resnet | 1 |" in text
    assert "| convergence | mlp |" not in text  # consistent series are not listed
    conclusion = "\n".join(report._conclusion({}, summary))
    assert "consistent with n^-1/2 for 1 of 3 architecture/depth series" in conclusion
    records = report._records(summary)
    assert all(r["band_low"] == -0.65 for r in records)  # finite ends survive; NaN/inf become null


def test_load_summary_rejects_unreadable_files(tmp_path):
    bad = tmp_path / "summary.json"
    bad.write_text("{not json")
    with pytest.raises(SuiteError, match="cannot read"):
        report.load_summary(bad)


def test_float64_spot_check_pairs_each_float64_series_with_its_float32_twin():
    def row(arch, dtype, slope, verdict):
        return {"experiment": "convergence", "arch": arch, "depth": 1, "activation": "relu", "dtype": dtype,
                "kernel": "pntk", "metric": "rel_frobenius", "slope": slope, "slope_ci_low": slope - 0.05,
                "slope_ci_high": slope + 0.05, "verdict": verdict}

    summary = pd.DataFrame([row("mlp", "float32", -0.48, "consistent"), row("mlp", "float64", -0.49, "consistent"),
                            row("cnn", "float32", -0.50, "consistent"), row("cnn", "float64", -0.30, "inconclusive"),
                            row("resnet", "float32", -0.47, "consistent")])
    text = "\n".join(report._float64_section(summary))
    assert "| mlp | 1 | -0.48 [-0.53, -0.43] | consistent | -0.49 [-0.54, -0.44] | consistent | yes |" in text
    assert "| cnn | 1 |" in text and "| inconclusive | no |" in text and "resnet" not in text
    assert "Some float64 verdicts differ" in text
    assert report._float64_section(summary[summary["dtype"] == "float32"]) == []
    # In a whole report's summary other experiments' columns (here n_train) are NaN on these rows;
    # the twin must still be found, and a float64 series without one is shown, never dropped.
    agreeing = summary[summary["arch"] == "mlp"].assign(n_train=np.nan)
    text = "\n".join(report._float64_section(agreeing))
    assert "| consistent | yes |" in text and "Every float64 verdict equals its float32 verdict." in text
    orphan = "\n".join(report._float64_section(agreeing[agreeing["dtype"] == "float64"]))
    assert "no float32 twin" in orphan and "Every float64 verdict" not in orphan
