"""``python -m systolix.cli``: the ``systolix`` command."""

import sys

from . import main

sys.exit(main())
