"""Results that stay out of the way: runs write to the run folder, the committed snapshot changes
only through ``publish``, partial runs keep what they do not recompute, and custom grids keep
their label (issue 12, item 8). Tiny convergence grids; each case is computed once per session."""

from __future__ import annotations

import functools
import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from suite import cli, paths, report, runner
from suite.errors import SuiteError
from suite.experiments import EXPERIMENTS, common, convergence
from suite.store import ResultStore

TINY = dict(n_inputs=6, n_outputs=3, dataset="digits")
WIDTHS = {"mlp": (8, 32, 128), "cnn": (4, 8, 16)}

#: A grid file sharing the mlp cases of ``two_arch_grid`` at widths 8 and 32, plus width 64.
CUSTOM_TOML = """
[grid]
archs = ["mlp"]
depths = [1]
widths = [8, 32, 64]
seeds = 2
[settings]
n_inputs = 6
n_outputs = 3
"""


def two_arch_grid() -> list[convergence.Config]:
    return [convergence.Config(a, 1, w, s, **TINY) for a, ws in WIDTHS.items() for w in ws for s in range(2)]


@functools.cache
def _computed(config: convergence.Config) -> pd.DataFrame:
    return convergence.run(config)


@pytest.fixture
def grid2(monkeypatch, tmp_path):
    """Convergence with a 12-case mlp + cnn 'quick' grid; the run folder and the snapshot
    pointed into ``tmp_path``. Returns the list of case ids computed (not taken from a store)."""
    calls: list[str] = []

    def counted_run(config):
        calls.append(config.id)
        return _computed(config).copy()

    exp = replace(EXPERIMENTS["convergence"], grids={"quick": two_arch_grid, "full": two_arch_grid}, run=counted_run)
    monkeypatch.setitem(EXPERIMENTS, "convergence", exp)
    monkeypatch.setattr(paths, "LATEST", tmp_path / "latest")
    monkeypatch.setattr(paths, "SNAPSHOT", tmp_path / "snapshot")
    return calls


def _stored(out: Path) -> pd.DataFrame:
    return ResultStore(paths.data_dir(out), "convergence", version=convergence.VERSION).load()


def _headline_archs(summary_path: Path) -> set[str]:
    rows = report.load_summary(summary_path)
    return {r["arch"] for r in rows if (r["experiment"], r["kernel"], r["metric"]) == report.HEADLINE}


def _snapshot_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- layout and defaults


def test_the_run_folder_is_inside_reports_and_git_ignored():
    assert paths.LATEST.parent == paths.REPORTS and paths.SNAPSHOT == paths.REPORTS
    assert paths.data_dir(paths.SNAPSHOT) == paths.DATA and paths.figures_dir(paths.SNAPSHOT) == paths.FIGURES
    ignored = (paths.ROOT / ".gitignore").read_text().splitlines()
    assert f"{paths.LATEST.relative_to(paths.ROOT).as_posix()}/" in ignored


def test_cli_run_report_and_gate_default_to_the_run_folder(grid2, tmp_path, capsys):
    assert cli.main(["run", "convergence", "--no-progress"]) == 0
    latest = tmp_path / "latest"
    assert (latest / "summary.json").exists() and (latest / "REPORT.md").exists()
    assert (latest / "figures" / "fig_convergence.png").exists()
    assert not (tmp_path / "snapshot").exists()
    # a report in the run folder links to the one THEORY.md and bench summary in reports/
    text = (latest / "REPORT.md").read_text()
    theory = Path(text.split("[THEORY.md](")[1].split(")")[0])
    assert (latest / theory).resolve() == paths.THEORY.resolve()
    assert cli.main(["figures"]) == 0
    capsys.readouterr()
    assert cli.main(["gate"]) in (0, 1)
    assert str(latest / "summary.json") in capsys.readouterr().out


def test_gate_without_a_run_names_the_committed_summary(grid2, capsys):
    assert cli.main(["gate"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "--summary" in err


# --------------------------------------------------------------------------- partial runs


def test_partial_run_keeps_the_architectures_it_does_not_recompute(grid2, tmp_path):
    out = tmp_path / "latest"
    runner.run_experiment("convergence", out=out, progress=False)
    assert len(grid2) == 12
    before = _stored(out)
    runner.run_experiment("convergence", archs=["mlp"], out=out, progress=False)
    assert len(grid2) == 12  # resumed: nothing recomputed, nothing moved
    pd.testing.assert_frame_equal(_stored(out), before)
    assert not paths.archive_dir(out).exists()

    # --fresh with --arch sets aside and recomputes the mlp cases only
    runner.run_experiment("convergence", archs=["mlp"], out=out, fresh=True, progress=False)
    assert len(grid2) == 12 + 6
    after = _stored(out)
    assert sorted(after["case_key"].unique()) == sorted(before["case_key"].unique())
    cnn = before[before["arch"] == "cnn"]
    pd.testing.assert_frame_equal(after[after["arch"] == "cnn"].reset_index(drop=True), cnn.reset_index(drop=True))
    archived = pd.read_csv(next(paths.archive_dir(out).glob("convergence-*.csv")))
    assert set(archived["arch"]) == {"mlp"} and archived["case_key"].nunique() == 6
    report.build(out)
    assert _headline_archs(paths.summary_file(out)) == {"mlp", "cnn"}


def test_partial_run_in_another_environment_moves_nothing_and_says_how(grid2, tmp_path, monkeypatch):
    out = tmp_path / "latest"
    runner.run_experiment("convergence", out=out, progress=False)
    before = _stored(out)
    env = common.environment()
    monkeypatch.setattr(common, "environment", lambda: {**env, "jax": "0.0.1"})
    with pytest.raises(SuiteError, match=r"6 of them are not part of this run.*without --arch or --grid-file"):
        runner.run_experiment("convergence", archs=["mlp"], out=out, progress=False)
    pd.testing.assert_frame_equal(_stored(out), before)
    assert not paths.archive_dir(out).exists() and len(grid2) == 12
    # the whole grid recomputes everything, so it may set the old results aside
    runner.run_experiment("convergence", out=out, progress=False)
    assert len(grid2) == 24 and sorted(p.suffix for p in paths.archive_dir(out).iterdir()) == [".csv", ".json"]


def test_a_run_resumed_on_another_machine_keeps_its_results(grid2, tmp_path, monkeypatch):
    """Only the versions, backend and device decide whether stored cases are reused; the host
    does so only for timed experiments (a later session or CI shard runs on another machine)."""
    out = tmp_path / "latest"
    runner.run_experiment("convergence", archs=["mlp"], out=out, progress=False)
    before = _stored(out)
    monkeypatch.setattr(runner.platform, "node", lambda: "another-machine")
    runner.run_experiment("convergence", out=out, progress=False)
    assert len(grid2) == 12  # only the cnn cases were computed
    after = _stored(out)
    pd.testing.assert_frame_equal(after[after["arch"] == "mlp"].reset_index(drop=True), before.reset_index(drop=True))
    assert not paths.archive_dir(out).exists()
    env = {"jax": "0.5.3", "host": "a"}
    assert runner.fingerprint(env) == runner.fingerprint({**env, "host": "b"})
    assert runner.fingerprint(env, timed=True) != runner.fingerprint({**env, "host": "b"}, timed=True)


def test_runs_never_write_into_the_published_snapshot(grid2, tmp_path, capsys):
    runner.run_experiment("convergence", out=tmp_path / "latest", progress=False)
    assert cli.main(["publish"]) == 0
    snapshot = tmp_path / "snapshot"
    files = _snapshot_files(snapshot)
    for argv in (["run", "convergence", "--out", str(snapshot), "--no-progress"],
                 ["run", "convergence", "--arch", "mlp", "--fresh", "--out", str(snapshot), "--no-progress"],
                 ["report", "--out", str(snapshot)]):
        capsys.readouterr()
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert "committed snapshot" in err and "publish" in err
    assert _snapshot_files(snapshot) == files
    # a run on the default folder resumes there and leaves the snapshot as it was
    assert cli.main(["run", "convergence", "--no-progress"]) == 0
    assert len(grid2) == 12 and _snapshot_files(snapshot) == files


# --------------------------------------------------------------------------- custom grids


def test_custom_grid_keeps_its_label_with_resumed_cases(grid2, tmp_path, capsys):
    grid_file = tmp_path / "mine.toml"
    grid_file.write_text(CUSTOM_TOML)
    out = tmp_path / "latest"
    runner.run_experiment("convergence", out=out, progress=False)
    assert cli.main(["run", "convergence", "--grid-file", str(grid_file), "--no-progress"]) == 0
    assert len(grid2) == 12 + 2  # only width 64 is new; widths 8 and 32 are resumed from the quick grid
    results = report.load_results(out, "custom-mine")
    rows, meta = results["convergence"]
    assert meta["grid"] == "custom-mine" and (rows["grid"] == "custom-mine").all()
    assert sorted(rows["width"].unique()) == [8, 32, 64] and rows["case_key"].nunique() == 6
    summary = report.load_summary(out / "summary.json")
    head = [r for r in summary if (r["experiment"], r["kernel"], r["metric"]) == report.HEADLINE]
    assert len(head) == 1 and head[0]["grid"] == "custom-mine" and head[0]["n_widths"] == 3

    # report --grid rebuilds either grid's report; the quick grid still has all 12 of its cases
    assert cli.main(["report", "--grid", "quick"]) == 0
    assert _headline_archs(out / "summary.json") == {"mlp", "cnn"}
    assert report.load_results(out, "quick")["convergence"][0]["case_key"].nunique() == 12
    assert cli.main(["report", "--grid", "custom-mine"]) == 0
    assert _headline_archs(out / "summary.json") == {"mlp"}
    capsys.readouterr()
    assert cli.main(["report", "--grid", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no results of grid 'nope'" in err and "custom-mine, quick" in err


# --------------------------------------------------------------------------- publish


def test_publish_copies_a_finished_run_and_rebuilds_the_snapshot(grid2, tmp_path, capsys):
    latest, snapshot = tmp_path / "latest", tmp_path / "snapshot"
    runner.run_experiment("convergence", out=latest, progress=False)
    run_files = _snapshot_files(latest)
    assert cli.main(["publish"]) == 0
    assert "published" in capsys.readouterr().out
    meta = json.loads((snapshot / "data" / "convergence.json").read_text())
    assert meta["published"] is True and meta["n_cases"] == 12 and meta["published_from"]
    pd.testing.assert_frame_equal(_stored(snapshot), _stored(latest))
    assert (snapshot / "summary.json").exists() and (snapshot / "figures" / "fig_convergence.png").exists()
    assert _headline_archs(snapshot / "summary.json") == {"mlp", "cnn"}
    assert "![" in (snapshot / "REPORT.md").read_text()
    assert _snapshot_files(latest) == run_files  # the run folder is left as it was
    assert runner.is_snapshot(snapshot) and not runner.is_snapshot(latest)


def test_publishing_a_partial_run_keeps_the_snapshots_other_cases(grid2, tmp_path):
    latest, snapshot, other = tmp_path / "latest", tmp_path / "snapshot", tmp_path / "other"
    runner.run_experiment("convergence", out=latest, progress=False)
    runner.publish(latest, snapshot)
    published = _stored(snapshot)
    runner.run_experiment("convergence", archs=["mlp"], out=other, progress=False)
    assert len(grid2) == 12 + 6
    assert cli.main(["publish", "--from", str(other), "--to", str(snapshot)]) == 0
    merged = _stored(snapshot)
    assert merged["case_key"].nunique() == 12
    keep = published[published["arch"] == "cnn"].reset_index(drop=True)
    pd.testing.assert_frame_equal(merged[merged["arch"] == "cnn"].reset_index(drop=True), keep)
    assert _headline_archs(snapshot / "summary.json") == {"mlp", "cnn"}
    assert not paths.archive_dir(snapshot).exists()


def test_publish_from_another_environment_sets_the_old_snapshot_aside(grid2, tmp_path, monkeypatch):
    latest, snapshot, other = tmp_path / "latest", tmp_path / "snapshot", tmp_path / "other"
    runner.run_experiment("convergence", archs=["cnn"], out=latest, progress=False)
    runner.publish(latest, snapshot)
    env = common.environment()
    monkeypatch.setattr(common, "environment", lambda: {**env, "jax": "0.0.1"})
    runner.run_experiment("convergence", archs=["mlp"], out=other, progress=False)
    runner.publish(other, snapshot)
    assert set(_stored(snapshot)["arch"]) == {"mlp"}  # never mixed with the older environment
    archived = pd.read_csv(next(paths.archive_dir(snapshot).glob("convergence-*.csv")))
    assert set(archived["arch"]) == {"cnn"} and archived["case_key"].nunique() == 6


def test_publish_refuses_unfinished_runs_and_empty_or_same_folders(grid2, tmp_path, capsys):
    latest, snapshot = tmp_path / "latest", tmp_path / "snapshot"
    with pytest.raises(SuiteError, match=r"no results in .* to publish"):
        runner.publish(latest, snapshot)
    runner.run_experiment("convergence", out=latest, progress=False)
    ResultStore(paths.data_dir(latest), "convergence", version=convergence.VERSION).write_metadata({"finished": None})
    with pytest.raises(SuiteError, match="did not finish; rerun the same command"):
        runner.publish(latest, snapshot)
    assert not snapshot.exists()
    with pytest.raises(SuiteError, match="publish --rebuild"):
        runner.publish(latest, latest)
    assert cli.main(["publish", "--rebuild"]) == 2
    assert "no published results" in capsys.readouterr().err


def test_publish_rebuild_regenerates_the_snapshot_report_only(grid2, tmp_path):
    latest, snapshot = tmp_path / "latest", tmp_path / "snapshot"
    runner.run_experiment("convergence", out=latest, progress=False)
    assert cli.main(["publish"]) == 0
    data = _snapshot_files(snapshot / "data")
    (snapshot / "REPORT.md").unlink()
    assert cli.main(["publish", "--rebuild"]) == 0
    assert (snapshot / "REPORT.md").exists() and _snapshot_files(snapshot / "data") == data
