#!/usr/bin/env bash
# status.sh WORKDIR: one line per daemon, "NAME running PID" or "NAME stopped", then the node's state.
# Exit 0 when every daemon runs, 1 otherwise.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ -d ${1:-} ]] || sb_die "usage: $(basename "$0") WORKDIR (an existing sandbox directory)"
sb_paths "$1"
sb_load_ports || true # narrows SB_DAEMONS for a cluster on another sandbox's accounting
rc=0
for d in "${SB_DAEMONS[@]}"; do
  if sb_alive "$d"; then
    echo "$d running $(sb_pid "$d")"
  else
    echo "$d stopped"
    rc=1
  fi
done
if sb_alive slurmctld; then
  sinfo -h -N -o 'node %N %T' 2>/dev/null | sort -u || true
fi
exit "$rc"
