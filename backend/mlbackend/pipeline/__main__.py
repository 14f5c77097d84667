"""``python -m mlbackend.pipeline``: the same as ``mlbackend pipeline``."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
