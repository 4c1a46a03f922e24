"""``python -m suite``: see :mod:`suite.cli`."""

from suite.cli import main

raise SystemExit(main())
