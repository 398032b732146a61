"""Slurm hook entry points (PrologSlurmctld, EpilogSlurmctld) and the job environment they prepare.

Hot path: modules here import only the standard library at module level; the IBM client is imported only
when a job actually asked for a QPU.
"""
