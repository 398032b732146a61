"""Synthetic workload traces: seeded, shaped like a quantum user community. Pure.

Projects come from the site config's allow rules (one project per rule that names a literal Slurm account:
its first literal account, users, partition and QOS, the resources it allows), so the trace maps with the
same config. Each project gets a profile, in rule order unless `profiles` says otherwise:

* `dominant`: steady work on weekdays and working hours, the largest share of the demand;
* `bursty`: idle for weeks, then a burst of a few days at several times its average rate;
* `deadline`: work that ramps up over three weeks towards a deadline, then stops (two deadlines);
* `idle`: almost nothing (a small job now and then): its instance's allocation is what static wastes.

The total quantum demand is `load` x the purchased time over the span (budget per 28 days, pro rata),
split by the profiles' shares. Job sizes are log-normal (clipped to 1 min .. 4 h); wall limits are 2-5x
the quantum work plus 30 min, in 15-minute steps, at most 24 h.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from qauvern_hpc.devtools.simulator.scenario import ScenarioError
from qauvern_hpc.devtools.simulator.trace import TraceJob
from qauvern_hpc.policy.compiled import Policy
from qauvern_hpc.policy.mapping import JobIdentity, decide

PROFILES: tuple[str, ...] = ("dominant", "bursty", "deadline", "idle")
_ORDER = ("dominant", "bursty", "deadline", "bursty", "idle", "deadline", "bursty")
_SHARE = {"dominant": 0.45, "bursty": 0.17, "deadline": 0.2, "idle": 0.005}
_MEDIAN = {"dominant": 900.0, "bursty": 1200.0, "deadline": 1500.0, "idle": 120.0}
_SIGMA = 0.9
_GLOB_CHARS = set("*?[]!")


@dataclass(frozen=True, slots=True)
class Project:
    account: str
    users: tuple[str, ...]
    partition: str
    qos: str
    qpus: tuple[str, ...]
    profile: str


def _literal(values: tuple[str, ...] | None) -> str | None:
    for v in values or ():
        if not (set(v) & _GLOB_CHARS):
            return v
    return None


def projects_from_policy(policy: Policy, profiles: Mapping[str, str] | None = None) -> list[Project]:
    """One project per allow rule with a literal account (see the module docstring)."""
    out: list[Project] = []
    seen: set[str] = set()
    for rule in policy.rules:
        if rule.deny or not rule.resources:
            continue
        account = _literal(rule.match.get("accounts"))
        if account is None or account in seen:
            continue
        users = tuple(u for u in (rule.match.get("users") or ()) if not (set(u) & _GLOB_CHARS))
        if not users:
            users = tuple(f"{account[:6]}{n}" for n in range(1, 4))
        partition = _literal(rule.match.get("partitions")) or "quantum"
        qos = _literal(rule.match.get("qos")) or ""
        probe = decide(policy, JobIdentity(users[0], account, partition, qos), [rule.resources[0]])
        if not probe.allowed:
            continue
        seen.add(account)
        profile = (profiles or {}).get(account) or _ORDER[len(out) % len(_ORDER)]
        if profile not in PROFILES:
            raise ScenarioError(f"unknown profile {profile!r} for {account} (known: {', '.join(PROFILES)})")
        out.append(Project(account, users, partition, qos, tuple(rule.resources), profile))
    if not out:
        raise ScenarioError(
            "no allow rule names a literal Slurm account to generate jobs for (rules with only globs "
            "such as 'chem*' cannot be turned into a project)"
        )
    return out


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _intensity(profile: str, hours: int, rng: random.Random) -> list[float]:
    """Relative arrival intensity per hour (normalized later)."""
    w = [0.0] * hours
    days = hours / 24
    if profile == "dominant":
        for h in range(hours):
            day, hod = divmod(h, 24)
            weekday = day % 7 < 5
            w[h] = (1.0 if weekday else 0.35) * (1.6 if 8 <= hod < 19 else 0.55)
    elif profile == "bursty":
        d = rng.uniform(1, 12)
        while d < days:
            length = rng.uniform(2, 4)
            for h in range(int(d * 24), min(hours, int((d + length) * 24))):
                w[h] = 1.0
            d += length + rng.uniform(12, 24)
    elif profile == "deadline":
        for frac in (0.45, 0.92):
            end = frac * days + rng.uniform(-3, 3)
            for h in range(hours):
                x = end - h / 24  # days before the deadline
                if 0 <= x <= 21:
                    w[h] += math.exp(-x / 6)
    else:  # idle
        for h in range(0, hours, 24 * 7):
            w[h] = 1.0
    return w


def generate_trace(
    policy: Policy,
    *,
    start: datetime,
    days: int,
    budget_seconds: int,
    seed: int,
    load: float = 1.0,
    profiles: Mapping[str, str] | None = None,
) -> list[TraceJob]:
    """A synthetic trace over `days` from `start` (see the module docstring). Same seed, same trace."""
    if days <= 0:
        raise ScenarioError(f"days must be greater than 0, got {days}")
    if load <= 0:
        raise ScenarioError(f"load must be greater than 0, got {load}")
    rng = random.Random(f"qauvern-hpc-trace:{seed}")
    start = start.astimezone(UTC)
    projects = projects_from_policy(policy, profiles)
    hours = days * 24
    total = load * budget_seconds * days / 28
    shares = [_SHARE[p.profile] for p in projects]
    jobs: list[tuple[datetime, int, TraceJob]] = []
    seq = 0
    for proj, share in zip(projects, shares, strict=True):
        target = total * share / sum(shares)
        mu = math.log(_MEDIAN[proj.profile])
        mean_size = math.exp(mu + _SIGMA**2 / 2)
        w = _intensity(proj.profile, hours, rng)
        wsum = sum(w)
        if wsum <= 0:
            continue
        scale = target / mean_size / wsum
        for h, weight in enumerate(w):
            for _ in range(_poisson(rng, weight * scale)):
                size = int(min(4 * 3600, max(60, rng.lognormvariate(mu, _SIGMA))))
                wall = size * rng.uniform(2, 5) + 1800
                wall = int(min(86400, math.ceil(wall / 900) * 900))
                when = start + timedelta(hours=h, seconds=rng.randrange(3600))
                seq += 1
                job = TraceJob(
                    submit_time=when,
                    user=rng.choice(proj.users),
                    account=proj.account,
                    partition=proj.partition,
                    qos=proj.qos,
                    qpu=rng.choice(proj.qpus),
                    quantum_seconds=size,
                    wall_limit_seconds=wall,
                )
                jobs.append((when, seq, job))
    jobs.sort(key=lambda x: (x[0], x[1]))
    return [j for _, _, j in jobs]


__all__ = ["PROFILES", "Project", "generate_trace", "projects_from_policy"]
