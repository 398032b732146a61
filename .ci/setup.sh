#!/usr/bin/env bash
# Prepare a fresh Debian 12 machine (as root) for qauvern-hpc: Debian's Slurm 22.05, munge, MariaDB, a Lua
# for job_submit/lua, the C toolchain for the SPANK plugin, then the Python package with its test extras.
# Idempotent: safe to run again.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
top="$(cd "$here/.." && pwd)"
if [[ $(id -u) -ne 0 ]]; then
  echo "setup.sh: run as root (it installs Debian packages and starts a private Slurm cluster)" >&2
  exit 2
fi
bash "$here/install-debian-deps.sh"
# Debian's own python3 is "externally managed" (PEP 668); this machine is dedicated to the project.
PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check -e "${top}[test]"
make -s -C "$top/spank"
