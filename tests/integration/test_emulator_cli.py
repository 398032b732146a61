"""`qauvern-hpc emulator` as a process: URL on the first stdout line, served until SIGTERM/SIGINT/SIGHUP,
exit 0; and its refusals (non-loopback address, bad seed)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qauvern_hpc.cli import main as cli_main
from qauvern_hpc.devtools.emulator.testing import API_KEY, APIKEY_GRANT, CRN_ALPHA, make_seed

EXAMPLE_KEY = "emulator-example-api-key-0001"


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _start(*args: str, sigint_ignored: bool = False) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "qauvern_hpc", "emulator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "0"},
        preexec_fn=_ignore_sigint if sigint_ignored else None,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 15)
    if not ready:
        proc.kill()
        pytest.fail("the emulator printed nothing within 15 s")
    return proc, proc.stdout.readline().strip()


@pytest.fixture
def seed_file(tmp_path: Path) -> Path:
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(make_seed()))
    return path


@pytest.fixture
def proc_and_url(seed_file: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc, url = _start("--port", "0", "--seed", str(seed_file), "--clock", "manual")
    try:
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_prints_url_first_serves_and_stops_on_sigterm(
    proc_and_url: tuple[subprocess.Popen[str], str],
) -> None:
    proc, url = proc_and_url
    assert url.startswith("http://127.0.0.1:") and int(url.rsplit(":", 1)[1]) > 0
    with httpx.Client(base_url=url, timeout=5) as http:
        assert http.get("/__emulator/health").json()["now"] == "2026-11-22T12:00:00.000Z"
        token = http.post("/identity/token", data={"grant_type": APIKEY_GRANT, "apikey": API_KEY}).json()
        usage = http.get(
            "/api/v1/instances/usage",
            headers={"Authorization": f"Bearer {token['access_token']}", "Service-CRN": CRN_ALPHA},
        )
        assert usage.status_code == 200 and usage.json()["usage_consumed_seconds"] == sum(
            1000 + i for i in range(28)
        )
        assert (
            http.post("/__emulator/advance", json={"seconds": 60}).json()["now"] == "2026-11-22T12:01:00.000Z"
        )
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert out == ""  # nothing after the URL line
    assert "serving 2 account(s), 3 instance(s), 2 backend(s)" in err
    assert API_KEY not in out + err
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/__emulator/health", timeout=2)


def test_sigint_also_exits_zero(proc_and_url: tuple[subprocess.Popen[str], str]) -> None:
    proc, url = proc_and_url
    assert httpx.get(url + "/__emulator/health", timeout=5).status_code == 200
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=10)
    assert proc.returncode == 0


@pytest.mark.parametrize(
    ("signum", "sigint_ignored"), [(signal.SIGHUP, False), (signal.SIGINT, True)], ids=["hup", "int-ignored"]
)
def test_sighup_and_an_ignored_sigint_stop_it_too(
    seed_file: Path, signum: signal.Signals, sigint_ignored: bool
) -> None:
    # A closed session sends SIGHUP; a shell starts background jobs with SIGINT ignored.
    proc, url = _start("--port", "0", "--seed", str(seed_file), sigint_ignored=sigint_ignored)
    try:
        assert httpx.get(url + "/__emulator/health", timeout=5).status_code == 200
        proc.send_signal(signum)
        proc.communicate(timeout=10)
        assert proc.returncode == 0
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/__emulator/health", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_default_serves_the_documented_example_seed() -> None:
    proc, url = _start("--port", "0")
    try:
        state = httpx.get(url + "/__emulator/state", timeout=5).json()
        assert state["clock"]["mode"] == "real"
        assert [b["name"] for b in state["backends"]] == ["ibm_torino", "ibm_fez"]
        assert [a["plans"][0]["plan"] for a in state["accounts"]] == ["premium"]
        regions = {i["region"] for i in state["instances"]}
        assert regions == {"us-east", "eu-de"} and len(state["instances"]) == 4
        live = [i for i in state["instances"] if i["usage_allocation_seconds"] > 0]
        assert len(live) == 3 and all(len(i["usage_history"]) >= 50 for i in live)
        plan = state["summary"]["plans"][0]
        assert plan["unallocated_usage_seconds"] == plan["usage_allocation_seconds"] - sum(
            i["usage_allocation_seconds"] for i in state["instances"]
        )
        token = httpx.post(
            url + "/identity/token", data={"grant_type": APIKEY_GRANT, "apikey": EXAMPLE_KEY}, timeout=5
        )
        assert token.status_code == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert proc.returncode == 0


def test_refuses_a_non_loopback_address(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["emulator", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to listen on non-loopback address '0.0.0.0'" in err and "--allow-remote" in err


GOOD_HEAD = "accounts:\n  - id: a\n    plans: [{plan: premium, usage_allocation_seconds: 100}]\n"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "over.yaml",
            "accounts:\n  - id: a\n    plans: [{plan: premium, usage_allocation_seconds: 10}]\ninstances:\n"
            "  - {name: x, usage_allocation_seconds: 11}\n",
            "over.yaml: inconsistent emulator state: account 'a' plan premium: instance allocations sum to "
            "11 s, more than the plan's usage_allocation_seconds 10 s",
        ),
        (
            "broken.yaml",
            "accounts:\n  - id: a\n    plans: [{plan: premium\ninstances: [\n",
            "broken.yaml:4:10: not valid YAML: while parsing a flow mapping: expected ',' or '}', "
            "but got ':'",
        ),
        ("broken.json", '{"accounts": [\n', "broken.json:2:1: not valid JSON: Expecting value"),
        (
            "negative-history.yaml",
            GOOD_HEAD + "instances:\n  - {name: x, usage_allocation_seconds: 10, usage_history: [5, -3]}\n",
            "negative-history.yaml: instances[0].usage_history[1] (",
        ),
        (
            "negative-allocation.json",
            json.dumps(
                {
                    "accounts": [
                        {"id": "a", "plans": [{"plan": "premium", "usage_allocation_seconds": 100}]}
                    ],
                    "instances": [{"name": "x", "usage_allocation_seconds": -5}],
                }
            ),
            "negative-allocation.json: invalid emulator state: instances[0].usage_allocation_seconds: Input "
            "should be greater than or equal to 0",
        ),
        ("binary.yaml", b"\xff\xfe", "binary.yaml: not UTF-8 text (byte 0: b'\\xff')"),
        ("slow.yaml", "clock: {time_scale: fast}\n", "slow.yaml: clock.time_scale: must be a number > 0"),
        ("backwards.yaml", "clock: {time_scale: -2}\n", "clock.time_scale: must be a number > 0, not -2"),
    ],
)
def test_invalid_seed_is_one_line_and_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: str | bytes, message: str
) -> None:
    bad = tmp_path / name
    if isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        bad.write_text(content)
    assert cli_main(["emulator", "--seed", str(bad)]) == 3
    err = capsys.readouterr().err
    assert err.startswith(f"qauvern-hpc emulator: error: bad seed: {bad}")
    assert message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_unreadable_seed_and_bad_options_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["emulator", "--seed", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert "cannot read seed" in err and "No such file or directory" in err and err.count("\n") == 1
    assert cli_main(["emulator", "--seed", str(tmp_path)]) == 2  # a directory
    assert "cannot read seed" in capsys.readouterr().err
    assert cli_main(["emulator", "--time-scale", "0"]) == 2
    assert cli_main(["emulator", "--port", "70000"]) == 2


def test_invalid_seed_as_a_process_prints_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD_HEAD + "instances:\n  - {name: x, usage_allocation_seconds: -1}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "qauvern_hpc", "emulator", "--port", "0", "--seed", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3
    assert proc.stdout == ""  # no URL: nothing is served
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "instances[0].usage_allocation_seconds" in proc.stderr


def test_help_has_description_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(["emulator", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for text in (
        "--clock {real,manual}",
        "--time-scale X",
        "--allow-remote",
        "examples:",
        "_QRMI_IBM_QCS_ENDPOINT",
    ):
        assert text in out


def test_verbose_logs_requests_without_secrets(seed_file: Path) -> None:
    proc, url = _start("-v", "--port", "0", "--seed", str(seed_file), "--clock", "manual")
    try:
        r = httpx.post(
            url + "/identity/token?apikey=query-secret",
            data={"grant_type": APIKEY_GRANT, "apikey": API_KEY},
            timeout=5,
        )
        token = r.json()["access_token"]
        httpx.get(url + "/api/v1/backends", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "POST /identity/token?apikey=%3Credacted%3E -> 200" in err
    assert "GET /api/v1/backends -> 200" in err
    for secret in ("query-secret", API_KEY, token):
        assert secret not in err
