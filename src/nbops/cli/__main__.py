"""``python -m nbops.cli``: the ``nbops`` command."""

import sys

from nbops.cli import main

sys.exit(main())
