#!/usr/bin/env bash
# Entry point of containers/Dockerfile; the same commands work on any machine after `bash .ci/setup.sh`.
#   demo                 the end-to-end demo (README's first command), then exit
#   sandbox [WORKDIR]    a throwaway Slurm cluster with the --qpu plugin, kept up until the container stops
#   emulator [PORT]      the IBM Quantum API emulator on 0.0.0.0:PORT (default 8765), for other containers
#   anything else        run as a command (e.g. `qauvern-hpc --help`, `python3 -m pytest -q`)
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=${1:-demo}
[[ $# -gt 0 ]] && shift
case $cmd in
  demo)
    exec python3 -m qauvern_hpc demo "$@"
    ;;
  sandbox)
    workdir=${1:-/tmp/qauvern-hpc-sandbox}
    python3 -m qauvern_hpc sandbox up --workdir "$workdir"
    trap 'python3 -m qauvern_hpc sandbox down --workdir "$workdir"' TERM INT
    echo "sandbox up in $workdir; eval \"\$(qauvern-hpc sandbox env --workdir $workdir)\" to use it"
    sleep infinity &
    wait $!
    ;;
  emulator)
    exec python3 -m qauvern_hpc emulator --host 0.0.0.0 --allow-remote --port "${1:-8765}"
    ;;
  *)
    exec "$cmd" "$@"
    ;;
esac
