"""The admission decision: per (instance, backend) pair, how many QPU jobs may hold Slurm resources now.
Pure and deterministic: `decide(observation, state, settings)` -> (Decision, new state).

Contract (the algorithm is in the implementation's docstrings):
1. Staleness: IBM unread for longer than `hold_for` -> each pair takes its resource's fail mode (open:
   cap None, closed: cap 0); unread for less -> the previous cap is kept (reason HOLD).
2. Hard closes (cap 0): the backend is not serving (IBM status/message), or the instance reached its
   limit (IBM's usage_limit_reached, or its usage plus the work already in flight reaches the limit).
3. A per-backend budget of jobs IBM should start within `max_ibm_wait`, from IBM's queue length and wait
   estimate and our own queued jobs' ages, split among pairs in IBM's fair-share order (lowest
   consumed/allocation first), never starving a pair (the probe), never below what already runs.
4. Anti-thrash: hard closes apply at once, reopen on the first good poll, soft changes at most once per
   `min_dwell` per pair.
"""

from __future__ import annotations

from qauvern_hpc.admission.model import AdmissionSettings, ControllerState, Decision, Observation


def decide(
    obs: Observation, state: ControllerState, settings: AdmissionSettings
) -> tuple[Decision, ControllerState]:
    raise NotImplementedError


__all__ = ["decide"]
