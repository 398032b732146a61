#!/usr/bin/env bash
# Install, as root on Debian 12 (bookworm), the Debian packages qauvern-hpc needs: Slurm 22.05 with slurmdbd and
# slurmrestd, munge, MariaDB (the sandbox cluster's accounting database), Lua (job_submit/lua: Debian's
# job_submit_lua.so is in slurm-wlm-basic-plugins and links liblua5.1; the other interpreters let the Lua tests
# cover 5.3/5.4/LuaJIT), the C toolchain (SPANK plugin), PostgreSQL, Python and shellcheck.
#
# Non-interactive, quiet and idempotent: when every package is already installed it does nothing (no apt-get
# update). It never starts services: while it installs, a policy-rc.d that denies every start is in place (unless
# one exists already, e.g. Docker's), so no system munged/mariadb/slurmctld is left running; the sandbox
# (qauvern_hpc/devtools/sandbox/scripts/up.sh) starts its own private daemons.
set -euo pipefail

packages=(
  # Slurm and its accounting
  slurm-wlm slurmdbd slurmrestd slurm-client libslurm-dev munge mariadb-server mariadb-client
  # job_submit/lua and the Lua tests
  liblua5.1-0 lua5.1 lua5.3 lua5.4 luajit
  # SPANK plugin build
  gcc make libc6-dev
  # later: accounting store
  postgresql
  # Python, and what the sandbox scripts use
  python3 python3-pip python3-venv python3-dev util-linux passwd procps coreutils ca-certificates shellcheck
  # the HTML usage report's browser test (headless: --dump-dom, --screenshot)
  chromium
)

if [[ $(id -u) -ne 0 ]]; then
  echo "install-debian-deps.sh: run as root" >&2
  exit 2
fi

missing=()
for p in "${packages[@]}"; do
  if [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true) != installed ]]; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-debian-deps.sh: all ${#packages[@]} packages already installed"
  exit 0
fi

policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\n# temporary, from qauvern-hpc .ci/install-debian-deps.sh: start no services\nexit 101\n' >"$policy"
  chmod 0755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-q -y -o Dpkg::Use-Pty=0 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
echo "install-debian-deps.sh: installing ${missing[*]}"
apt-get "${apt_opts[@]}" update >/dev/null
apt-get "${apt_opts[@]}" install --no-install-recommends "${missing[@]}" >/dev/null
echo "install-debian-deps.sh: done"
