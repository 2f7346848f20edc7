"""``python -m neuralct.cli``."""

import sys

from . import main

sys.exit(main())
