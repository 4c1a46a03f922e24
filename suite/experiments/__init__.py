"""Registry of experiments. Each module under ``suite/experiments/`` defines one.

An experiment is a frozen per-case ``Config`` dataclass, named grids (``quick``, ``full``)
that expand into lists of configs, and ``run(config) -> DataFrame`` returning tidy rows
(one per arch, depth, width, seed, kernel, metric, value). The CLI, nox sessions, tests and
figures iterate over :data:`EXPERIMENTS`; adding an experiment touches this file once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from suite.errors import SuiteError, unknown_name

GRID_NAMES = ("quick", "full")

#: Columns every experiment's rows carry (experiments may add more, e.g. ``n_params``).
TIDY_COLUMNS = ("arch", "depth", "width", "seed", "kernel", "metric", "value")


@dataclass(frozen=True)
class Experiment:
    """One registered experiment.

    Attributes:
        name: registry key, also the results file stem (``reports/data/<name>.csv``).
        description: one line for ``python -m suite list``.
        theorem: the statement it checks (theory.md numbering, e.g. "T1, T2").
        version: results schema version; results of another version are never mixed.
        config_type: the frozen per-case config dataclass.
        grids: grid name -> function returning the list of case configs.
        run: computes one case, returning tidy rows.
        verify: part of ``python -m suite verify``.
        order: position in listings, the verify run and the report (lower first).
        extra_series: row columns that also separate fitted series (e.g. ``epoch``).
        report_only_metrics: metrics for which the theory claims no rate: their slopes are
            fitted and shown, with verdict ``reported`` instead of a forced verdict.
    """

    name: str
    description: str
    theorem: str
    version: str
    config_type: type
    grids: Mapping[str, Callable[[], list[Any]]]
    run: Callable[[Any], pd.DataFrame]
    verify: bool = True
    order: int = 100
    extra_series: tuple[str, ...] = ()
    report_only_metrics: tuple[str, ...] = ()

    @property
    def series_columns(self) -> list[str]:
        """Columns identifying one fitted series (error vs width over seeds): every config
        field except width and seed, plus the grid, kernel and metric."""
        fields = [f for f in self.config_type.__dataclass_fields__ if f not in ("width", "seed")]
        return ["grid", *fields, *self.extra_series, "kernel", "metric"]

    def grid(self, name: str, archs: Sequence[str] | None = None) -> list[Any]:
        """Configs of grid ``name``, optionally only those of the given architectures."""
        if name not in self.grids:
            raise unknown_name("grid", name, self.grids)
        configs = self.grids[name]()
        if archs:
            present = {c.arch for c in configs}
            missing = sorted(set(archs) - present)
            if missing:
                raise SuiteError(
                    f"experiment {self.name!r} grid {name!r} has no cases for architecture(s) "
                    f"{missing}; it covers: {', '.join(sorted(present))}"
                )
            configs = [c for c in configs if c.arch in archs]
        return configs


def _registry() -> dict[str, Experiment]:
    """Every module of this package that defines ``EXPERIMENT``, ordered by ``Experiment.order``
    (so adding an experiment is adding one module)."""
    import importlib
    import pkgutil

    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "common":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "EXPERIMENT"):
            found.append(module.EXPERIMENT)
    return {exp.name: exp for exp in sorted(found, key=lambda e: (e.order, e.name))}


EXPERIMENTS: dict[str, Experiment] = _registry()


def get_experiment(name: str) -> Experiment:
    """Look up an experiment, with a clear error listing the valid ones."""
    if name not in EXPERIMENTS:
        raise unknown_name("experiment", name, EXPERIMENTS)
    return EXPERIMENTS[name]
