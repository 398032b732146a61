# shellcheck shell=bash
# Variables set here are used by the scripts that source this file.
# shellcheck disable=SC2034
# Helpers shared by the sandbox scripts (up.sh, down.sh, env.sh, status.sh, seed-accounts.sh). Sourced, not run.
#
# Layout of a sandbox work dir W (everything the sandbox writes lives here):
#   W/etc/        slurm.conf, slurmdbd.conf (0600), plugstack.conf, job_submit.lua, ports.env, db.pass
#   W/hooks.env   optional, written by the user or the Python wrapper: hook points and settings (see up.sh)
#   W/munge/      private munged: key, socket, seed (owned by the munge user)
#   W/mysql/      private MariaDB datadir (owned by mysql); W/run/mysql/ its socket
#   W/run/        pid files (one per daemon, NAME.pid) and the config fingerprint
#   W/log/        every daemon's log; kept by down.sh
#   W/state/      slurmctld StateSaveLocation;  W/spool/ slurmd spool
#   W/jobs/       a sticky, world-writable directory for test jobs' working dir and output
#
# A second cluster on the same accounting (QAUVERN_SANDBOX_DBD_FROM=PRIMARY_WORKDIR, see up.sh) runs only
# slurmctld and slurmd in its own W: munged, MariaDB and slurmdbd are the primary's. Its W/etc/ports.env
# names the primary (DBD_FROM=...), so every script knows which daemons are its own.

SB_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SB_TEMPLATES="$(cd "$SB_SCRIPTS/../templates" && pwd)"

# Daemons in start order; down.sh stops them in reverse.
SB_DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

sb_log() { printf 'sandbox: %s\n' "$*" >&2; }
sb_die() {
  printf 'sandbox: error: %s\n' "$*" >&2
  exit 1
}

# sb_paths WORKDIR: set the path variables (absolute) and export the sandbox environment.
sb_paths() {
  [[ $# -ge 1 && -n $1 ]] || sb_die "usage: $(basename "$0") WORKDIR"
  mkdir -p "$1"
  W="$(cd "$1" && pwd -P)"
  ETC="$W/etc"
  RUN="$W/run"
  LOG="$W/log"
  STATE="$W/state"
  SPOOL="$W/spool"
  JOBS="$W/jobs"
  MUNGE_DIR="$W/munge"
  MUNGE_SOCKET="$MUNGE_DIR/munge.socket"
  DB_DIR="$W/mysql"
  DB_RUN="$RUN/mysql"
  DB_SOCKET="$DB_RUN/mysqld.sock"
  # Every Slurm command and daemon finds the sandbox through SLURM_CONF. slurmdbd has no -f: it reads
  # slurmdbd.conf from the directory of $SLURM_CONF, and job_submit/lua reads job_submit.lua from there too.
  export SLURM_CONF="$ETC/slurm.conf"
  # A marker in the environment of everything the sandbox starts, so down.sh can find stragglers by it.
  export QAUVERN_SANDBOX_WORKDIR="$W"
  # Slurm clients must not pick up a system cluster's settings.
  unset SLURM_CLUSTERS SBATCH_ACCOUNT SBATCH_PARTITION SLURM_ACCOUNT SLURM_PARTITION
}

# sb_lock: serialise up/down/seed on one work dir (held until the script exits).
sb_lock() {
  exec 9>"$W/.lock"
  flock -w 300 9 || sb_die "another sandbox script holds $W/.lock"
}

sb_require_root() {
  [[ $(id -u) -eq 0 ]] || sb_die "run as root: the sandbox starts munged, MariaDB and Slurm daemons as root/their users"
}

# sb_pid NAME: print the pid recorded for a daemon (empty when none).
sb_pid() {
  # A daemon removes its own pid file on exit (the same path): tolerate it vanishing under us.
  { tr -dc '0-9' <"$RUN/$1.pid"; } 2>/dev/null || true
}

# sb_exe_name PID: the program a process runs, without Debian's "-wlm" suffix (/usr/sbin/slurmctld is an
# alternatives link to slurmctld-wlm). Empty for a zombie (exited, not yet reaped: no exe link).
sb_exe_name() {
  local exe
  exe="$(readlink "/proc/$1/exe" 2>/dev/null || true)"
  exe="$(basename "${exe% (deleted)}")"
  printf '%s\n' "${exe%-wlm}"
}

# sb_pid_is PID NAME: true when process PID is alive (not a zombie) and runs program NAME (pids get reused).
sb_pid_is() {
  [[ -n $1 && -d /proc/$1 ]] || return 1
  [[ $(sb_exe_name "$1") == "$2" ]]
}

# sb_alive NAME: true when the daemon's recorded pid is alive and really is that program.
sb_alive() {
  sb_pid_is "$(sb_pid "$1")" "$1"
}

# sb_spawn NAME CMD...: start a daemon in the foreground of its own session, stdout/stderr appended to
# W/log/NAME.out, and record its pid. Foreground (-D/-F) daemons keep the pid we record exact and let us notice
# an early death; setsid detaches them from the caller's terminal and process group.
sb_spawn() {
  local name=$1
  shift
  # 9>&-: the daemon must not inherit (and so hold forever) the work dir's lock.
  setsid "$@" </dev/null >>"$LOG/$name.out" 2>&1 9>&- &
  echo "$!" >"$RUN/$name.pid"
}

# sb_tail NAME...: the last lines of the named logs, for error messages.
sb_tail() {
  local f
  for f in "$@"; do
    [[ -s $f ]] || continue
    printf '\n----- last lines of %s -----\n' "$f" >&2
    tail -n "${SB_TAIL_LINES:-25}" "$f" >&2
  done
}

# sb_wait_for NAME TIMEOUT DESCRIPTION CHECK_CMD...: poll CHECK_CMD until it succeeds. Fails early when the
# daemon NAME died, and on timeout; both print the daemon's logs.
sb_wait_for() {
  local name=$1 timeout=$2 what=$3
  shift 3
  local deadline=$((SECONDS + timeout))
  while ! "$@" >/dev/null 2>&1; do
    if [[ $name != - ]] && ! sb_alive "$name"; then
      sb_tail "$LOG/$name.log" "$LOG/$name.out"
      sb_die "$name exited before $what (logs above; everything is in $LOG)"
    fi
    if ((SECONDS >= deadline)); then
      [[ $name != - ]] && sb_tail "$LOG/$name.log" "$LOG/$name.out"
      sb_die "timed out after ${timeout}s waiting for $what (logs above; everything is in $LOG)"
    fi
    sleep 0.3
  done
}

# sb_load_ports: read W/etc/ports.env (written once by up.sh). For a cluster on another sandbox's
# accounting (DBD_FROM set there), also take that sandbox's slurmdbd/MariaDB ports and munge socket, and
# narrow SB_DAEMONS to the two daemons this work dir runs.
sb_load_ports() {
  [[ -r $ETC/ports.env ]] || return 1
  DBD_FROM=""
  # shellcheck source=/dev/null
  source "$ETC/ports.env"
  if [[ -n $DBD_FROM ]]; then
    # Empty when the primary is gone (down.sh still stops this cluster's daemons; up.sh refuses).
    DBD_PORT="$(sed -n 's/^DBD_PORT=//p' "$DBD_FROM/etc/ports.env" 2>/dev/null || true)"
    MARIADB_PORT="$(sed -n 's/^MARIADB_PORT=//p' "$DBD_FROM/etc/ports.env" 2>/dev/null || true)"
    MUNGE_SOCKET="$DBD_FROM/munge/munge.socket"
    SB_DAEMONS=(slurmctld slurmd)
  fi
}

# sb_sandbox_pids: pids of every process that belongs to this sandbox and is still running:
#  * our daemons (by pid file),
#  * any munged/mariadbd/slurm* process whose command line or environment names W,
#  * job processes (environment has SLURM_JOB_ID and our SLURM_CONF).
# Never the caller itself or its ancestors.
sb_sandbox_pids() {
  local skip=" $$ ${BASHPID:-} " p pid exe env cmd
  p=$$
  while [[ $p -gt 1 ]]; do
    p="$(awk '/^PPid:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 1)"
    skip+="$p "
  done
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    [[ $skip == *" $pid "* ]] && continue
    exe="$(sb_exe_name "$pid")"
    [[ -n $exe ]] || continue
    cmd="$(tr '\0' ' ' <"$d/cmdline" 2>/dev/null || true)"
    env="$(tr '\0' '\n' <"$d/environ" 2>/dev/null || true)"
    case $exe in
    munged | mariadbd | mysqld | mysqld_safe | slurmdbd | slurmctld | slurmd | slurmstepd)
      if [[ $cmd == *"$W/"* ]] || grep -qxF "QAUVERN_SANDBOX_WORKDIR=$W" <<<"$env" ||
        grep -qxF "SLURM_CONF=$ETC/slurm.conf" <<<"$env"; then
        echo "$pid"
      fi
      ;;
    *)
      if grep -qxF "SLURM_CONF=$ETC/slurm.conf" <<<"$env" && grep -q '^SLURM_JOB_ID=' <<<"$env"; then
        echo "$pid"
      fi
      ;;
    esac
  done
}

# sb_render TEMPLATE: print the template with every @NAME@ replaced by the value of the shell variable NAME
# (only names listed in SB_VARS).
sb_render() {
  local text name
  text="$(<"$1")"
  # bash 5.2: a quoted replacement is literal ('&' would otherwise insert the match).
  for name in "${SB_VARS[@]}"; do
    text="${text//@"$name"@/"${!name}"}"
  done
  if [[ $text =~ @[A-Z_]+@ ]]; then
    sb_die "template $1: no value for ${BASH_REMATCH[0]}"
  fi
  printf '%s\n' "$text"
}

# sb_stop NAME [TIMEOUT]: stop a daemon by its pid file: SIGTERM, then SIGKILL after TIMEOUT seconds.
sb_stop() {
  local name=$1 timeout=${2:-15} pid deadline
  pid="$(sb_pid "$name")"
  # Wait on the pid, not the pid file: Slurm's daemons delete their pid file (the same path) early in shutdown.
  if sb_pid_is "$pid" "$name"; then
    sb_log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + timeout))
    while sb_pid_is "$pid" "$name" && ((SECONDS < deadline)); do sleep 0.2; done
    if sb_pid_is "$pid" "$name"; then
      sb_log "$name did not stop within ${timeout}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
    fi
  fi
  rm -f "$RUN/$name.pid"
}
