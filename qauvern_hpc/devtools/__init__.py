"""Developer and evaluation tools, not needed in production: the IBM emulator, the policy simulator, the
sandbox Slurm cluster and the demo's site wiring."""
