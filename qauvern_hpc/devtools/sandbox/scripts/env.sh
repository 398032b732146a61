#!/usr/bin/env bash
# env.sh WORKDIR: print the exports a shell needs to use the sandbox's Slurm:  eval "$(env.sh WORKDIR)"
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ -d ${1:-} ]] || sb_die "usage: $(basename "$0") WORKDIR (an existing sandbox directory)"
sb_paths "$1"
[[ -f $SLURM_CONF ]] || sb_die "$SLURM_CONF does not exist: run up.sh $W first"
printf 'export %s=%q\n' SLURM_CONF "$SLURM_CONF" QAUVERN_SANDBOX_WORKDIR "$W"
