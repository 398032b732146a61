"""Build the `--qpu` SPANK plugin (`spank/qpu.c`) against a site's Slurm headers, and say how to load it.

Slurm loads a SPANK plugin only if it was compiled against the same Slurm major.minor release
(`plugin_version` is checked with the micro number masked off), so the plugin is built on the site, from the
C sources that ship inside the wheel (`qauvern_hpc/spank_src/`) or from `spank/` of a checkout.

Stdlib only: `qauvern-hpc spank ...` must work on a login node with nothing else installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from qauvern_hpc.core import paths
from qauvern_hpc.core.errors import QauvernError, UsageError
from qauvern_hpc.core.files import replacing

PLUGIN_NAME = "qauvern_qpu"
SOURCE = "qpu.c"
HARNESS_SOURCE = "test_qpu.c"
EXPORT_MAP = "qpu.map"  # the linker version script: only the SPANK symbols are exported
# Keep equal to CFLAGS / PLUGIN_CFLAGS / TEST_CFLAGS in spank/Makefile (tests/unit/test_spank_build.py checks
# it). A site build never fails on a warning (a newer compiler or spank.h must not break an install) and is
# hardened; the project's own harness build adds -Werror.
CFLAGS = ("-Wall", "-Wextra", "-O2", "-D_FORTIFY_SOURCE=2", "-fstack-protector-strong")
PLUGIN_FLAGS = ("-fPIC", "-shared", "-Wl,-z,relro,-z,now")
HARNESS_FLAGS = ("-Werror", "-g")
DEFAULT_SLURM_INCLUDE = "/usr/include"
DEFAULT_PLUGIN_PATH = "/usr/local/lib/slurm/qpu.so"  # = `make install` with its defaults
PLUGIN_PATH_ENV = "QAUVERN_HPC_SPANK_SO"
DEFAULT_STATE_DIR = "/var/lib/qauvern-hpc"
FAIL_MODES = ("closed", "open")
MAX_NAMES_LIMIT = 64  # QPU_MAX_NAMES_LIMIT in qpu.c
COMPILE_TIMEOUT_S = 120

_VERSION_NUMBER = re.compile(r"^\s*#\s*define\s+SLURM_VERSION_NUMBER\s+(0x[0-9a-fA-F]+|\d+)\s*$", re.M)
_RUNNING_VERSION = re.compile(r"\bslurm(?:-wlm)?\s+(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True)
class SlurmHeaders:
    include: Path  # the directory holding slurm/spank.h
    version: tuple[int, int, int] | None  # from slurm/slurm_version.h

    @property
    def version_text(self) -> str:
        return "unknown" if self.version is None else "{}.{:02d}.{}".format(*self.version)


@dataclass(frozen=True)
class BuildResult:
    path: Path
    headers: SlurmHeaders
    command: tuple[str, ...]
    running_version: tuple[int, int, int] | None  # `sbatch --version` on this host, when it answers

    @property
    def version_mismatch(self) -> bool:
        v, r = self.headers.version, self.running_version
        return v is not None and r is not None and v[:2] != r[:2]


def source_dir() -> Path:
    """Where qpu.c is: `spank/` of a checkout first (it is the source of truth), else the wheel's copy."""
    checkout, wheel = paths.CHECKOUT_DIR / "spank", paths.PACKAGE_DIR / "spank_src"
    for candidate in (checkout, wheel):
        if (candidate / SOURCE).is_file():
            return candidate
    raise QauvernError(
        f"the SPANK plugin's C sources ({SOURCE}) are in neither {checkout} nor {wheel}",
        hint="reinstall qauvern-hpc from a wheel or sdist that ships qauvern_hpc/spank_src/",
    )


def find_headers(slurm_include: str | os.PathLike[str] | None = None) -> SlurmHeaders:
    """The Slurm headers to build against: the argument, else $SLURM_INCLUDE, else /usr/include."""
    include = Path(slurm_include or os.environ.get("SLURM_INCLUDE") or DEFAULT_SLURM_INCLUDE)
    if not (include / "slurm" / "spank.h").is_file():
        raise QauvernError(
            f"no Slurm SPANK header at {include / 'slurm' / 'spank.h'}",
            hint="install the headers of the Slurm you run (Debian/Ubuntu: libslurm-dev, RHEL: slurm-devel) "
            "or pass --slurm-include DIR (the directory that contains slurm/spank.h)",
        )
    version: tuple[int, int, int] | None = None
    try:
        m = _VERSION_NUMBER.search((include / "slurm" / "slurm_version.h").read_text(errors="replace"))
    except OSError:
        m = None
    if m:
        n = int(m.group(1), 0)
        version = ((n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF)
    return SlurmHeaders(include=include, version=version)


def find_compiler(cc: str | None = None) -> str:
    """The C compiler: the argument, else $CC, else gcc, else cc."""
    for name in [cc] if cc else [os.environ.get("CC"), "gcc", "cc"]:
        if name and shutil.which(name):
            return name
    raise QauvernError(
        f"C compiler {cc!r} not found" if cc else "no C compiler found (tried $CC, gcc, cc)",
        hint="install gcc (Debian/Ubuntu: apt-get install gcc) or pass --cc",
    )


def running_slurm_version(timeout: float = 5.0) -> tuple[int, int, int] | None:
    """The Slurm release this host's `sbatch` reports, or None when it cannot tell (no sbatch, no config)."""
    sbatch = shutil.which("sbatch")
    if not sbatch:
        return None
    try:
        out = subprocess.run(
            [sbatch, "--version"], capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    m = _RUNNING_VERSION.search(out.stdout)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m and out.returncode == 0 else None


def _compile(
    sources: list[Path], output: Path, extra: tuple[str, ...], headers: SlurmHeaders, cc: str
) -> tuple[str, ...]:
    """Compile into a temporary file beside `output`, then rename it into place: processes that have the old
    .so mapped (a running slurmstepd) keep their copy instead of seeing it rewritten under them."""
    output = output.absolute()
    output.parent.mkdir(parents=True, exist_ok=True)
    with replacing(output, mode=0o755) as tmp:
        cmd = (cc, *CFLAGS, *extra, f"-I{headers.include}", "-o", str(tmp), *(str(s) for s in sources))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise QauvernError(f"cannot run {cc}: {exc}") from exc
        if proc.returncode != 0:
            raise QauvernError(
                f"compiling {sources[0]} failed (exit {proc.returncode}):\n"
                + (proc.stderr or proc.stdout).strip(),
                hint=f"Slurm headers {headers.include} (Slurm {headers.version_text}); "
                f"command: {' '.join(cmd)}",
            )
    return cmd


def build_plugin(
    output: str | os.PathLike[str] | None = None,
    *,
    slurm_include: str | os.PathLike[str] | None = None,
    cc: str | None = None,
    check_running: bool = True,
) -> BuildResult:
    """Compile qpu.so. `output` defaults to default_plugin_path()."""
    headers = find_headers(slurm_include)
    compiler = find_compiler(cc)
    path = Path(output) if output else default_plugin_path()
    src = source_dir()
    export = f"-Wl,--version-script={src / EXPORT_MAP}"
    cmd = _compile([src / SOURCE], path, (*PLUGIN_FLAGS, export), headers, compiler)
    running = running_slurm_version() if check_running else None
    return BuildResult(path=path.absolute(), headers=headers, command=cmd, running_version=running)


def build_harness(
    output: str | os.PathLike[str],
    *,
    slurm_include: str | os.PathLike[str] | None = None,
    cc: str | None = None,
) -> Path:
    """Compile the unit-test harness (test_qpu.c: the plugin with SPANK stubbed out) into an executable."""
    src = source_dir()
    if not (src / HARNESS_SOURCE).is_file():
        raise QauvernError(f"{src / HARNESS_SOURCE} is missing")
    path = Path(output)
    _compile([src / HARNESS_SOURCE], path, HARNESS_FLAGS, find_headers(slurm_include), find_compiler(cc))
    return path.absolute()


def default_plugin_path() -> Path:
    """Where `spank build` writes and `spank path` looks: $QAUVERN_HPC_SPANK_SO, else DEFAULT_PLUGIN_PATH."""
    return Path(os.environ.get(PLUGIN_PATH_ENV) or DEFAULT_PLUGIN_PATH)


def plugstack_line(
    path: str | os.PathLike[str],
    *,
    state_dir: str = DEFAULT_STATE_DIR,
    fail_mode: str = "closed",
    max_names: int | None = None,
    required: bool = True,
) -> str:
    """The plugstack.conf line. `required`: with `optional`, Slurm ignores the plugin's failures, so a job
    that must fail closed would run without its QPU environment."""
    path = str(path)
    for what, value in (("plugin path", path), ("state_dir", state_dir)):
        if not value.startswith("/") or any(c.isspace() for c in value):
            raise UsageError(f"{what} must be an absolute path without whitespace, not {value!r}")
    if fail_mode not in FAIL_MODES:
        raise UsageError(f"fail mode must be one of {', '.join(FAIL_MODES)}, not {fail_mode!r}")
    words = [
        "required" if required else "optional",
        path,
        f"state_dir={state_dir}",
        f"default_fail_mode={fail_mode}",
    ]
    if max_names is not None:
        if not 1 <= max_names <= MAX_NAMES_LIMIT:
            raise UsageError(f"max_names must be between 1 and {MAX_NAMES_LIMIT}, not {max_names}")
        words.append(f"max_names={max_names}")
    return " ".join(words)
