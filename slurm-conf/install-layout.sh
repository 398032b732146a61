#!/usr/bin/env bash
# Create qauvern-hpc's Debian-style layout on the Slurm controller (idempotent; never overwrites a config):
#
#   /etc/qauvern-hpc/                 0755 root        config.yaml (0644, from the package's example if absent)
#   /etc/qauvern-hpc/keys/            0700 SLURMUSER   IBM Cloud API key files (0600 each; the hooks read them)
#   /var/lib/qauvern-hpc/             0755 SLURMUSER   state_dir: hookd socket, ledger.db
#   /var/lib/qauvern-hpc/jobs/        0700 SLURMUSER   per-job env files and records (prolog writes, slurmd reads)
#   /var/lib/qauvern-hpc/rebalance/   0700 root        the rebalancer's journal and lock
#
# PrologSlurmctld/EpilogSlurmctld (and the hookd they start) run as slurm.conf's SlurmUser: pass it with
# --slurm-user (default: SlurmUser from `scontrol show config`, else root). Logs go to syslog (facility
# daemon; journald on systemd hosts) unless QAUVERN_HPC_LOG_FILE is set in the hooks' environment.
#
#   install-layout.sh [--prefix DIR] [--slurm-user USER] [--example FILE]
set -euo pipefail

prefix=""
slurm_user=""
example=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
    --slurm-user) slurm_user=${2:?--slurm-user needs a user}; shift 2 ;;
    --example) example=${2:?--example needs a file}; shift 2 ;;
    -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install-layout.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ $(id -u) -ne 0 ]]; then
  echo "install-layout.sh: run as root" >&2
  exit 2
fi
if [[ -z $slurm_user ]]; then
  slurm_user=$(scontrol show config 2>/dev/null | awk -F'= *' '/^SlurmUser/ {sub(/\(.*/, "", $2); print $2; exit}') || true
  slurm_user=${slurm_user:-root}
fi
if ! id "$slurm_user" >/dev/null 2>&1; then
  echo "install-layout.sh: no such user: $slurm_user" >&2
  exit 2
fi
if [[ -z $example ]]; then
  example=$(python3 -c 'import qauvern_hpc, os; print(os.path.join(os.path.dirname(qauvern_hpc.__file__), "data", "config.example.yaml"))' 2>/dev/null || true)
fi

mkdirp() { # mkdirp DIR MODE OWNER
  install -d -m "$2" -o "$3" -g "$(id -gn "$3")" "$1"
  echo "  $2 $3 $1"
}
echo "qauvern-hpc layout under ${prefix:-/} (SlurmUser $slurm_user):"
mkdirp "$prefix/etc/qauvern-hpc" 0755 root
mkdirp "$prefix/etc/qauvern-hpc/keys" 0700 "$slurm_user"
mkdirp "$prefix/var/lib/qauvern-hpc" 0755 "$slurm_user"
mkdirp "$prefix/var/lib/qauvern-hpc/jobs" 0700 "$slurm_user"
mkdirp "$prefix/var/lib/qauvern-hpc/rebalance" 0700 root
config="$prefix/etc/qauvern-hpc/config.yaml"
if [[ -e $config ]]; then
  echo "  kept $config"
elif [[ -n $example && -r $example ]]; then
  install -m 0644 -o root -g root "$example" "$config"
  echo "  0644 root $config (the commented example: edit it, then qauvern-hpc check-config)"
else
  echo "  no config written (qauvern-hpc not importable here; pass --example FILE)"
fi
