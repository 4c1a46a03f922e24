"""The command line ``python -m suite.bench {summarize,compare}`` (see :mod:`suite.bench`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import suite.bench as bench
from suite.bench import (
    BenchFileError,
    compare,
    compare_markdown,
    newest_other,
    summarize,
    write_figure,
)
from suite.bench.loading import DEFAULT_THRESHOLD


def _write(text: str, out: Path | None, default_name: str) -> None:
    if out is None:
        print(text)
        return
    target = out if out.suffix == ".md" else out / default_name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text + "\n")
    print(f"wrote {target}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m suite.bench {summarize,compare}``; returns the exit code."""
    p = argparse.ArgumentParser(prog="python -m suite.bench", description=bench.__doc__.split("\n\n")[0] if bench.__doc__ else None)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("summarize", help="markdown summary of one pytest-benchmark JSON run (and its peer runs)")
    s.add_argument("json", type=Path)
    s.add_argument("peers", type=Path, nargs="*",
                   help="runs of the same groups to add, e.g. nox -s bench_peers' torch run")
    s.add_argument("--out", type=Path,
                   help="a .md file, or a directory for <run>.md; a .png (and .svg) figure goes beside it "
                        "(default: markdown to stdout, no figure)")
    c = sub.add_parser("compare", help="fail (exit 1) when a benchmark regressed against the baseline")
    c.add_argument("baseline", type=Path)
    c.add_argument("candidate", type=Path, nargs="?", help="default: newest other JSON next to the baseline")
    c.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help="allowed slowdown of a normalized median (default 0.25 = 25%%)")
    c.add_argument("--out", type=Path, help="also write the comparison as markdown (.md file or directory)")
    args = p.parse_args(argv)
    try:
        if args.command == "summarize":
            peers = tuple(args.peers)
            if args.out is None:
                print(summarize(args.json, peers=peers))
                return 0
            md = args.out if args.out.suffix == ".md" else args.out / f"{args.json.stem}.md"
            png = write_figure(args.json, md.with_suffix(".png"), peers)
            print(f"wrote {png}")
            _write(summarize(args.json, figure=png.name, peers=peers), md, md.name)
            return 0
        candidate = args.candidate or newest_other(args.baseline)
        print(f"baseline:  {args.baseline}\ncandidate: {candidate}")
        table, failures = compare(args.baseline, candidate, args.threshold)
    except (BenchFileError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = compare_markdown(table, failures, args.threshold)
    if args.out is not None:
        _write(text, args.out, f"compare-{Path(candidate).stem}.md")
    else:
        print(text)
    if failures:
        print(f"\nFAILED: {len(failures)} benchmark(s) slower than the baseline by more than "
              f"{args.threshold:.0%} (calibration-normalized):", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    print(f"\nOK: no benchmark slower than the baseline by more than {args.threshold:.0%}.")
    return 0
