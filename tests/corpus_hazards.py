"""Print what the coexistence check finds in the real-wheel corpus of test_pypi_corpus.py:
hazards per wheel and counts per kind (the README's figures).

    python tests/corpus_hazards.py
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))

from pypi_cache import Download, fetch
from test_pypi_corpus import CORPUS

from mlbackend.audit import audit_wheel


def main() -> None:
    """Audit each corpus wheel and print its hazards, then the totals per kind."""
    totals: collections.Counter[str] = collections.Counter()
    wheels_with: collections.Counter[str] = collections.Counter()
    for plat, python, requirement, _ in CORPUS:
        report = audit_wheel(fetch(Download(plat, python, requirement)))
        hazards = report.coexist.hazards if report.coexist else ()
        kinds = collections.Counter(h.kind for h in hazards)
        totals.update(kinds)
        wheels_with.update(kinds.keys())
        shown = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or "none"
        print(f"{requirement:36} {plat:24} {shown}")
    print(f"\n{len(CORPUS)} wheels")
    for kind, count in totals.most_common():
        print(f"{kind:18} {count:4} findings in {wheels_with[kind]} wheels")


if __name__ == "__main__":
    main()
