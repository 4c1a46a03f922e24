"""Markdown: the summary of one run (with its peers), the key ratios for the report, and
the comparison of two runs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from suite.bench.loading import (
    NEAR_LIMIT_TARGET,
    calibration_time,
    load_runs,
    machine_summary,
)
from suite.bench.tables import (
    ENTK_BOUND_FROM_N,
    ENTK_BOUND_TARGET,
    OVERHEAD_TARGET_MS,
    PEER_KERNELS,
    PEER_TARGET,
    auto_choice,
    fig1_table,
    growth_exponents,
    overhead_table,
    peer_table,
    ratios,
    scaling_table,
    speedups,
)


def _fmt(x: Any, spec: str = ".3g") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float | int | np.integer | np.floating) and not isinstance(x, bool):
        return format(int(x), spec) if spec == "d" else format(x, spec)
    return str(x)


def markdown_table(df: pd.DataFrame, columns: dict[str, str], formats: dict[str, str] | None = None) -> str:
    """A GitHub markdown table of ``df[columns]`` with headers ``columns.values()``."""
    formats = formats or {}
    lines = ["| " + " | ".join(columns.values()) + " |", "|" + "---|" * len(columns)]
    for _, row in df.iterrows():
        cells = [_fmt(row[c], formats.get(c, ".3g")) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _short(name: str) -> str:
    """``test_kernel[mlp-w0256-...]`` -> ``mlp-w0256-...``."""
    return name[name.index("[") + 1 : -1] if "[" in name and name.endswith("]") else name


def summarize(json_path: str | Path, figure: str | None = None, peers: Sequence[str | Path] = ()) -> str:
    """Markdown report of one run (and its peer runs, e.g. ``nox -s bench_peers``' torch
    run, whose rows join the same groups): machine, key ratios with every target marked met or
    NOT met, the public call against its peers and against its bare executable, pNTK-vs-eNTK
    speedups, auto's choice, Figure 1, time against N and the near-the-limit ratios, then one
    table per group. ``figure``: a relative path of the run's figure to show at the top."""
    df = ratios(load_runs([json_path, *peers]))
    machine = machine_summary(json_path)
    title = ", ".join(f"`{Path(p).name}`" for p in [json_path, *peers])
    lines = [f"# Benchmark summary: {title}", ""]
    if figure:
        lines += [f"![time and memory of the pNTK and eNTK]({figure})", ""]
    lines += [f"- {k}: {v}" for k, v in machine.items()]
    for peer in peers:
        info = machine_summary(peer)
        extra = ", ".join(f"{k} {info[k]}" for k in ("torch", "torch_threads") if k in info)
        lines += [f"- peer run `{Path(peer).name}`" + (f": {extra}" if extra else "")]
    cal = calibration_time(df)
    lines += [f"- calibration (512x512 float32 matmul), fastest round: {_fmt(cal * 1e3, '.4g')} ms", ""]
    lines += [
        "Medians in ms; `x fastest` is the median over the group's fastest; `x calib` is the median "
        "over the calibration matmul's fastest round (compare these across machines); `x eNTK` is the time "
        "relative to the eNTK of the same network and implementation.",
        "",
    ]
    key = _headline(df)
    if key:
        lines += ["## Key ratios and targets", "", *key, ""]
    lines += _peer_section(df) + _overhead_section(df)
    sp = speedups(df)
    if not sp.empty:
        lines += ["## pNTK vs eNTK", "",
                  "Speedup = eNTK time / pNTK time with the same implementation (higher is better); "
                  "`best` = fastest eNTK / fastest pNTK.", ""]
        impl_cols = {c: c.replace("speedup_", "") for c in sp.columns if c.startswith("speedup_")}
        cols = {"bench": "bench", "model": "network", "O": "O", "N": "N", "entk_best_ms": "eNTK best (ms)",
                "pntk_best_ms": "pNTK best (ms)", **impl_cols}
        lines += [markdown_table(sp, cols), ""]
    auto = auto_choice(df)
    if not auto.empty:
        lines += ["## auto vs the fastest implementation", ""]
        cols = {"group": "group", "kernel": "kernel", "auto_resolves_to": "auto ->", "auto_ms": "auto (ms)",
                "fastest": "fastest", "fastest_ms": "fastest (ms)", "auto_vs_fastest": "auto / fastest"}
        lines += [markdown_table(auto, cols), ""]
        lines += [f"auto within 10% of the fastest in {int((auto['auto_vs_fastest'] <= 1.1).sum())} "
                  f"of {len(auto)} groups; worst {auto['auto_vs_fastest'].max():.2f}x.", ""]
    lines += _fig1_section(df) + _scaling_section(df)
    lines += ["## Groups", ""]
    df = df.assign(case=df["name"].map(_short), median_ms=df["median"] * 1e3, iqr_ms=df["iqr"] * 1e3)
    for group, g in df.groupby("group", sort=True):
        lines += [f"### {group}", ""]
        g = g.sort_values("median")
        cols = {"case": "benchmark", "median_ms": "median (ms)", "iqr_ms": "IQR (ms)", "rounds": "rounds",
                "vs_fastest": "x fastest", "vs_calibration": "x calib", "vs_entk": "x eNTK"}
        lines += [markdown_table(g, cols, {"rounds": "d"}), ""]
    return "\n".join(lines)


def headline(json_path: str | Path, peers: Sequence[str | Path] = ()) -> list[str]:
    """A few markdown bullet lines with a run's key ratios, for the verification report: the
    public call against its peers (with ``peers``' runs, e.g. torch) and its overhead, Figure
    1's speedup and memory against O, the main grid's pNTK/eNTK speedups, speedup against N,
    the near-the-limit ratios (pNTK and eNTK) and auto against the fastest implementation."""
    return _headline(ratios(load_runs([json_path, *peers])))


def _headline(df: pd.DataFrame) -> list[str]:
    lines = [*_peer_headline(df), *_overhead_headline(df)]
    f1 = fig1_table(df)
    for model, g in (f1.groupby("model", sort=True) if not f1.empty else []):
        g = g.sort_values("O")
        speed = ", ".join(f"{s:.3g}x at O = {int(o)}" for o, s in zip(g["O"], g["speedup"], strict=True))
        mem = ", ".join(f"{m:.3g}x" for m in g["memory_ratio"] if not math.isnan(m))
        lines.append(f"- Figure 1 ({model}, one pair): pNTK faster than the eNTK by {speed}"
                     + (f"; eNTK / pNTK compiled memory {mem}" if mem else "") + "; "
                     + _target_text(list(zip(g["O"], g["speedup"], strict=True))) + ".")
    sp = speedups(df)
    grid = sp[sp["bench"] == "kernels"] if not sp.empty else sp
    for o, g in (grid.groupby("O", sort=True) if not grid.empty else []):
        cells = ", ".join(f"{m.split('-')[0]} {s:.3g}x" for m, s in zip(g["model"], g["speedup_best"], strict=True))
        conv = g[~g["model"].str.startswith("mlp")]
        verdicts = ", ".join(
            f"{m.split('-')[0]} {'met' if s >= o / 2 else 'NOT met'}"
            for m, s in zip(conv["model"], conv["speedup_best"], strict=True)
        )
        lines.append(f"- Main grid (N = {int(g['N'].iloc[0])}), O = {int(o)}: fastest eNTK / fastest pNTK: {cells}"
                     f" (target >= O/2 = {o / 2:g}x for conv nets: {verdicts}).")
    table = scaling_table(df)
    for model, g in (table.groupby("model", sort=True) if not table.empty else []):
        pts = g.dropna(subset=["entk_vs_pntk"])
        speed = ", ".join(f"{s:.3g}x at N = {int(n)}" for n, s in zip(pts["N"], pts["entk_vs_pntk"], strict=True))
        top = g.loc[g["N"].idxmax()]
        first = pts.loc[pts["entk_vs_pntk"] >= 5.0, "N"]  # O/2 at O = 10
        reach = f" (>= O/2 = 5x from N = {int(first.min())})" if len(first) else " (never >= O/2 = 5x)"
        lines.append(f"- {model.split('-')[0]}, O = 10, against N: eNTK / pNTK {speed}{reach}; at N = {int(top['N'])} "
                     f"the pNTK takes {top['pntk_vs_bound']:.2f}x its bound (gradient pass + Gram; target "
                     f"<= {NEAR_LIMIT_TARGET}), the blocked pNTK {top['blocked_vs_bound']:.2f}x.")
    lines += _entk_bound_lines(table)
    auto = auto_choice(df)
    if not auto.empty:
        within = int((auto["auto_vs_fastest"] <= 1.1).sum())
        worst = auto.loc[auto["auto_vs_fastest"].idxmax()]
        lines.append(f"- auto within 10% of the fastest implementation in {within} of {len(auto)} groups "
                     f"(target: every group; {_verdict(within == len(auto))}); worst "
                     f"{worst['auto_vs_fastest']:.2f}x ({worst['group']}).")
    return lines


def _target_text(points: list[tuple[float, float]]) -> str:
    """``target >= O/2: met at O = 10; NOT met at O = 100`` for (O, speedup) points."""
    met = [int(o) for o, sp in points if sp >= o / 2]
    missed = [int(o) for o, sp in points if sp < o / 2]
    parts = [f"met at O = {', '.join(map(str, met))}"] if met else []
    parts += [f"NOT met at O = {', '.join(map(str, missed))}"] if missed else []
    return "target >= O/2: " + "; ".join(parts)


def _fig1_section(df: pd.DataFrame) -> list[str]:
    f1 = fig1_table(df)
    if f1.empty:
        return []
    cols = {"model": "network", "O": "O", "entk_ms": "eNTK (ms)", "pntk_ms": "pNTK (ms)", "speedup": "speedup",
            "entk_mb": "eNTK memory (MB)", "pntk_mb": "pNTK memory (MB)", "memory_ratio": "memory ratio"}
    return [
        "## Figure 1: one pair of inputs, time and memory against O", "",
        "The fastest implementation of each kernel; memory is XLA's compiled estimate of one call "
        "(result plus temporaries such as Jacobians), which grows with O for the eNTK and stays flat for "
        "the pNTK.", "",
        markdown_table(f1, cols, {"O": "d"}), "",
    ]


def _scaling_section(df: pd.DataFrame) -> list[str]:
    table = scaling_table(df)
    if table.empty:
        return []
    cols = {"model": "network", "N": "N", "pntk": "pNTK auto", "pntk_blocked": "pNTK blocked",
            "gradients": "gradient pass", "gram": "Gram", "gram_gflops": "Gram GFLOP/s",
            "pntk_vs_bound": "auto / bound", "blocked_vs_bound": "blocked / bound", "entk": "eNTK",
            "entk_vs_pntk": "eNTK / pNTK", "jacobians": "Jacobians", "entk_gram": "eNTK Gram (computed)",
            "entk_vs_bound": "eNTK / bound"}
    lines = [
        "## Time against N, and the pNTK near its limit", "",
        "Medians in ms, O = 10. The bound is one batched per-example gradient pass over the N inputs plus "
        "the N x N Gram product of those (N, P) gradients, both timed in this run (the Gram at this "
        f"run's BLAS rate); the target is pNTK / bound <= {NEAR_LIMIT_TARGET}. The eNTK's bound is its "
        "per-example Jacobian pass (O rows per input, timed) plus the (N O) x (N O) Gram of those rows "
        "at the fastest Gram rate measured for the network (2 (N O)^2 P flops, computed); target eNTK / "
        f"bound <= {ENTK_BOUND_TARGET} "
        f"from N = {ENTK_BOUND_FROM_N}.", "",
        markdown_table(table, cols, {"N": "d"}), "",
    ]
    largest = table.loc[table.groupby("model")["N"].idxmax()]
    for _, row in largest.iterrows():
        for part, label in (("pntk_vs_bound", "pNTK (auto)"), ("blocked_vs_bound", "blocked pNTK")):
            if not math.isnan(row[part]):
                verdict = "met" if row[part] <= NEAR_LIMIT_TARGET else "NOT met"
                lines.append(f"- {row['model']}, N = {int(row['N'])}: {label} / bound = {row[part]:.2f} "
                             f"(target <= {NEAR_LIMIT_TARGET}: {verdict})")
    lines += _entk_bound_lines(table)
    exps = growth_exponents(table)
    if not exps.empty:
        wide = exps.pivot_table(index=["model", "part"], columns="N", values="exponent").reset_index()
        wide.columns = [c if isinstance(c, str) else f"to N={c}" for c in wide.columns]
        lines += ["", "Growth exponent d log(time) / d log(N) between consecutive N (1: linear, 2: the "
                  "N^2 of the kernel):", "",
                  markdown_table(wide, {c: c for c in wide.columns}, {c: ".2f" for c in wide.columns}), ""]
    return lines


def compare_markdown(table: pd.DataFrame, failures: list[str], threshold: float) -> str:
    """Markdown for a :func:`compare` result: verdict, regressions, then every benchmark."""
    normalized = table.attrs.get("normalized", False)
    head = [
        f"# Benchmark comparison (threshold +{threshold:.0%}, "
        + ("calibration-normalized" if normalized else "raw medians: a run lacks the calibration benchmark")
        + ")",
        "",
    ]
    if normalized:
        head += [f"Machine speed (candidate / baseline calibration): {table.attrs['machine_ratio']:.3g}x", ""]
    counts = table["status"].value_counts()
    head += [", ".join(f"{n} {s}" for s, n in counts.items()), ""]
    if failures:
        head += ["## Regressions", "", *(f"- {f}" for f in failures), ""]
    table = table.assign(case=table["name"].map(_short))
    cols = {"case": "benchmark", "group": "group", "baseline_ms": "baseline (ms)",
            "candidate_ms": "candidate (ms)", "raw_ratio": "raw", "ratio": "normalized", "status": "status",
            "note": "note"}
    return "\n".join([*head, "## All benchmarks", "", markdown_table(table, cols)])


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def _peer_headline(df: pd.DataFrame) -> list[str]:
    peers = peer_table(df)
    lines = []
    for kernel in PEER_KERNELS:
        g = peers[peers["kernel"] == kernel] if not peers.empty else peers
        if g.empty:
            continue
        met = g["met"].astype(bool)
        worst = g.iloc[int(np.argmax(g["auto_vs_peer"].to_numpy()))]
        lines.append(
            f"- Public {kernel} (auto) / best peer (neural-tangents called directly, torch.func where run): "
            f"<= {PEER_TARGET} in {int(met.sum())} of {len(g)} groups (target: every group; "
            f"{_verdict(bool(met.all()))}); median {g['auto_vs_peer'].median():.2f}x, worst "
            f"{worst['auto_vs_peer']:.2f}x ({worst['group']}, against {worst['best_peer']}"
            + (f": {worst['reason']}" if worst["reason"] else "") + ")."
        )
    return lines


def _overhead_headline(df: pd.DataFrame) -> list[str]:
    ov = overhead_table(df)
    if ov.empty:
        return []
    cells = ", ".join(f"{m.split('-')[0]} {o:.3f} ms" for m, o in zip(ov["model"], ov["overhead_ms"], strict=True))
    return [f"- Public call over its bare compiled executable (cached signature, pNTK): {cells} (target <= "
            f"{OVERHEAD_TARGET_MS} ms: {_verdict(bool(ov['met'].all()))})."]


def _peer_section(df: pd.DataFrame) -> list[str]:
    peers = peer_table(df)
    if peers.empty:
        return []
    peers = peers.assign(verdict=[("–" if m is None else _verdict(bool(m))) for m in peers["met"]])
    cols = {"group": "group", "kernel": "kernel", "N": "N", "auto_ms": "public auto (ms)", "resolved": "auto ->",
            "best_suite": "fastest public", "best_suite_ms": "(ms)", "nt_ms": "neural-tangents best (ms)",
            "torch_ms": "torch.func (ms)", "best_peer": "best peer", "auto_vs_peer": "auto / peer",
            "verdict": f"<= {PEER_TARGET}", "reason": "why not"}
    return [
        "## The public call against its peers", "",
        "The public call (`suite.pntk(...)` etc., validation included) beside neural-tangents' three "
        "implementations called directly (jitted; the pNTK and the other scalar kernels on the summed or "
        "projected function) and, from `nox -s bench_peers`, the torch.func vmap(jacrev) recipe on the same "
        f"network, parameters and inputs. Target: public pNTK and eNTK <= {PEER_TARGET}x the best peer.", "",
        markdown_table(peers, cols, {"N": "d"}), "",
    ]


def _overhead_section(df: pd.DataFrame) -> list[str]:
    ov = overhead_table(df)
    if ov.empty:
        return []
    ov = ov.assign(verdict=[_verdict(bool(m)) for m in ov["met"]])
    cols = {"model": "network", "O": "O", "N": "N", "kernel": "kernel", "public_ms": "public (ms)",
            "compiled_ms": "bare executable (ms)", "overhead_ms": "overhead (ms)",
            "overhead_min_ms": "overhead, fastest rounds (ms)", "verdict": f"<= {OVERHEAD_TARGET_MS} ms"}
    return [
        "## Overhead of the public call", "",
        "The public call on a cached signature (checks, one fused NaN/inf reduction, the cached plan) "
        "against the bare compiled program `prepare(...).run_unchecked()` on the same inputs (the same program, its NaN/inf flags not read).", "",
        markdown_table(ov, cols, {"O": "d", "N": "d"}), "",
    ]


def _entk_bound_lines(table: pd.DataFrame) -> list[str]:
    """One line per network: eNTK / bound at each N from ENTK_BOUND_FROM_N, met or not."""
    lines: list[str] = []
    if table.empty or "entk_vs_bound" not in table:
        return lines
    for model, g in table.groupby("model", sort=True):
        pts = g[(g["N"] >= ENTK_BOUND_FROM_N)].dropna(subset=["entk_vs_bound"])
        if pts.empty:
            continue
        cells = ", ".join(f"{r:.2f} at N = {int(n)}" for n, r in zip(pts["N"], pts["entk_vs_bound"], strict=True))
        met = bool((pts["entk_vs_bound"] <= ENTK_BOUND_TARGET).all())
        lines.append(f"- {model}: eNTK (auto) / bound = {cells} (target <= {ENTK_BOUND_TARGET} from N = "
                     f"{ENTK_BOUND_FROM_N}: {_verdict(met)})")
    return lines
