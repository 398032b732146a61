"""The periodic rebalancer: gather what IBM and Slurm say, plan, show the diff, apply it with a journal,
mirror it into Slurm."""
