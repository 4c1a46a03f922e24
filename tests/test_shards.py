"""A grid split across CI jobs (``run --shard I/K``) and merged (``merge``) gives the report of
one unsharded run; merge refuses what cannot be combined (issue 13, item 2)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pandas as pd
import pytest

from suite import cli, report, shards
from suite.errors import SuiteError

GRID = """
[grid]
archs = ["mlp"]
depths = [1]
widths = [8, 16, 32]
seeds = 3
[settings]
n_inputs = 6
n_outputs = 3
"""


def _run(*argv: str) -> None:
    assert cli.main([*argv, "--no-progress"]) == 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One unsharded run of a 9-case grid file and its two shards, each in its own folder."""
    root = tmp_path_factory.mktemp("shards")
    grid = root / "tiny.toml"
    grid.write_text(GRID)
    _run("run", "convergence", "--grid-file", str(grid), "--out", str(root / "whole"))
    for i in (1, 2):
        _run("run", "convergence", "--grid-file", str(grid), "--shard", f"{i}/2", "--out", str(root / f"shard{i}"))
    return root


def _rows(folder: Path) -> pd.DataFrame:
    rows = pd.read_csv(folder / "data" / "convergence.csv").drop(columns=["seconds"])
    return rows.sort_values(["case_key", "kernel", "metric"]).reset_index(drop=True)


def _copy(runs: Path, name: str, new: str) -> Path:
    shutil.copytree(runs / name, runs / new, dirs_exist_ok=True)
    return runs / new


# --------------------------------------------------------------------------- shards


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "a/b", "2", "1/2/3", ""])
def test_a_bad_shard_is_refused_with_the_form_it_needs(text, capsys, tmp_path):
    with pytest.raises(SuiteError, match=r"--shard must be I/K with 1 <= I <= K \(e\.g\. 1/4"):
        shards.parse_shard(text)
    assert cli.main(["run", "convergence", "--shard", text, "--out", str(tmp_path), "--no-progress"]) == 2
    assert "--shard must be I/K" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before anything ran


def test_shards_partition_the_cases_the_same_way_in_any_order():
    keys = [f"case-{i:03d}" for i in range(23)]
    for k in (1, 2, 3, 5, 23, 30):
        parts = [[keys[j] for j in shards.select(keys, (i, k))] for i in range(1, k + 1)]
        assert sorted(k for part in parts for k in part) == keys  # disjoint, and together every case
        assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced
        shuffled = random.Random(k).sample(keys, len(keys))
        assert [sorted(shuffled[j] for j in shards.select(shuffled, (i, k))) for i in range(1, k + 1)] == parts
    assert shards.select(keys, (1, 3), timed=True) == list(range(23))  # timed: one host runs all
    assert shards.select(keys, (2, 3), timed=True) == []


def test_merged_shards_give_the_unsharded_report(runs):
    s1, s2 = _rows(runs / "shard1"), _rows(runs / "shard2")
    assert s1["case_key"].nunique() == 5 and s2["case_key"].nunique() == 4
    assert not set(s1["case_key"]) & set(s2["case_key"])
    assert not (runs / "shard1" / "summary.json").exists()  # a shard alone is not reported

    assert cli.main(["merge", str(runs / "shard1"), str(runs / "shard2"), "--out", str(runs / "merged")]) == 0
    pd.testing.assert_frame_equal(_rows(runs / "merged"), _rows(runs / "whole"), check_exact=True)
    merged = report.load_summary(runs / "merged" / "summary.json")
    whole = report.load_summary(runs / "whole" / "summary.json")
    assert len(merged) == len(whole) > 0
    # the same rows: verdicts, reasons and counts exactly; numbers to float rounding (the merged
    # store lists the cases shard by shard, so a mean over seeds may sum in another order)
    for m, w in zip(merged, whole, strict=True):
        assert m.keys() == w.keys()
        for key in m:
            if isinstance(m[key], float) and isinstance(w[key], float):
                assert m[key] == pytest.approx(w[key], rel=1e-12, nan_ok=True), key
            else:
                assert m[key] == w[key], key
    meta = json.loads((runs / "merged" / "data" / "convergence.json").read_text())
    assert meta["n_cases"] == 9 and len(meta["merged_from"]) == 2
    assert sorted(meta["grids"]["custom-tiny"]) == sorted(_rows(runs / "whole")["case_key"].unique())


# --------------------------------------------------------------------------- refusals


def test_merge_takes_identical_duplicates_once(runs, capsys):
    again = _copy(runs, "shard1", "shard1-again")
    out = runs / "dup-merged"
    assert cli.main(["merge", str(runs / "shard1"), str(again), str(runs / "shard2"), "--out", str(out)]) == 0
    assert _rows(out)["case_key"].nunique() == 9
    capsys.readouterr()


def test_merge_refuses_conflicting_duplicates(runs, capsys):
    bad = _copy(runs, "shard1", "shard1-conflict")
    csv = bad / "data" / "convergence.csv"
    rows = pd.read_csv(csv, dtype={"case_key": str})
    rows.loc[0, "value"] = rows.loc[0, "value"] * 1.01
    rows.to_csv(csv, index=False)
    capsys.readouterr()
    assert cli.main(["merge", str(runs / "shard1"), str(bad), "--out", str(runs / "never")]) == 2
    err = capsys.readouterr().err
    assert f"case {rows.loc[0, 'case_key']} of convergence is stored in" in err and "with different values" in err
    assert not (runs / "never").exists()


def test_merge_refuses_other_environments_versions_and_unfinished_runs(runs, capsys):
    def altered(name, change):
        folder = _copy(runs, "shard2", name)
        path = folder / "data" / "convergence.json"
        meta = json.loads(path.read_text())
        change(meta)
        path.write_text(json.dumps(meta))
        return folder

    other_jax = altered("shard2-jax", lambda m: m["environment"].update(jax="0.0.1"))
    with pytest.raises(SuiteError, match=r"different environments: jax: .* in .*shard1, 0\.0\.1 in .*shard2-jax"):
        shards.merge([runs / "shard1", other_jax], runs / "never")
    other_host = altered("shard2-host", lambda m: m["environment"].update(host="elsewhere"))
    shards.merge([runs / "shard1", other_host], runs / "hosts")  # CI shards run on other machines
    hosts = json.loads((runs / "hosts" / "data" / "convergence.json").read_text())["hosts"]
    assert len(hosts) == 2 and "elsewhere" in hosts
    unfinished = altered("shard2-unfinished", lambda m: m.update(finished=None))
    with pytest.raises(SuiteError, match="did not finish; rerun its command"):
        shards.merge([runs / "shard1", unfinished], runs / "never")
    old = altered("shard2-old", lambda m: m.update(version="0"))
    with pytest.raises(SuiteError, match=r"version '0'.*never merged"):
        shards.merge([runs / "shard1", old], runs / "never")
    with pytest.raises(SuiteError, match="has no data/ folder"):
        shards.merge([runs / "shard1", runs / "nowhere"], runs / "never")
    assert not (runs / "never").exists()
