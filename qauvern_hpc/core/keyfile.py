"""API key files: root-owned, mode 0600 or stricter, holding only the key. Standard library only (the Slurm
hooks read keys through this without importing the config machinery)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from qauvern_hpc.core.errors import ConfigError


def check_key_file(path: Path) -> str | None:
    """Why `path` is not usable as an API key file, or None."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return f"API key file {path} does not exist"
    except OSError as exc:
        return f"API key file {path}: {exc.strerror or exc}"
    if not stat.S_ISREG(st.st_mode):
        return f"API key file {path} is not a regular file"
    if st.st_mode & 0o077:
        return (
            f"API key file {path} is accessible to group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {path}"
        )
    return None


def read_key_file(path: str | os.PathLike[str]) -> str:
    """The key in `path`. Raises ConfigError (never showing the key) when the file is unusable."""
    p = Path(path)
    problem = check_key_file(p)
    if problem:
        raise ConfigError(problem)
    try:
        key = p.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"API key file {p}: cannot read it: {exc}") from None
    if not key:
        raise ConfigError(f"API key file {p} is empty")
    return key
