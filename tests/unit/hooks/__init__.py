"""Unit tests of the Slurm hooks."""
