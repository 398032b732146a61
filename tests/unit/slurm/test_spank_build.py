"""qauvern_hpc.slurm.spank_build and `qauvern-hpc spank`: building qpu.so, locating it, the plugstack.conf
line."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from qauvern_hpc.cli import main
from qauvern_hpc.core import paths
from qauvern_hpc.core.errors import QauvernError, UsageError
from qauvern_hpc.slurm import spank_build as sb
from tests.support.paths import REPO

pytestmark = pytest.mark.process  # starts processes (cc, lua, shellcheck, the CLI or the emulator)

# What qpu.so may import: the documented SPANK API and a little libc. Nothing of Slurm's internals.
ALLOWED_IMPORTS = {
    "slurm_error",
    "slurm_info",
    "spank_context",
    "spank_get_item",
    "spank_getenv",
    "spank_job_control_setenv",
    "spank_option_register",
    "spank_remote",
    "spank_setenv",
    "spank_strerror",
    # libc
    "close",
    "free",
    "fstat",
    "malloc",
    "memchr",
    "memcmp",
    "memcpy",
    "open",
    "read",
    "strchr",
    "strcmp",
    "strcpy",
    "strerror",
    "strlen",
    "strncmp",
    "strtoul",
    "vsnprintf",
    "write",
    "__errno_location",
    "__stack_chk_fail",
    # libc's checked variants (-D_FORTIFY_SOURCE=2)
    "__strcpy_chk",
    "__vsnprintf_chk",
    # toolchain
    "__cxa_finalize",
    "_ITM_deregisterTMCloneTable",
    "_ITM_registerTMCloneTable",
    "__gmon_start__",
}
EXPORTS = {
    "plugin_name",
    "plugin_type",
    "plugin_version",
    "spank_plugin_version",
    "slurm_spank_init",
    "slurm_spank_init_post_opt",
    "slurm_spank_task_init_privileged",
    "slurm_spank_task_init",
}


def _can_build() -> str | None:
    try:
        sb.find_headers()
        sb.find_compiler()
    except QauvernError as exc:
        return str(exc)
    return None


needs_build = pytest.mark.skipif(_can_build() is not None, reason=f"cannot build: {_can_build()}")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> sb.BuildResult:
    if _can_build():
        pytest.skip(f"cannot build: {_can_build()}")
    return sb.build_plugin(tmp_path_factory.mktemp("so") / "qpu.so", check_running=False)


def _symbols(path: Path, flag: str) -> set[str]:
    out = subprocess.run(["nm", "-D", flag, str(path)], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}


# ---------------------------------------------------------------------------------------------- sources


def test_sources_come_from_the_checkout() -> None:
    assert sb.source_dir() == REPO / "spank"


def test_sources_fall_back_to_package_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "site-packages" / "qauvern_hpc"
    (pkg / "spank_src").mkdir(parents=True)
    (pkg / "spank_src" / "qpu.c").write_text("/* copy */\n")
    monkeypatch.setattr(paths, "PACKAGE_DIR", pkg)
    monkeypatch.setattr(paths, "CHECKOUT_DIR", pkg.parent)
    assert sb.source_dir() == pkg / "spank_src"
    (pkg / "spank_src" / "qpu.c").unlink()
    with pytest.raises(QauvernError, match="C sources"):
        sb.source_dir()


def test_compile_flags_match_the_makefile() -> None:
    mk = (REPO / "spank" / "Makefile").read_text()
    m = re.search(r"^CFLAGS \?= (.+)$", mk, re.M)
    assert m and tuple(m.group(1).split()) == sb.CFLAGS
    m = re.search(r"^PLUGIN_CFLAGS = \$\(CFLAGS\) (.+) -I\$\(SLURM_INCLUDE\)$", mk, re.M)
    assert m and tuple(m.group(1).split()) == sb.PLUGIN_FLAGS
    assert "LIBDIR ?= $(PREFIX)/lib/slurm" in mk and sb.DEFAULT_PLUGIN_PATH == "/usr/local/lib/slurm/qpu.so"
    m = re.search(r"^TEST_CFLAGS = (.+)$", mk, re.M)
    assert m and tuple(m.group(1).split()) == sb.HARNESS_FLAGS
    assert f"PLUGIN_LDFLAGS = -Wl,--version-script={sb.EXPORT_MAP}\n" in mk
    assert (REPO / "spank" / sb.EXPORT_MAP).is_file()


def test_site_build_is_hardened_and_does_not_fail_on_warnings() -> None:
    assert "-Werror" not in sb.CFLAGS + sb.PLUGIN_FLAGS and "-Werror" in sb.HARNESS_FLAGS
    for flag in ("-Wall", "-Wextra", "-O2", "-D_FORTIFY_SOURCE=2", "-fstack-protector-strong"):
        assert flag in sb.CFLAGS
    assert {"-fPIC", "-Wl,-z,relro,-z,now"} <= set(sb.PLUGIN_FLAGS)


# ---------------------------------------------------------------------------------------------- headers


def _fake_include(root: Path, version: int | None, spank_h: str = "") -> Path:
    (root / "slurm").mkdir(parents=True)
    (root / "slurm" / "spank.h").write_text(spank_h)
    if version is not None:
        (root / "slurm" / "slurm_version.h").write_text(f"#define SLURM_VERSION_NUMBER 0x{version:06x}\n")
    return root


def test_headers_version_is_read(tmp_path: Path) -> None:
    h = sb.find_headers(_fake_include(tmp_path / "inc", 0x170201))
    assert h.version == (23, 2, 1) and h.version_text == "23.02.1"
    assert sb.find_headers(_fake_include(tmp_path / "noversion", None)).version_text == "unknown"


def test_headers_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_INCLUDE", str(_fake_include(tmp_path / "env", 0x180B05)))
    assert sb.find_headers().version == (24, 11, 5)


def test_missing_headers_say_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(QauvernError) as exc:
        sb.find_headers(tmp_path)
    assert "no Slurm SPANK header" in str(exc.value) and "libslurm-dev" in str(exc.value)


def test_missing_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(QauvernError, match="not found"):
        sb.find_compiler("no-such-cc-xyz")
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CC", raising=False)
    with pytest.raises(QauvernError, match="no C compiler found"):
        sb.find_compiler()


# ---------------------------------------------------------------------------------------------- build


@needs_build
def test_built_plugin_exports_the_spank_symbols_and_imports_only_the_spank_api(built: sb.BuildResult) -> None:
    assert built.path.is_file() and os.stat(built.path).st_mode & 0o777 == 0o755
    assert built.headers.version is not None
    if shutil.which("nm") is None:
        pytest.skip("nm is not installed")
    assert _symbols(built.path, "--defined-only") == EXPORTS
    assert _symbols(built.path, "--undefined-only") <= ALLOWED_IMPORTS
    assert b"qauvern_qpu\0" in built.path.read_bytes()


@needs_build
def test_only_the_spank_symbols_are_exported_even_if_the_source_forgets_static(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("nm") is None or shutil.which("readelf") is None:
        pytest.skip("nm or readelf is not installed")
    src = tmp_path / "src"
    src.mkdir()
    (src / "qpu.map").write_text((REPO / "spank" / "qpu.map").read_text())
    leak = "\nint qpu_leaked_helper(int x);\nint qpu_leaked_helper(int x) { return x + 1; }\n"
    (src / "qpu.c").write_text((REPO / "spank" / "qpu.c").read_text() + leak)
    monkeypatch.setattr(sb, "source_dir", lambda: src)
    built = sb.build_plugin(tmp_path / "qpu.so", check_running=False)
    assert _symbols(built.path, "--defined-only") == EXPORTS  # the version script hides the helper
    dynamic = subprocess.run(["readelf", "-d", "-l", str(built.path)], capture_output=True, text=True).stdout
    assert "GNU_RELRO" in dynamic and re.search(r"\(FLAGS\)\s+BIND_NOW|\(FLAGS_1\).*\bNOW\b", dynamic)


@needs_build
def test_build_replaces_atomically(tmp_path: Path) -> None:
    out = tmp_path / "lib" / "qpu.so"
    sb.build_plugin(out, check_running=False)
    first = os.stat(out).st_ino
    sb.build_plugin(out, check_running=False)
    assert os.stat(out).st_ino != first  # a new file renamed over the old one, never rewritten in place
    assert sorted(p.name for p in out.parent.iterdir()) == ["qpu.so"]


@needs_build
def test_compile_error_is_reported_and_leaves_nothing(tmp_path: Path) -> None:
    inc = _fake_include(tmp_path / "inc", 0x160508, spank_h="#error this is not slurm\n")
    with pytest.raises(QauvernError) as exc:
        sb.build_plugin(tmp_path / "out" / "qpu.so", slurm_include=inc, check_running=False)
    assert "this is not slurm" in str(exc.value) and "22.05.8" in str(exc.value)
    assert list((tmp_path / "out").iterdir()) == []


def _fake_sbatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: str, rc: int = 0) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    script = bindir / "sbatch"
    script.write_text(f"#!/bin/sh\necho '{output}'\nexit {rc}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")


@pytest.mark.parametrize(
    ("output", "rc", "expected"),
    [
        ("slurm 22.05.8", 0, (22, 5, 8)),
        ("slurm-wlm 23.02.1", 0, (23, 2, 1)),
        ("oops", 0, None),
        ("x", 1, None),
    ],
)
def test_running_version(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    output: str,
    rc: int,
    expected: tuple[int, int, int] | None,
) -> None:
    _fake_sbatch(tmp_path, monkeypatch, output, rc)
    assert sb.running_slurm_version() == expected


# ------------------------------------------------------------------------------------------- plugstack line


def test_plugstack_line() -> None:
    assert sb.plugstack_line("/usr/local/lib/slurm/qpu.so") == (
        "required /usr/local/lib/slurm/qpu.so state_dir=/var/lib/qauvern-hpc default_fail_mode=closed"
    )
    assert sb.plugstack_line(
        "/x/qpu.so", state_dir="/shared/q", fail_mode="open", max_names=4, required=False
    ) == ("optional /x/qpu.so state_dir=/shared/q default_fail_mode=open max_names=4")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"state_dir": "relative"},
        {"state_dir": "/with space"},
        {"fail_mode": "maybe"},
        {"max_names": 0},
        {"max_names": 65},
    ],
)
def test_plugstack_line_refuses_what_the_plugin_would_refuse(kwargs: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        sb.plugstack_line("/x/qpu.so", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        sb.plugstack_line("qpu.so")


# ---------------------------------------------------------------------------------------------- CLI


@needs_build
def test_cli_build_prints_the_plugstack_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sb, "running_slurm_version", lambda timeout=5.0: None)
    out = tmp_path / "qpu.so"
    assert main(["spank", "build", "--output", str(out), "--state-dir", "/shared/q"]) == 0
    text = capsys.readouterr().out
    assert f"built {out}" in text
    assert f"  required {out} state_dir=/shared/q default_fail_mode=closed" in text
    assert main(["--json", "spank", "build", "-o", str(out), "--fail-mode", "open"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["path"] == str(out) and data["warning"] is None
    assert data["plugstack_line"] == f"required {out} state_dir=/var/lib/qauvern-hpc default_fail_mode=open"


@needs_build
def test_cli_build_warns_on_version_mismatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sb, "running_slurm_version", lambda timeout=5.0: (99, 1, 0))
    assert main(["spank", "build", "-o", str(tmp_path / "qpu.so")]) == 0
    assert "this host runs Slurm 99.01.0: Slurm will refuse to load it" in capsys.readouterr().err


def test_cli_build_without_headers_fails_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spank", "build", "--slurm-include", str(tmp_path), "-o", str(tmp_path / "q.so")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("qauvern-hpc spank: error: no Slurm SPANK header") and "hint:" in err


def test_cli_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    so = tmp_path / "qpu.so"
    monkeypatch.setenv(sb.PLUGIN_PATH_ENV, str(so))
    assert main(["spank", "path"]) == 1
    cap = capsys.readouterr()
    assert cap.out == f"{so}\n" and "not built" in cap.err
    so.write_bytes(b"")
    assert main(["spank", "path"]) == 0
    assert capsys.readouterr().out == f"{so}\n"
    assert main(["--json", "spank", "path"]) == 0
    assert json.loads(capsys.readouterr().out) == {"path": str(so), "exists": True}


def test_cli_plugstack_line_and_sources(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(sb.PLUGIN_PATH_ENV, raising=False)
    assert main(["spank", "plugstack-line"]) == 0
    assert capsys.readouterr().out == (
        "required /usr/local/lib/slurm/qpu.so state_dir=/var/lib/qauvern-hpc default_fail_mode=closed\n"
    )
    assert main(["spank", "plugstack-line", "--path", "/o/q.so", "--max-names", "3", "--optional"]) == 0
    assert capsys.readouterr().out.startswith("optional /o/q.so ")
    assert main(["spank", "plugstack-line", "--state-dir", "rel"]) == 2
    assert main(["spank", "sources"]) == 0
    assert capsys.readouterr().out == f"{REPO / 'spank'}\n"


def test_cli_help_mentions_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["spank", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "plugstack-line" in out and "`optional`" in out
