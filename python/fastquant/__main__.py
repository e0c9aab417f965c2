"""``python -m fastquant``: the same as the ``fastquant`` command."""

import sys

from .cli import main

sys.exit(main())
