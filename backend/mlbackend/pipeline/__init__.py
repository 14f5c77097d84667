"""The pipeline behind ``mlbackend pipeline`` and the GitHub Action.

``cli`` parses the command and is its error boundary; ``plan`` turns the project's settings into a
CI matrix; ``python`` finds the interpreters asked for; ``run`` builds the sdist, then a wheel per
Python from it, and tests each; ``steps`` holds the subprocess steps ``run`` strings together.
"""

from __future__ import annotations

from .cli import main

__all__ = ["main"]
