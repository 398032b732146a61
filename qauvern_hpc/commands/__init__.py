"""One module per `qauvern-hpc` subcommand (see qauvern_hpc.cli)."""
