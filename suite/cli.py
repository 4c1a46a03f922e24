"""Command line: ``python -m suite {list,run,verify,merge,doctor,report,figures,publish,gate,card}``.

Errors in what the user asked for print one line naming the problem and the fix, and exit 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from suite.errors import SuiteError


def _parser() -> argparse.ArgumentParser:
    from suite import paths
    from suite.experiments import EXPERIMENTS, GRID_NAMES

    p = argparse.ArgumentParser(
        prog="python -m suite",
        description="Verify and benchmark the pseudo-NTK approximation of the empirical NTK.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list experiments, architectures, kernels and datasets")

    latest = paths.shown(paths.LATEST)
    snapshot = paths.shown(paths.SNAPSHOT)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--grid", choices=GRID_NAMES, default="quick", help="grid size (default: quick)")
        sp.add_argument("--arch", action="append", help="only this architecture (repeatable)")
        sp.add_argument("--out", type=Path, default=paths.LATEST,
                        help=f"run folder (default: {latest}/, git-ignored; the snapshot in {snapshot}/ "
                             "changes only through publish)")
        sp.add_argument("--float64", action="store_true", help="compute in float64 (default float32)")
        sp.add_argument("--fresh", action="store_true",
                        help="archive the stored results of this run's cases and recompute them")
        sp.add_argument("--no-progress", action="store_true", help="hide the progress bar")
        sp.add_argument("--jobs", type=int, default=1, help="worker processes (default 1; results are identical)")

    run = sub.add_parser("run", help="run one experiment's grid (resumes), then rebuild the report")
    run.add_argument("experiment", help=f"one of: {', '.join(EXPERIMENTS)}; or 'all'")
    common(run)
    run.add_argument("--grid-file", type=Path,
                     help="custom grid (TOML or JSON; see suite.experiments.load_grid_file), labelled custom-<stem>")
    run.add_argument("--shard", metavar="I/K",
                     help="only the I-th of K deterministic parts of the cases (a CI matrix job); "
                          "combine the parts' --out folders with python -m suite merge")
    verify = sub.add_parser("verify", help="run every theorem experiment, then write summary.json, figures, REPORT.md")
    common(verify)
    merge = sub.add_parser("merge", help="combine the result stores of several runs (e.g. shards), then report")
    merge.add_argument("sources", nargs="+", type=Path, metavar="DIR", help="run folders (each run's --out)")
    merge.add_argument("--out", type=Path, default=paths.LATEST,
                       help=f"merged run folder (default: {latest}/; stores already there are merged too)")
    sub.add_parser("doctor", help="check this Python: versions, devices, memory budget, neural-tangents; "
                                  "print the fix for each problem (exit 1 if any)")
    pub = sub.add_parser(
        "publish",
        help=f"merge a finished run into the committed snapshot ({snapshot}/) and rebuild its report",
    )
    pub.add_argument("--from", dest="source", type=Path, default=paths.LATEST,
                     help=f"run folder to publish (default: {latest}/)")
    pub.add_argument("--to", dest="snapshot", type=Path, default=paths.SNAPSHOT,
                     help=f"snapshot folder (default: {snapshot}/)")
    pub.add_argument("--experiment", action="append", help="only this experiment (repeatable; default: all run)")
    pub.add_argument("--rebuild", action="store_true",
                     help="copy nothing: rebuild the snapshot's summary.json, figures and REPORT.md from its data")
    for name, text in (("report", "rebuild summary.json, figures and REPORT.md from saved data"),
                       ("figures", "re-render the figures from saved data (same as report)")):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("--out", type=Path, default=paths.LATEST,
                        help=f"run folder to read and write (default: {latest}/; the snapshot is rebuilt "
                             "by publish --rebuild)")
        sp.add_argument("--grid", default=None,
                        help="grid to report: quick, full or custom-<grid file stem> (default: last run)")
    gate = sub.add_parser("gate", help="exit 1 when a headline series is not consistent or a contradiction is unexplained")
    gate.add_argument("--summary", type=Path, default=paths.summary_file(paths.LATEST),
                      help=f"summary.json to judge (default: the latest run's, {latest}/summary.json; "
                           f"the committed one is {snapshot}/summary.json)")
    card = sub.add_parser(
        "card",
        help="approximation card of your own network: is the pNTK close to its eNTK, and what does it save",
        description="Write card.md, card.json and card.png for the network a factory returns: "
                    "MODULE:FACTORY names a function without arguments returning (apply_fn, params, x[, y]), "
                    "e.g. suite.examples.plain_jax:build.",
    )
    card.add_argument("factory", help="MODULE:FACTORY, e.g. suite.examples.flax_linen:build")
    card.add_argument("--n-probe", type=int, default=None,
                      help="inputs of the probe on which the exact eNTK is computed (default: min(N, 64, max(16, 1280 // O)))")
    card.add_argument("--out", type=Path, default=None,
                      help=f"output folder (default: {latest}/cards/<module>-<factory>/)")
    card.add_argument("--seed", type=int, default=0, help="seed of the probe, the train/test split and the projection")
    card.add_argument("--ridge", type=float, default=0.1,
                      help="relative ridge of the recommendation's kernel regression (default 0.1)")
    card.add_argument("--no-timing", action="store_true", help="leave out the measured and extrapolated cost")
    return p


def _list() -> None:
    from suite import data, kernels, models
    from suite.experiments import EXPERIMENTS

    print("experiments:")
    for e in EXPERIMENTS.values():
        sizes = ", ".join(f"{g}={len(e.grid(g))} cases" for g in e.grids)
        print(f"  {e.name:14s} {e.theorem:8s} {e.description} ({sizes})")
    print("architectures:")
    for a in models.ARCHS.values():
        print(f"  {a.name:14s} {a.description}")
    print("kernels:")
    for k in kernels.KERNELS.values():
        print(f"  {k.name:14s} {k.description}")
    print(f"implementations: {', '.join(kernels.IMPLEMENTATION_CHOICES)}")
    print("datasets:")
    for d in data.DATASETS.values():
        print(f"  {d.name:14s} {d.description}")


def _run(names: Sequence[str], args: argparse.Namespace) -> None:
    from suite import runner, shards
    from suite.experiments import get_experiment, load_grid_file

    start = time.perf_counter()
    grid_file = getattr(args, "grid_file", None)
    grid = args.grid
    shard = shards.parse_shard(args.shard) if getattr(args, "shard", None) is not None else None
    for name in names:
        configs = None
        if grid_file is None and len(names) > 1 and grid not in get_experiment(name).grids:
            print(f"{name}: has no {grid!r} grid, skipped")
            continue
        if grid_file is not None:
            configs = get_experiment(name).custom_grid(load_grid_file(grid_file))
            grid = f"custom-{grid_file.stem}"
        runner.run_experiment(
            name, grid, archs=args.arch, out=args.out, dtype="float64" if args.float64 else None,
            fresh=args.fresh, progress=not args.no_progress, configs=configs, jobs=args.jobs, shard=shard,
        )
    if shard is not None:
        print(f"shard {shard[0]}/{shard[1]} done in {time.perf_counter() - start:.0f} s (no report: it holds a part "
              f"of the grid); merge the shards' folders: python -m suite merge DIR... --out DIR")
        return
    _report(args.out, grid)
    print(f"done in {time.perf_counter() - start:.0f} s")


def _report(out: Path, grid: str | None, *, snapshot: bool = False) -> None:
    from suite import report, runner

    if not snapshot:
        runner.refuse_snapshot(out, "report")
    written = report.build(out, grid)
    summary = report.load_summary(written["summary"])
    counts: dict[str, int] = {}
    for row in summary:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    head = [r for r in summary if r.get("headline")]
    for r in head:
        slope = "nan" if r["slope"] is None else f"{r['slope']:+.2f}"
        print(f"  {r['arch']:7s} depth {r['depth']}: pNTK rel. Frobenius slope {slope}  -> {r['verdict']}")
    print(f"verdicts over {len(summary)} series: {counts}")
    print(f"wrote {written['summary']}, {written['report']} and {len(written['figures'])} figure files")


def _gate(path: Path) -> int:
    from suite import report

    rows = report.load_summary(path)
    for r in (r for r in rows if r.get("headline")):
        slope = "nan" if r["slope"] is None else f"{r['slope']:+.2f}"
        print(f"  headline {r['arch']:7s} depth {r['depth']}: slope {slope}  -> {r['verdict']}")
    problems = report.gate(rows)
    for line in problems:
        print(f"FAIL: {line}")
    if problems:
        print(f"gate failed: {len(problems)} problem(s) in {path}")
        return 1
    print(f"gate passed: every headline series is consistent and no contradiction is unexplained ({path})")
    return 0


def _publish(args: argparse.Namespace) -> None:
    from suite import paths, runner

    if not args.rebuild:
        for path in runner.publish(args.source, args.snapshot, args.experiment):
            print(f"published {paths.shown(path)} (from {paths.shown(args.source)})")
    elif not runner.is_snapshot(args.snapshot):
        raise SuiteError(f"{paths.shown(args.snapshot)} holds no published results to rebuild; publish a run first")
    _report(args.snapshot, None, snapshot=True)


def _card(args: argparse.Namespace) -> None:
    from suite import cards, paths

    out = args.out
    if out is None:
        slug = args.factory.replace(":", "-").split(".")[-1] if ":" in args.factory else "card"
        out = paths.LATEST / "cards" / slug
    if args.seed < 0:
        raise SuiteError(f"--seed must be a non-negative integer, got {args.seed}")
    start = time.perf_counter()
    card = cards.card_from_factory(args.factory, n_probe=args.n_probe, key=args.seed, ridge=args.ridge,
                                   timing=not args.no_timing)
    written = card.save(out)
    print(card.recommendation)
    print(f"wrote {', '.join(paths.shown(written[k]) for k in ('markdown', 'json', 'png'))} "
          f"in {time.perf_counter() - start:.0f} s")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.command == "list":
            _list()
        elif args.command == "run":
            from suite.experiments import EXPERIMENTS, get_experiment

            names = list(EXPERIMENTS) if args.experiment == "all" else [get_experiment(args.experiment).name]
            _run(names, args)
        elif args.command == "verify":
            from suite.experiments import EXPERIMENTS

            _run([n for n, e in EXPERIMENTS.items() if e.verify], args)
        elif args.command == "merge":
            from suite import shards

            shards.merge(args.sources, args.out)
            _report(args.out, None)
        elif args.command == "doctor":
            from suite import doctor

            return doctor.run()
        elif args.command == "gate":
            return _gate(args.summary)
        elif args.command == "publish":
            _publish(args)
        elif args.command == "card":
            _card(args)
        else:
            _report(args.out, args.grid)
    except SuiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished cases are saved; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0
