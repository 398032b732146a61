"""Policy simulator: replays a centre's quantum workload against an allocation policy. Pure, deterministic.

`trace` (CSV traces), `generate` (synthetic traces), `scenario` (the account and the world around it),
`setup` (config + scenario + trace -> the simulation's input), `policies` (static, qauvern, qauvern-hpc),
`engine` (the discrete-event simulation), `metrics` (the figures), `plot` (matplotlib, optional).
"""

from __future__ import annotations
