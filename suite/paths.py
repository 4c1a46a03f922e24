"""Where the suite reads and writes files: one place for every path."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Reports directory; ``SUITE_REPORTS`` overrides it (tests point it at a temporary dir).
REPORTS = Path(os.environ.get("SUITE_REPORTS", ROOT / "reports"))
DATA = REPORTS / "data"
FIGURES = REPORTS / "figures"
BENCH = REPORTS / "bench"
