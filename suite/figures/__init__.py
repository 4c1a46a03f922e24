"""Figures of the suite: one module per figure, all rendered from saved data.

Figures never compute kernels: they read the tidy frames the experiments save
in ``reports/data/<experiment>.csv`` (and optionally the summary rows of
``reports/summary.json``) and only draw. Importing this package imports
matplotlib, seaborn, numpy and pandas, never jax (:func:`render_all`, which reads result stores
through :mod:`suite.results`, imports the experiment registry when called).

Data contract (one row per case, kernel and metric): ``experiment``,
``case_key``, ``arch``, ``depth``, ``width``, ``seed``, ``n_outputs``,
``dataset``, ``n_inputs``, ``parameterization``, ``dtype``, ``n_params``,
``kernel``, ``metric``, ``value``. Figures need the columns in
:data:`REQUIRED_COLUMNS`, and the rows a figure draws must share one setting
(:data:`SETTING_COLUMNS`: dataset, O, N, parameterization, dtype).

Usage::

    from suite.figures import FIGURES, render, render_all, save

    fig = render("fig_convergence", data)        # a matplotlib Figure
    save(fig, "reports/figures", "fig_convergence")
    render_all("reports/data", "reports/figures")  # every figure whose data exists

or ``python -m suite.figures [DATA_DIR [OUT_DIR]] [--only fig_convergence]``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from suite.errors import SuiteError, unknown_name
from suite.figures._common import (
    DEFAULT_SETTINGS,
    REQUIRED_COLUMNS,
    SETTING_COLUMNS,
    FigureSpec,
    MissingDataError,
    check_columns,
    load_summary,
    save,
)

__all__ = [
    "DEFAULT_SETTINGS",
    "FIGURES",
    "REQUIRED_COLUMNS",
    "SETTING_COLUMNS",
    "FigureSpec",
    "MissingDataError",
    "load_summary",
    "main",
    "render",
    "render_all",
    "save",
    "skipped",
]

log = logging.getLogger("suite.figures")

def _discover() -> dict[str, FigureSpec]:
    """Every module of this package that defines ``FIGURE`` (adding a figure is adding one
    module), ordered by ``FigureSpec.order`` then name."""
    import importlib
    import pkgutil

    specs = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "style":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "FIGURE"):
            specs.append(module.FIGURE)
    return {spec.name: spec for spec in sorted(specs, key=lambda s: (s.order, s.name))}


#: Every figure, keyed by name (the file stem of its PNG and SVG).
FIGURES: dict[str, FigureSpec] = _discover()


def render(name: str, data: pd.DataFrame, summary: pd.DataFrame | None = None) -> Figure:
    """Render one registered figure from a tidy data frame.

    Args:
        name: A key of :data:`FIGURES`.
        data: The experiment's tidy frame (see the module docstring).
        summary: Optional summary rows (``reports/summary.json``) to take fitted
            slopes from; without it, slopes are fitted with
            :func:`suite.stats.fit_slope` (and left out where that is impossible).

    Returns:
        The figure; save it with :func:`save`.

    Raises:
        SuiteError: On an unknown name, missing columns or a mix of settings.
        MissingDataError: If the frame has no rows for this figure.
    """
    if name not in FIGURES:
        raise unknown_name("figure", name, FIGURES)
    check_columns(data, name)
    return FIGURES[name].render(data, summary)


def render_all(
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    summary: pd.DataFrame | None = None,
    only: Iterable[str] | None = None,
    grid: str | None = None,
) -> dict[str, list[Path]]:
    """Render and save every figure whose experiment has results in ``data_dir``.

    The rows are read through the result store (:func:`suite.results.load`), as
    :func:`suite.report.build` reads them: one grid's cases (default: the grid each experiment
    last ran), config columns of older rows filled with their defaults.

    Args:
        data_dir: Folder of result stores (``<experiment>.csv`` with its ``.json`` sidecar).
        out_dir: Folder for ``<name>.png`` and ``<name>.svg`` (created if needed).
        summary: Optional summary rows, passed to every figure.
        only: Names of the figures to render (default: all registered).
        grid: The grid to draw (``quick``, ``full``, ``custom-<stem>``, ...).

    Returns:
        Figure name to the files written, for every registered figure; an empty
        list means the figure was skipped, because its experiment has no results or none
        for it (the reason is logged at INFO level on ``suite.figures``).

    Raises:
        SuiteError: If a store cannot be read, lacks a required column or mixes settings, or
            ``only`` names an unknown figure.
    """
    from suite import results  # imports the experiments (and jax): only when rendering

    names = list(FIGURES) if only is None else list(only)
    for name in names:
        if name not in FIGURES:
            raise unknown_name("figure", name, FIGURES)
    frames = {exp: rows for exp, (rows, _) in results.load(data_dir=data_dir, grid=grid).items()}
    for exp, frame in frames.items():
        check_columns(frame, f"{Path(data_dir) / exp}.csv")
    written: dict[str, list[Path]] = {}
    for name in names:
        spec = FIGURES[name]
        if spec.experiment not in frames:
            log.info("skipping %s: no results of %s in %s", name, spec.experiment, data_dir)
            written[name] = []
            continue
        try:
            fig = spec.render(frames[spec.experiment], summary)
        except MissingDataError as exc:
            log.info("skipping %s: %s", name, exc)
            written[name] = []
            continue
        written[name] = save(fig, out_dir, name)
    return written


def skipped(result: dict[str, list[Path]]) -> list[str]:
    """Names :func:`render_all` skipped (those with no files written)."""
    return [name for name, files in result.items() if not files]


def main(argv: list[str] | None = None) -> int:
    """``python -m suite.figures [DATA_DIR [OUT_DIR]] [--only NAME ...]``.

    Renders every figure (or only the named ones) from saved data; defaults are the run
    folder's ``data/`` and ``figures/`` (``reports/latest``, see :mod:`suite.paths`; the
    committed snapshot changes only through ``python -m suite publish``), and slopes come from
    ``summary.json`` next to ``DATA_DIR`` when it exists.
    """
    import argparse
    import sys

    from suite import paths

    parser = argparse.ArgumentParser(
        prog="python -m suite.figures", description="Render the suite's figures from saved data."
    )
    parser.add_argument("data_dir", nargs="?", type=Path, default=paths.data_dir(paths.LATEST))
    parser.add_argument("out_dir", nargs="?", type=Path, default=paths.figures_dir(paths.LATEST))
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(FIGURES),
        help="render only this figure (repeatable)",
    )
    args = parser.parse_args(argv)
    try:
        summary = load_summary(paths.summary_file(args.data_dir.parent))
        result = render_all(args.data_dir, args.out_dir, summary, only=args.only)
    except SuiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, files in result.items():
        print(f"{name}: " + (", ".join(map(str, files)) if files else "skipped (no data)"))
    return 0
