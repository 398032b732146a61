"""Admission control (co-scheduling): how many QPU jobs of each (instance, backend) pair may hold Slurm
resources now, decided from what IBM and Slurm expose, written as Slurm association license limits.

`model` (the data) and `decide` (the decision) are pure and standard-library only: the simulator runs the
very same `decide` as the service. I/O lives in `observe` (IBM + Slurm -> Observation), `write` (caps ->
sacctmgr) and `service` (the loop, its state file and its heartbeat).
"""
