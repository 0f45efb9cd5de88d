"""``python -m vidfake`` is the ``vidfake`` command."""

import sys

from vidfake.cli import main

sys.exit(main())
