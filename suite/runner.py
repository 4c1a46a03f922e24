"""Run an experiment's grid with a progress bar, resuming from the results already stored.

Runs write to the run folder (``reports/latest/`` by default, git-ignored; see
:mod:`suite.paths`), never to the committed snapshot: that changes only through
:func:`publish`. Every finished case is written atomically to ``<out>/data/<experiment>.csv``
at once (see :class:`suite.store.ResultStore`), so an interrupted run loses at most the case in
flight and a rerun computes only the missing cases.

Nothing a run does not recompute is moved or dropped. Results computed in another environment
(other library versions, backend or host) are not mixed in: when the run recomputes every
stored case they are moved to ``<out>/data/archive`` first, and otherwise the run stops and
says how to proceed. ``--fresh`` sets aside only the stored cases the run recomputes.
"""

from __future__ import annotations

import json
import multiprocessing
import platform
import shutil
import sys
import time
from collections.abc import Iterator, Sequence, Set
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jax
import pandas as pd
from tqdm.auto import tqdm

from suite import data, paths, shards
from suite.errors import SuiteError, require_positive_int
from suite.experiments import common, get_experiment
from suite.store import (
    CASE_KEY_COLUMN,
    ResultStore,
    atomic_write_csv,
    atomic_write_json,
    case_key,
    grid_membership,
)

#: Fields of the environment that must match for stored results to be reused.
FINGERPRINT_FIELDS = ("jax", "jaxlib", "neural_tangents", "backend", "device", "host")


def fingerprint(env: dict[str, Any], *, timed: bool = False) -> dict[str, Any]:
    """The part of the environment that decides whether stored results can be reused: the
    versions, backend and device kind, and for timed experiments (rows with wall-clock times)
    also the host. Other results do not depend on the machine they ran on, so a run resumed on
    another machine (a later session, a CI shard) keeps them, as ``merge`` does."""
    return {k: env.get(k) for k in FINGERPRINT_FIELDS if timed or k != "host"}


def data_dir(out: str | Path | None) -> Path:
    """Folder of the results CSVs for reports directory ``out`` (default: the run folder)."""
    return paths.data_dir(out)


def case_id(config: Any) -> str:
    """Stable key of one case: readable id plus a hash of its full config. Fields a config
    class lists in ``KEY_OMITS_DEFAULT`` (added after results were published) enter the hash
    only when they differ from their default, so results stored before they existed keep
    their keys (:func:`suite.experiments.fill_config_defaults` fills their rows' columns)."""
    values = asdict(config)
    defaults = {f.name: f.default for f in fields(config)}
    for name in getattr(type(config), "KEY_OMITS_DEFAULT", ()):
        if values[name] == defaults[name]:
            del values[name]
    return f"{config.id}-{case_key(values)}"


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _read_sidecar(path: Path) -> dict[str, Any]:
    """A sidecar's raw content ({} if absent or unreadable): enough to tell its version,
    environment and published mark without the checks of :class:`ResultStore`."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def is_snapshot(out: str | Path | None) -> bool:
    """Whether reports folder ``out`` holds a published snapshot (any store marked published)."""
    directory = paths.data_dir(out)
    return directory.is_dir() and any(_read_sidecar(p).get("published") for p in directory.glob("*.json"))


def refuse_snapshot(out: str | Path | None, action: str) -> None:
    """Raise unless ``out`` may be written by ``action``: the snapshot changes only by publish."""
    if is_snapshot(out):
        raise SuiteError(
            f"{paths.shown(out or paths.LATEST)} holds the committed snapshot, which changes only through "
            f"python -m suite publish; {action} writes to the run folder {paths.shown(paths.LATEST)} by "
            "default (or pass another --out), and publish merges a finished run into the snapshot "
            "(publish --rebuild rebuilds the snapshot's report from its own data)"
        )


def _move_aside(files: Sequence[Path], stamp: str) -> Path:
    """Move a store's files into ``archive/`` beside them, stamped (nothing is deleted)."""
    dest = files[0].parent / paths.ARCHIVE_DIR
    dest.mkdir(parents=True, exist_ok=True)
    for path in files:
        if path.exists():
            shutil.move(str(path), dest / f"{path.stem}-{stamp}{path.suffix}")
    return dest


def archive(store: ResultStore, keys: Set[str] | None = None) -> Path:
    """Set stored cases aside in ``archive/`` beside the store (nothing is deleted).

    Args:
        store: The store.
        keys: Only these cases (default: all). When other cases remain, the set-aside rows go
            to ``archive/<experiment>-<stamp>.csv`` with a copy of the sidecar, and the store
            keeps the rest (and its ``compute_seconds``, :func:`stored_seconds`, drops theirs);
            otherwise both files are moved.

    Returns:
        The archive folder.
    """
    stamp = _stamp()
    stored = store.done_keys()
    if keys is None or stored <= set(keys):
        return _move_aside([store.csv_path, store.meta_path], stamp)
    dest = store.directory / paths.ARCHIVE_DIR
    rows = store.load()
    # Written before the rows leave the store: an interruption can duplicate, never lose.
    atomic_write_csv(dest / f"{store.experiment}-{stamp}.csv", rows[rows[CASE_KEY_COLUMN].isin(set(keys))])
    atomic_write_json(dest / f"{store.experiment}-{stamp}.json", store.metadata)
    store.remove(set(keys))
    store.write_metadata({"compute_seconds": stored_seconds(store)})
    return dest


def stored_seconds(store: ResultStore) -> float:
    """The compute time behind a store's results: the sum of its cases' own ``seconds``. Summed
    from the rows, not timed around a run, so that it counts cases computed by runs that were
    interrupted and leaves out cases set aside (a recomputed case counts once)."""
    frame = store.load()
    if frame.empty or "seconds" not in frame:
        return 0.0
    return float(frame.groupby(CASE_KEY_COLUMN)["seconds"].first().sum())


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
    shard: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """Run (or resume) ``grid`` of experiment ``name``; return the rows of that grid's cases.

    Args:
        name: experiment name (see ``python -m suite list``).
        grid: ``quick`` or ``full``, or the label of ``configs`` (e.g. ``custom-<file stem>``).
        archs: restrict to these architectures.
        out: reports directory (default: the run folder ``reports/latest``); results go to
            ``<out>/data``. A published snapshot is refused (see :func:`publish`).
        dtype: override the configs' dtype (``float64`` enables jax x64).
        fresh: archive the stored results of this run's cases and recompute them (other
            stored cases stay).
        progress: show a progress bar on stderr.
        max_cases: stop after computing this many new cases (for tests and quick looks).
        configs: explicit cases (e.g. from a grid file) instead of the named grid; ``grid`` is
            then only the label stored with the rows.
        jobs: compute cases in this many worker processes (results are identical to one
            process; the parent alone writes the results file).
        shard: ``(i, k)``: only the i-th of k deterministic parts of the cases
            (:mod:`suite.shards`; combine the parts with ``python -m suite merge``).

    Raises:
        MemoryBudgetError: a case's network does not fit the memory budget (checked for every
            case before the first is computed; nothing is written then).
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
    if shard is not None:
        if exp.timed:
            print(f"{exp.name}: measures wall-clock time, so its cases are not split: shard 1/{shard[1]} runs "
                  "them all, the others none", file=sys.stderr)
        configs = [configs[j] for j in shards.select([case_id(c) for c in configs], shard, timed=exp.timed)]
    check_networks(configs)
    for dataset in sorted({getattr(c, "dataset", data.DEFAULT_DATASET) for c in configs}):
        data.check_available(dataset)

    env = {**common.environment(), "host": platform.node()}
    refuse_snapshot(out, "a run")
    directory = data_dir(out)
    store = ResultStore(directory, exp.name, version=exp.version)
    keys = [case_id(c) for c in configs]
    stored = store.done_keys()
    stored_env = store.metadata.get("environment")
    if stored and stored_env and fingerprint(stored_env, timed=exp.timed) != fingerprint(env, timed=exp.timed):
        others = stored - set(keys)
        if others:
            changed = {k: (stored_env.get(k), env.get(k)) for k in fingerprint(env, timed=exp.timed)
                       if stored_env.get(k) != env.get(k)}
            raise SuiteError(
                f"{paths.shown(store.csv_path)} holds {len(stored)} cases computed in another environment "
                f"({', '.join(f'{k}: {a} -> {b}' for k, (a, b) in changed.items())}), and {len(others)} of them "
                "are not part of this run (other architectures or grids): resuming would mix environments, "
                "and archiving would drop results this run does not recompute. Rerun the whole grid "
                "(without --arch or --grid-file), pass another --out, or move "
                f"{store.csv_path.name} and {store.meta_path.name} into {paths.shown(paths.archive_dir(out))} "
                "to start afresh"
            )
        where = archive(store)
        print(f"{exp.name}: moved earlier results to {paths.shown(where)} (they were computed in another "
              "environment)", file=sys.stderr)
        store = ResultStore(directory, exp.name, version=exp.version)
    elif fresh and stored & set(keys):
        where = archive(store, set(keys))
        print(f"{exp.name}: --fresh: moved the {len(stored & set(keys))} stored cases this run recomputes to "
              f"{paths.shown(where)}", file=sys.stderr)
        store = ResultStore(directory, exp.name, version=exp.version)

    done = store.done_keys()
    todo = [(k, c) for k, c in zip(keys, configs, strict=True) if k not in done]
    if max_cases is not None:
        todo = todo[:max_cases]
    if len(todo) < len(configs):
        print(f"{exp.name}: {len(configs) - len(todo)} of {len(configs)} cases already in "
              f"{store.csv_path}; computing {len(todo)}", file=sys.stderr)

    # Every grid a case was asked for, not only the one that computed it: a custom grid that
    # resumes a quick-grid case, or an --arch run, must find its cases in the report.
    grids = {str(g): set(v) for g, v in dict(store.metadata.get("grids") or {}).items()}
    grids[grid] = grids.get(grid, set()) | set(keys)
    store.write_metadata({
        "grid": grid, "grids": {g: sorted(v) for g, v in grids.items()}, "environment": env,
        "started": _now(), "finished": None,
    })
    bar = tqdm(total=len(todo), desc=f"{exp.name} [{grid}]", unit="case", disable=not progress, file=sys.stderr)
    for key, config, rows, seconds in _compute(exp.name, todo, jobs):
        bar.set_postfix_str(config.id)
        rows["grid"] = grid
        rows["seconds"] = seconds
        store.add(key, rows)
        bar.update()
    bar.close()
    store.write_metadata({
        "finished": _now(),
        "compute_seconds": stored_seconds(store),
        "n_cases": len(store.done_keys()),
    })
    frame = store.load()
    return frame[frame["case_key"].isin(keys)].reset_index(drop=True)


def check_networks(configs: Sequence[Any]) -> None:
    """Refuse a run before its first case when a case's network does not fit the memory budget
    (:meth:`suite.models.Model.check_memory`: parameters plus one example's activations, from
    shapes alone), so an oversized grid entry fails at once instead of after the cases before it."""
    from suite import data, models

    seen = set()
    for c in configs:
        spec = data.DATASETS.get(getattr(c, "dataset", ""))
        if not hasattr(c, "model_config") or spec is None or spec.image_shape is None:
            continue
        cfg = c.model_config()
        if (cfg, spec.image_shape) not in seen:
            seen.add((cfg, spec.image_shape))
            models.from_config(cfg).check_memory(spec.image_shape)


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


def publish(
    source: str | Path | None = None,
    snapshot: str | Path | None = None,
    experiments: Sequence[str] | None = None,
) -> list[Path]:
    """Merge a finished run's results into the committed snapshot and mark them published.

    For each experiment with results in ``source``: when the snapshot's store of it comes from
    the same environment and version, the run's cases replace the snapshot's cases with the
    same key and the snapshot's other cases stay (so publishing an ``--arch`` run keeps the
    other architectures); otherwise the snapshot's files are moved to its ``data/archive/``
    first (git keeps them too). Experiments without results in ``source`` are left alone.
    Rebuild the snapshot's report afterwards (``python -m suite publish`` does both).

    Args:
        source: the run folder (default ``reports/latest``).
        snapshot: the snapshot folder (default ``reports/``).
        experiments: only these experiments (default: every one with results in ``source``).

    Returns:
        The snapshot sidecars written.

    Raises:
        SuiteError: ``source`` is the snapshot, has no results, or holds a run that did not
            finish (rerun it first; nothing is published then).
    """
    from suite.experiments import EXPERIMENTS

    source = Path(source if source is not None else paths.LATEST)
    snapshot = Path(snapshot if snapshot is not None else paths.SNAPSHOT)
    if source.resolve() == snapshot.resolve():
        raise SuiteError(
            f"publish copies a run into the snapshot, but --from and --to are both {paths.shown(source)}; "
            "to rebuild the snapshot's report from its own data use python -m suite publish --rebuild"
        )
    names = list(EXPERIMENTS) if experiments is None else [get_experiment(n).name for n in experiments]
    stores = {}
    for name in names:
        store = ResultStore(paths.data_dir(source), name, version=EXPERIMENTS[name].version)
        if not store.done_keys():
            if experiments is not None:
                raise SuiteError(f"no results of {name} in {paths.shown(paths.data_dir(source))}; "
                                 f"run it first: python -m suite run {name} --out {paths.shown(source)}")
            continue
        if store.metadata.get("finished") is None:
            raise SuiteError(
                f"the {name} run in {paths.shown(source)} did not finish; rerun the same command to complete "
                "it (it resumes), then publish (or leave it out with --experiment)"
            )
        stores[name] = store
    if not stores:
        raise SuiteError(f"no results in {paths.shown(paths.data_dir(source))} to publish; run the suite first, "
                         "e.g. python -m suite verify")

    stamp = _stamp()
    return [_publish_store(store, paths.data_dir(snapshot), source, stamp) for store in stores.values()]


def _publish_store(store: ResultStore, directory: Path, source: Path, stamp: str) -> Path:
    """Merge one run store into the snapshot store of the same experiment (see :func:`publish`)."""
    rows, meta = store.load(), store.metadata
    target_meta = _read_sidecar(directory / f"{store.experiment}.json")
    target_csv = directory / f"{store.experiment}.csv"
    same = (target_meta.get("version") == store.version
            and fingerprint(target_meta.get("environment") or {}, timed=get_experiment(store.experiment).timed)
            == fingerprint(meta.get("environment") or {}, timed=get_experiment(store.experiment).timed))
    members = grid_membership(rows, meta)
    if target_csv.exists() or target_meta:
        if same:
            target = ResultStore(directory, store.experiment, version=store.version)
            old = target.load()
            kept = old[~old[CASE_KEY_COLUMN].isin(set(rows[CASE_KEY_COLUMN]))]
            for label, keys in grid_membership(old, target.metadata).items():
                members[label] = members.get(label, set()) | (keys & set(kept[CASE_KEY_COLUMN]))
            rows = pd.concat([kept, rows], ignore_index=True) if len(kept) else rows
        else:
            dest = _move_aside([target_csv, directory / f"{store.experiment}.json"], stamp)
            print(f"{store.experiment}: the snapshot's results came from another environment or version; "
                  f"moved them to {paths.shown(dest)}", file=sys.stderr)
    merged = {
        **meta,
        "grids": {g: sorted(v) for g, v in members.items()},
        "n_cases": int(rows[CASE_KEY_COLUMN].nunique()),
        "published": True,
        "published_from": paths.shown(source),
        "published_at": _now(),
    }
    # Sidecar first: a CSV is never left without the sidecar that vouches for it.
    meta_path = directory / f"{store.experiment}.json"
    atomic_write_json(meta_path, merged)
    atomic_write_csv(target_csv, rows)
    return meta_path


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
