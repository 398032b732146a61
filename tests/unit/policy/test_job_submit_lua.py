"""slurm-conf/job_submit.lua under a real Lua interpreter, with a stub `slurm` table.

The mapping cases are the SAME table as test_mapping.py (test_mapping_cases.CASES): Lua must reach the same
outcome, code, rule, instance and the byte-identical message as qauvern_hpc.policy.mapping.decide, both
through its
decide() and end to end through slurm_job_submit().

Needs a `lua` binary: Debian's Slurm 22.05 job_submit_lua.so links liblua5.1, so CI installs `lua5.1`.
Every interpreter found (lua5.1, lua5.3, lua5.4, luajit) is tested.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from qauvern_hpc.config import example_config_text, parse_config
from qauvern_hpc.policy.compiled import lua_pattern, render_lua, to_lua
from qauvern_hpc.policy.globs import GlobError, glob_error
from qauvern_hpc.policy.mapping import JobIdentity, decide, list_match, parse_request
from tests.support.mapping_cases import CASES, CONFIGS, policy
from tests.support.paths import REPO
from tests.unit.policy.test_mapping import test_glob_errors, test_glob_match

JOB_SUBMIT = REPO / "slurm-conf" / "job_submit.lua"


def _interpreters() -> list[str]:
    found: dict[str, str] = {}
    for name in ("lua5.1", "lua5.3", "lua5.4", "luajit", "lua"):
        path = shutil.which(name)
        if path:
            found.setdefault(os.path.realpath(path), name)
    return sorted(found.values())


INTERPRETERS = _interpreters()
pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(
        not INTERPRETERS,
        reason="no Lua interpreter on PATH (apt-get install lua5.1, the Lua of Debian's job_submit/lua)",
    ),
]
LUA = pytest.mark.parametrize("lua", INTERPRETERS or ["lua"])

PRELUDE = r"""
LOG = { user = {}, error = {}, info = {}, debug = {} }
local function logger(kind)
  return function(fmt, ...) table.insert(LOG[kind], string.format(fmt, ...)) end
end
slurm = { SUCCESS = 0, ERROR = -1, FAILURE = -1, ESLURM_ACCESS_DENIED = 2002,
  log_user = logger("user"), log_error = logger("error"), log_info = logger("info"),
  log_verbose = logger("debug"), log_debug = logger("debug") }
function reset() LOG.user, LOG.error, LOG.info, LOG.debug = {}, {}, {}, {} end
local function esc(v)
  if v == nil then return "<nil>" end
  return (tostring(v):gsub("\\", "\\\\"):gsub("\t", "\\t"):gsub("\n", "\\n"))
end
function out(...)
  local t = {}
  for i = 1, select("#", ...) do t[i] = esc((select(i, ...))) end
  print(table.concat(t, "\t"))
end
"""


def run_lua(
    lua: str, tmp_path: Path, body: str, *, env: dict[str, str] | None = None, library: bool = False
) -> list[list[str]]:
    """Run PRELUDE + dofile(job_submit.lua) + body; return the rows printed with out()."""
    script = tmp_path / "driver.lua"
    load = (
        "QAUVERN_QPU_LIBRARY_ONLY = true\n" if library else ""
    ) + f"LOAD_RC = dofile({to_lua(str(JOB_SUBMIT))})\n"
    script.write_text(PRELUDE + load + "Q = qauvern_qpu\n" + body, encoding="utf-8")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("QAUVERN_HPC_QPU_")}
    full_env.update(env or {})
    proc = subprocess.run([lua, str(script)], capture_output=True, text=True, env=full_env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = []
    for line in proc.stdout.splitlines():
        rows.append(
            [f.replace("\\n", "\n").replace("\\t", "\t").replace("\\\\", "\\") for f in line.split("\t")]
        )
    return rows


def write_policy(tmp_path: Path, name: str = "main") -> Path:
    path = tmp_path / f"{name}_policy.lua"
    path.write_text(render_lua(policy(name)), encoding="utf-8")
    return path


def nil(v: str) -> str | None:
    return None if v == "<nil>" else v


# -- the shared case table -----------------------------------------------------------------------------------


@LUA
def test_case_table_matches_python(lua: str, tmp_path: Path) -> None:
    paths = {name: write_policy(tmp_path, name) for name in CONFIGS}
    cases: list[dict[str, Any]] = [
        {"user": c.user, "account": c.account, "partition": c.partition, "qos": c.qos, "qpu": c.qpu,
         "policy": str(paths[c.config])}
        for c in CASES
    ]  # fmt: skip
    body = f"""
CASES = {to_lua(cases)}
for i, c in ipairs(CASES) do
  local policy = assert(Q.load_policy(c.policy))
  local d = Q.decide(policy, {{user = c.user, account = c.account, partition = c.partition, qos = c.qos}},
                     Q.parse_request(c.qpu))
  -- end to end: the QPU entry among others, at index 0 as Slurm 22.05 hands it over
  Q.settings.policy_file = c.policy
  reset()
  local job_desc = {{user_name = c.user, account = c.account, partition = c.partition, qos = c.qos,
                    spank_job_env = {{[0] = "QPU=" .. c.qpu, [1] = "OTHER=x"}}}}
  local rc = slurm_job_submit(job_desc, {{}}, 4242420)
  out(i, tostring(d.allowed), d.code, d.rule, d.instance, d.message, rc, LOG.user[1], #LOG.user, #LOG.error)
end
"""
    rows = run_lua(lua, tmp_path, body)
    assert len(rows) == len(CASES)
    for case, row in zip(CASES, rows, strict=True):
        _, allowed, code, rule, instance, message, rc, user_msg, n_user, n_error = row
        py = decide(
            policy(case.config),
            JobIdentity(case.user, case.account, case.partition, case.qos),
            parse_request(case.qpu),
        )
        assert (allowed == "true", code, nil(rule), nil(instance)) == (
            py.allowed,
            py.code,
            py.rule,
            py.instance,
        ), case.id
        assert message == py.message, case.id
        # end to end, a missing user name becomes the submitting uid (4242420, unknown to /etc/passwd)
        e2e = decide(
            policy(case.config),
            JobIdentity(case.user or "4242420", case.account, case.partition, case.qos),
            parse_request(case.qpu),
        )
        if e2e.allowed:
            assert (rc, user_msg, n_user) == ("0", "<nil>", "0"), case.id
        else:
            assert (rc, user_msg, n_user) == ("-1", "qpu: " + e2e.message, "1"), case.id
        assert n_error == "0", case.id


@LUA
def test_globs_match_python(lua: str, tmp_path: Path) -> None:
    good = next(m.args for m in test_glob_match.pytestmark if m.name == "parametrize")[1]
    bad = next(m.args for m in test_glob_errors.pytestmark if m.name == "parametrize")[1]
    values = ["", "abc", "ac", "bx", "dx", "ax", "42", "a.b", "axb", "a+b", "x-1", "ab", "ab\n", "_x", "a-b"]
    globs = sorted({g for g, _, _ in good} | {g for g, _ in bad if not g.startswith("!")})
    # render-policy compiles the globs (lua_pattern); job_submit.lua only matches the compiled patterns
    patterns: dict[str, str] = {}
    seen_errors = set()
    for g in globs:
        try:
            patterns[g] = lua_pattern(g)
        except GlobError:
            seen_errors.add(g)
    body = f"""
for g, pattern in pairs({to_lua(patterns)}) do
  for _, v in ipairs({to_lua(values)}) do
    out(g, v, tostring(Q.list_match({{{{glob = g, pattern = pattern}}}}, v)))
    out("!" .. g, v, tostring(Q.list_match({{{{glob = "!" .. g, pattern = pattern, exclude = true}}}}, v)))
  end
end
"""
    rows = run_lua(lua, tmp_path, body)
    assert len(rows) == 2 * len(patterns) * len(values)
    for g, v, matched in rows:
        assert glob_error(g) is None
        assert (matched == "true") is list_match([g], v)[0], (g, v)
    assert seen_errors == {g for g in globs if glob_error(g) is not None}


# -- robustness: jobs without --qpu, missing or broken policies ----------------------------------------------

SUBMIT = """
reset()
local rc = slurm_job_submit(JOB, PARTS or {}, 4242420)
out(rc, LOG.user[1], #LOG.error, LOG.error[1])
"""


def submit(
    lua: str, tmp_path: Path, job: str, *, env: dict[str, str] | None = None, parts: str = "{}"
) -> list[str]:
    rows = run_lua(lua, tmp_path, f"JOB = {job}\nPARTS = {parts}\n" + SUBMIT, env=env)
    assert len(rows) == 1
    return rows[0]


@LUA
def test_job_without_qpu_never_touches_the_policy(lua: str, tmp_path: Path) -> None:
    env = {"QAUVERN_HPC_QPU_POLICY": str(tmp_path / "missing.lua")}
    assert submit(lua, tmp_path, '{user_name = "a", account = "b"}', env=env) == ["0", "<nil>", "0", "<nil>"]
    job = '{user_name = "a", spank_job_env = {[0] = "FOO=1", [1] = "QPUX=2"}}'
    assert submit(lua, tmp_path, job, env=env) == ["0", "<nil>", "0", "<nil>"]


@LUA
@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "cannot load the QPU policy"),
        ("return {", "cannot load the QPU policy"),
        ("return os.exit(3)", "failed"),  # the policy runs in an empty environment
        ("return {format = 99, resources = {}, rules = {}, default = {name = 'default', deny = true}}",
         "format"),
        # globs are compiled by render-policy: a table of raw globs is not a policy job_submit.lua reads
        ("return {format = 1, resources = {}, rules = {{name = 'x', match = {users = {'a*'}}, deny = true}},"
         " default = {name = 'default', deny = true}}", "render-policy"),
    ],
)  # fmt: skip
def test_unusable_policy_fails_closed_for_qpu_jobs_only(
    lua: str, tmp_path: Path, content: str | None, reason: str
) -> None:
    path = tmp_path / "qpu_policy.lua"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    env = {"QAUVERN_HPC_QPU_POLICY": str(path)}
    job = (
        '{user_name = "alice", account = "physics", partition = "cpu", '
        'spank_job_env = {[0] = "QPU=ibm_torino"}}'
    )
    rc, user_msg, n_err, err = submit(lua, tmp_path, job, env=env)
    assert rc == "-1"
    assert user_msg.startswith("qpu: --qpu jobs cannot be checked right now (") and reason in user_msg
    assert n_err == "1" and reason in err
    # fail open: the --qpu job goes through (the prolog decides again), the error is still logged
    rc, user_msg, n_err, _ = submit(lua, tmp_path, job, env={**env, "QAUVERN_HPC_QPU_FAIL_MODE": "open"})
    assert (rc, user_msg, n_err) == ("0", "<nil>", "1")
    # a job without --qpu is unaffected either way
    assert submit(lua, tmp_path, '{user_name = "alice"}', env=env) == ["0", "<nil>", "0", "<nil>"]


@LUA
def test_internal_errors_follow_the_fail_mode(lua: str, tmp_path: Path) -> None:
    env = {"QAUVERN_HPC_QPU_POLICY": str(write_policy(tmp_path))}
    exploding = (
        'setmetatable({spank_job_env = {[0] = "QPU=ibm_torino"}}, '
        '{__index = function(_, k) error("boom reading " .. k) end})'
    )
    rc, user_msg, n_err, err = submit(lua, tmp_path, exploding, env=env)
    assert rc == "-1" and "internal error in job_submit.lua" in user_msg and "boom reading" in err
    rc, _, _, _ = submit(lua, tmp_path, exploding, env={**env, "QAUVERN_HPC_QPU_FAIL_MODE": "open"})
    assert rc == "0"
    # if even spank_job_env cannot be read, nobody can tell the job asked for a QPU: never refuse it
    unreadable = 'setmetatable({}, {__index = function(_, k) error("no " .. k) end})'
    rc, user_msg, n_err, err = submit(lua, tmp_path, unreadable, env=env)
    assert (rc, user_msg, n_err) == ("0", "<nil>", "1") and "cannot read spank_job_env" in err


# -- spank_job_env and identity resolution -------------------------------------------------------------------


@LUA
@pytest.mark.parametrize(
    ("spank_env", "expected"),
    [
        ('{[0] = "QPU=ibm_torino"}', "ibm_torino"),  # index 0: ipairs() would miss it
        ('{[0] = "A=1", [1] = "QPU=ibm_torino,ibm_fez", [2] = "B=2"}', "ibm_torino,ibm_fez"),
        ('{[0] = "SPANK_QPU=ibm_fez"}', "ibm_fez"),
        ('{[0] = "SPANK_QPU=ibm_fez", [1] = "QPU=ibm_torino"}', "ibm_torino"),
        ('{[0] = "QPU="}', ""),
        ('{[0] = "XQPU=a", [1] = "QPUS=b"}', "<nil>"),
        ("nil", "<nil>"),
    ],
)
def test_qpu_request_from_spank_job_env(lua: str, tmp_path: Path, spank_env: str, expected: str) -> None:
    assert run_lua(lua, tmp_path, f"out(Q.qpu_request({spank_env}))") == [[expected]]


@LUA
def test_empty_qpu_value_is_refused(lua: str, tmp_path: Path) -> None:
    env = {"QAUVERN_HPC_QPU_POLICY": str(write_policy(tmp_path))}
    rc, user_msg, _, _ = submit(
        lua, tmp_path, '{user_name = "alice", spank_job_env = {[0] = "QPU="}}', env=env
    )
    assert rc == "-1" and user_msg == "qpu: no QPU resource requested (use --qpu=NAME[,NAME...])"


@LUA
def test_identity_defaults_when_slurm_leaves_fields_unset(lua: str, tmp_path: Path) -> None:
    body = """
local parts = {batch = {name = "batch", flag_default = 0}, quantum = {name = "quantum", flag_default = 1}}
local id = Q.submit_identity({user_name = nil, user_id = 4242421, account = nil,
  default_account = "chemistry", partition = nil, qos = nil, default_qos = "normal"}, parts, 4242420)
out(id.user, id.account, id.partition, id.qos)
id = Q.submit_identity({user_id = 4294967294}, {}, 4242420)   -- NO_VAL user_id: the submitting uid
out(id.user, id.account, id.partition, id.qos)
id = Q.submit_identity({user_id = 0}, {}, 4242420)   -- resolvable uid without a name
out(id.user, id.account, id.partition, id.qos)
id = Q.submit_identity({user_name = "bob", account = "", partition = "cpu", qos = "high",
  default_account = "ignored", default_qos = "ignored"}, parts, 4242420)
out(id.user, id.account, id.partition, id.qos)
"""
    rows = run_lua(lua, tmp_path, body)
    assert rows == [
        ["4242421", "chemistry", "quantum", "normal"],  # unknown uid: its number
        ["4242420", "", "", ""],
        ["root", "", "", ""],
        ["bob", "ignored", "cpu", "high"],  # "" is unset: the default account applies
    ]


@LUA
def test_submit_with_default_account_and_partition_is_allowed(lua: str, tmp_path: Path) -> None:
    env = {"QAUVERN_HPC_QPU_POLICY": str(write_policy(tmp_path))}
    job = (
        '{user_name = "bob", default_account = "chemistry", default_qos = "normal", '
        'spank_job_env = {[0] = "QPU=ibm_fez"}}'
    )
    parts = '{quantum = {name = "quantum", flag_default = 1}}'
    assert submit(lua, tmp_path, job, env=env, parts=parts)[:2] == ["0", "<nil>"]
    rc, user_msg, _, _ = submit(lua, tmp_path, job, env=env, parts='{cpu = {name = "cpu", flag_default = 1}}')
    assert rc == "-1" and "user=bob account=chemistry partition=cpu qos=normal" in user_msg


# -- job_modify ---------------------------------------------------------------------------------------------


@LUA
def test_modify_checks_new_account_partition_or_qos(lua: str, tmp_path: Path) -> None:
    env = {"QAUVERN_HPC_QPU_POLICY": str(write_policy(tmp_path))}
    body = """
local rec = {user_name = "bob", account = "chemistry", partition = "quantum", qos = "normal",
  spank_job_env = {[0] = "QPU=ibm_fez"}}
local function try(desc, r)
  reset()
  out(slurm_job_modify(desc, r or rec, {}, 0), LOG.user[1])
end
try({partition = "cpu"})                        -- leaves the partition the chemistry rule needs
try({qos = "student"})                          -- students are denied
try({partition = "quantum", time_limit = 10})   -- still fine
try({time_limit = 10})                          -- nothing the rules match on changes
try({partition = "cpu"}, {user_name = "bob", account = "chemistry", partition = "quantum"})  -- no --qpu
-- 22.05 leaves job_rec.user_name nil: the uid is resolved (uid 0 is root; the ops rule matches root)
try({account = "ops"}, {user_id = 0, account = "x", partition = "cpu", spank_job_env = {[0] = "QPU=ibm_fez"}})
try({account = "ops"}, {user_id = 4242421, partition = "cpu", spank_job_env = {[0] = "QPU=ibm_fez"}})
out(table.concat(LOG.info, "|"))
"""
    rows = run_lua(lua, tmp_path, body, env=env)
    # Slurm 22.05 cannot show a message on modify: ESLURM_ACCESS_DENIED, the reason in the log, no log_user
    assert rows[:2] == [["2002", "<nil>"], ["2002", "<nil>"]]
    assert rows[2:6] == [["0", "<nil>"], ["0", "<nil>"], ["0", "<nil>"], ["0", "<nil>"]]
    assert rows[6] == ["2002", "<nil>"]
    assert rows[7][0].startswith(
        "qpu: refused job update (default_deny): rule 'default' denies user=4242421 "
    )


# -- loading ------------------------------------------------------------------------------------------------


@LUA
def test_script_load_and_library_mode(lua: str, tmp_path: Path) -> None:
    body = "out(LOAD_RC, type(slurm_job_submit), type(slurm_job_modify), type(Q.decide))"
    assert run_lua(lua, tmp_path, body) == [["0", "function", "function", "function"]]
    assert run_lua(lua, tmp_path, body, library=True) == [["0", "nil", "nil", "function"]]


@LUA
def test_default_policy_file_is_beside_the_script(lua: str, tmp_path: Path) -> None:
    rows = run_lua(lua, tmp_path, "local p, err = Q.load_policy(); out(err)")
    assert str(JOB_SUBMIT.parent / "qpu_policy.lua") in rows[0][0]


@LUA
def test_the_example_config_renders_a_policy_lua_accepts(lua: str, tmp_path: Path) -> None:
    loaded = parse_config(example_config_text(), "/etc/qauvern-hpc/config.yaml", check_key_files=False)
    path = tmp_path / "qpu_policy.lua"
    path.write_text(render_lua(loaded.config.to_policy()), encoding="utf-8")
    body = f"""
local p = assert(Q.load_policy({to_lua(str(path))}))
out(#p.rules, table.concat(p.resources, ","), p.default.deny)
local who = {{user = "alice", account = "physics-lab", partition = "cpu", qos = "normal"}}
local d = Q.decide(p, who, {{"ibm_fez"}})
out(d.allowed, d.rule, d.instance)
"""
    assert run_lua(lua, tmp_path, body) == [
        ["4", "ibm_torino,ibm_fez,ibm_marrakesh", "true"],
        ["true", "physics", "physics"],
    ]


@LUA
def test_odd_strings_survive_rendering(lua: str, tmp_path: Path) -> None:
    weird = ['quote " back\\slash', "new\nline\ttab", "ünïcødé ⚛", "]]", "%s %d", "nul\x01"]
    rows = run_lua(lua, tmp_path, f"for _, s in ipairs({to_lua(weird)}) do out(s) end")
    assert [r[0] for r in rows] == weird
