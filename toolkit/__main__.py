"""``python -m toolkit``: see :mod:`toolkit.ui.cli`."""

import os
import sys

from toolkit.ui.cli import INTERRUPTED, main

status = main()
if status == INTERRUPTED:
    # Everything the command wrote is whole and its claims are released. End here: a
    # Ctrl-C that passed through an extension's own Python call leaves the interpreter
    # marked as interrupted, and its teardown would then die by SIGINT instead of
    # exiting with the documented status.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
sys.exit(status)
