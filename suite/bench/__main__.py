"""``python -m suite.bench``: see :mod:`suite.bench.cli`."""

from __future__ import annotations

from suite.bench.cli import main

raise SystemExit(main())
