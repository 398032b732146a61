"""The admin commands (configure, show, instances, analyze, create) and the global --api-key flag against the
IBM emulator over real HTTP: the CLI runs as a subprocess (or through `cli.main` with argv), exactly as an
admin runs it. These commands talk to IBM only, so no Slurm cluster is needed.

Emulator seed: one premium account (budget 1,000,000 s) with
  physics    allocation 400,000, limit 600,000; 4,000 s/day on days 1-7, 1,000 s/day on days 8-14 (trend up)
  chemistry  allocation 300,000, no limit, no usage (idle, under target)
  gamma      allocation  10,000, limit 20,000; 3,000 s/day on days 1-5 (15,000 s: over target)
  spare      allocation  50,000, not in the config (unmanaged)
  archived   allocation       0 (skipped by configure)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qauvern_hpc.devtools.emulator import run_emulator

pytestmark = pytest.mark.slow

ACCOUNT = "acct0042"
KEY = "admin-test-key-0042-abcdef"
BUDGET = 1_000_000


def crn(region: str, guid: str) -> str:
    return f"crn:v1:bluemix:public:quantum-computing:{region}:a/{ACCOUNT}:{guid}::"


PHYS, CHEM, GAMMA, SPARE, OLD = (
    crn("us-east", "phys-0001"),
    crn("eu-de", "chem-0002"),
    crn("us-east", "gamma-0003"),
    crn("us-east", "spare-0004"),
    crn("us-east", "old-0005"),
)
PHYS_HISTORY = [0] + [4000] * 7 + [1000] * 7
GAMMA_HISTORY = [0] + [3000] * 5


def seed() -> dict[str, Any]:
    return {
        "accounts": [{"id": ACCOUNT, "plans": [{"plan": "premium", "usage_allocation_seconds": BUDGET}]}],
        "api_keys": [{"key": KEY, "name": "admin"}],
        "backends": [{"name": "ibm_torino"}],
        "instances": [
            {
                "name": "physics",
                "crn": PHYS,
                "usage_allocation_seconds": 400_000,
                "instance_limit_seconds": 600_000,
                "usage_history": PHYS_HISTORY,
            },
            {"name": "chemistry", "crn": CHEM, "usage_allocation_seconds": 300_000},
            {
                "name": "gamma",
                "crn": GAMMA,
                "usage_allocation_seconds": 10_000,
                "instance_limit_seconds": 20_000,
                "usage_history": GAMMA_HISTORY,
            },
            {"name": "spare", "crn": SPARE, "usage_allocation_seconds": 50_000},
            {"name": "archived one", "crn": OLD, "usage_allocation_seconds": 0},
        ],
    }


def config_text(base_url: str, key_file: Path, *, reserve: float = 10.0) -> str:
    return f"""\
ibm:
  account_id: {ACCOUNT}
  plan: premium
  endpoints: {{emulator: "{base_url}"}}
  api_key_file: {key_file}
minimum_allocation_seconds: 60
allocation_reserve_percent: {reserve}
instances:
  - name: physics
    crn: "{PHYS}"
    limit_seconds: 600000
  - name: chemistry
    crn: "{CHEM}"
  - name: gamma
    crn: "{GAMMA}"
    limit_seconds: 20000
"""


class Rig:
    def __init__(self, emu: Any, directory: Path) -> None:
        self.emu = emu
        self.dir = directory
        self.key_file = directory / "ibm.key"
        self.key_file.write_text(KEY + "\n")
        self.key_file.chmod(0o600)
        self.config = directory / "config.yaml"
        self.config.write_text(config_text(emu.base_url, self.key_file))

    def run(
        self,
        *args: str,
        stdin: str | None = None,
        env: dict[str, str] | None = None,
        config: Path | None = None,
    ) -> tuple[int, Any, str]:
        """`python -m qauvern_hpc ARGS -c CONFIG`; (exit code, parsed JSON stdout or text, stderr)."""
        full_env = {k: v for k, v in os.environ.items() if k not in ("IBMCLOUD_API_KEY", "IBMCLOUD_STAGING")}
        full_env.update(env or {})
        argv = [sys.executable, "-m", "qauvern_hpc", *args]
        if "-c" not in args and "--config" not in args:
            argv += ["-c", str(config or self.config)]
        proc = subprocess.run(
            argv, input=stdin or "", capture_output=True, text=True, env=full_env, timeout=120, check=False
        )
        out: Any = proc.stdout
        if "--json" in args and proc.stdout.strip():
            out = json.loads(proc.stdout)
        return proc.returncode, out, proc.stderr

    def instances_state(self) -> list[dict[str, Any]]:
        return list(self.emu.state.snapshot()["instances"])


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with run_emulator(seed(), clock="real") as emu:
        yield Rig(emu, tmp_path)


# ---------------------------------------------------------------------------------------------- instances


def test_instances_reports_what_ibm_has(rig: Rig) -> None:
    code, doc, err = rig.run("instances", "--json")
    assert code == 0, err
    rows = {r["name"]: r for r in doc["instances"]}
    assert list(rows) == ["physics", "chemistry", "gamma"]  # config order in JSON
    assert rows["physics"]["allocation_seconds"] == 400_000
    assert rows["physics"]["limit_seconds"] == 600_000
    assert rows["physics"]["consumed_28d_seconds"] == sum(PHYS_HISTORY)
    assert rows["gamma"]["consumed_28d_seconds"] == sum(GAMMA_HISTORY)
    assert rows["gamma"]["fairness"] == pytest.approx(1.5)
    assert rows["gamma"]["standing"] == "over"
    assert rows["chemistry"]["limit_seconds"] is None and rows["chemistry"]["standing"] == "under"
    assert doc["totals"]["total_allocation_seconds"] == 710_000
    assert doc["totals"]["total_consumed_seconds"] == sum(PHYS_HISTORY) + sum(GAMMA_HISTORY)
    code, doc, _ = rig.run("instances", "--all", "--json")
    assert code == 0
    assert {r["name"]: r["configured"] for r in doc["instances"]} == {
        "physics": True,
        "chemistry": True,
        "gamma": True,
        "spare": False,
    }


def test_instances_needs_no_admin_rights_but_show_does(rig: Rig) -> None:
    """A key without account-admin rights: IBM refuses the account and analytics calls (403)."""
    rig.emu.faults.add(path=r"/v1/accounts|/v1/analytics", status=403)
    code, doc, err = rig.run("instances", "--json")
    assert code == 0, err
    assert len(doc["instances"]) == 3
    code, table, err = rig.run("instances")
    assert code == 0 and "physics" in table and "TOTALS" in table
    code, _, err = rig.run("show")
    assert code == 4
    assert "HTTP 403" in err and "GET /v1/accounts" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("<html>Gateway</html>", "GET /v1/instances/usage"),  # a JSON string, not the object IBM documents
        ({"unexpected": 1}, "GET /v1/instances/usage"),  # missing fields
        ({"usage_consumed_seconds": -5, "usage_period": {}}, "GET /v1/instances/usage"),  # negative seconds
    ],
    ids=["not-an-object", "missing-fields", "negative-seconds"],
)
def test_bad_replies_from_ibm_are_one_line_errors_for_the_admin(
    rig: Rig, body: object, expected: str
) -> None:
    rig.emu.faults.add(path=r"^/api/v1/instances/usage$", method="GET", status=200, body=body)
    code, _, err = rig.run("instances")
    assert code == 4, err
    assert expected in err and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 3, err  # one line per configured instance, naming it, and no dump
    assert all(ln.startswith("qauvern-hpc instances: ") and "usage cannot be read: IBM" in ln for ln in lines)


def test_an_unknown_crn_in_the_config_is_a_clear_error(rig: Rig) -> None:
    bad = rig.dir / "bad-crn.yaml"
    bad.write_text(rig.config.read_text().replace(GAMMA, crn("us-east", "nowhere-9999")))
    code, _, err = rig.run("instances", config=bad)
    assert code != 0 and "Traceback" not in err
    assert "nowhere-9999" in err, err


def test_unreadable_usage_is_an_error_not_a_silent_skip(rig: Rig) -> None:
    rig.emu.faults.add(path=r"/v1/instances/usage", status=503)
    code, doc, err = rig.run("instances", "--json")
    assert code == 4
    assert all(r["error"] and "usage cannot be read" in r["error"] for r in doc["instances"])
    assert "physics" in err and "503" in err


def test_configured_instance_missing_from_the_plan(rig: Rig) -> None:
    rig.config.write_text(
        rig.config.read_text() + f'  - name: ghost\n    crn: "{crn("us-east", "ghost-9")}"\n'
    )
    code, doc, err = rig.run("instances", "--json")
    assert code == 3
    ghost = next(r for r in doc["instances"] if r["name"] == "ghost")
    assert "not in the account's premium plan" in ghost["error"]
    assert "ghost" in err


# ---------------------------------------------------------------------------------------------- show


def test_show_account_and_instances(rig: Rig) -> None:
    code, doc, err = rig.run("show", "--json")
    assert code == 0, err
    acct = doc["account"]
    assert acct["budget_seconds"] == BUDGET
    assert acct["unallocated_seconds"] == BUDGET - 760_000
    assert acct["unmanaged_allocation_seconds"] == 50_000  # spare
    assert acct["consumed_seconds"] == sum(PHYS_HISTORY) + sum(GAMMA_HISTORY)
    assert acct["reserve_seconds"] == 100_000
    assert not acct["over_allocation_budget"]
    # pool = unallocated + sum(alloc - floor) - reserve; floors: usage or the 60 s minimum
    floors = sum(PHYS_HISTORY) + 60 + sum(GAMMA_HISTORY)
    assert acct["available_seconds"] == (BUDGET - 760_000) + 710_000 - floors - 100_000
    assert [r["standing"] for r in doc["instances"]] == ["under", "under", "over"]
    code, text, err = rig.run("show")
    assert code == 0, err
    for needle in (
        "ACCOUNT SUMMARY",
        "Allocation budget",
        "Held by unconfigured",
        "Reserve",
        "physics",
        "over",
    ):
        assert needle in text


# ---------------------------------------------------------------------------------------------- analyze


def test_analyze_daily_trend_targets_and_plan(rig: Rig) -> None:
    code, doc, err = rig.run("analyze", "--json", "--days", "14")
    assert code == 0, err
    assert doc["window"]["days"] == 14
    by = {i["name"]: i for i in doc["instances"]}
    phys = by["physics"]
    assert sum(phys["daily"].values()) == sum(PHYS_HISTORY)  # days 1..14 are the window
    assert list(phys["daily"].values())[-7:] == [4000] * 7  # the most recent days, oldest first
    assert phys["trend"] == {
        "span_days": 7,
        "recent_seconds": 28_000,
        "previous_seconds": 7_000,
        "change": 3.0,
        "label": "up",
    }
    assert phys["window"]["active_days"] == 14 and phys["window"]["peak_seconds"] == 4000
    assert by["chemistry"]["trend"]["label"] == "idle"
    assert doc["over_target"] == ["gamma"] and doc["under_target"] == ["physics", "chemistry"]
    # qauvern's rules: the idle instance drops to the minimum; gamma is capped at its limit.
    assert by["chemistry"]["new_allocation_seconds"] == 60
    assert by["chemistry"]["reason"].startswith("Inactive")
    assert by["gamma"]["new_allocation_seconds"] == 20_000
    assert by["physics"]["new_allocation_seconds"] == 600_000
    assert doc["validation_errors"] == []
    code, text, err = rig.run("analyze", "--daily", "--days", "7", "--span", "3")
    assert code == 0, err
    assert "Usage per day" in text and "Every day" in text and "Over target" in text


def test_analyze_exits_1_when_the_plan_breaks_an_invariant(rig: Rig) -> None:
    """A 99 % reserve leaves a cap of 10,000 s below the usage floors: rebalance would refuse this plan."""
    rig.config.write_text(config_text(rig.emu.base_url, rig.key_file, reserve=99.0))
    code, doc, err = rig.run("analyze", "--json")
    assert code == 1
    assert doc["validation_errors"] and "above the cap" in doc["validation_errors"][0]
    assert "validation" in err


def test_analyze_bad_window_is_a_usage_error(rig: Rig) -> None:
    code, _, err = rig.run("analyze", "--days", "0")
    assert code == 2 and "--days" in err


# ---------------------------------------------------------------------------------------------- configure


def test_configure_writes_a_valid_config_and_never_overwrites(rig: Rig) -> None:
    out = rig.dir / "generated.yaml"
    args = ("configure", "--plan", "premium", "--emulator", rig.emu.base_url, "-o", str(out))
    code, _, err = rig.run(*args, "--api-key-file", str(rig.key_file), "--resource", "ibm_torino")
    assert code == 0, err
    body = out.read_text()
    assert KEY not in body
    assert oct(out.stat().st_mode & 0o777) == oct(0o644)
    assert "archived one" in err  # skipped, and said so
    code, doc, err = rig.run("instances", "--json", config=out)
    assert code == 0, err
    assert {r["name"] for r in doc["instances"]} == {"physics", "chemistry", "gamma", "spare"}
    assert {r["crn"] for r in doc["instances"]} == {PHYS, CHEM, GAMMA, SPARE}
    limits = {r["name"]: r["limit_seconds"] for r in doc["instances"]}
    assert limits["physics"] == 600_000 and limits["chemistry"] is None
    code, _, err = rig.run("check-config", config=out)
    assert code == 0, err
    # a second run refuses; the file is untouched; --force replaces it
    code, _, err = rig.run(*args)
    assert code == 2 and "exists" in err and "--force" in err
    assert out.read_text() == body
    code, _, err = rig.run(*args, "--region", "eu-de", "--force", "--api-key-file", str(rig.key_file))
    assert code == 0, err
    assert CHEM in out.read_text() and PHYS not in out.read_text()


def test_configure_to_stdout_json(rig: Rig) -> None:
    code, doc, err = rig.run(
        "configure",
        "--plan",
        "premium",
        "--emulator",
        rig.emu.base_url,
        "-o",
        "-",
        "--json",
        env={"IBMCLOUD_API_KEY": KEY},
    )
    assert code == 0, err
    assert doc["account_id"] == ACCOUNT and "instances:" in doc["config"]
    assert [i["name"] for i in doc["instances"]] == ["chemistry", "gamma", "physics", "spare"]


# ---------------------------------------------------------------------------------------------- create


def test_create_dry_run_budget_check_and_create(rig: Rig) -> None:
    before = len(rig.instances_state())
    common = ("create", "newinst", "-t", "eu-de", "-g", "rg-1")
    code, doc, err = rig.run(*common, "-a", "2.5d", "-l", "1qau", "--dry-run", "--json")
    assert code == 0, err
    assert doc["request"]["allocation_seconds"] == 216_000 and doc["request"]["limit_seconds"] == 96_000
    assert len(rig.instances_state()) == before  # nothing created
    # unallocated is 240,000 s: 3 QAU (288,000 s) does not fit
    code, _, err = rig.run(*common, "-a", "3qau")
    assert code == 1 and "unallocated" in err
    assert len(rig.instances_state()) == before
    code, _, err = rig.run(*common, "-a", "10 parsecs")
    assert code == 2 and "unknown unit" in err
    code, doc, err = rig.run(*common, "-a", "10h", "-l", "20h", "--tag", "hpc", "--json")
    assert code == 0, err
    made = next(i for i in rig.instances_state() if i["name"] == "newinst")
    assert made["usage_allocation_seconds"] == 36_000 and made["instance_limit_seconds"] == 72_000
    assert made["crn"] == doc["instance"]["crn"] and ":eu-de:" in made["crn"]
    code, doc, err = rig.run("show", "--json")
    assert doc["account"]["unallocated_seconds"] == 240_000 - 36_000
    code, _, err = rig.run(*common, "-a", "1h")
    assert code == 1 and "already has a live instance named 'newinst'" in err


# ---------------------------------------------------------------------------------------------- --api-key


def test_api_key_from_stdin_wins_over_the_config_key_file(rig: Rig) -> None:
    """The config's key file holds a wrong key: only the key piped to --api-key can succeed."""
    rig.key_file.write_text("wrong-key-000\n")
    code, _, err = rig.run("instances", "--json")
    assert code == 4 and "IBM" in err
    code, doc, err = rig.run("--api-key", "instances", "--json", stdin=KEY + "\n")
    assert code == 0, err
    assert len(doc["instances"]) == 3
    code, _, err = rig.run("--api-key", "show", stdin="not-the-key\n")
    assert code == 4 and "not-the-key" not in err


def test_api_key_with_a_value_is_refused_and_not_echoed(rig: Rig) -> None:
    for argv in (("--api-key=" + KEY, "instances"), ("instances", "--api-key", KEY)):
        code, out, err = rig.run(*argv)
        assert code == 2
        assert "takes no value" in err and KEY not in err and KEY not in out


# ---------------------------------------------------------------------------------------------- HTTP calls


def _calls(rig: Rig, *args: str) -> list[str]:
    rig.emu.clear_requests()
    code, _, err = rig.run(*args)
    assert code == 0, err
    out = []
    for r in rig.emu.requests:
        path = r.path.split("?")[0]
        path = re.sub(r"/v1/accounts/[^/]+", "/v1/accounts/{id}", path)
        out.append(f"{r.method} {path}")
    return sorted(out)


def test_http_calls_match_qauvern_per_command(rig: Rig) -> None:
    """qauvern 0.14's call counts (N configured instances = 3, P pages = 1): instances 1+P+N, show 3+P+N,
    analyze 3+P+6N (no net grants: our per-day window replaces qauvern's grant-only daily call). The
    instances command calls nothing that needs account-admin rights."""
    inst = _calls(rig, "instances", "--json")
    assert inst == sorted(
        ["POST /identity/token", "GET /v2/resource_instances"] + ["GET /api/v1/instances/usage"] * 3
    )
    show = _calls(rig, "show", "--json")
    assert len(show) == 3 + 1 + 3
    assert "GET /api/v1/accounts/{id}" in show and "GET /api/v1/analytics/usage" in show
    analyze = _calls(rig, "analyze", "--json")
    assert len(analyze) == 3 + 1 + 6 * 3
    assert analyze.count("GET /api/v1/analytics/usage_grouped_by_date") == 3
    configure = _calls(
        rig,
        "configure",
        "--plan",
        "premium",
        "--emulator",
        rig.emu.base_url,
        "-o",
        "-",
        "--json",
        "--api-key-file",
        str(rig.key_file),
    )
    assert configure == ["GET /v2/resource_instances", "POST /identity/token"]
