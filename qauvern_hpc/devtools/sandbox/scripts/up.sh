#!/usr/bin/env bash
# up.sh WORKDIR: start (or keep running) a one-node Slurm cluster with accounting, entirely inside WORKDIR.
#
# Starts, in order and idempotently (a daemon that is already running is left alone):
#   munged (private key and socket) -> MariaDB (private datadir, loopback port) -> slurmdbd -> cluster record
#   -> slurmctld -> slurmd (node "qnode1" at 127.0.0.1)
# then waits until sinfo shows the node idle and sacct answers. Ports are chosen once (free ones, below the
# ephemeral range) and kept in WORKDIR/etc/ports.env, so two sandboxes run side by side and never meet a
# system Slurm. WORKDIR and its parents must be traversable by other users (munged runs as munge, MariaDB as
# mysql, jobs as the test users): /tmp/something with mode 0755 is right.
#
# Hook points and settings: QAUVERN_SANDBOX_* variables, from the environment or from WORKDIR/hooks.env
# (sourced with `set -a`: every variable assigned there is also exported to the daemons, e.g. QAUVERN_HPC_CONFIG
# for job_submit.lua; a variable set in the environment wins over the file):
#   QAUVERN_SANDBOX_PLUGSTACK_CONF     a plugstack.conf copied to WORKDIR/etc/plugstack.conf (default: empty)
#   QAUVERN_SANDBOX_PLUGSTACK_LINES    lines appended to it
#   QAUVERN_SANDBOX_JOB_SUBMIT_LUA     a Lua script copied to WORKDIR/etc/job_submit.lua; sets JobSubmitPlugins=lua
#                                      (job_submit/lua reads job_submit.lua from the directory of slurm.conf)
#   QAUVERN_SANDBOX_ETC_FILES          more files copied into WORKDIR/etc (space-separated), e.g. qpu_policy.lua
#   QAUVERN_SANDBOX_PROLOG_SLURMCTLD   PrologSlurmctld= program    QAUVERN_SANDBOX_EPILOG_SLURMCTLD  EpilogSlurmctld=
#   QAUVERN_SANDBOX_PROLOG             Prolog= (node)              QAUVERN_SANDBOX_EPILOG            Epilog= (node)
#   QAUVERN_SANDBOX_PROLOG_FLAGS       PrologFlags=                QAUVERN_SANDBOX_PROLOG_EPILOG_TIMEOUT
#   QAUVERN_SANDBOX_EXTRA_CONF         lines appended to slurm.conf (the last value of a key wins)
#   QAUVERN_SANDBOX_CGROUP_CONF        lines appended to WORKDIR/etc/cgroup.conf
# Several clusters on one accounting (Slurm's multi-cluster setup: one slurmdbd, several slurmctld):
#   QAUVERN_SANDBOX_DBD_FROM           the work dir of a running sandbox whose munged, MariaDB and slurmdbd this
#                                      one uses; this work dir then runs only slurmctld and slurmd (own ports,
#                                      state, ClusterName: give it another QAUVERN_SANDBOX_CLUSTER) and its
#                                      cluster is registered in that slurmdbd. Fixed at the first up.
# Settings: QAUVERN_SANDBOX_CLUSTER (qsandbox), _NODE (qnode1), _CPUS (4), _MEMORY (4000 MB),
#   _LICENSES (qpu:8), _ACCOUNTING_TRES (license/qpu), _TIMEOUT (bring-up timeout in seconds, 120).
# When the rendered configuration or hooks change while the cluster runs, slurmctld and slurmd are restarted.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

sb_require_root
sb_paths "${1:-}"
sb_lock
t0=$SECONDS
# A unix socket path must fit in sun_path (108 bytes).
((${#MUNGE_SOCKET} < 100 && ${#DB_SOCKET} < 100)) || sb_die "work dir path too long for unix sockets: $W"

for bin in munged munge unmunge mariadbd mariadb-install-db mariadb mariadb-admin slurmdbd slurmctld slurmd \
  sacctmgr sinfo sacct scontrol setpriv setsid flock python3; do
  command -v "$bin" >/dev/null || sb_die "$bin not found: install Debian's slurm-wlm slurmdbd munge mariadb-server (see .ci/install-debian-deps.sh)"
done

# ----- settings and hooks -----
SB_SETTINGS=(PLUGSTACK_CONF PLUGSTACK_LINES JOB_SUBMIT_LUA ETC_FILES PROLOG_SLURMCTLD EPILOG_SLURMCTLD PROLOG
  EPILOG PROLOG_FLAGS PROLOG_EPILOG_TIMEOUT EXTRA_CONF CGROUP_CONF DBD_FROM CLUSTER NODE CPUS MEMORY LICENSES ACCOUNTING_TRES TIMEOUT)
declare -A from_env=()
for n in "${SB_SETTINGS[@]}"; do
  v="QAUVERN_SANDBOX_$n"
  [[ -n ${!v+set} ]] && from_env[$n]="${!v}"
done
if [[ -f $W/hooks.env ]]; then
  set -a
  # shellcheck source=/dev/null
  source "$W/hooks.env"
  set +a
fi
for n in "${!from_env[@]}"; do printf -v "QAUVERN_SANDBOX_$n" '%s' "${from_env[$n]}"; done

# These and the ports are used through sb_render (templates' @NAME@ placeholders).
# shellcheck disable=SC2034
{
CLUSTER="${QAUVERN_SANDBOX_CLUSTER:-qsandbox}"
NODE="${QAUVERN_SANDBOX_NODE:-qnode1}"
CPUS="${QAUVERN_SANDBOX_CPUS:-4}"
MEMORY="${QAUVERN_SANDBOX_MEMORY:-4000}"
LICENSES="${QAUVERN_SANDBOX_LICENSES:-qpu:8}"
ACCOUNTING_TRES="${QAUVERN_SANDBOX_ACCOUNTING_TRES:-license/qpu}"
TIMEOUT="${QAUVERN_SANDBOX_TIMEOUT:-120}"
EXTRA_CONF="${QAUVERN_SANDBOX_EXTRA_CONF:-}"
}

# ----- directories -----
mkdir -p "$ETC" "$RUN" "$LOG" "$STATE" "$SPOOL/slurmd" "$JOBS" "$MUNGE_DIR" "$DB_DIR" "$DB_RUN"
chmod 0755 "$W" "$ETC" "$RUN" "$LOG" "$MUNGE_DIR"
chmod 1777 "$JOBS"
chmod 0700 "$STATE"
if ! setpriv --reuid=nobody --regid=nogroup --clear-groups test -x "$W"; then
  sb_die "$W is not reachable by other users (munged runs as munge, MariaDB as mysql, jobs as test users): use a directory whose parents are all world-traversable, e.g. /tmp/qauvern-hpc-sandbox"
fi

# ----- ports (chosen once) and the database password -----
if ! sb_load_ports; then
  if [[ -n ${QAUVERN_SANDBOX_DBD_FROM:-} ]]; then
    primary="$(cd "$QAUVERN_SANDBOX_DBD_FROM" 2>/dev/null && pwd -P)" ||
      sb_die "QAUVERN_SANDBOX_DBD_FROM=$QAUVERN_SANDBOX_DBD_FROM is not a directory"
    [[ $primary != "$W" ]] || sb_die "QAUVERN_SANDBOX_DBD_FROM names this sandbox itself"
    mapfile -t ports < <(python3 "$SB_SCRIPTS/freeports.py" 2)
    [[ ${#ports[@]} -eq 2 ]] || sb_die "could not find 2 free TCP ports"
    printf 'DBD_FROM=%s\nCTLD_PORT=%s\nSLURMD_PORT=%s\n' "$primary" "${ports[@]}" >"$ETC/ports.env"
  else
    mapfile -t ports < <(python3 "$SB_SCRIPTS/freeports.py" 4)
    [[ ${#ports[@]} -eq 4 ]] || sb_die "could not find 4 free TCP ports"
    printf 'MARIADB_PORT=%s\nDBD_PORT=%s\nCTLD_PORT=%s\nSLURMD_PORT=%s\n' "${ports[@]}" >"$ETC/ports.env"
  fi
  sb_load_ports
fi
if [[ -n $DBD_FROM ]]; then
  [[ -n $DBD_PORT && -S $MUNGE_SOCKET ]] ||
    sb_die "the sandbox $DBD_FROM, whose accounting this one shares, is not up (start it first)"
  [[ $(sed -n 's/^ClusterName=//p' "$DBD_FROM/etc/slurm.conf") != "$CLUSTER" ]] ||
    sb_die "cluster name $CLUSTER is already the one of $DBD_FROM: set QAUVERN_SANDBOX_CLUSTER"
fi
DB_PASS="" # a cluster on another sandbox's accounting has no slurmdbd.conf
if [[ -z $DBD_FROM ]]; then
  if [[ ! -s $ETC/db.pass ]]; then
    (umask 077 && od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$ETC/db.pass")
  fi
  DB_PASS="$(<"$ETC/db.pass")"
fi

# ----- configuration files -----
copy_into_etc() { # copy a file into etc/ unless it is already that file
  local src=$1 dst=$2
  [[ -r $src ]] || sb_die "hook file $src does not exist or is not readable"
  [[ $(realpath "$src") == "$(realpath -m "$dst")" ]] || install -m 0644 "$src" "$dst"
}
check_program() {
  [[ -x $1 && -f $1 ]] || sb_die "hook program $1 is not an executable file (slurmctld would fail every job)"
}

hook_lines=()
if [[ -n ${QAUVERN_SANDBOX_PLUGSTACK_CONF:-} ]]; then
  copy_into_etc "$QAUVERN_SANDBOX_PLUGSTACK_CONF" "$ETC/plugstack.conf"
else
  : >"$ETC/plugstack.conf"
fi
if [[ -n ${QAUVERN_SANDBOX_PLUGSTACK_LINES:-} ]]; then
  printf '%s\n' "$QAUVERN_SANDBOX_PLUGSTACK_LINES" >>"$ETC/plugstack.conf"
fi
if [[ -n ${QAUVERN_SANDBOX_JOB_SUBMIT_LUA:-} ]]; then
  [[ -e /usr/lib/x86_64-linux-gnu/slurm-wlm/job_submit_lua.so || -n $(find /usr/lib* -name job_submit_lua.so -print -quit 2>/dev/null) ]] ||
    sb_die "job_submit_lua.so not found (Debian ships it in slurm-wlm-basic-plugins)"
  copy_into_etc "$QAUVERN_SANDBOX_JOB_SUBMIT_LUA" "$ETC/job_submit.lua"
  hook_lines+=("JobSubmitPlugins=lua")
fi
for f in ${QAUVERN_SANDBOX_ETC_FILES:-}; do
  copy_into_etc "$f" "$ETC/$(basename "$f")"
done
for pair in PROLOG_SLURMCTLD:PrologSlurmctld EPILOG_SLURMCTLD:EpilogSlurmctld PROLOG:Prolog EPILOG:Epilog; do
  v="QAUVERN_SANDBOX_${pair%%:*}"
  if [[ -n ${!v:-} ]]; then
    check_program "${!v}"
    hook_lines+=("${pair#*:}=${!v}")
  fi
done
[[ -n ${QAUVERN_SANDBOX_PROLOG_FLAGS:-} ]] && hook_lines+=("PrologFlags=$QAUVERN_SANDBOX_PROLOG_FLAGS")
[[ -n ${QAUVERN_SANDBOX_PROLOG_EPILOG_TIMEOUT:-} ]] &&
  hook_lines+=("PrologEpilogTimeout=$QAUVERN_SANDBOX_PROLOG_EPILOG_TIMEOUT")
# Trap: slurmd 22.05 initialises a cgroup plugin even with proctrack/linuxproc and task/none, and fails
# without a cgroup filesystem (there is no CgroupPlugin=disabled before 23.x). On cgroup v2 it also asks systemd
# (dbus) for a scope, which containers lack: IgnoreSystemd makes it manage its own sub-tree instead.
printf '%s\n' "# generated by up.sh" "CgroupPlugin=autodetect" "IgnoreSystemd=yes" "IgnoreSystemdOnFailure=yes" \
  ${QAUVERN_SANDBOX_CGROUP_CONF:+"$QAUVERN_SANDBOX_CGROUP_CONF"} >"$ETC/cgroup.conf"
[[ -d /sys/fs/cgroup ]] || sb_log "warning: /sys/fs/cgroup is missing; slurmd 22.05 will not start without it"
# shellcheck disable=SC2034
HOOK_LINES="$(printf '%s\n' "${hook_lines[@]}")"

SB_VARS=(CLUSTER CTLD_PORT SLURMD_PORT DBD_PORT MARIADB_PORT MUNGE_SOCKET STATE SPOOL RUN LOG ETC ACCOUNTING_TRES
  LICENSES HOOK_LINES NODE CPUS MEMORY EXTRA_CONF DB_PASS)
sb_render "$SB_TEMPLATES/slurm.conf.in" >"$ETC/slurm.conf.new"
mv "$ETC/slurm.conf.new" "$ETC/slurm.conf"
if [[ -z $DBD_FROM ]]; then
  (umask 077 && sb_render "$SB_TEMPLATES/slurmdbd.conf.in" >"$ETC/slurmdbd.conf.new")
  chmod 0600 "$ETC/slurmdbd.conf.new" # slurmdbd refuses a slurmdbd.conf others can read
  mv "$ETC/slurmdbd.conf.new" "$ETC/slurmdbd.conf"
fi
chmod 0644 "$ETC/slurm.conf" "$ETC/plugstack.conf"

# What slurmctld/slurmd were started with: the files in etc/, hooks.env and the QAUVERN_SANDBOX_* environment.
fingerprint="$( (
  cat "$ETC"/* 2>/dev/null
  cat "$W/hooks.env" 2>/dev/null || true
  env | grep '^QAUVERN_SANDBOX_' | sort
) | sha256sum | cut -d' ' -f1)"

# ----- munged -----
munge_ok() { munge -n -S "$MUNGE_SOCKET" | unmunge -S "$MUNGE_SOCKET" >/dev/null; }
if [[ -n $DBD_FROM ]]; then
  sb_log "munged, MariaDB and slurmdbd: those of $DBD_FROM"
elif sb_alive munged; then
  sb_log "munged already running (pid $(sb_pid munged))"
else
  if id munge >/dev/null 2>&1; then
    chown munge:munge "$MUNGE_DIR"
    as_munge=(setpriv --reuid=munge --regid=munge --clear-groups)
  else
    as_munge=() # no munge user (unusual container): munged runs as root
  fi
  if [[ ! -s $MUNGE_DIR/munge.key ]]; then
    dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=1024 count=1 status=none
  fi
  chmod 0400 "$MUNGE_DIR/munge.key"
  touch "$LOG/munged.log"
  if [[ ${#as_munge[@]} -gt 0 ]]; then chown munge:munge "$MUNGE_DIR/munge.key" "$LOG/munged.log"; fi
  start_munged() {
    sb_log "starting munged"
    sb_spawn munged "${as_munge[@]}" munged --foreground --force --socket="$MUNGE_SOCKET" \
      --key-file="$MUNGE_DIR/munge.key" --pid-file="$MUNGE_DIR/munged.pid" \
      --log-file="$LOG/munged.log" --seed-file="$MUNGE_DIR/munged.seed"
  }
  start_munged
  # munged has been seen to exit at once, rarely, while other sandboxes start beside it: one more try.
  for _ in $(seq 1 30); do
    munge_ok >/dev/null 2>&1 && break
    if ! sb_alive munged; then
      sb_log "munged exited at start; its log:"
      sb_tail "$LOG/munged.log" "$LOG/munged.out"
      sleep 1
      start_munged
      break
    fi
    sleep 0.3
  done
fi
sb_wait_for munged 20 "munged to answer" munge_ok

# ----- MariaDB -----
db_ok() { mariadb-admin --no-defaults --socket="$DB_SOCKET" -u root ping; }
if [[ -n $DBD_FROM ]]; then
  : # the primary's
elif sb_alive mariadbd; then
  sb_log "mariadbd already running (pid $(sb_pid mariadbd))"
else
  chown mysql:mysql "$DB_DIR" "$DB_RUN"
  if [[ ! -d $DB_DIR/mysql ]]; then
    sb_log "initialising MariaDB in $DB_DIR"
    if ! mariadb-install-db --no-defaults --datadir="$DB_DIR" --user=mysql --auth-root-authentication-method=socket \
      --skip-test-db >"$LOG/mariadb-install.log" 2>&1; then
      sb_tail "$LOG/mariadb-install.log"
      sb_die "mariadb-install-db failed"
    fi
  fi
  touch "$LOG/mariadbd.log"
  chown mysql:mysql "$LOG/mariadbd.log"
  sb_log "starting mariadbd on 127.0.0.1:$MARIADB_PORT"
  # mariadbd directly, not mysqld_safe: mysqld_safe restarts a killed server, which fights down.sh.
  # --no-defaults: /etc/mysql/my.cnf names the system's socket and datadir.
  sb_spawn mariadbd mariadbd --no-defaults --user=mysql --datadir="$DB_DIR" --socket="$DB_SOCKET" \
    --port="$MARIADB_PORT" --bind-address=127.0.0.1 --pid-file="$DB_RUN/mariadbd.pid" \
    --log-error="$LOG/mariadbd.log" --skip-name-resolve --skip-log-bin \
    --innodb-buffer-pool-size=128M --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 \
    --innodb-lock-wait-timeout=900
fi
if [[ -z $DBD_FROM ]]; then
sb_wait_for mariadbd 60 "MariaDB to answer" db_ok
# root reaches MariaDB through its unix socket; slurmdbd comes over TCP as 'slurm' with the generated password.
mariadb --no-defaults --socket="$DB_SOCKET" -u root <<SQL
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL
fi

# ----- slurmdbd and the cluster record -----
dbd_ok() { sacctmgr -n -P show cluster format=cluster; }
if [[ -n $DBD_FROM ]]; then
  : # the primary's
elif sb_alive slurmdbd; then
  sb_log "slurmdbd already running (pid $(sb_pid slurmdbd))"
else
  sb_log "starting slurmdbd on localhost:$DBD_PORT"
  sb_spawn slurmdbd slurmdbd -D
fi
sb_wait_for "$([[ -n $DBD_FROM ]] && echo - || echo slurmdbd)" 60 "slurmdbd to answer" dbd_ok
# slurmctld exits at start-up ("slurmdbd and/or database must be up") unless its cluster is registered.
if ! sacctmgr -n -P show cluster format=cluster | grep -qx "$CLUSTER"; then
  sb_log "registering cluster $CLUSTER"
  out="$(sacctmgr -i add cluster "$CLUSTER" 2>&1)" || {
    # "Nothing new added" (exit 1) means it exists: a no-op.
    grep -q 'Nothing new added' <<<"$out" || sb_die "sacctmgr add cluster failed: $out"
  }
fi

# ----- slurmctld and slurmd -----
if sb_alive slurmctld && [[ $(cat "$RUN/fingerprint" 2>/dev/null || true) != "$fingerprint" ]]; then
  sb_log "configuration or hooks changed: restarting slurmctld and slurmd"
  sb_stop slurmd
  sb_stop slurmctld
fi
ctld_ok() { scontrol ping | grep -q 'is UP'; }
if sb_alive slurmctld; then
  sb_log "slurmctld already running (pid $(sb_pid slurmctld))"
else
  sb_log "starting slurmctld on localhost:$CTLD_PORT"
  # -i: ignore unreadable state files (a sandbox killed hard must still come back).
  sb_spawn slurmctld slurmctld -D -i -f "$ETC/slurm.conf"
  echo "$fingerprint" >"$RUN/fingerprint"
fi
sb_wait_for slurmctld 60 "slurmctld to answer" ctld_ok

node_idle() { # idle, or busy with jobs left from before (re-up); not down/drained/unknown
  local state
  state="$(sinfo -h -n "$NODE" -o %T)"
  [[ $state == idle || $state == mixed || $state == allocated ]]
}
if sb_alive slurmd; then
  sb_log "slurmd already running (pid $(sb_pid slurmd))"
else
  sb_log "starting slurmd (node $NODE, port $SLURMD_PORT)"
  sb_spawn slurmd slurmd -D -N "$NODE" -f "$ETC/slurm.conf"
fi
sb_wait_for slurmd "$TIMEOUT" "node $NODE to be idle in sinfo" node_idle
sacct_ok() { sacct -n -X -S now -o JobID; }
sb_wait_for - 30 "sacct to answer" sacct_ok

sb_log "up in $((SECONDS - t0))s: cluster $CLUSTER, node $NODE, partitions $(sinfo -h -o %P | paste -sd, -)"
sb_log "use it: eval \"\$($SB_SCRIPTS/env.sh $W)\""
