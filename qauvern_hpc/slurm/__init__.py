"""Slurm gateway: run Slurm's CLIs (`run`) and parse their parsable output (`sacct`).

Everything here talks to Slurm through its commands' `--parsable2` output; no daemon is started and no
Slurm library is loaded.
"""
