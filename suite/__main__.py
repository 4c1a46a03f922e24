"""``python -m suite``: see :mod:`suite.cli`."""

import sys

from suite._nt import NeuralTangentsUnavailable
from suite.cli import main

try:
    code = main()
except NeuralTangentsUnavailable as exc:  # the environment, not a bug: the message, no traceback
    print(f"error: {exc}\n(python -m suite doctor checks this Python and prints each fix)", file=sys.stderr)
    code = 2
raise SystemExit(code)
