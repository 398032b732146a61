"""What a piece of code imports, seen from a fresh interpreter (for import-cost and import-cycle tests)."""

from __future__ import annotations

import subprocess
import sys


def modules_after(code: str) -> set[str]:
    """Run `code` in a new Python process and return every module name in its `sys.modules` afterwards."""
    probe = f"{code}\nimport sys\nprint(' '.join(sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def top_level(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}
