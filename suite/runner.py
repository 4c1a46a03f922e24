"""Run an experiment's grid with a progress bar, resuming from the results already stored.

Every finished case is written atomically to ``<out>/data/<experiment>.csv`` at once (see
:class:`suite.store.ResultStore`), so an interrupted run loses at most the case in flight and
a rerun computes only the missing cases. Results computed in another environment (other
library versions, backend or host) are not mixed in: they are moved to ``<out>/data/archive``
and the grid is recomputed.
"""

from __future__ import annotations

import multiprocessing
import platform
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jax
import pandas as pd
from tqdm.auto import tqdm

from suite import paths
from suite.errors import require_positive_int
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
    configs: Sequence[Any] | None = None,
    jobs: int = 1,
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
        configs: explicit cases (e.g. from a grid file) instead of the named grid; ``grid`` is
            then only the label stored with the rows.
        jobs: compute cases in this many worker processes (results are identical to one
            process; the parent alone writes the results file).
    """
    exp = get_experiment(name)
    require_positive_int("jobs", jobs)
    if exp.timed and jobs > 1:
        print(f"{exp.name}: measures wall-clock time, so its cases run one at a time (ignoring --jobs {jobs})",
              file=sys.stderr)
        jobs = 1
    configs = list(configs) if configs is not None else exp.grid(grid, archs)
    if archs and configs:
        configs = [c for c in configs if c.arch in archs]
    if dtype is not None:
        configs = [type(c)(**{**asdict(c), "dtype": dtype}) for c in configs]
    for c in configs:
        common.ensure_dtype(c.dtype)

    env = {**common.environment(), "host": platform.node()}
    directory = data_dir(out)
    store = ResultStore(directory, exp.name, version=exp.version)
    stored_env = store.metadata.get("environment")
    published = bool(store.metadata.get("published"))
    if store.done_keys() and (fresh or published or (stored_env and fingerprint(stored_env) != fingerprint(env))):
        reason = (
            "--fresh" if fresh
            else "they are the committed snapshot (git keeps it too); recomputing on this machine" if published
            else "they were computed in another environment"
        )
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
    bar = tqdm(total=len(todo), desc=f"{exp.name} [{grid}]", unit="case", disable=not progress, file=sys.stderr)
    for key, config, rows, seconds in _compute(exp.name, todo, jobs):
        bar.set_postfix_str(config.id)
        rows["grid"] = grid
        rows["seconds"] = seconds
        store.add(key, rows)
        bar.update()
    bar.close()
    previous = float(store.metadata.get("compute_seconds", 0.0))
    store.write_metadata({
        "finished": _now(),
        "compute_seconds": previous + time.perf_counter() - started,
        "n_cases": len(store.done_keys()),
    })
    frame = store.load()
    return frame[frame["case_key"].isin(keys)].reset_index(drop=True)


def _timed_case(name: str, config: Any) -> tuple[pd.DataFrame, float]:
    """Compute one case (in this or a worker process)."""
    t0 = time.perf_counter()
    rows = get_experiment(name).run(config)
    return rows, time.perf_counter() - t0


def _init_worker(x64: bool) -> None:
    jax.config.update("jax_enable_x64", x64)


def _compute(name: str, todo: list[tuple[str, Any]], jobs: int) -> Iterator[tuple[str, Any, pd.DataFrame, float]]:
    """Yield finished cases in grid order, computed here or in ``jobs`` spawned workers."""
    if jobs == 1 or len(todo) <= 1:
        for key, config in todo:
            yield key, config, *_timed_case(name, config)
        return
    # spawn, not fork: jax is multithreaded and must not be forked after initialisation.
    # Workers take the parent's x64 mode: it changes jax's default precision (e.g. of the
    # infinite-width kernel), and results must not depend on the number of processes.
    x64 = bool(jax.config.read("jax_enable_x64"))
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker, initargs=(x64,)) as pool:
        futures = [(key, config, pool.submit(_timed_case, name, config)) for key, config in todo]
        for key, config, future in futures:
            yield key, config, *future.result()


def publish(out: str | Path | None = None) -> list[Path]:
    """Mark every stored result under ``out`` as a published snapshot (the committed report):
    a later run recomputes instead of resuming from it, so a fresh clone verifies on its own
    machine. Returns the sidecars marked."""
    from suite.experiments import EXPERIMENTS

    marked = []
    for name, exp in EXPERIMENTS.items():
        store = ResultStore(data_dir(out), name, version=exp.version)
        if store.done_keys():
            store.write_metadata({"published": True})
            marked.append(store.meta_path)
    return marked


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
