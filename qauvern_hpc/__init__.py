"""qauvern-hpc: IBM Quantum time as a fairly shared, accounted Slurm resource."""

__version__ = "0.1.0"
