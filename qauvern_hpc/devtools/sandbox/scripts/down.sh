#!/usr/bin/env bash
# down.sh WORKDIR: stop everything up.sh started in WORKDIR; logs, state and the database stay in place
# (up.sh brings the same cluster back). Order: cancel jobs, slurmd, slurmctld, slurmdbd, MariaDB, munged, then
# any straggler of this sandbox (a job's processes, a slurmstepd, a daemon whose pid file was lost).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

sb_require_root
[[ -d ${1:-} ]] || sb_die "usage: $(basename "$0") WORKDIR (an existing sandbox directory)"
sb_paths "$1"
sb_load_ports || true # narrows SB_DAEMONS for a cluster on another sandbox's accounting
sb_lock

# Cancel jobs first: slurmd exiting leaves slurmstepd and the job's processes running.
if sb_alive slurmctld && sb_alive slurmd; then
  mapfile -t jobs < <(timeout 10 squeue -h -o %A 2>/dev/null || true)
  if [[ ${#jobs[@]} -gt 0 ]]; then
    sb_log "cancelling ${#jobs[@]} job(s)"
    timeout 10 scancel "${jobs[@]}" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while [[ -n $(timeout 5 squeue -h -t running,completing -o %A 2>/dev/null || true) ]] && ((SECONDS < deadline)); do
      sleep 0.3
    done
  fi
fi

for ((i = ${#SB_DAEMONS[@]} - 1; i >= 0; i--)); do
  sb_stop "${SB_DAEMONS[i]}" 20
done

mapfile -t left < <(sb_sandbox_pids)
if [[ ${#left[@]} -gt 0 ]]; then
  sb_log "stopping stragglers: ${left[*]}"
  kill -TERM "${left[@]}" 2>/dev/null || true
  sleep 1
  mapfile -t left < <(sb_sandbox_pids)
  if [[ ${#left[@]} -gt 0 ]]; then
    kill -KILL "${left[@]}" 2>/dev/null || true
    sleep 0.3
  fi
fi
rm -f "$MUNGE_DIR/munge.socket" "$MUNGE_DIR/munge.socket.lock" "$RUN/fingerprint"
mapfile -t left < <(sb_sandbox_pids)
if [[ ${#left[@]} -gt 0 ]]; then
  sb_die "processes of this sandbox still running: ${left[*]}"
fi
sb_log "down; logs are in $LOG"
