import os
import stat

import pytest

from qauvern_hpc.hooks.jobenv import (
    AcquiredResource,
    format_env_file,
    parse_env_file,
    render,
    write_private,
)


def _res(name: str = "ibm_torino", **kw: object) -> AcquiredResource:
    base: dict[str, object] = dict(
        name=name,
        type="ibm-quantum-compute-service",
        crn="crn:v1:bluemix:public:quantum-computing:us-east:a/acct:inst1::",
        session_mode="batch",
        max_ttl_seconds=28800,
        session_id="sess-1",
        endpoint="http://127.0.0.1:9/api",
        iam_endpoint="http://127.0.0.1:9",
    )
    base.update(kw)
    return AcquiredResource(**base)  # type: ignore[arg-type]


def test_render_follows_qrmi_conventions() -> None:
    env = render(
        [_res(), _res("ibm_fez", session_id="sess-2")], time_limit_seconds=600, instance="phys", rule="r1"
    )
    assert env["QRMI_JOB_QPU_RESOURCES"] == "ibm_torino,ibm_fez"
    assert env["SLURM_JOB_QPU_RESOURCES"] == "ibm_torino,ibm_fez"
    assert env["QRMI_JOB_QPU_TYPES"] == "ibm-quantum-compute-service,ibm-quantum-compute-service"
    assert env["ibm_torino_QRMI_IBM_QCS_SESSION_ID"] == "sess-1"
    assert env["ibm_fez_QRMI_JOB_ACQUISITION_TOKEN"] == "sess-2"
    assert env["ibm_torino_QRMI_IBM_QCS_SERVICE_CRN"].endswith(":inst1::")
    assert env["ibm_torino_QRMI_JOB_TIMEOUT_SECONDS"] == "600"
    assert env["QAUVERN_HPC_INSTANCE"] == "phys"


def test_api_key_only_when_exposed() -> None:
    hidden = render([_res()], time_limit_seconds=None, instance="i", rule="r")
    assert not any("APIKEY" in k for k in hidden)
    shown = render([_res(api_key="k-123")], time_limit_seconds=None, instance="i", rule="r")
    assert shown["ibm_torino_QRMI_IBM_QCS_IAM_APIKEY"] == "k-123"


def test_env_file_round_trip_keeps_equals_in_values() -> None:
    env = {"A": "x=y=z", "B_2": "", "QAUVERN_HPC_ERROR": "boom: a=b"}
    assert parse_env_file(format_env_file(env)) == env


@pytest.mark.parametrize("env", [{"1BAD": "x"}, {"A-B": "x"}, {"A": "line\nbreak"}, {"A": "nul\0"}])
def test_env_file_refuses_what_the_plugin_could_not_read(env: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        format_env_file(env)


def test_write_private_is_0600_and_atomic(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "jobs", "42.env")
    write_private(path, "A=1\n")
    write_private(path, "A=2\n")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path) as fh:
        assert fh.read() == "A=2\n"
    assert [n for n in os.listdir(os.path.dirname(path)) if n.startswith(".tmp")] == []
