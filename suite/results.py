"""Reading stored results: the one way the report and the figures get an experiment's rows.

Every experiment's finished cases live in a :class:`suite.store.ResultStore`
(``<out>/data/<experiment>.csv`` with its ``.json`` sidecar; folders from :mod:`suite.paths`).
:func:`load` returns, for one grid, the rows of every experiment that has some, with the
config columns of rows stored before a field existed filled with its default
(:func:`suite.experiments.fill_config_defaults`) and the ``grid`` column set to the grid asked
for. :func:`suite.report.build` and :func:`suite.figures.render_all` both read through it, so a
figure drawn by either shows the same cases.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from suite import paths
from suite.experiments import EXPERIMENTS, fill_config_defaults
from suite.store import CASE_KEY_COLUMN, ResultStore, grid_membership

__all__ = ["load", "stored_grids"]

Results = dict[str, tuple[pd.DataFrame, dict[str, Any]]]


def load(out: str | os.PathLike[str] | None = None, grid: str | None = None, *,
         data_dir: str | os.PathLike[str] | None = None) -> Results:
    """Rows and metadata of every experiment with results, for one grid (default: the grid each
    experiment last ran).

    Args:
        out: reports folder (its ``data/`` is read; default the run folder ``reports/latest``).
        grid: grid label (``quick``, ``full``, ``paper``, ``custom-<stem>``).
        data_dir: read this folder of ``<experiment>.csv`` stores instead of ``out/data``.

    A grid's rows are every stored case that belongs to it (:func:`suite.store.grid_membership`),
    also those another grid computed first; their ``grid`` column is set to the chosen grid.
    """
    directory = Path(data_dir) if data_dir is not None else paths.data_dir(out)
    found: Results = {}
    for name, exp in EXPERIMENTS.items():
        store = ResultStore(directory, name, version=exp.version)
        frame = store.load()
        if frame.empty:
            continue
        meta = store.metadata
        chosen = grid or meta.get("grid") or frame["grid"].iloc[-1]
        keys = grid_membership(frame, meta).get(chosen)
        if not keys:
            continue
        rows = fill_config_defaults(frame[frame[CASE_KEY_COLUMN].isin(keys)], exp.config_type).assign(grid=chosen)
        found[name] = (rows.reset_index(drop=True), {**meta, "grid": chosen})
    return found


def stored_grids(out: str | os.PathLike[str] | None = None) -> list[str]:
    """Grid labels with results in ``out/data`` (for messages)."""
    labels: set[str] = set()
    for name, exp in EXPERIMENTS.items():
        store = ResultStore(paths.data_dir(out), name, version=exp.version)
        labels |= set(grid_membership(store.load(), store.metadata))
    return sorted(labels)
