"""suite.bench on tiny hand-made pytest-benchmark reports: loading, ratios, regressions, CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from suite import bench

CALIBRATION_S = 0.005
#: (kernel, implementation) -> median seconds, for one network at O = 10.
TIMES = {
    ("entk", "auto"): 0.040,
    ("entk", "jax"): 0.080,
    ("pntk", "auto"): 0.004,
    ("pntk", "jax"): 0.010,
}


def _benchmark(name: str, group: str, median: float, extra: dict, params: dict | None = None) -> dict:
    """One entry in pytest-benchmark's JSON schema (only the fields suite.bench reads, plus a few)."""
    return {
        "group": group,
        "name": name,
        "fullname": f"tests/test_bench_kernels.py::{name}",
        "params": params or {},
        "param": name[name.index("[") + 1 : -1] if "[" in name else None,
        "extra_info": extra,
        "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": 5},
        "stats": {
            "min": median * 0.9, "max": median * 1.2, "mean": median * 1.02, "stddev": median * 0.05,
            "rounds": 20, "median": median, "iqr": median * 0.04, "q1": median * 0.98, "q3": median * 1.02,
            "iqr_outliers": 0, "stddev_outliers": 1, "outliers": "1;0", "ld15iqr": median * 0.9,
            "hd15iqr": median * 1.2, "ops": 1 / median, "total": median * 20, "iterations": 1,
        },
    }


def write_run(path: Path, scale: float = 1.0, slow: dict | None = None, drop: tuple = (), add: tuple = ()) -> Path:
    """A fake run: every time (calibration included) times ``scale``; ``slow`` multiplies single
    (kernel, implementation) cases further; ``drop`` leaves cases out; ``add`` adds new ones."""
    slow = slow or {}
    benchmarks = []
    for (kernel, impl), t in TIMES.items():
        if (kernel, impl) in drop:
            continue
        name = f"test_kernel[mlp-w0256-d02-O10-{kernel}-{impl}]"
        extra = {"bench": "kernels", "model": "mlp-w0256-d02", "arch": "mlp", "O": 10, "N": 8,
                 "kernel": kernel, "implementation": impl,
                 "resolved_implementation": "structured_derivatives" if impl == "auto" else impl}
        params = {"arch": "mlp", "n_outputs": 10, "kernel": kernel, "implementation": impl}
        benchmarks.append(_benchmark(name, f"mlp-O10-{kernel}", t * scale * slow.get((kernel, impl), 1.0),
                                     extra, params))
    for kernel in add:
        name = f"test_kernel[mlp-w0256-d02-O10-{kernel}-jax]"
        benchmarks.append(_benchmark(name, f"mlp-O10-{kernel}", 0.01 * scale, {"kernel": kernel}))
    benchmarks.append(_benchmark("test_calibration_matmul", "calibration", CALIBRATION_S * scale,
                                 {"bench": "calibration"}))
    report = {
        "machine_info": {"node": "box", "python_version": "3.11.7", "cpu": {"brand_raw": "Fake CPU"},
                         "jax": "0.5.3", "backend": "cpu"},
        "commit_info": {"id": "abc", "dirty": False},
        "benchmarks": benchmarks,
        "datetime": "2026-01-01T00:00:00+00:00",
        "version": "5.3.1",
    }
    path.write_text(json.dumps(report))
    return path


@pytest.fixture
def baseline(tmp_path) -> Path:
    return write_run(tmp_path / "baseline-cpu.json")


def test_load_one_row_per_benchmark_with_extra_info(baseline):
    df = bench.load(baseline)
    assert len(df) == len(TIMES) + 1
    assert {"name", "group", "params", "median", "iqr", "rounds", "kernel", "implementation"} <= set(df.columns)
    row = df[df["name"] == "test_kernel[mlp-w0256-d02-O10-pntk-auto]"].iloc[0]
    assert row["median"] == pytest.approx(0.004)
    assert row["params"]["kernel"] == "pntk"
    assert bench.calibration_time(df) == pytest.approx(CALIBRATION_S * 0.9)  # its fastest round


def test_load_rejects_files_that_are_not_reports(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"no": "benchmarks"}))
    with pytest.raises(bench.BenchFileError, match="not a pytest-benchmark report"):
        bench.load(bad)
    with pytest.raises(bench.BenchFileError, match="no such file"):
        bench.load(tmp_path / "missing.json")


def test_ratios_fastest_calibration_and_entk(baseline):
    df = bench.ratios(bench.load(baseline)).set_index("name")
    pntk_jax = df.loc["test_kernel[mlp-w0256-d02-O10-pntk-jax]"]
    assert pntk_jax["vs_fastest"] == pytest.approx(0.010 / 0.004)
    assert pntk_jax["vs_calibration"] == pytest.approx(0.010 / (0.9 * CALIBRATION_S))
    assert pntk_jax["vs_entk"] == pytest.approx(0.010 / 0.080)  # same implementation's eNTK
    assert bool(df.loc["test_kernel[mlp-w0256-d02-O10-entk-auto]", "fastest"])
    assert math.isnan(df.loc["test_calibration_matmul", "vs_entk"])


def test_speedups_and_auto_choice(baseline):
    df = bench.load(baseline)
    sp = bench.speedups(df)
    assert len(sp) == 1
    row = sp.iloc[0]
    assert row["speedup_auto"] == pytest.approx(10.0)
    assert row["speedup_jax"] == pytest.approx(8.0)
    assert row["speedup_best"] == pytest.approx(0.040 / 0.004)
    auto = bench.auto_choice(df).set_index("group")
    assert auto.loc["mlp-O10-pntk", "auto_vs_fastest"] == pytest.approx(1.0)
    assert auto.loc["mlp-O10-pntk", "auto_resolves_to"] == "structured_derivatives"


def test_identical_runs_pass(baseline, tmp_path):
    candidate = write_run(tmp_path / "candidate.json")
    table, failures = bench.compare(baseline, candidate)
    assert failures == []
    assert set(table["status"]) == {"ok", "calibration"}
    assert table["ratio"].to_numpy() == pytest.approx(1.0)


def test_uniformly_slower_machine_passes(baseline, tmp_path):
    candidate = write_run(tmp_path / "candidate.json", scale=2.0)
    table, failures = bench.compare(baseline, candidate, threshold=0.25)
    assert failures == []
    assert table["raw_ratio"].to_numpy() == pytest.approx(2.0)
    assert table["ratio"].to_numpy() == pytest.approx(1.0)
    assert table.attrs["machine_ratio"] == pytest.approx(2.0)


def test_injected_slowdown_fails_and_is_named(baseline, tmp_path):
    candidate = write_run(tmp_path / "candidate.json", scale=2.0, slow={("pntk", "auto"): 2.0})
    table, failures = bench.compare(baseline, candidate, threshold=0.25)
    assert len(failures) == 1
    assert "test_kernel[mlp-w0256-d02-O10-pntk-auto]" in failures[0]
    assert "2.00x" in failures[0]
    status = table.set_index("name")["status"]
    assert status["test_kernel[mlp-w0256-d02-O10-pntk-auto]"] == "regression"
    others = status.drop(["test_kernel[mlp-w0256-d02-O10-pntk-auto]", "test_calibration_matmul"])
    assert (others == "ok").all()


def test_a_changed_auto_choice_is_named_in_the_failure(baseline, tmp_path):
    candidate = write_run(tmp_path / "candidate.json", slow={("pntk", "auto"): 2.0})
    raw = json.loads(candidate.read_text())
    for b in raw["benchmarks"]:
        if b["name"].endswith("pntk-auto]"):
            b["extra_info"]["resolved_implementation"] = "jax"
    candidate.write_text(json.dumps(raw))
    table, failures = bench.compare(baseline, candidate)
    assert len(failures) == 1
    assert "auto ran jax (baseline: structured_derivatives)" in failures[0]
    assert table.set_index("name").loc["test_kernel[mlp-w0256-d02-O10-pntk-auto]", "note"].startswith("auto ran jax")


def test_speedup_is_reported_not_failed(baseline, tmp_path):
    candidate = write_run(tmp_path / "candidate.json", slow={("entk", "jax"): 0.5})
    table, failures = bench.compare(baseline, candidate)
    assert failures == []
    assert table.set_index("name").loc["test_kernel[mlp-w0256-d02-O10-entk-jax]", "status"] == "faster"


def test_slowdown_within_threshold_passes(baseline, tmp_path):
    candidate = write_run(tmp_path / "candidate.json", slow={("pntk", "auto"): 1.2})
    assert bench.compare(baseline, candidate, threshold=0.25)[1] == []
    assert len(bench.compare(baseline, candidate, threshold=0.1)[1]) == 1


def test_missing_and_new_benchmarks_are_reported_not_failed(baseline, tmp_path):
    candidate = write_run(tmp_path / "candidate.json", drop=(("entk", "jax"),), add=("trace_ntk",))
    table, failures = bench.compare(baseline, candidate)
    assert failures == []
    status = table.set_index("name")["status"]
    assert status["test_kernel[mlp-w0256-d02-O10-entk-jax]"] == "missing in candidate"
    assert status["test_kernel[mlp-w0256-d02-O10-trace_ntk-jax]"] == "new in candidate"


def test_a_disturbed_calibration_median_does_not_fail_every_benchmark(baseline, tmp_path):
    """Normalization uses the calibration's fastest round, which load on the machine rarely moves."""
    candidate = write_run(tmp_path / "candidate.json")
    raw = json.loads(candidate.read_text())
    cal = next(b for b in raw["benchmarks"] if b["group"] == "calibration")
    cal["stats"]["median"] *= 1.6
    candidate.write_text(json.dumps(raw))
    table, failures = bench.compare(baseline, candidate)
    assert failures == []
    assert table.attrs["machine_ratio"] == pytest.approx(1.0)


def test_without_calibration_raw_medians_are_compared(baseline, tmp_path):
    candidate = write_run(tmp_path / "candidate.json", scale=2.0)
    raw = json.loads(candidate.read_text())
    raw["benchmarks"] = [b for b in raw["benchmarks"] if b["group"] != "calibration"]
    candidate.write_text(json.dumps(raw))
    table, failures = bench.compare(baseline, candidate)
    assert not table.attrs["normalized"]
    assert len(failures) == len(TIMES)


def test_summarize_has_a_table_per_group_and_speedups(baseline):
    text = bench.summarize(baseline)
    for group in ("mlp-O10-entk", "mlp-O10-pntk", "calibration"):
        assert f"### {group}" in text
    assert "## pNTK vs eNTK" in text
    assert "| mlp-w0256-d02-O10-pntk-auto |" in text
    assert "Fake CPU" in text


def test_newest_other_picks_the_latest_candidate(baseline, tmp_path):
    old = write_run(tmp_path / "cpu-a.json")
    new = write_run(tmp_path / "cpu-b.json")
    os.utime(old, (1, 1))
    assert bench.newest_other(baseline) == new
    os.utime(baseline, None)  # a fresher baseline is never its own candidate
    assert bench.newest_other(baseline) == new
    write_run(tmp_path / "baseline-cuda12-NVIDIA_H100.json")  # nor another accelerator's baseline
    assert bench.newest_other(baseline) == new


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "suite.bench", *args], capture_output=True, text=True,
                          check=False, timeout=120)


def test_cli_exit_codes(baseline, tmp_path):
    same = write_run(tmp_path / "same.json", scale=3.0)
    ok = _cli("compare", str(baseline), str(same), "--threshold", "0.25")
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout

    slower = write_run(tmp_path / "slower.json", slow={("entk", "auto"): 1.5})
    bad = _cli("compare", str(baseline), str(slower))
    assert bad.returncode == 1
    assert "test_kernel[mlp-w0256-d02-O10-entk-auto]" in bad.stderr
    assert "FAILED: 1 benchmark" in bad.stderr

    missing = _cli("compare", str(baseline), str(tmp_path / "nope.json"))
    assert missing.returncode == 2
    assert "no such file" in missing.stderr


def test_cli_summarize_writes_markdown(baseline, tmp_path):
    out = tmp_path / "out"
    res = _cli("summarize", str(baseline), "--out", str(out))
    assert res.returncode == 0, res.stderr
    text = (out / "baseline-cpu.md").read_text()
    assert "### mlp-O10-pntk" in text
    assert (out / "baseline-cpu.png").stat().st_size > 0  # the figure beside it
    assert "![" in text and "(baseline-cpu.png)" in text


# --------------------------------------------------------------------------- N, O and the bound

P = 10_000
SCALING_NS = (16, 64, 256)


def write_scaling_run(path: Path, pntk_factor: float = 1.2) -> Path:
    """A fake run with exact laws: gradient pass a N, Gram b N^2, pNTK ``pntk_factor`` x their
    sum, blocked 0.9 x, eNTK 10 x the pNTK up to N = 64; Figure 1's eNTK time ~ O and memory ~ O^2
    while the pNTK's stay flat."""
    benchmarks = [_benchmark("test_calibration_matmul", "calibration", CALIBRATION_S, {"bench": "calibration"})]
    for n in SCALING_NS:
        grad, gram = 1e-4 * n, 1e-6 * n * n
        times = {("gradients", "jax"): grad, ("gram", "jax"): gram, ("pntk", "auto"): pntk_factor * (grad + gram),
                 ("pntk", "blocked"): 0.9 * (grad + gram)}
        if n <= 64:
            times[("entk", "auto")] = 10 * pntk_factor * (grad + gram)
        for (kernel, impl), t in times.items():
            extra = {"bench": "scaling", "model": "cnn-x", "arch": "cnn", "O": 10, "N": n, "kernel": kernel,
                     "implementation": impl}
            if kernel == "gram":
                extra["flops"] = 2 * n * n * P
            benchmarks.append(_benchmark(f"test_scaling[cnn-N{n:04d}-{kernel}-{impl}]", f"scaling-cnn-N{n:04d}",
                                         t, extra))
    for o in (10, 100):
        for kernel, t, mem in (("entk", 1e-3 * o, 1e3 * o * o), ("pntk", 2e-3, 4e5)):
            extra = {"bench": "fig1", "model": "resnet18-w0016", "arch": "resnet", "O": o, "N": 1, "kernel": kernel,
                     "implementation": "auto", "resolved_implementation": "jax", "compiled_bytes": mem}
            benchmarks.append(_benchmark(f"test_fig1_pair[resnet18-O{o}-{kernel}-auto]", f"fig1-resnet18-O{o}",
                                         t, extra))
    path.write_text(json.dumps({"machine_info": {}, "benchmarks": benchmarks}))
    return path


def test_scaling_table_ratios_and_growth_exponents(tmp_path):
    table = bench.scaling_table(bench.load(write_scaling_run(tmp_path / "s.json")))
    assert list(table["N"]) == list(SCALING_NS)
    assert table["pntk_vs_bound"].to_numpy() == pytest.approx(1.2)
    assert table["blocked_vs_bound"].to_numpy() == pytest.approx(0.9)
    assert table["entk_vs_pntk"].iloc[:2].to_numpy() == pytest.approx(10.0)
    assert math.isnan(table["entk"].iloc[2])
    assert table["gram_gflops"].to_numpy() == pytest.approx(2 * P / 1e-6 / 1e9)
    exps = bench.growth_exponents(table).set_index(["part", "N"])["exponent"]
    assert exps[("gradients", 64)] == pytest.approx(1.0)
    assert exps[("gram", 256)] == pytest.approx(2.0)


def test_fig1_table_time_and_memory_against_o(tmp_path):
    f1 = bench.fig1_table(bench.load(write_scaling_run(tmp_path / "s.json"))).set_index("O")
    assert f1.loc[10, "speedup"] == pytest.approx(5.0) and f1.loc[100, "speedup"] == pytest.approx(50.0)
    assert f1.loc[100, "entk_mb"] / f1.loc[10, "entk_mb"] == pytest.approx(100.0)  # O^2
    assert f1.loc[100, "pntk_mb"] == pytest.approx(f1.loc[10, "pntk_mb"])  # flat


def test_summary_states_the_near_limit_verdict_and_ignores_scaling_in_auto(tmp_path):
    text = bench.summarize(write_scaling_run(tmp_path / "ok.json"))
    assert "## Time against N, and the pNTK near its limit" in text
    assert "cnn-x, N = 256: pNTK (auto) / bound = 1.20 (target <= 1.5: met)" in text
    assert "## Figure 1: one pair of inputs" in text
    assert "## auto vs the fastest" not in text  # auto vs blocked is not a choice between implementations
    slow = bench.summarize(write_scaling_run(tmp_path / "slow.json", pntk_factor=2.0))
    assert "pNTK (auto) / bound = 2.00 (target <= 1.5: NOT met)" in slow


def test_figure_renders_every_panel_from_saved_results(tmp_path):
    png = bench.write_figure(write_scaling_run(tmp_path / "s.json"), tmp_path / "fig" / "s.png")
    assert png.exists() and png.stat().st_size > 10_000


def test_headline_lines_and_the_report_cost_section(tmp_path, monkeypatch):
    from suite import paths, report

    monkeypatch.setattr(paths, "BENCH", tmp_path / "bench")  # the report reads the baseline there
    (tmp_path / "bench").mkdir()
    run = write_scaling_run(tmp_path / "bench" / "baseline-cpu.json")
    lines = bench.headline(run)
    assert "- Figure 1 (resnet18-w0016, one pair): pNTK faster than the eNTK by 5x at O = 10, 50x at O = 100" in lines[0]
    assert "target >= O/2: met at O = 10, 100" in lines[0]
    assert any("eNTK / pNTK 10x at N = 16, 10x at N = 64 (>= O/2 = 5x from N = 16); at N = 256 the pNTK takes "
               "1.20x its bound" in x for x in lines)
    section = report._cost_section(tmp_path)
    assert section[0] == "## Cost: pNTK vs eNTK (benchmarks)" and lines[0] in section
    monkeypatch.setattr(paths, "BENCH", tmp_path / "elsewhere")
    assert report._cost_section(tmp_path) == []  # no baseline, no section


# --------------------------------------------------------------------------- peers, overhead, eNTK bound


def _peer_run(path: Path, auto_s: float, nt_s: float, torch_s: float | None = None) -> Path:
    """A run with the public pNTK (auto and jax) and neural-tangents' best as a peer in one group,
    plus the overhead pair; ``torch_s`` writes a separate torch run next to it (``-peers``)."""
    common = {"bench": "kernels", "model": "cnn-w0032-d02", "arch": "cnn", "O": 10, "N": 8, "kernel": "pntk"}
    rows = [
        _benchmark("test_kernel[cnn-O10-pntk-auto]", "cnn-O10-pntk", auto_s,
                   {**common, "implementation": "auto", "resolved_implementation": "jax"}),
        _benchmark("test_kernel[cnn-O10-pntk-jax]", "cnn-O10-pntk", auto_s,
                   {**common, "implementation": "jax", "resolved_implementation": "jax"}),
        _benchmark("test_nt_peer[cnn-O10-pntk-nt-sd]", "cnn-O10-pntk", nt_s,
                   {**common, "implementation": "nt-structured_derivatives", "peer": "neural-tangents"}),
        _benchmark("test_api_overhead[cnn-api]", "api-cnn-O10-pntk", 0.0052,
                   {**common, "bench": "api", "implementation": "auto", "path": "api"}),
        _benchmark("test_api_overhead[cnn-compiled]", "api-cnn-O10-pntk", 0.0050,
                   {**common, "bench": "api", "implementation": "auto", "path": "compiled"}),
        _benchmark("test_calibration_matmul", "calibration", CALIBRATION_S, {"bench": "calibration"}),
    ]
    report = {"machine_info": {"node": "box", "python_version": "3.11.7"}, "benchmarks": rows}
    path.write_text(json.dumps(report))
    if torch_s is not None:
        torch_row = _benchmark("test_torch_kernel[cnn-O10-pntk-torch]", "cnn-O10-pntk", torch_s,
                               {**common, "implementation": "torch-vmap-jacrev", "peer": "torch"})
        info = {"node": "box", "python_version": "3.11.7", "torch": "2.13.0"}
        path.with_name(path.stem + "-peers.json").write_text(
            json.dumps({"machine_info": info, "benchmarks": [torch_row]}))
    return path


def test_peer_table_ratio_and_verdict(tmp_path):
    met = bench.peer_table(bench.load(_peer_run(tmp_path / "a.json", 0.0050, 0.0048))).iloc[0]
    assert met["auto_vs_peer"] == pytest.approx(0.0050 / 0.0048)
    assert bool(met["met"]) and met["reason"] == ""
    missed = bench.peer_table(bench.load(_peer_run(tmp_path / "b.json", 0.0070, 0.0050))).iloc[0]
    assert not missed["met"]
    assert "no suite implementation is within 1.1x" in missed["reason"] and "7 ms" in missed["reason"]
    # suite rows only in the implementation tables: the peer is not 'the fastest implementation'
    auto = bench.auto_choice(bench.load(tmp_path / "b.json")).set_index("group")
    assert auto.loc["cnn-O10-pntk", "fastest"] != "nt-structured_derivatives"


def test_torch_peer_run_joins_the_same_group_in_the_summary(tmp_path):
    run = _peer_run(tmp_path / "run.json", 0.0050, 0.0060, torch_s=0.0040)
    peers = tmp_path / "run-peers.json"
    table = bench.peer_table(bench.load_runs([run, peers])).iloc[0]
    assert table["best_peer"] == "torch-vmap-jacrev" and table["torch_ms"] == pytest.approx(4.0)
    assert table["nt_ms"] == pytest.approx(6.0) and not table["met"]
    text = bench.summarize(run, peers=(peers,))
    assert "## The public call against its peers" in text
    assert "torch 2.13.0" in text
    assert "Public pntk (auto) / best peer" in text and "NOT met" in text
    # a peer run is never the candidate of a comparison
    with pytest.raises(bench.BenchFileError, match="no benchmark run next to"):
        bench.newest_other(run)


def test_overhead_table_and_verdict(tmp_path):
    run = _peer_run(tmp_path / "run.json", 0.0050, 0.0048)
    ov = bench.overhead_table(bench.load(run)).iloc[0]
    assert ov["overhead_ms"] == pytest.approx(0.2)
    assert bool(ov["met"])
    text = bench.summarize(run)
    assert "## Overhead of the public call" in text
    assert "cnn 0.200 ms (target <= 0.3 ms: met)" in text


def test_entk_bound_from_the_jacobian_pass_and_the_measured_gram_rate(tmp_path):
    """eNTK bound = Jacobians + 2 (N O)^2 P flops at the fastest rate the pNTK's Gram ran at."""
    common = {"bench": "scaling", "model": "cnn-w0032-d02", "arch": "cnn", "O": 10, "n_params": 10_000}
    rows = [_benchmark("test_calibration_matmul", "calibration", CALIBRATION_S, {"bench": "calibration"})]
    for n in (16, 64):
        group = f"scaling-cnn-N{n:04d}"
        parts = {"pntk": 0.002, "gradients": 0.001, "gram": 0.0005, "entk": 0.03, "jacobians": 0.01}
        for part, t in parts.items():
            extra = {**common, "N": n, "kernel": part, "implementation": "auto" if part in ("pntk", "entk") else "jax"}
            if part == "gram":
                extra["flops"] = 2 * n * n * 10_000
            rows.append(_benchmark(f"test_scaling[cnn-N{n:04d}-{part}]", group, t, extra))
    path = tmp_path / "scaling.json"
    path.write_text(json.dumps({"machine_info": {}, "benchmarks": rows}))
    table = bench.scaling_table(bench.load(path)).set_index("N")
    rate = 2 * 64 * 64 * 10_000 / 0.0005  # flops/s of the pNTK's Gram at N = 64, the fastest
    assert table.loc[16, "entk_gram"] == pytest.approx(2 * (16 * 10) ** 2 * 10_000 / rate * 1e3)
    entk_gram_ms = 2 * (64 * 10) ** 2 * 10_000 / rate * 1e3
    assert table.loc[64, "entk_gram"] == pytest.approx(entk_gram_ms)
    assert table.loc[64, "entk_vs_bound"] == pytest.approx(30.0 / (10.0 + entk_gram_ms))
    text = bench.summarize(path)
    assert "eNTK (auto) / bound" in text and "from N = 64" in text


def test_the_bench_figure_is_not_an_experiment_figure():
    """The benchmark figure reads the benchmark JSON; report building over the experiment
    figure registry must not see it."""
    from suite import figures
    from suite.figures import bench as bench_figure

    assert all(spec.experiment != "bench" for spec in figures.FIGURES.values())
    assert not hasattr(bench_figure, "FIGURE")
    assert callable(bench_figure.write_figure)


def test_peer_reason_names_where_the_gap_is():
    """A missed peer target says which measurement explains it: the same neural-tangents
    implementation (the gap is the suite's call), or jax's own first pass already slower than
    a torch peer's whole kernel."""
    from suite.bench.tables import _peer_reason

    base = {"kernel": "pntk", "resolved": "structured_derivatives", "auto_ms": 0.4, "first_pass_ms": float("nan")}
    same = _peer_reason({**base, "best_suite": "auto", "best_suite_ms": 0.4, "best_peer": "nt-structured_derivatives",
                         "best_peer_ms": 0.3, "best_suite_vs_peer": 0.4 / 0.3})
    assert "same neural-tangents implementation" in same and "0.1 ms" in same
    torch = _peer_reason({**base, "resolved": "jax", "best_suite": "auto", "best_suite_ms": 36.7,
                          "best_peer": "torch-vmap-jacrev", "best_peer_ms": 19.1,
                          "best_suite_vs_peer": 36.7 / 19.1, "first_pass_ms": 33.0})
    assert "gradient pass alone takes 33 ms, 1.73x" in torch and "not in the suite's code" in torch
    faster_pass = _peer_reason({**base, "resolved": "jax", "best_suite": "auto", "best_suite_ms": 30.0,
                                "best_peer": "torch-vmap-jacrev", "best_peer_ms": 19.1,
                                "best_suite_vs_peer": 30.0 / 19.1, "first_pass_ms": 10.0})
    assert "0.52x" in faster_pass and "not in the suite's code" not in faster_pass
