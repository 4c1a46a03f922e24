"""Where the suite reads and writes files: the one module that knows the reports layout.

Two kinds of reports folder share one layout (``data/`` with one ``<experiment>.csv`` and
``.json`` sidecar each, ``summary.json``, ``REPORT.md``, ``figures/``):

- the **run folder** :data:`LATEST` (``reports/latest/``, git-ignored): every run, report and
  figure command writes here by default, so running the suite never touches a tracked file;
- the **committed snapshot** :data:`SNAPSHOT` (``reports/`` itself): its stores are marked
  published, and it changes only through ``python -m suite publish``, which merges a finished
  run's data into it and rebuilds its summary, figures and report.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Reports directory; ``SUITE_REPORTS`` overrides it (tests point it at a temporary dir).
REPORTS = Path(os.environ.get("SUITE_REPORTS", ROOT / "reports"))
#: The committed snapshot (what README and THEORY.md link to); changed only by ``publish``.
SNAPSHOT = REPORTS
#: Default output of runs, ``report`` and ``figures`` (git-ignored, see .gitignore).
LATEST = REPORTS / "latest"
#: The snapshot's results, figures and the benchmark runs (benchmarks have their own layout).
DATA = SNAPSHOT / "data"
FIGURES = SNAPSHOT / "figures"
BENCH = REPORTS / "bench"
#: The derivations REPORT.md links to, wherever the report is written.
THEORY = REPORTS / "THEORY.md"
#: Committed approximation cards (``python -m suite card ... --out reports/cards/<name>``); the
#: report shows the training checkpoint's two, ``init`` and ``trained``, side by side.
CARDS = REPORTS / "cards"

#: Names inside any reports folder.
DATA_DIR = "data"
ARCHIVE_DIR = "archive"
FIGURES_DIR = "figures"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "REPORT.md"


def data_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """Results folder (``<root>/data``) of reports folder ``root`` (default: the run folder)."""
    return Path(root if root is not None else LATEST) / DATA_DIR


def archive_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """Where results set aside (other environment, ``--fresh``, replaced by ``publish``) go."""
    return data_dir(root) / ARCHIVE_DIR


def figures_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """Figures folder of reports folder ``root`` (default: the run folder)."""
    return Path(root if root is not None else LATEST) / FIGURES_DIR


def summary_file(root: str | os.PathLike[str] | None = None) -> Path:
    """``summary.json`` of reports folder ``root`` (default: the run folder)."""
    return Path(root if root is not None else LATEST) / SUMMARY_FILE


def report_file(root: str | os.PathLike[str] | None = None) -> Path:
    """``REPORT.md`` of reports folder ``root`` (default: the run folder)."""
    return Path(root if root is not None else LATEST) / REPORT_FILE


def shown(path: str | os.PathLike[str]) -> str:
    """``path`` relative to the repository when inside it (for messages), else as given."""
    p = Path(path)
    try:
        return p.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(p)
