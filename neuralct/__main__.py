"""``python -m neuralct``."""

import sys

from .cli import main

sys.exit(main())
