"""Run an experiment's grid with a progress bar, resuming from the results already stored.

Every finished case is written atomically to ``<out>/data/<experiment>.csv`` at once (see
:class:`suite.store.ResultStore`), so an interrupted run loses at most the case in flight and
a rerun computes only the missing cases. Results computed in another environment (other
library versions, backend or host) are not mixed in: they are moved to ``<out>/data/archive``
and the grid is recomputed.
"""

from __future__ import annotations

import platform
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from suite import paths
from suite.experiments import common, get_experiment
from suite.store import ResultStore, case_key

#: Fields of the environment that must match for stored results to be reused.
FINGERPRINT_FIELDS = ("jax", "jaxlib", "neural_tangents", "backend", "device", "host")


def fingerprint(env: dict[str, Any]) -> dict[str, Any]:
    """The part of the environment that decides whether stored results can be reused."""
    return {k: env.get(k) for k in FINGERPRINT_FIELDS}


def data_dir(out: str | Path | None) -> Path:
    """Folder of the results CSVs for reports directory ``out`` (default ``reports/``)."""
    return Path(out if out is not None else paths.REPORTS) / "data"


def case_id(config: Any) -> str:
    """Stable key of one case: readable id plus a hash of its full config."""
    return f"{config.id}-{case_key(asdict(config))}"


def archive(store: ResultStore) -> Path:
    """Move a store's files to ``archive/`` beside them (nothing is deleted); return the folder."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    dest = store.directory / "archive"
    dest.mkdir(parents=True, exist_ok=True)
    for path in (store.csv_path, store.meta_path):
        if path.exists():
            shutil.move(str(path), dest / f"{path.stem}-{stamp}{path.suffix}")
    return dest


def run_experiment(
    name: str,
    grid: str = "quick",
    *,
    archs: Sequence[str] | None = None,
    out: str | Path | None = None,
    dtype: str | None = None,
    fresh: bool = False,
    progress: bool = True,
    max_cases: int | None = None,
) -> pd.DataFrame:
    """Run (or resume) ``grid`` of experiment ``name``; return the rows of that grid's cases.

    Args:
        name: experiment name (see ``python -m suite list``).
        grid: ``quick`` or ``full``.
        archs: restrict to these architectures.
        out: reports directory; results go to ``<out>/data``.
        dtype: override the configs' dtype (``float64`` enables jax x64).
        fresh: archive stored results and recompute everything.
        progress: show a progress bar on stderr.
        max_cases: stop after computing this many new cases (for tests and quick looks).
    """
    exp = get_experiment(name)
    configs = exp.grid(grid, archs)
    if dtype is not None:
        configs = [type(c)(**{**asdict(c), "dtype": dtype}) for c in configs]
    for c in configs:
        common.ensure_dtype(c.dtype)

    env = {**common.environment(), "host": platform.node()}
    directory = data_dir(out)
    store = ResultStore(directory, exp.name, version=exp.version)
    stored_env = store.metadata.get("environment")
    if store.done_keys() and (fresh or (stored_env and fingerprint(stored_env) != fingerprint(env))):
        reason = "--fresh" if fresh else "they were computed in another environment"
        where = archive(store)
        print(f"{exp.name}: moved earlier results to {where} ({reason})", file=sys.stderr)
        store = ResultStore(directory, exp.name, version=exp.version)

    keys = [case_id(c) for c in configs]
    done = store.done_keys()
    todo = [(k, c) for k, c in zip(keys, configs, strict=True) if k not in done]
    if max_cases is not None:
        todo = todo[:max_cases]
    if len(todo) < len(configs):
        print(f"{exp.name}: {len(configs) - len(todo)} of {len(configs)} cases already in "
              f"{store.csv_path}; computing {len(todo)}", file=sys.stderr)

    started = time.perf_counter()
    store.write_metadata({"grid": grid, "environment": env, "started": _now()})
    bar = tqdm(todo, desc=f"{exp.name} [{grid}]", unit="case", disable=not progress, file=sys.stderr)
    for key, config in bar:
        bar.set_postfix_str(config.id)
        t0 = time.perf_counter()
        rows = exp.run(config)
        rows["grid"] = grid
        rows["seconds"] = time.perf_counter() - t0
        store.add(key, rows)
    bar.close()
    previous = float(store.metadata.get("compute_seconds", 0.0))
    store.write_metadata({
        "finished": _now(),
        "compute_seconds": previous + time.perf_counter() - started,
        "n_cases": len(store.done_keys()),
    })
    frame = store.load()
    return frame[frame["case_key"].isin(keys)].reset_index(drop=True)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
