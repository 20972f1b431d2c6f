"""``python -m toolkit``: see :mod:`toolkit.ui.cli`."""

import sys

from toolkit.ui.cli import main

sys.exit(main())
