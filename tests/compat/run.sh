#!/usr/bin/env bash
# run.sh RELEASE [OUT]: record what another Debian release's Slurm prints for qauvern-hpc's command lines.
#
#   bash tests/compat/run.sh trixie        # Slurm 24.11 -> tests/compat/fixtures/24.11.x/
#   bash tests/compat/run.sh sid           # Slurm 26.05 -> tests/compat/fixtures/26.05.x/
#   bash tests/compat/run.sh bookworm      # Slurm 22.05, the release CI runs on (same recording, for symmetry)
#
# As root, on Debian (about 2-4 minutes a release once the root is cached; the first run of a release
# downloads ~300 MB of packages):
#   1. debootstrap --variant=minbase RELEASE into $QAUVERN_COMPAT_CACHE/RELEASE (default
#      /var/cache/qauvern-hpc-compat; kept, so later runs skip this), with Debian's slurmctld, slurmd,
#      slurmdbd, slurm-client, munge, MariaDB and the C toolchain + libslurm-dev, from the mirror the host's
#      apt uses (or $QAUVERN_COMPAT_MIRROR; a snapshot mirror's expired Release files are accepted);
#   2. compiles the SPANK plugin (spank/) against that release's headers and runs its unit harness;
#   3. starts the SAME sandbox cluster the integration tests use (qauvern_hpc/devtools/sandbox/scripts/up.sh) inside
#      the release's root, with the plugin in plugstack.conf, and seeds two accounts;
#   4. runs tests/compat/record.sh there: jobs that finish, pending jobs, the root-association license
#      gate, and the exact sacct/squeue/sacctmgr/scontrol command lines qauvern-hpc builds;
#   5. stops the cluster, unmounts, and copies the recording to OUT (default tests/compat/fixtures/VERSION).
# tests/compat/test_compat.py then checks qauvern-hpc's parsers against every recorded version.
# Not part of CI (it needs the network to Debian's mirror and root); the recordings are committed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
top="$(cd "$here/../.." && pwd)"
release=${1:-}
[[ $release =~ ^[a-z]+$ ]] || {
  echo "usage: $0 RELEASE [OUT]   (RELEASE: bookworm, trixie, sid, ...)" >&2
  exit 2
}
[[ $(id -u) -eq 0 ]] || {
  echo "run.sh: run as root (debootstrap, chroot, mounts)" >&2
  exit 2
}
for bin in debootstrap chroot mount umount python3; do
  command -v "$bin" >/dev/null || {
    echo "run.sh: $bin not found (apt-get install debootstrap)" >&2
    exit 2
  }
done
cache=${QAUVERN_COMPAT_CACHE:-/var/cache/qauvern-hpc-compat}
root="$cache/$release"
log() { printf 'compat[%s]: %s\n' "$release" "$*" >&2; }

mirror() {
  if [[ -n ${QAUVERN_COMPAT_MIRROR:-} ]]; then
    echo "$QAUVERN_COMPAT_MIRROR"
    return
  fi
  local m
  m="$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
  [[ -n $m ]] || m="$(awk '$1 == "deb" && $3 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
  [[ -n $m ]] || {
    echo "run.sh: no Debian mirror in the host's apt sources: set QAUVERN_COMPAT_MIRROR" >&2
    exit 2
  }
  echo "$m"
}

mounted=()
mount_in() { # mount_in ROOT: /proc, /sys and /dev for the daemons (munged, MariaDB, slurmd's cgroups)
  mount -t proc proc "$1/proc" && mounted+=("$1/proc")
  mount --rbind /sys "$1/sys" && mount --make-rslave "$1/sys" && mounted+=("$1/sys")
  mount --rbind /dev "$1/dev" && mount --make-rslave "$1/dev" && mounted+=("$1/dev")
}
unmount_all() {
  local m
  for m in "${mounted[@]}"; do
    umount -R "$m" 2>/dev/null || umount -R -l "$m" || true
  done
  mounted=()
}

PACKAGES=(slurmctld slurmd slurmdbd slurm-client munge mariadb-server python3 util-linux procps passwd
  gcc make libc6-dev libslurm-dev)

if [[ ! -f $root/.qauvern-compat-ready ]]; then
  part="$root.partial"
  if [[ -e $part ]]; then
    if grep -q " $part/" /proc/mounts; then
      echo "run.sh: $part has mounts left from an interrupted run: unmount them first" >&2
      exit 1
    fi
    rm -rf --one-file-system "$part"
  fi
  mkdir -p "$cache"
  log "debootstrap $release into $part"
  debootstrap --variant=minbase "$release" "$part" "$(mirror)" >"$cache/$release.debootstrap.log" 2>&1 || {
    tail -20 "$cache/$release.debootstrap.log" >&2
    exit 1
  }
  printf '#!/bin/sh\nexit 101\n' >"$part/usr/sbin/policy-rc.d" # packages must not start their daemons
  chmod 0755 "$part/usr/sbin/policy-rc.d"
  trap unmount_all EXIT
  mount_in "$part"
  log "installing ${PACKAGES[*]}"
  chroot "$part" env DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 bash -c \
    "apt-get -o Acquire::Check-Valid-Until=false update -q && apt-get install -y -q --no-install-recommends ${PACKAGES[*]} && apt-get clean" \
    >"$cache/$release.apt.log" 2>&1 || {
    tail -20 "$cache/$release.apt.log" >&2
    exit 1
  }
  # Debian sid (recorded 2026-11): slurmdbd 26.05.5 exits at start with sid's libmariadb3 1:11.8.9+ds-4
  # (error 5027 "Number of columns in result (=1) set exceeds maximum allowed number of columns (=0)" in
  # _check_mysql_concat_is_sane); trixie's libmariadb3 (1:11.8.6) works. A Debian packaging problem, not
  # one of qauvern-hpc (which never talks to MariaDB): take the client library from trixie.
  if [[ $release == sid || $release == unstable ]]; then
    log "libmariadb3 from trixie (sid's breaks slurmdbd)"
    echo "deb $(mirror) trixie main" >"$part/etc/apt/sources.list.d/trixie.list"
    chroot "$part" env DEBIAN_FRONTEND=noninteractive bash -c \
      "apt-get -o Acquire::Check-Valid-Until=false update -q && apt-get install -y -q --allow-downgrades \
      libmariadb3/trixie && apt-get clean" >>"$cache/$release.apt.log" 2>&1 || {
      tail -20 "$cache/$release.apt.log" >&2
      exit 1
    }
  fi
  unmount_all
  trap - EXIT
  touch "$part/.qauvern-compat-ready"
  mv "$part" "$root"
fi

# shellcheck disable=SC2016  # ${Version} is dpkg-query's, not the shell's
version="$(chroot "$root" dpkg-query -W -f='${Version}' slurm-client | sed 's/-.*//')"
out=${2:-$here/fixtures/$version}
log "Slurm $version"

# What qauvern-hpc runs, from its own code.
inputs="$(PYTHONPATH=$top python3 - "$version" <<'EOF'
import shlex, sys
from qauvern_hpc.record.admin_comment import format_admin_comment
from qauvern_hpc.slurm.sacct import FINISHED_STATES, parse_slurm_version, sacct_fields
from qauvern_hpc.slurm.sacctmgr import ASSOC_FORMAT
from qauvern_hpc.slurm.squeue import SQUEUE_FORMAT
v = parse_slurm_version(sys.argv[1])
rec = {"rule": "physics", "instance": "physics", "resources": [{"resource": "ibm_torino", "session_id": "sess-1"}]}
for k, val in {
    "SACCT_FIELDS": ",".join(sacct_fields(v)),
    "SACCT_STATES": ",".join(FINISHED_STATES),
    "SQUEUE_FORMAT": SQUEUE_FORMAT,
    "ASSOC_FORMAT": ASSOC_FORMAT,
    "ADMIN_COMMENT": format_admin_comment(rec),
}.items():
    print(f"{k}={shlex.quote(val)}")
EOF
)"

# Fresh copies of the tested scripts and sources in the release's root.
rm -rf "$root/opt/qauvern-sandbox" "$root/opt/qauvern-spank" "$root/opt/qauvern-compat"
mkdir -p "$root/opt/qauvern-sandbox" "$root/opt/qauvern-spank" "$root/opt/qauvern-compat"
cp -r "$top/qauvern_hpc/devtools/sandbox/scripts" "$top/qauvern_hpc/devtools/sandbox/templates" "$root/opt/qauvern-sandbox/"
cp "$top/spank/qpu.c" "$top/spank/qpu.map" "$top/spank/test_qpu.c" "$top/spank/Makefile" "$root/opt/qauvern-spank/"
cp "$here/record.sh" "$root/opt/qauvern-compat/"
printf '%s\n' "$inputs" >"$root/opt/qauvern-compat/inputs.env"
rec="$root/opt/qauvern-compat/out"
mkdir -p "$rec"

# debootstrap writes no /etc/hosts; bookworm's mariadb-install-db needs localhost to resolve.
grep -qs '^127\.0\.0\.1[[:space:]].*\blocalhost\b' "$root/etc/hosts" ||
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >>"$root/etc/hosts"

W=/tmp/qauvern-compat-sandbox
cleanup() {
  chroot "$root" bash /opt/qauvern-sandbox/scripts/down.sh "$W" >/dev/null 2>&1 || true
  unmount_all
}
trap cleanup EXIT
mount_in "$root"
# A fresh cluster every time (job ids from 1, an empty accounting database): stop and remove an old one.
chroot "$root" bash /opt/qauvern-sandbox/scripts/down.sh "$W" >/dev/null 2>&1 || true
rm -rf --one-file-system "${root:?}$W"

log "building the SPANK plugin against Slurm $version's headers"
plug=()
if chroot "$root" make -C /opt/qauvern-spank qpu.so test >"$rec/spank-build.txt" 2>&1; then
  echo 0 >"$rec/spank-build.status"
  mkdir -p "$root/tmp/qauvern-compat-state"
  plug=(QAUVERN_SANDBOX_PLUGSTACK_LINES="optional /opt/qauvern-spank/qpu.so state_dir=/tmp/qauvern-compat-state")
else
  echo 1 >"$rec/spank-build.status"
  log "the SPANK plugin did not build (see $out/spank-build.txt); the cluster runs without it"
fi

log "starting the sandbox cluster (qauvern_hpc/devtools/sandbox/scripts/up.sh)"
chroot "$root" env "${plug[@]}" QAUVERN_SANDBOX_LICENSES="qpu:8,qpu_physics:1000,qpu_chem:1000" \
  QAUVERN_SANDBOX_ACCOUNTING_TRES="license/qpu,license/qpu_physics,license/qpu_chem" \
  bash /opt/qauvern-sandbox/scripts/up.sh "$W" >"$rec/up.log" 2>&1 || {
  tail -30 "$rec/up.log" >&2
  exit 1
}
chroot "$root" bash /opt/qauvern-sandbox/scripts/seed-accounts.sh "$W" physics:qalice chem:qcarol \
  >>"$rec/up.log" 2>&1
if [[ ${#plug[@]} -gt 0 ]]; then
  chroot "$root" bash -c "eval \"\$(/opt/qauvern-sandbox/scripts/env.sh $W)\"; sbatch --help | grep -- --qpu" \
    >"$rec/spank-sbatch-help.txt" 2>&1 || true
fi

log "recording (tests/compat/record.sh)"
chroot "$root" bash -c "set -a; . /opt/qauvern-compat/inputs.env; set +a; \
  exec bash /opt/qauvern-compat/record.sh $W /opt/qauvern-compat/out" 2>"$rec/record.log" || {
  tail -30 "$rec/record.log" >&2
  exit 1
}
cleanup
trap - EXIT

# Replace the recording, but keep job_path.sh's (OUT/job-path: a separate command records it).
mkdir -p "$out"
find "$out" -mindepth 1 -maxdepth 1 ! -name job-path -exec rm -rf {} +
cp -r "$rec/." "$out/"
rm -f "$out/up.log" "$out/record.log"
log "wrote $out"
