"""Registry of experiments. Each module under ``suite/experiments/`` defines one.

An experiment is a frozen per-case ``Config`` dataclass, named grids (``quick``, ``full``)
that expand into lists of configs, and ``run(config) -> DataFrame`` returning tidy rows
(one per arch, depth, width, seed, kernel, metric, value). The CLI, nox sessions, tests and
figures iterate over :data:`EXPERIMENTS`; adding an experiment touches this file once.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from suite.errors import SuiteError, unknown_name
from suite.stats import Prediction

#: ``paper`` grids are for accelerators: the paper's inputs (CIFAR-10, 32x32x3, from a local
#: copy) and networks (ResNet-18, WideResNet), far beyond a 2-core CPU; only some experiments
#: have one (``run all --grid paper`` skips the others).
GRID_NAMES = ("quick", "full", "paper")

#: Columns every experiment's rows carry (experiments may add more, e.g. ``n_params``).
TIDY_COLUMNS = ("arch", "depth", "width", "seed", "kernel", "metric", "value")


def fill_config_defaults(rows: pd.DataFrame, config_type: type) -> pd.DataFrame:
    """``rows`` with every config field that has a default present: a missing column (rows
    stored before the field existed) or a missing cell gets the field's default, so such rows
    join the same series as new rows with the default value."""
    out = rows
    for f in dataclasses.fields(config_type):
        if f.default is dataclasses.MISSING or not f.init:
            continue
        if f.name not in out.columns:
            out = out.assign(**{f.name: f.default})
        elif f.default not in ("", None) and out[f.name].isna().any():
            # ("" reads back from a CSV as NaN; the figures and reports treat both alike.)
            out = out.assign(**{f.name: out[f.name].fillna(f.default)})
    return out


@dataclass(frozen=True)
class Experiment:
    """One registered experiment.

    Attributes:
        name: registry key, also the results file stem (``reports/data/<name>.csv``).
        description: one line for ``python -m suite list``.
        theorem: the statement it checks (reports/THEORY.md numbering, e.g. "T1, T2").
        version: results schema version; results of another version are never mixed.
        config_type: the frozen per-case config dataclass.
        grids: grid name -> function returning the list of case configs.
        run: computes one case, returning tidy rows.
        verify: part of ``python -m suite verify``.
        order: position in listings, the verify run and the report (lower first).
        extra_series: row columns that also separate fitted series (e.g. ``epoch``).
        report_only_metrics: metrics for which the theory claims no rate: their slopes are
            fitted and shown, with verdict ``reported`` instead of a forced verdict.
        predict: what the theory predicts for one series' slope, from its identifying values
            (``series_columns``: arch, depth, kernel, metric, ...); None means nothing (the
            series is ``reported``). Derivations: reports/THEORY.md.
        metric_text: short definitions of the metrics, for the report.
        timed: its rows include wall-clock timings, so cases run one at a time (``jobs=1``).
        regime: optional evidence, from the experiment's own rows, that a series' widths lie
            below the regime where its prediction applies: returns one row per such series
            (its ``series_columns``) with a ``regime_note`` giving the number (regression:
            T4's perturbation ratio >= 1 at the widest width, THEORY.md §8). A series it names
            that is not consistent and has no other reason is "not yet asymptotic"
            (THEORY.md §10).
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
    metric_text: Mapping[str, str] = field(default_factory=dict)
    timed: bool = False
    predict: Callable[[Mapping[str, Any]], Prediction | None] = lambda series: None
    regime: Callable[[pd.DataFrame], pd.DataFrame] | None = None

    def prediction(self, series: Mapping[str, Any]) -> Prediction | None:
        """The prediction for one series; None for report-only metrics."""
        if series.get("metric") in self.report_only_metrics:
            return None
        return self.predict(series)

    @property
    def series_columns(self) -> list[str]:
        """Columns identifying one fitted series (error vs width over seeds): every config
        field except width and seed, plus the grid, kernel and metric."""
        fields = [f for f in [f.name for f in dataclasses.fields(self.config_type)] if f not in ("width", "seed")]
        return ["grid", *fields, *self.extra_series, "kernel", "metric"]

    def custom_grid(self, spec: Mapping[str, Any]) -> list[Any]:
        """Configs from a grid-file spec (see :func:`load_grid_file`).

        Raises:
            SuiteError: missing or unknown keys, fewer than 3 widths (no slope can be fitted),
                or an invalid Config value.
        """
        grid = dict(spec.get("grid", {}))
        settings = dict(spec.get("settings", {}))
        if spec.get("experiment", self.name) != self.name:
            raise SuiteError(f"grid file is for experiment {spec['experiment']!r}, not {self.name!r}")
        missing = [k for k in GRID_FILE_KEYS if k not in grid]
        unknown = sorted(set(grid) - set(GRID_FILE_KEYS))
        if missing or unknown:
            raise SuiteError(
                f"grid table: missing {missing}, unknown {unknown}; it needs exactly {', '.join(GRID_FILE_KEYS)}"
            )
        fields = set([f.name for f in dataclasses.fields(self.config_type)])
        bad = sorted(set(settings) - (fields - {"arch", "depth", "width", "seed"}))
        if bad:
            valid = ", ".join(sorted(fields - {"arch", "depth", "width", "seed"}))
            raise SuiteError(f"unknown setting(s) {bad} for experiment {self.name!r}; valid settings: {valid}")
        seeds = grid["seeds"]
        seeds = list(range(seeds)) if isinstance(seeds, int) and not isinstance(seeds, bool) else seeds
        archs = grid["archs"] if isinstance(grid["archs"], list) else [grid["archs"]]
        from suite.models import ARCHS

        for arch in archs:
            if arch not in ARCHS:
                raise unknown_name("architecture", arch, ARCHS)
        widths = {arch: _per_arch(grid["widths"], arch, "widths") for arch in archs}
        for arch, values in widths.items():
            if len(set(values)) < 3:
                raise SuiteError(
                    f"grid for {arch!r} has widths {values}: at least 3 distinct widths are needed "
                    "to fit a convergence slope"
                )
        depths = {arch: _per_arch(grid["depths"], arch, "depths") for arch in archs}
        per_arch_seeds = {arch: _per_arch(seeds, arch, "seeds") for arch in archs}

        def make(**fields: Any) -> Any:
            try:
                return self.config_type(**fields, **settings)
            except TypeError as exc:
                raise SuiteError(f"invalid grid value: {exc}") from exc

        from suite.experiments.common import grid_product

        return grid_product(make, arch=archs, depth=depths, width=widths, seed=per_arch_seeds)

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


GRID_FILE_KEYS = ("archs", "depths", "widths", "seeds")


def load_grid_file(path: str | Path) -> dict[str, Any]:
    """Read a custom grid from a TOML or JSON file, with clear errors for unreadable input.

    Format (TOML)::

        [grid]
        archs = ["mlp", "cnn"]
        depths = [1, 2]                      # or a table per arch: {mlp = [1, 3], cnn = [2]}
        widths = {mlp = [64, 256, 1024], cnn = [16, 64, 256]}   # or one list for all
        seeds = 3                            # a count, or a list of seeds
        [settings]                           # any other field of the experiment's Config
        dataset = "digits"
        n_inputs = 16
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"cannot read grid file {path}: {exc}; check the path") from exc
    try:
        if path.suffix == ".json":
            spec = json.loads(text)
        else:
            spec = tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise SuiteError(f"grid file {path} is not valid {kind}: {exc}") from exc
    if not isinstance(spec, dict) or not isinstance(spec.get("grid"), dict):
        raise SuiteError(f"grid file {path} needs a [grid] table with {', '.join(GRID_FILE_KEYS)}")
    extra = sorted(set(spec) - {"grid", "settings", "experiment"})
    if extra:
        raise SuiteError(f"grid file {path}: unknown section(s) {extra}; valid: experiment, grid, settings")
    return spec


def _per_arch(value: Any, arch: str, key: str) -> list[Any]:
    if isinstance(value, dict):
        if arch not in value:
            raise SuiteError(f"grid {key} has no entry for arch {arch!r} (it has {sorted(value)})")
        value = value[arch]
    if not isinstance(value, list) or not value:
        raise SuiteError(f"grid {key} must be a non-empty list (or a table of lists per arch), got {value!r}")
    return value


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
