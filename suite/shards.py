"""Split a grid across CI jobs (``run --shard I/K``) and merge their result stores (``merge``).

**Shards.** Shard ``I/K`` (1 <= I <= K) of a run takes every K-th case of the run's cases sorted
by case key, starting at the I-th: deterministic (the same cases on every machine and every
call, whatever order the grid lists them in), disjoint, and together the whole grid. Cases of a
timed experiment (its rows hold wall-clock times, :attr:`Experiment.timed`) are not split:
shard 1 runs them all and the other shards none, so their timings come from one host.

**Merge.** :func:`merge` combines the stores of several run folders (one per shard) into one
folder, experiment by experiment, as if one run had computed every case. It refuses, naming the
folders and the fix: stores of another results version; runs that did not finish; results
computed in different environments (jax, jaxlib, neural-tangents, backend or device; the host
may differ, except for timed experiments); and one case stored twice with different values.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from suite import paths
from suite.errors import SuiteError
from suite.store import CASE_KEY_COLUMN, atomic_write_csv, atomic_write_json, grid_membership

#: Environment fields that must agree for stores to be merged (the runner's fingerprint less
#: the host: CI shards run on different machines of one image).
MERGE_FIELDS = ("jax", "jaxlib", "neural_tangents", "backend", "device")
#: Row columns that legitimately differ between two computations of one case.
VOLATILE_COLUMNS = ("seconds", "grid")
#: Relative tolerance for numbers of a case stored twice (float32 rounding on another host).
DUPLICATE_RTOL = 1e-6


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` -> ``(2, 4)``; a clear error for anything else."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise SuiteError(
            f"--shard must be I/K with 1 <= I <= K (e.g. 1/4 for the first of 4 parts), got {text!r}"
        )
    return int(m.group(1)), int(m.group(2))


def select(keys: Sequence[str], shard: tuple[int, int], *, timed: bool = False) -> list[int]:
    """Positions in ``keys`` (case keys) of the cases of ``shard`` (see the module docstring)."""
    i, k = shard
    if timed:
        return list(range(len(keys))) if i == 1 else []
    order = sorted(range(len(keys)), key=lambda j: keys[j])
    return sorted(order[i - 1::k])


# --------------------------------------------------------------------------- merge


def _read(directory: Path, name: str) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """Rows and sidecar of one store (checked by :class:`ResultStore`), or None if absent."""
    from suite.experiments import EXPERIMENTS
    from suite.runner import _read_sidecar
    from suite.store import ResultStore

    csv, meta_path = directory / f"{name}.csv", directory / f"{name}.json"
    if not csv.exists() and not meta_path.exists():
        return None
    version = EXPERIMENTS[name].version
    stored = _read_sidecar(meta_path).get("version")
    if stored is not None and stored != version:
        raise SuiteError(
            f"{paths.shown(meta_path)} holds {name} results of version {stored!r}, but this suite "
            f"writes version {version!r}; results of different versions are never merged: rerun that "
            "shard with this version of the suite"
        )
    store = ResultStore(directory, name, version=version)
    return store.load(), store.metadata


def _environment_problem(name: str, runs: list[tuple[Path, pd.DataFrame, dict[str, Any]]], timed: bool) -> str | None:
    """Why the runs' environments cannot be merged, or None."""
    fields = (*MERGE_FIELDS, "host") if timed else MERGE_FIELDS
    first, env0 = runs[0][0], runs[0][2].get("environment") or {}
    for folder, _, meta in runs[1:]:
        env = meta.get("environment") or {}
        changed = [f"{f}: {env0.get(f)} in {paths.shown(first)}, {env.get(f)} in {paths.shown(folder)}"
                   for f in fields if env0.get(f) != env.get(f)]
        if changed:
            why = " (its rows hold wall-clock times, so all its cases must come from one host)" if timed else ""
            return (f"{name} results were computed in different environments{why}: {'; '.join(changed)}. "
                    "Merging would mix them: rerun those shards in one environment (the same jax, "
                    "jaxlib, neural-tangents, backend and device)")
    return None


def _same_case(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Whether two stored computations of one case agree (volatile columns aside)."""
    a = a.drop(columns=[c for c in VOLATILE_COLUMNS if c in a.columns]).reset_index(drop=True)
    b = b.drop(columns=[c for c in VOLATILE_COLUMNS if c in b.columns]).reset_index(drop=True)
    if a.shape != b.shape or set(a.columns) != set(b.columns):
        return False
    for col in a.columns:
        x, y = a[col], b[col]
        if pd.api.types.is_float_dtype(x) and pd.api.types.is_float_dtype(y):
            if not np.allclose(x.to_numpy(), y.to_numpy(), rtol=DUPLICATE_RTOL, atol=0.0, equal_nan=True):
                return False
        elif not x.astype(str).equals(y.astype(str)):
            return False
    return True


def _merge_one(name: str, runs: list[tuple[Path, pd.DataFrame, dict[str, Any]]], timed: bool) -> tuple[pd.DataFrame, dict[str, Any]]:
    for folder, _, meta in runs:
        if meta.get("finished") is None:
            raise SuiteError(
                f"the {name} run in {paths.shown(folder)} did not finish; rerun its command (it resumes), "
                "then merge"
            )
    problem = _environment_problem(name, runs, timed)
    if problem:
        raise SuiteError(problem)
    kept: dict[str, tuple[Path, pd.DataFrame]] = {}
    parts: list[pd.DataFrame] = []
    members: dict[str, set[str]] = {}
    for folder, rows, meta in runs:
        for label, keys in grid_membership(rows, meta).items():
            members.setdefault(label, set()).update(keys)
        for group_key, case in rows.groupby(CASE_KEY_COLUMN, sort=False):
            key = str(group_key)
            if key in kept:
                other, first = kept[key]
                if not _same_case(first, case):
                    raise SuiteError(
                        f"case {key} of {name} is stored in {paths.shown(other)} and in {paths.shown(folder)} "
                        "with different values; the shards overlap and disagree: keep the one you trust "
                        "(or recompute it with run --fresh) and merge again"
                    )
                continue
            kept[key] = (folder, case)
            parts.append(case)
    merged = pd.concat(parts, ignore_index=True)
    metas = [meta for _, _, meta in runs]
    grids = [m.get("grid") for m in metas if m.get("grid")]
    meta = {
        **metas[0],
        "grid": grids[-1] if grids else None,
        "grids": {g: sorted(v) for g, v in members.items()},
        "n_cases": len(kept),
        "started": min(str(m.get("started") or "") for m in metas) or None,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "compute_seconds": sum(float(m.get("compute_seconds") or 0.0) for m in metas),
        "hosts": sorted({str((m.get("environment") or {}).get("host")) for m in metas}),
        "merged_from": [paths.shown(folder) for folder, _, _ in runs],
    }
    for key in ("published", "published_from", "published_at"):
        meta.pop(key, None)
    return merged, meta


def merge(sources: Sequence[str | Path], out: str | Path | None = None) -> list[Path]:
    """Merge the result stores of run folders ``sources`` into run folder ``out``.

    Args:
        sources: reports folders of the runs (each with a ``data/`` folder), e.g. one per shard.
        out: the merged reports folder (default the run folder ``reports/latest``); stores
            already there are merged too, never dropped. The committed snapshot is refused
            (it changes only through ``publish``).

    Returns:
        The sidecars written, one per experiment.

    Raises:
        SuiteError: a source without results, or a mismatch (see the module docstring); nothing
            is written then.
    """
    from suite.experiments import EXPERIMENTS
    from suite.runner import refuse_snapshot

    out = Path(out if out is not None else paths.LATEST)
    refuse_snapshot(out, "merge")
    folders: list[Path] = []
    for source in map(Path, sources):
        if not paths.data_dir(source).is_dir():
            raise SuiteError(
                f"{paths.shown(source)} has no {paths.DATA_DIR}/ folder of results; pass the --out folder "
                "of each run to merge (e.g. the folders of run --shard 1/4 ... 4/4)"
            )
        if source.resolve() not in {f.resolve() for f in folders}:
            folders.append(source)
    if not folders:
        raise SuiteError("nothing to merge: pass the run folders, e.g. python -m suite merge shard-1 shard-2")
    if paths.data_dir(out).is_dir() and out.resolve() not in {f.resolve() for f in folders}:
        folders.append(out)  # what is there already is merged too, never dropped

    merged: dict[str, tuple[pd.DataFrame, dict[str, Any]]] = {}
    for name, exp in EXPERIMENTS.items():
        runs = [(f, *found) for f in folders if (found := _read(paths.data_dir(f), name)) is not None]
        runs = [r for r in runs if len(r[1])]
        if runs:
            merged[name] = _merge_one(name, runs, exp.timed)
    if not merged:
        raise SuiteError(f"no results in {', '.join(paths.shown(paths.data_dir(f)) for f in folders)} to merge")

    written = []
    for name, (rows, meta) in merged.items():
        meta_path = paths.data_dir(out) / f"{name}.json"
        # Sidecar first: a CSV is never left without the sidecar that vouches for it.
        atomic_write_json(meta_path, meta)
        atomic_write_csv(paths.data_dir(out) / f"{name}.csv", rows)
        print(f"{name}: {meta['n_cases']} cases from {len(meta['merged_from'])} folders -> "
              f"{paths.shown(meta_path.parent)}", file=sys.stderr)
        written.append(meta_path)
    return written
