"""`doctor`'s live facts: run scontrol, sbatch and sacctmgr, read slurm.conf, the wrappers, plugstack.conf and
the rendered policy, ping hookd, ask IBM, open the ledger and the rebalance journal; hand them to the pure
checks in `ops.doctor`.

Invariants: nothing is changed; every external command has a timeout; a check that raises becomes a failed
check (`_guard`), never a traceback; the config's check is always the first one.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from qauvern_hpc.core.errors import ConfigError, QauvernError
from qauvern_hpc.ops.doctor import Check

if TYPE_CHECKING:
    from qauvern_hpc.config import Config

TIMEOUT = 20.0


@dataclass(frozen=True)
class DoctorOptions:
    config: str | None  # the site config (None: the default path)
    api_key: Callable[[str | os.PathLike[str] | None], str]  # an instance's key file -> its API key
    slurm_conf: str | None = None  # default: $SLURM_CONF, else what scontrol reports
    ibm: bool = True
    staging: bool = False


def _run(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=TIMEOUT, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, "", str(exc)
    return p.returncode, p.stdout, p.stderr.strip()


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def _guard(name: str, fn: Callable[[], Check | list[Check]]) -> list[Check]:
    """A check that raises is a failed check, not a traceback."""
    try:
        out = fn()
    except QauvernError as exc:
        return [Check(name, "fail", exc.message.splitlines()[0], exc.hint or "")]
    except Exception as exc:  # any surprise is this check's finding
        return [Check(name, "fail", f"{type(exc).__name__}: {exc}")]
    return out if isinstance(out, list) else [out]


def gather(options: DoctorOptions) -> list[Check]:
    """Every check, in the order the table shows them; the config's check comes first."""
    from qauvern_hpc.config import load_config_full
    from qauvern_hpc.ops import doctor as d

    checks: list[Check] = []
    try:
        loaded = load_config_full(options.config)
    except ConfigError as exc:
        return [
            Check(
                "config",
                "fail",
                "; ".join(ln for ln in exc.message.splitlines() if ln and ln != "invalid config:"),
                exc.hint or "qauvern-hpc check-config",
            )
        ]
    cfg = loaded.config
    checks.append(
        Check(
            "config",
            "warn" if loaded.warnings else "ok",
            f"{loaded.path}"
            + (f" ({len(loaded.warnings)} warnings: qauvern-hpc check-config)" if loaded.warnings else ""),
        )
    )
    env = dict(os.environ)
    if options.slurm_conf:
        env["SLURM_CONF"] = options.slurm_conf
    state_dir = Path(cfg.slurm.state_dir)

    # slurm.conf as slurmctld has it
    rc, out, err = _run(["scontrol", "show", "config"], env)
    conf: dict[str, str] = d.parse_show_config(out) if rc == 0 else {}
    if rc != 0:
        checks.append(
            Check(
                "slurmctld",
                "fail",
                f"scontrol show config: {err or rc}",
                "is slurmctld up? is SLURM_CONF right?",
            )
        )
    else:
        checks.append(
            Check(
                "slurmctld", "ok", f"Slurm {conf.get('SLURM_VERSION', '?')}, {conf.get('ClusterName', '?')}"
            )
        )
    slurm_conf = Path(
        options.slurm_conf or env.get("SLURM_CONF") or conf.get("SLURM_CONF") or "/etc/slurm/slurm.conf"
    )
    etc = slurm_conf.parent

    # the controller hooks
    prolog_exports: dict[str, str] = {}
    for kind, key in (("prolog", "PrologSlurmctld"), ("epilog", "EpilogSlurmctld")):
        path = conf.get(key)
        text = _read(path) if path and path != d.NULL else None
        if kind == "prolog" and text:
            prolog_exports = d.parse_wrapper_exports(text)
        hook = d.HookFacts(kind, key, path, text, bool(path) and os.access(path or "", os.X_OK))
        if conf:
            checks.append(d.check_hook(hook, state_dir=state_dir))
    if conf:
        checks.append(d.check_timeout(conf))

    # the rendered policy the hooks read, and the Lua table job_submit.lua reads
    from qauvern_hpc.policy.compiled import POLICY_LUA, default_policy_path

    policy_path = Path(
        prolog_exports.get("QAUVERN_HPC_POLICY")
        or os.environ.get("QAUVERN_HPC_POLICY")
        or default_policy_path()
    )
    doc: object = None
    try:
        doc = json.loads(policy_path.read_text())
    except (OSError, ValueError):
        doc = None
    doc = doc if isinstance(doc, dict) else {}
    checks.append(
        d.check_policy(
            policy_path,
            doc.get("source_sha256"),
            loaded.sha256,
            doc.get("generated_at"),
            etc / POLICY_LUA,
            _read(etc / POLICY_LUA),
        )
    )

    # SPANK, submit side
    plug = conf.get("PlugStackConfig") or str(etc / "plugstack.conf")
    plug_text = _read(plug)
    entries = d.parse_plugstack(plug_text) if plug_text is not None else None
    exists = {e.path: os.path.exists(e.path) for e in entries or []}
    checks.append(d.check_plugstack(entries, plug, state_dir=state_dir, plugin_exists=exists))
    rc, out, _ = _run(["sbatch", "--help"], env)
    checks.append(d.check_sbatch_help(out if rc == 0 else None))
    if conf:
        lua = etc / "job_submit.lua"
        checks.append(d.check_job_submit(conf, _read(lua), str(lua)))
        rs = cfg.rebalance.slurm
        checks.append(d.check_licenses(conf, rs.license_prefix, [i.name for i in cfg.instances], rs.gate))

    # hookd
    checks += _guard("hookd", lambda: _hookd(prolog_exports))

    # the state directory
    try:
        st = os.stat(state_dir)
        checks.append(d.check_state_dir(state_dir, exists=True, uid=st.st_uid, mode=st.st_mode))
    except FileNotFoundError:
        checks.append(d.check_state_dir(state_dir, exists=False, uid=None, mode=None))

    checks += _guard("accounting", lambda: _accounting(cfg, env))
    checks += _guard("clusters", lambda: _clusters(cfg, env))
    if not options.ibm:
        checks.append(Check("IBM", "skip", "--no-ibm"))
    else:
        checks += _guard("IBM", lambda: _ibm(options, cfg))
    checks += _guard("ledger", lambda: _ledger(cfg))
    checks += _guard("rebalance", lambda: _rebalance(cfg))
    checks += _guard("admission", lambda: _admission(cfg, conf))
    return checks


def _hookd(exports: dict[str, str]) -> Check:
    from qauvern_hpc.hooks.hookd import ping

    mode = exports.get("QAUVERN_HPC_HOOKD", "")
    sock = exports.get("QAUVERN_HPC_HOOKD_SOCKET", "")
    if mode in ("", "off") or not sock:
        return Check("hookd", "skip", "the hook wrappers run in-process" if mode == "off" else "no wrapper")
    try:
        answer = ping(sock)
    except (OSError, ValueError) as exc:
        if mode == "auto":
            return Check("hookd", "ok", f"not running ({sock}); the next QPU job starts it")
        return Check(
            "hookd",
            "fail",
            f"{sock}: {exc}: every QPU job pays a cold start (~0.7 s)",
            "systemctl start qauvern-hpc-hookd (the wrappers use --hookd on)",
        )
    return Check("hookd", "ok", f"{sock}: {answer}")


def _accounting(cfg: Config, env: dict[str, str]) -> Check:
    rc, out, err = _run([cfg.slurm.sacctmgr, "-n", "-P", "show", "account", "format=account"], env)
    if rc != 0:
        return Check(
            "accounting", "fail", f"sacctmgr: {err or rc}", "is slurmdbd up? (collect and rebalance need it)"
        )
    have = {line.strip() for line in out.splitlines() if line.strip()}
    wanted = mapped_accounts(cfg)
    missing = sorted(wanted - have)
    if missing:
        return Check(
            "accounting",
            "warn",
            "accounts named in the config but not in slurmdbd: " + ", ".join(missing),
            "sacctmgr add account NAME (or fix the config)",
        )
    return Check("accounting", "ok", f"slurmdbd answers; {len(wanted)} mapped accounts exist")


def mapped_accounts(cfg: Config, cluster: str | None = None) -> set[str]:
    """The accounts the config names (plain names of rules' account lists, rebalance.slurm.accounts);
    with `cluster`, only the rules that can match on it."""
    from qauvern_hpc.policy.mapping import list_match

    wanted: set[str] = set()
    for rule in cfg.rules:
        if cluster is not None and not list_match(rule.match.clusters, cluster)[0]:
            continue
        for glob in rule.match.accounts or ():
            if not any(c in glob for c in "*?[!"):
                wanted.add(glob)
    for accounts in cfg.rebalance.slurm.accounts.values():
        wanted.update(accounts)
    return wanted


def _clusters(cfg: Config, env: dict[str, str]) -> list[Check]:
    """Every cluster of slurm.cluster: squeue -M answers, the mapped accounts have an association there."""
    from qauvern_hpc.ops import doctor as d
    from qauvern_hpc.slurm.run import SlurmCommandError
    from qauvern_hpc.slurm.sacctmgr import Sacctmgr

    if not cfg.slurm.cluster:
        return [Check("clusters", "skip", "slurm.cluster names none: the local cluster only")]
    by_cluster: dict[str, set[str]] | None = None
    error: str | None = None
    try:
        by_cluster = {}
        for a in Sacctmgr(cfg.slurm.sacctmgr, cfg.slurm.cluster).associations():
            by_cluster.setdefault(a.cluster, set()).add(a.account)
    except (SlurmCommandError, QauvernError, OSError) as exc:
        by_cluster, error = None, getattr(exc, "message", str(exc))
    out = []
    for cluster in cfg.slurm.cluster:
        rc, _, err = _run([cfg.slurm.squeue, "-M", cluster, "-h", "-o", "%i"], env)
        out.append(
            d.check_cluster(
                cluster,
                squeue_error=None if rc == 0 else (err or f"exit {rc}"),
                accounts=None if by_cluster is None else by_cluster.get(cluster, set()),
                accounts_error=error,
                wanted=mapped_accounts(cfg, cluster),
            )
        )
    return out


def _ibm(options: DoctorOptions, cfg: Config) -> list[Check]:
    from qauvern_hpc.config.ibm_access import endpoints_from_config
    from qauvern_hpc.ibm.factory import ClientPool

    where = endpoints_from_config(cfg, staging=options.staging)
    out: list[Check] = []
    clients = ClientPool(ru_per_second=cfg.ibm.resource_units_per_second)
    try:
        for inst in cfg.instances:
            key_file = inst.api_key_file or cfg.ibm.api_key_file
            name = f"IBM {inst.name}"
            try:
                read_key = functools.partial(options.api_key, key_file)
                client = clients.get(str(key_file) if key_file else None, where, read_key)
                crns = {i.crn: i for i in client.list_instances()}
                if inst.crn not in crns:
                    out.append(
                        Check(
                            name,
                            "fail",
                            f"{inst.crn} is not visible with its key",
                            "check the CRN and the key's account",
                        )
                    )
                    continue
                usage = client.instance_usage(inst.crn)
                seen = crns[inst.crn]
                out.append(
                    Check(
                        name,
                        "ok",
                        f"allocation {seen.allocation_seconds} s, limit {seen.limit_seconds} s, "
                        f"28-day usage {usage.consumed_seconds} s",
                    )
                )
            except QauvernError as exc:
                out.append(Check(name, "fail", exc.message.splitlines()[0], exc.hint or ""))
    finally:
        clients.close()
    return out or [Check("IBM", "skip", "no instances configured")]


def _ledger(cfg: Config) -> Check:
    from qauvern_hpc.accounting.ledger import open_ledger
    from qauvern_hpc.ops.doctor import check_age

    with open_ledger(cfg.ledger.url) as ledger:
        marks = [m for m in (ledger.get_high_water(c) for c in (cfg.slurm.cluster or [""])) if m]
    age = time.time() - max(marks) if marks else None
    check = check_age(
        "collect", "collect", age, 900, "schedule `qauvern-hpc collect` (slurm-conf/: cron, timer)"
    )
    return Check(
        check.name, check.status, f"{cfg.ledger.url.split('://')[0]} ledger; {check.detail}", check.hint
    )


def _rebalance(cfg: Config) -> Check:
    from qauvern_hpc.ops.doctor import check_age
    from qauvern_hpc.rebalance.journal import JournalStore

    if not cfg.rebalance.enabled:
        return Check("rebalance", "skip", "rebalance.enabled is false")
    from qauvern_hpc.rebalance.settings import state_dir

    store = JournalStore(state_dir(cfg))
    runs = store.all()
    if store.unfinished():
        return Check(
            "rebalance", "fail", "a rebalance run did not finish", "qauvern-hpc rebalance (it resumes)"
        )
    age = time.time() - runs[-1].created_at if runs else None
    return check_age(
        "rebalance", "rebalance", age, cfg.rebalance.interval, "schedule `qauvern-hpc rebalance --yes`"
    )


def _admission(cfg: Config, conf: dict[str, str]) -> list[Check]:
    from qauvern_hpc.admission.service import read_state, specs_of
    from qauvern_hpc.ops.doctor import check_admission, check_pair_licenses

    if not cfg.admission.enabled:
        return [Check("admission", "skip", "admission.enabled is false")]
    out: list[Check] = []
    if conf:
        out.append(check_pair_licenses(conf, [s.license for s in specs_of(cfg)]))
    sched = _sched_interval(conf.get("SchedulerParameters", ""))
    state = read_state(cfg.slurm.state_dir)
    out.append(check_admission(state, now=time.time(), period=cfg.admission.period, sched_interval=sched))
    return out


def _sched_interval(params: str) -> str:
    for item in params.split(","):
        key, _, value = item.partition("=")
        if key.strip() == "sched_interval":
            return f"{value.strip()}s"
    return "60s (default)"
