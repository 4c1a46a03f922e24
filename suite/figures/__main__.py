"""``python -m suite.figures [DATA_DIR [OUT_DIR]] [--only NAME ...]``: render every figure from saved data."""

from __future__ import annotations

import sys

from suite.figures import main

sys.exit(main())
