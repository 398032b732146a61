"""The SPANK plugin's C code, run without Slurm through spank/test_qpu.c (the plugin with SPANK stubbed).

`validate` and `env` exercise the pure functions; `plugin` runs the hooks in the order Slurm calls them and
prints every SPANK call the plugin makes, so the contexts and fail modes are checked too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from qauvern_hpc.core.errors import QauvernError
from qauvern_hpc.slurm import spank_build

pytestmark = pytest.mark.process  # starts processes (cc, lua, shellcheck, the CLI or the emulator)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        spank_build.find_headers()
        spank_build.find_compiler()
    except QauvernError as exc:
        pytest.skip(f"cannot build the SPANK harness: {exc}")
    return spank_build.build_harness(tmp_path_factory.mktemp("spank") / "test_qpu")


def run(harness: Path, *args: str, valgrind: bool = False) -> subprocess.CompletedProcess[bytes]:
    cmd = [str(harness), *args]
    if valgrind:
        cmd = [
            "valgrind",
            "--quiet",
            "--leak-check=full",
            "--show-leak-kinds=all",
            "--errors-for-leak-kinds=all",
            "--error-exitcode=99",
            *cmd,
        ]
    return subprocess.run(cmd, capture_output=True, timeout=60, check=False)


def validate(harness: Path, value: str | bytes, *extra: str) -> tuple[int, str]:
    arg = value if isinstance(value, str) else os.fsdecode(value)
    p = run(harness, "validate", *extra, arg)
    return p.returncode, p.stdout.decode()


# ---------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "value",
    ["ibm_torino", "ibm_torino,ibm_fez", "a", "A.b-C_9", "a,b,c,d,e,f,g,h", "x" * 64, "ab,a", "a,ab"],
)
def test_valid_names(harness: Path, value: str) -> None:
    assert validate(harness, value) == (0, "ok\n")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "qpu: --qpu needs at least one QPU name, e.g. --qpu=ibm_torino"),
        ("a,,b", 'qpu: QPU name 2 of --qpu="a,,b" is empty (a leading, trailing or doubled comma?)'),
        ("a,", 'qpu: QPU name 2 of --qpu="a," is empty'),
        (",a", 'qpu: QPU name 1 of --qpu=",a" is empty'),
        (",", "qpu: QPU name 1"),
        (";rm -rf /", 'qpu: QPU name "\\x3brm\\x20-rf\\x20/" has the invalid byte \\x3b at offset 0'),
        ("$(id)", 'qpu: QPU name "\\x24\\x28id\\x29" has the invalid byte \\x24 at offset 0'),
        ("ok,`id`", 'qpu: QPU name "\\x60id\\x60" has the invalid byte \\x60 at offset 0'),
        ("a b", "invalid byte \\x20 at offset 1"),
        ("a\nb", "invalid byte \\x0a at offset 1"),
        ("a,b,c,d,e,f,g,h,i", "qpu: --qpu names 9 QPUs, at most 8 are allowed"),
        ("x" * 65, 'qpu: QPU name "' + "x" * 40 + '..." is 65 bytes long, at most 64 are allowed'),
        ("a,b,a", 'qpu: QPU name "a" is given more than once in --qpu'),
        ("ibm_fez,ibm_fez", 'qpu: QPU name "ibm_fez" is given more than once'),
        ("ibm_törino", 'QPU name "ibm_t\\xc3\\xb6rino" has the invalid non-ASCII byte \\xc3 at offset 5'),
        ("量子", "non-ASCII byte \\xe9 at offset 0"),
    ],
)
def test_invalid_names_say_what_is_wrong(harness: Path, value: str, message: str) -> None:
    rc, out = validate(harness, value)
    assert rc == 1
    assert message in out


def test_a_10kb_value_is_refused_and_not_echoed(harness: Path) -> None:
    rc, out = validate(harness, "a" * 10240)
    assert rc == 1
    assert "qpu: --qpu value is 10240 bytes long, at most 1024 are allowed" in out
    assert len(out) < 300  # at most 40 bytes of the value come back


def test_total_length_limit_is_1024(harness: Path) -> None:
    # with max_names raised, the 1024-byte total is what stops long lists
    ok = ",".join(f"{i:02d}" + "n" * 58 for i in range(16))  # 16 x 60 + 15 = 975 bytes
    assert validate(harness, ok, "--max", "64") == (0, "ok\n")
    big = ",".join(f"{i:02d}" + "n" * 58 for i in range(17))  # 1036 bytes
    assert validate(harness, big, "--max", "64")[1].startswith(
        "qpu: --qpu value is 1036 bytes long, at most 1024"
    )
    assert validate(harness, "z" * 1025)[1].startswith("qpu: --qpu value is 1025 bytes long")


def test_echo_never_carries_shell_metacharacters(harness: Path) -> None:
    evil = "a;b|c&d$e`f'g\"h\\i(j)k<l>m*n?o[p]q{r}s~t!u#v%w^x"
    rc, out = validate(harness, evil)
    assert rc == 1
    quoted = out.split('"')[1]
    assert all(c.isalnum() or c in "_.,:/=+@-\\" for c in quoted)


def test_max_names_argument(harness: Path) -> None:
    assert validate(harness, "a,b,c", "--max", "2")[1].startswith("qpu: --qpu names 3 QPUs, at most 2")
    assert validate(harness, "a,b", "--max", "2") == (0, "ok\n")


# ---------------------------------------------------------------------------------------------- env file


def env_file(path: Path, text: str | bytes, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    path.chmod(mode)
    return path


def parse(harness: Path, path: Path) -> tuple[int, list[str]]:
    p = run(harness, "env", str(path))
    return p.returncode, p.stdout.decode().splitlines()


def test_env_file_comments_equals_and_special_keys(harness: Path, tmp_path: Path) -> None:
    f = env_file(
        tmp_path / "1.env",
        "# written by the prolog\n"
        "\n"
        "ibm_torino_QRMI_IBM_QCS_ENDPOINT=https://q.example/api?a=b=c\n"
        "EMPTY=\n"
        "_X1=#not a comment\n"
        "QAUVERN_HPC_ERROR=IBM said: quota = 0\n"
        "QAUVERN_HPC_FAIL_MODE=open\n",
    )
    assert parse(harness, f) == (
        0,
        [
            "var ibm_torino_QRMI_IBM_QCS_ENDPOINT=https://q.example/api?a=b=c",
            "var EMPTY=",
            "var _X1=#not a comment",
            "error=IBM said: quota = 0",
            "mode=open",
        ],
    )


def test_env_file_without_final_newline_and_without_special_keys(harness: Path, tmp_path: Path) -> None:
    assert parse(harness, env_file(tmp_path / "2.env", "A=1\nB=2")) == (0, ["var A=1", "var B=2"])
    assert parse(harness, env_file(tmp_path / "3.env", "")) == (0, [])


def test_env_file_matches_the_python_writer(harness: Path, tmp_path: Path) -> None:
    jobenv = pytest.importorskip("qauvern_hpc.hooks.jobenv")
    env = {"A": "x=y=z", "B_2": "", "C": " spaces kept ", "QAUVERN_HPC_INSTANCE": "phys"}
    f = env_file(tmp_path / "4.env", jobenv.format_env_file(env))
    assert parse(harness, f) == (0, [f"var {k}={v}" for k, v in env.items()])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1BAD=x\n", 'line 1: invalid variable name "1BAD"'),
        ("A-B=x\n", 'line 1: invalid variable name "A-B"'),
        (" A=x\n", 'line 1: invalid variable name "\\x20A"'),
        ("=x\n", 'line 1: invalid variable name ""'),
        ("A=1\nno_equals\n", 'line 2 is not KEY=VALUE: "no_equals"'),
        ("A=1\nA=2\n", "line 2: A is set twice"),
        ("QAUVERN_HPC_ERROR=a\nQAUVERN_HPC_ERROR=b\n", "line 2: QAUVERN_HPC_ERROR is set twice"),
        ("QAUVERN_HPC_FAIL_MODE=maybe\n", 'QAUVERN_HPC_FAIL_MODE must be open or closed, not "maybe"'),
        ("QAUVERN_HPC_FAIL_MODE=Open\n", "must be open or closed"),
        ("A=1\nB=x\0y\n", "contains a NUL byte"),
        ("A=" + "v" * 65536 + "\n", "line 1 is longer than 65536 bytes"),
        ("".join(f"V{i}=x\n" for i in range(257)), "more than 256 variables"),
    ],
)
def test_env_file_is_strict(harness: Path, tmp_path: Path, text: str, message: str) -> None:
    rc, out = parse(harness, env_file(tmp_path / "bad.env", text))
    assert rc == 1
    assert out[0].startswith("bad: refusing ")
    assert message in out[0]


def test_env_file_limits_are_inclusive(harness: Path, tmp_path: Path) -> None:
    assert parse(harness, env_file(tmp_path / "a.env", "A=" + "v" * 65534 + "\n"))[0] == 0  # 65536-byte line
    assert parse(harness, env_file(tmp_path / "b.env", "".join(f"V{i}=x\n" for i in range(256))))[0] == 0


def test_env_file_missing(harness: Path, tmp_path: Path) -> None:
    assert parse(harness, tmp_path / "nope.env") == (3, ["missing"])
    assert parse(harness, tmp_path / "nodir" / "nope.env") == (3, ["missing"])


def test_env_file_refuses_symlink_writable_and_hardlinked_files(harness: Path, tmp_path: Path) -> None:
    real = env_file(tmp_path / "real.env", "A=1\n")
    (tmp_path / "link.env").symlink_to(real)
    rc, out = parse(harness, tmp_path / "link.env")
    assert rc == 1 and "it is a symbolic link" in out[0]
    rc, out = parse(harness, env_file(tmp_path / "gw.env", "A=1\n", mode=0o620))
    assert rc == 1 and "group- or world-writable (mode 0620)" in out[0]
    rc, out = parse(harness, env_file(tmp_path / "ww.env", "A=1\n", mode=0o602))
    assert rc == 1 and "group- or world-writable" in out[0]
    os.link(real, tmp_path / "hard.env")
    rc, out = parse(harness, tmp_path / "hard.env")
    assert rc == 1 and "has 2 hard links" in out[0]
    os.mkfifo(tmp_path / "fifo.env", 0o600)
    rc, out = parse(harness, tmp_path / "fifo.env")  # must not block
    assert rc == 1 and "not a regular file" in out[0]
    rc, out = parse(harness, tmp_path)
    assert rc == 1 and "not a regular file" in out[0]


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_env_file_refuses_a_file_of_another_owner(harness: Path, tmp_path: Path) -> None:
    f = env_file(tmp_path / "other.env", "A=1\n")
    os.chown(f, 65534, -1)
    rc, out = parse(harness, f)
    assert rc == 1 and "owned by uid 65534, not 0" in out[0]


def test_env_file_over_one_mib_is_refused(harness: Path, tmp_path: Path) -> None:
    f = env_file(tmp_path / "big.env", "# " + "c" * (1024 * 1024) + "\n")
    rc, out = parse(harness, f)
    assert rc == 1 and "larger than 1048576 bytes" in out[0]


# ---------------------------------------------------------------------------------------------- hooks


def hooks(harness: Path, *args: str, valgrind: bool = False) -> tuple[int, list[str], str]:
    p = run(harness, "plugin", *args, valgrind=valgrind)
    return p.returncode, p.stdout.decode().splitlines(), p.stderr.decode()


def state(tmp_path: Path, text: str | None, job: int = 42, mode: int = 0o600) -> str:
    d = tmp_path / "state"
    (d / "jobs").mkdir(parents=True, exist_ok=True)
    if text is not None:
        env_file(d / "jobs" / f"{job}.env", text, mode)
    return f"state_dir={d}"


def test_allocator_registers_option_and_passes_value_to_controller(harness: Path) -> None:
    rc, out, _ = hooks(harness, "--ctx", "allocator", "--qpu", "ibm_torino,ibm_fez")
    assert rc == 0
    assert out[0] == (
        "option_register --qpu=name[,name...]: "
        "Quantum resources (QPUs) for this job, comma-separated, e.g. --qpu=ibm_torino"
    )
    assert "job_control_setenv QPU=ibm_torino,ibm_fez (overwrite=1)" in out
    assert out[-1] == "init_post_opt=0"


def test_local_context_also_passes_value(harness: Path) -> None:
    rc, out, _ = hooks(harness, "--ctx", "local", "--qpu", "ibm_torino")
    assert rc == 0 and "job_control_setenv QPU=ibm_torino (overwrite=1)" in out


def test_without_qpu_nothing_is_set(harness: Path) -> None:
    for ctx in ("allocator", "local"):
        rc, out, _ = hooks(harness, "--ctx", ctx)
        assert rc == 0
        assert not [line for line in out if "setenv" in line]


@pytest.mark.parametrize("ctx", ["allocator", "local", "remote"])
def test_bad_value_fails_the_option_callback_in_every_context(harness: Path, ctx: str) -> None:
    rc, out, _ = hooks(harness, "--ctx", ctx, "--qpu", ";rm -rf /")
    assert rc == 1
    assert (
        'slurm_error: qpu: QPU name "\\x3brm\\x20-rf\\x20/" has the invalid byte \\x3b at offset 0 '
        in "\n".join(out)
    )
    assert "option=-1" in out


def test_max_names_plugin_argument(harness: Path) -> None:
    rc, out, _ = hooks(harness, "--arg", "max_names=2", "--qpu", "a,b,c")
    assert rc == 1 and any("at most 2 are allowed" in line for line in out)
    rc, out, _ = hooks(harness, "--arg", "max_names=9", "--qpu", "a,b,c,d,e,f,g,h,i")
    assert rc == 0


@pytest.mark.parametrize(
    "arg",
    [
        "bogus=1",
        "state_dir=relative",
        "default_fail_mode=maybe",
        "max_names=0",
        "max_names=65",
        "max_names=2x",
    ],
)
def test_bad_plugin_argument_fails_sbatch_but_not_slurmstepd(harness: Path, arg: str) -> None:
    rc, out, _ = hooks(harness, "--ctx", "allocator", "--arg", arg)
    assert rc == 1 and out[-1] == "init=-1"
    assert out[0].startswith("slurm_error: qpu: plugstack.conf: bad argument ")
    rc, out, _ = hooks(harness, "--ctx", "remote", "--arg", arg)
    assert rc == 0 and "init=0" in out and "task_init=0" in out
    rc, out, _ = hooks(harness, "--ctx", "slurmd", "--arg", arg)
    assert rc == 0 and "init=0" in out and not any(line.startswith("option_register") for line in out)


def test_remote_exports_env_file(harness: Path, tmp_path: Path) -> None:
    sd = state(tmp_path, "# c\nA=1\nB=x=y\nQAUVERN_HPC_FAIL_MODE=closed\n")
    rc, out, err = hooks(harness, "--ctx", "remote", "--arg", sd, "--qpu", "ibm_torino")
    assert rc == 0, out
    assert [line for line in out if line.startswith("setenv")] == [
        "setenv A=1 (overwrite=1)",
        "setenv B=x=y (overwrite=1)",
    ]
    assert "task_init_privileged=0" in out and "task_init=0" in out
    assert err == ""
    assert not [line for line in out if "job_control" in line]  # never in remote context


def test_remote_srun_step_without_option_still_gets_env(harness: Path, tmp_path: Path) -> None:
    """srun inside an `sbatch --qpu` job: no option on the step, the env file is the job's."""
    sd = state(tmp_path, "A=1\n", job=7)
    rc, out, _ = hooks(harness, "--ctx", "remote", "--arg", sd, "--job", "7", "--env", "SLURM_SPANK_QPU=x")
    assert rc == 0 and "setenv A=1 (overwrite=1)" in out
    rc, out, _ = hooks(harness, "--ctx", "remote", "--arg", sd, "--job", "7")
    assert rc == 0 and "setenv A=1 (overwrite=1)" in out


def test_remote_error_fail_closed_fails_task_and_tells_the_user(harness: Path, tmp_path: Path) -> None:
    sd = state(
        tmp_path, "A=1\nQAUVERN_HPC_ERROR=instance phys has no time left\nQAUVERN_HPC_FAIL_MODE=closed\n"
    )
    rc, out, err = hooks(harness, "--ctx", "remote", "--arg", sd, "--qpu", "ibm_torino")
    assert rc == 1
    assert "slurm_error: qpu: instance phys has no time left" in out
    assert out[-2:] == ["task_init_privileged=0", "task_init=-1"]
    assert err == "qpu: error: instance phys has no time left\n"
    assert not any("QAUVERN_HPC_" in line for line in out if line.startswith("setenv"))


def test_remote_error_fail_open_warns_and_runs(harness: Path, tmp_path: Path) -> None:
    sd = state(tmp_path, "QAUVERN_HPC_ERROR=IBM unreachable\nQAUVERN_HPC_FAIL_MODE=open\nA=1\n")
    rc, out, err = hooks(harness, "--ctx", "remote", "--arg", sd, "--qpu", "ibm_torino")
    assert rc == 0
    assert "setenv A=1 (overwrite=1)" in out
    assert any(line.startswith("slurm_info: qpu: warning: IBM unreachable") for line in out)
    assert err == "qpu: warning: IBM unreachable (the job runs without QPU access)\n"
    assert out[-1] == "task_init=0"


def test_remote_error_without_mode_uses_default_fail_mode(harness: Path, tmp_path: Path) -> None:
    sd = state(tmp_path, "QAUVERN_HPC_ERROR=boom\n")
    assert hooks(harness, "--ctx", "remote", "--arg", sd, "--qpu", "a")[0] == 1
    assert (
        hooks(harness, "--ctx", "remote", "--arg", sd, "--arg", "default_fail_mode=open", "--qpu", "a")[0]
        == 0
    )


def test_error_message_control_characters_are_neutralised(harness: Path, tmp_path: Path) -> None:
    sd = state(tmp_path, "QAUVERN_HPC_ERROR=bad\x1b[31mred\x07\n")
    _, _out, err = hooks(harness, "--ctx", "remote", "--arg", sd, "--qpu", "a")
    assert err == "qpu: error: bad?[31mred?\n"


def test_user_message_only_on_local_task_zero(harness: Path, tmp_path: Path) -> None:
    sd = state(tmp_path, "QAUVERN_HPC_ERROR=boom\n")
    rc, out, err = hooks(harness, "--ctx", "remote", "--arg", sd, "--qpu", "a", "--task", "3")
    assert rc == 1 and err == "" and out[-1] == "task_init=-1"


def test_remote_missing_env_file(harness: Path, tmp_path: Path) -> None:
    sd = state(tmp_path, None)
    expected = "no QPU environment was prepared for job 42 (is PrologSlurmctld set to qauvern-hpc-prolog?)"
    # asked through the option, or through the job's SLURM_SPANK_QPU / SPANK_QPU: fail closed by default
    for asked in (["--qpu", "ibm_torino"], ["--env", "SLURM_SPANK_QPU=ibm_torino"], ["--env", "SPANK_QPU=x"]):
        rc, out, err = hooks(harness, "--ctx", "remote", "--arg", sd, *asked)
        assert rc == 1, asked
        assert f"slurm_error: qpu: {expected}" in out
        assert err == f"qpu: error: {expected}\n"
    rc, out, err = hooks(
        harness, "--ctx", "remote", "--arg", sd, "--arg", "default_fail_mode=open", "--qpu", "a"
    )
    assert rc == 0 and err.startswith(f"qpu: warning: {expected}")


def test_remote_job_without_qpu_is_never_affected(harness: Path, tmp_path: Path) -> None:
    rc, out, err = hooks(harness, "--ctx", "remote", "--arg", state(tmp_path, None))
    assert (rc, err) == (0, "") and out[-1] == "task_init=0"
    assert not [line for line in out if line.startswith(("setenv", "slurm_"))]
    # even with a broken env file (logged for the admin, nothing for the job)
    sd = state(tmp_path, "A=1\n", mode=0o666)
    rc, out, err = hooks(harness, "--ctx", "remote", "--arg", sd, "--env", "SLURM_SPANK_QPU=")
    assert (rc, err) == (0, "")
    assert any(
        line.startswith("slurm_error: qpu: job 42 did not ask for --qpu; ignoring: refusing") for line in out
    )
    # and with an unusable state_dir
    rc, _, err = hooks(harness, "--ctx", "remote", "--arg", "state_dir=/proc/self/nonexistent")
    assert (rc, err) == (0, "")


def test_remote_broken_env_file_for_a_qpu_job_fails_closed(harness: Path, tmp_path: Path) -> None:
    sd = state(tmp_path, "A=1\n", mode=0o666)
    rc, _out, err = hooks(harness, "--ctx", "remote", "--arg", sd, "--qpu", "a")
    assert rc == 1 and "group- or world-writable" in err


def test_remote_setenv_failure_is_an_error(harness: Path, tmp_path: Path) -> None:
    sd = state(tmp_path, "A=1\n")
    rc, _, err = hooks(harness, "--ctx", "remote", "--arg", sd, "--qpu", "a", "--setenv-fails", "1")
    assert rc == 1 and err.startswith("qpu: error: cannot set A in the task environment")


def test_a_closed_failure_is_not_downgraded_by_a_later_open_one(harness: Path, tmp_path: Path) -> None:
    sd = state(tmp_path, "A=1\nQAUVERN_HPC_ERROR=later\nQAUVERN_HPC_FAIL_MODE=open\n")
    rc, _, err = hooks(harness, "--ctx", "remote", "--arg", sd, "--qpu", "a", "--setenv-fails", "1")
    # setenv failed under mode open too: both are warnings, the task runs
    assert rc == 0 and err.startswith("qpu: warning:")
    sd = state(tmp_path, "A=1\nQAUVERN_HPC_FAIL_MODE=closed\n")
    rc, _, err = hooks(harness, "--ctx", "remote", "--arg", sd, "--qpu", "a", "--setenv-fails", "1")
    assert rc == 1


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
@pytest.mark.parametrize(
    "scenario",
    [
        ["validate", "a,b,a"],
        ["validate", "x" * 10240],
        ["plugin", "--ctx", "allocator", "--qpu", "ibm_torino"],
        ["plugin", "--ctx", "remote", "--qpu", "ibm_torino", "ENVFILE"],
        ["plugin", "--ctx", "remote", "--qpu", "ibm_torino", "BADFILE"],
        ["plugin", "--ctx", "remote", "--qpu", "ibm_torino", "NOFILE"],
        ["selftest"],
    ],
    ids=[
        "validate-dup",
        "validate-10k",
        "allocator",
        "remote-ok",
        "remote-bad",
        "remote-missing",
        "selftest",
    ],
)
def test_no_leaks_or_memory_errors(harness: Path, tmp_path: Path, scenario: list[str]) -> None:
    if scenario[-1] == "ENVFILE":
        scenario = [*scenario[:-1], "--arg", state(tmp_path, "A=1\nQAUVERN_HPC_ERROR=x\n")]
    elif scenario[-1] == "BADFILE":
        scenario = [*scenario[:-1], "--arg", state(tmp_path, "A=1\nA=2\n")]
    elif scenario[-1] == "NOFILE":
        scenario = [*scenario[:-1], "--arg", state(tmp_path, None)]
    p = run(harness, *scenario, valgrind=True)
    assert p.returncode in (0, 1), p.stderr.decode()
