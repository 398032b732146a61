"""Where the tests' files are: the repository and the recorded fixtures."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UNIT_FIXTURES = REPO / "tests" / "unit" / "fixtures"
