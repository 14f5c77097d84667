"""``python -m mlbackend``: the same as the ``mlbackend`` command."""

from __future__ import annotations

import sys

from ._cli import main

sys.exit(main())
