"""One table of mapping cases, run through BOTH implementations so they cannot drift:

* `qauvern_hpc.policy.mapping.decide` (Python; the prolog and `qauvern-hpc map`) in test_mapping.py;
* `slurm-conf/job_submit.lua` (slurmctld, submit time) in test_job_submit_lua.py.

Each case is what a user typed (`qpu`, parsed by each implementation) and who they are; the expectation is the
outcome, code, rule and instance, and for some cases the exact message. The Lua test also checks that its
message is byte-for-byte the Python one.
"""

# ruff: noqa: E501  (a table reads best one case per line)
from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from qauvern_hpc.config import parse_config
from qauvern_hpc.policy.compiled import Policy

CRN = "crn:v1:bluemix:public:quantum-computing:{region}:a/acct0001:{guid}::"

MAIN_CONFIG = f"""
ibm: {{account_id: acct0001, plan: premium}}
instances:
  - {{name: phys, crn: "{CRN.format(region="us-east", guid="g-phys")}"}}
  - {{name: chem, crn: "{CRN.format(region="us-east", guid="g-chem")}"}}
  - {{name: teach, crn: "{CRN.format(region="eu-de", guid="g-teach")}"}}
resources:
  - name: ibm_torino
  - name: ibm_fez
  - name: ibm_marrakesh
  - name: test.sim-1
    backend: fake_sim
rules:
  - name: no-students
    match: {{qos: [student]}}
    deny: true
    message: students have no QPU access
  - name: physics
    match:
      accounts: [physics, "physics-*"]
      users: ["!guest", "!tmp?"]
    instance: phys
    resources: [ibm_torino, ibm_fez]
  - name: chemistry
    match: {{accounts: [chemistry], partitions: [quantum]}}
    instance: chem
    resources: ["*"]
  - name: courses
    match: {{accounts: ["course[0-9]*"]}}
    instance: teach
    resources: [ibm_marrakesh]
  - name: labs
    match: {{users: ["lab[!x]_*"], partitions: [gpu, quantum]}}
    instance: teach
    resources: ["ibm_m*", "test.*"]
  - name: ops
    match: {{users: [root, "admin.*", "ops@site"]}}
    instance: phys
    resources: ["*"]
default: deny
"""

OPEN_CONFIG = f"""
ibm: {{account_id: acct0001, plan: paygo}}
instances:
  - {{name: teach, crn: "{CRN.format(region="eu-de", guid="g-teach")}"}}
  - {{name: phys, crn: "{CRN.format(region="us-east", guid="g-phys")}"}}
resources: [{{name: ibm_torino}}, {{name: ibm_marrakesh}}]
rules:
  - name: blocked
    match: {{users: [mallory]}}
    deny: true
  - name: physics
    match: {{accounts: [physics]}}
    instance: phys
    resources: [ibm_torino]
default: {{instance: teach, resources: [ibm_marrakesh]}}
"""

CONFIGS = {"main": MAIN_CONFIG, "open": OPEN_CONFIG}


@cache
def policy(name: str) -> Policy:
    loaded = parse_config(CONFIGS[name], f"/etc/qauvern-hpc/{name}.yaml", check_key_files=False)
    return loaded.config.to_policy()


@dataclass(frozen=True)
class Case:
    id: str
    user: str
    account: str
    partition: str
    qos: str
    qpu: str  # what was typed after --qpu=
    allowed: bool
    code: str
    rule: str | None = None
    instance: str | None = None
    message: str | None = None  # exact message, when given
    config: str = "main"


def c(
    id: str,
    user: str,
    account: str,
    partition: str,
    qos: str,
    qpu: str,
    code: str,
    rule: str | None = None,
    instance: str | None = None,
    message: str | None = None,
    config: str = "main",
) -> Case:
    return Case(id, user, account, partition, qos, qpu, code == "ok", code, rule, instance, message, config)


WHO = "user=alice account=physics partition=cpu qos=normal"
NINE = ",".join(f"q{i}" for i in range(9))

CASES: list[Case] = [
    # -- allowed ----------------------------------------------------------------------------------------------
    c("physics-one", "alice", "physics", "cpu", "normal", "ibm_torino", "ok", "physics", "phys",
      message=f"rule 'physics' allows 'ibm_torino' for {WHO} on instance 'phys'"),
    c("physics-two", "alice", "physics", "cpu", "normal", "ibm_torino,ibm_fez", "ok", "physics", "phys"),
    c("physics-blanks-around-names", "alice", "physics", "cpu", "normal", " ibm_fez , ibm_torino ", "ok",
      "physics", "phys"),
    c("physics-sub-account-glob", "alice", "physics-lab", "cpu", "normal", "ibm_fez", "ok", "physics", "phys"),
    c("physics-tmp-needs-exactly-one-char", "tmp12", "physics", "cpu", "normal", "ibm_fez", "ok", "physics",
      "phys"),
    c("chemistry-on-quantum", "bob", "chemistry", "quantum", "normal", "test.sim-1", "ok", "chemistry", "chem"),
    c("chemistry-star-allows-all", "bob", "chemistry", "quantum", "", "ibm_torino,ibm_fez,ibm_marrakesh", "ok",
      "chemistry", "chem"),
    c("course-bracket-range", "carol", "course101", "cpu", "normal", "ibm_marrakesh", "ok", "courses", "teach"),
    c("labs-negated-set", "labA_7", "misc", "gpu", "normal", "ibm_marrakesh,test.sim-1", "ok", "labs", "teach"),
    c("ops-literal-dot", "admin.x", "ops", "cpu", "normal", "test.sim-1", "ok", "ops", "phys"),
    c("ops-at-sign", "ops@site", "ops", "cpu", "normal", "ibm_torino", "ok", "ops", "phys"),
    c("multi-partition-agree", "alice", "physics", "cpu,gpu", "normal", "ibm_torino", "ok", "physics", "phys",
      message="rule 'physics' allows 'ibm_torino' for user=alice account=physics partition=cpu,gpu qos=normal "
      "on instance 'phys'"),
    c("multi-partition-blank-items", "bob", "chemistry", " quantum ,, quantum,", "normal", "ibm_fez", "ok",
      "chemistry", "chem"),
    # -- refused by a rule ------------------------------------------------------------------------------------
    c("student-deny-rule", "alice", "physics", "cpu", "student", "ibm_torino", "deny_rule", "no-students",
      message="rule 'no-students' denies user=alice account=physics partition=cpu qos=student: "
      "students have no QPU access"),
    c("physics-resource-not-allowed", "alice", "physics", "cpu", "normal", "ibm_marrakesh",
      "resource_not_allowed", "physics",
      message=f"rule 'physics' does not allow QPU resource 'ibm_marrakesh' for {WHO} "
      "(allowed: ibm_torino, ibm_fez)"),
    c("first-match-wins-no-fallthrough", "alice", "physics", "cpu", "normal", "ibm_torino,ibm_marrakesh,test.sim-1",
      "resource_not_allowed", "physics",
      message=f"rule 'physics' does not allow QPU resources 'ibm_marrakesh', 'test.sim-1' for {WHO} "
      "(allowed: ibm_torino, ibm_fez)"),
    c("labs-excluded-char", "labx_7", "misc", "gpu", "normal", "ibm_marrakesh", "default_deny", "default"),
    c("labs-wrong-partition", "labA_7", "misc", "cpu", "normal", "ibm_marrakesh", "default_deny", "default"),
    c("guest-excluded", "guest", "physics", "cpu", "normal", "ibm_torino", "default_deny", "default",
      message="rule 'default' denies user=guest account=physics partition=cpu qos=normal: "
      "no rule grants QPU access"),
    c("tmp-question-mark", "tmp1", "physics", "cpu", "normal", "ibm_torino", "default_deny", "default"),
    c("chemistry-wrong-partition", "bob", "chemistry", "cpu", "normal", "ibm_fez", "default_deny", "default"),
    c("course-needs-a-digit", "carol", "course", "cpu", "normal", "ibm_marrakesh", "default_deny", "default"),
    c("dot-is-literal", "adminXx", "ops", "cpu", "normal", "ibm_torino", "default_deny", "default"),
    c("case-sensitive", "alice", "Physics", "cpu", "normal", "ibm_torino", "default_deny", "default"),
    c("numeric-uid-as-user", "1234", "misc", "cpu", "normal", "ibm_torino", "default_deny", "default"),
    c("unknown-identity", "", "", "", "", "ibm_torino", "default_deny", "default",
      message="rule 'default' denies user=- account=- partition=- qos=-: no rule grants QPU access"),
    c("multi-partition-mismatch", "bob", "chemistry", "cpu,quantum", "normal", "ibm_fez", "partition_mismatch",
      message="partitions cpu,quantum map to different QPU decisions: cpu -> rule 'default' (denied); "
      "quantum -> rule 'chemistry' (instance chem); submit to a single partition"),
    # -- refused before any rule ------------------------------------------------------------------------------
    c("unknown-resource", "alice", "physics", "cpu", "normal", "ibm_nowhere", "unknown_resource",
      message="unknown QPU resource 'ibm_nowhere' (known: ibm_torino, ibm_fez, ibm_marrakesh, test.sim-1)"),
    c("unknown-resources-listed", "alice", "physics", "cpu", "normal", "a,ibm_fez,b", "unknown_resource",
      message="unknown QPU resources 'a', 'b' (known: ibm_torino, ibm_fez, ibm_marrakesh, test.sim-1)"),
    c("unknown-checked-before-rules", "alice", "physics", "cpu", "student", "nope", "unknown_resource"),
    c("duplicate", "alice", "physics", "cpu", "normal", "ibm_fez,ibm_torino,ibm_fez", "duplicate_resource",
      message="QPU resource 'ibm_fez' requested twice"),
    c("empty", "alice", "physics", "cpu", "normal", "", "empty_request",
      message="no QPU resource requested (use --qpu=NAME[,NAME...])"),
    c("blank", "alice", "physics", "cpu", "normal", "  ", "empty_request"),
    c("empty-item", "alice", "physics", "cpu", "normal", "ibm_torino,,ibm_fez", "bad_name",
      message="invalid QPU resource name '' (letters, digits, '_', '.', '-'; 1 to 64 characters)"),
    c("space-in-name", "alice", "physics", "cpu", "normal", "ibm torino", "bad_name"),
    c("percent-in-name", "alice", "physics", "cpu", "normal", "ibm%storino", "bad_name",
      message="invalid QPU resource name 'ibm%storino' (letters, digits, '_', '.', '-'; 1 to 64 characters)"),
    c("name-too-long", "alice", "physics", "cpu", "normal", "q" * 65, "bad_name"),
    c("name-64-is-fine-but-unknown", "alice", "physics", "cpu", "normal", "q" * 64, "unknown_resource"),
    c("too-many", "alice", "physics", "cpu", "normal", NINE, "too_many",
      message="too many QPU resources requested (9, at most 8)"),
    # -- a default that allows --------------------------------------------------------------------------------
    c("default-allows", "dave", "misc", "cpu", "normal", "ibm_marrakesh", "ok", "default", "teach",
      config="open"),
    c("default-allows-only-its-resources", "dave", "misc", "cpu", "normal", "ibm_torino", "resource_not_allowed",
      "default", config="open",
      message="rule 'default' does not allow QPU resource 'ibm_torino' for user=dave account=misc partition=cpu "
      "qos=normal (allowed: ibm_marrakesh)"),
    c("deny-rule-default-message", "mallory", "physics", "cpu", "normal", "ibm_torino", "deny_rule", "blocked",
      config="open",
      message="rule 'blocked' denies user=mallory account=physics partition=cpu qos=normal: QPU access denied"),
    c("open-rule-before-default", "erin", "physics", "cpu", "normal", "ibm_torino", "ok", "physics", "phys",
      config="open"),
]  # fmt: skip
