#!/usr/bin/env bash
# job_path.sh RELEASE [OUT]: the QPU job path end to end (SPANK plugin, job_submit.lua, PrologSlurmctld/
# EpilogSlurmctld, the IBM emulator, `qauvern-hpc collect`) on another Debian release's Slurm.
#
#   bash tests/compat/job_path.sh trixie     # Slurm 24.11 -> tests/compat/fixtures/24.11.x/job-path/
#   bash tests/compat/job_path.sh sid        # Slurm 26.05 -> tests/compat/fixtures/26.05.x/job-path/
#   bash tests/compat/job_path.sh bookworm   # Slurm 22.05, the CI's release (for symmetry)
#
# As root, after `bash tests/compat/run.sh RELEASE` has built the release's root (in $QAUVERN_COMPAT_CACHE,
# default /var/cache/qauvern-hpc-compat). It
#   1. gives the root's own python3 qauvern-hpc's runtime dependencies (httpx, pydantic 2, PyYAML, rich):
#      the release's Debian packages when they are new enough (trixie, sid), else a venv in the root
#      (/opt/qauvern-venv) with wheels the host's pip downloads from PyPI for the root's python (bookworm:
#      Debian 12 ships pydantic 1); done once;
#   2. copies qauvern_hpc/, slurm-conf/ and spank/ to /opt/qauvern-hpc in the root, importable by that
#      python through a .pth file (the hook wrappers run `python -I -S hookc.py`, which then execs
#      `python -m qauvern_hpc.hooks.prolog` with no PYTHONPATH: the package must be installed);
#   3. runs tests/compat/job_path.py there with that python: emulator, site, sandbox cluster with the hooks,
#      the jobs, `qauvern-hpc collect` (see its docstring for the steps);
#   4. copies job-path.json (per step: ok, detail, seconds) and the `scontrol show job` outputs to OUT
#      (default tests/compat/fixtures/VERSION/job-path), whatever the outcome; exits 1 when a step failed.
# tests/compat/test_compat.py replays the show-job outputs through admin_comment_from_show_job and checks
# that every recorded step passed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
top="$(cd "$here/../.." && pwd)"
release=${1:-}
[[ $release =~ ^[a-z]+$ ]] || {
  echo "usage: $0 RELEASE [OUT]   (RELEASE: bookworm, trixie, sid, ...)" >&2
  exit 2
}
[[ $(id -u) -eq 0 ]] || {
  echo "job_path.sh: run as root (chroot, mounts)" >&2
  exit 2
}
cache=${QAUVERN_COMPAT_CACHE:-/var/cache/qauvern-hpc-compat}
root="$cache/$release"
[[ -f $root/.qauvern-compat-ready ]] || {
  echo "job_path.sh: no root for $release in $cache: run \`bash tests/compat/run.sh $release\` first" >&2
  exit 2
}
log() { printf 'job-path[%s]: %s\n' "$release" "$*" >&2; }
t_begin=$(date +%s)

# The same mounts as run.sh (kept in step with it).
mounted=()
mount_in() {
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
W=/tmp/qauvern-compat-jobpath
SITE=/tmp/qauvern-compat-site
cleanup() {
  chroot "$root" bash /opt/qauvern-sandbox/scripts/down.sh "$W" >/dev/null 2>&1 || true
  unmount_all
}
trap cleanup EXIT
mount_in "$root"

# shellcheck disable=SC2016  # ${Version} is dpkg-query's
version="$(chroot "$root" dpkg-query -W -f='${Version}' slurm-client | sed 's/-.*//')"
out=${2:-$here/fixtures/$version/job-path}
log "Slurm $version"

# ----- 1. the runtime dependencies, in the root's own python -----
DEPS_DEB=(python3-httpx python3-pydantic python3-yaml python3-rich)
DEPS_PIP=("httpx>=0.27" "pydantic>=2.6" "pyyaml>=6" "rich>=13")
new_enough='import httpx, pydantic, yaml, rich
v = lambda s: tuple(int(x) for x in s.split(".")[:2])
assert v(pydantic.VERSION) >= (2, 6) and v(httpx.__version__) >= (0, 27), (pydantic.VERSION, httpx.__version__)'
apt_in() {
  chroot "$root" env DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 bash -c \
    "apt-get -o Acquire::Check-Valid-Until=false update -q && apt-get install -y -q --no-install-recommends $* \
    && apt-get clean" >>"$cache/$release.python.log" 2>&1 || {
    tail -20 "$cache/$release.python.log" >&2
    exit 1
  }
}
if [[ ! -s $root/opt/qauvern-python ]]; then
  t=$(date +%s)
  log "installing qauvern-hpc's dependencies: ${DEPS_DEB[*]}"
  apt_in "${DEPS_DEB[@]}"
  if chroot "$root" python3 -c "$new_enough" 2>>"$cache/$release.python.log"; then
    echo /usr/bin/python3 >"$root/opt/qauvern-python"
  else
    # The host's pip fetches the wheels for the root's python (the host's pip has this site's index and CA
    # settings; the root has none), the root's pip installs them offline.
    pyver="$(chroot "$root" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    log "the release's packages are too old: a venv in the root, with wheels from PyPI: ${DEPS_PIP[*]}"
    apt_in python3-venv
    rm -rf "$root/opt/qauvern-wheels"
    python3 -m pip download -q --only-binary=:all: --implementation cp --python-version "$pyver" \
      --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d "$root/opt/qauvern-wheels" \
      "${DEPS_PIP[@]}" >>"$cache/$release.python.log" 2>&1 || {
      tail -20 "$cache/$release.python.log" >&2
      exit 1
    }
    chroot "$root" python3 -m venv /opt/qauvern-venv >>"$cache/$release.python.log" 2>&1
    chroot "$root" env -i PATH=/usr/bin:/bin /opt/qauvern-venv/bin/pip install -q --no-index \
      --find-links=/opt/qauvern-wheels "${DEPS_PIP[@]}" >>"$cache/$release.python.log" 2>&1 || {
      tail -20 "$cache/$release.python.log" >&2
      exit 1
    }
    chroot "$root" /opt/qauvern-venv/bin/python -c "$new_enough"
    echo /opt/qauvern-venv/bin/python >"$root/opt/qauvern-python"
  fi
  log "dependencies in $(($(date +%s) - t)) s"
fi
PY="$(cat "$root/opt/qauvern-python")"

# ----- 2. the package, importable by that python -----
rm -rf "$root/opt/qauvern-hpc" "$root/opt/qauvern-sandbox" "$root/opt/qauvern-compat"
mkdir -p "$root/opt/qauvern-hpc" "$root/opt/qauvern-sandbox" "$root/opt/qauvern-compat"
tar -C "$top" --exclude=__pycache__ -cf - qauvern_hpc slurm-conf spank | tar -C "$root/opt/qauvern-hpc" -xf -
cp -r "$top/qauvern_hpc/devtools/sandbox/scripts" "$top/qauvern_hpc/devtools/sandbox/templates" "$root/opt/qauvern-sandbox/"
cp "$here/job_path.py" "$root/opt/qauvern-compat/"
purelib="$(chroot "$root" "$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
mkdir -p "$root$purelib"
echo /opt/qauvern-hpc >"$root$purelib/qauvern-hpc-compat.pth"
chroot "$root" bash -c "cd / && $PY -I -c 'import qauvern_hpc.hooks.prolog'" || {
  echo "job_path.sh: $PY in the root cannot import the package (see above)" >&2
  exit 1
}
grep -qs '^127\.0\.0\.1[[:space:]].*\blocalhost\b' "$root/etc/hosts" ||
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >>"$root/etc/hosts"

# ----- 3. the job path, on a fresh cluster -----
chroot "$root" bash /opt/qauvern-sandbox/scripts/down.sh "$W" >/dev/null 2>&1 || true
rm -rf --one-file-system "${root:?}$W" "${root:?}$SITE" "$root/opt/qauvern-compat/out"
log "running tests/compat/job_path.py with $PY ($(chroot "$root" "$PY" --version))"
rc=0
chroot "$root" env -u PYTHONPATH LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  bash -c "cd / && exec $PY /opt/qauvern-compat/job_path.py $W $SITE /opt/qauvern-compat/out" || rc=$?
cleanup
trap - EXIT

# ----- 4. the recording -----
rm -rf "$out"
mkdir -p "$out"
cp "$root/opt/qauvern-compat/out/"* "$out/"
log "wrote $out in $(($(date +%s) - t_begin)) s (exit $rc)"
exit "$rc"
