"""Unit tests of the Slurm gateway and the SPANK plugin."""
