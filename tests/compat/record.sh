#!/usr/bin/env bash
# record.sh WORKDIR OUT: runs INSIDE a Debian release's root (tests/compat/run.sh chroots into it), on the
# sandbox cluster that qauvern_hpc/devtools/sandbox/scripts/up.sh started in WORKDIR. It makes jobs end in the states
# the collector reads, leaves jobs pending the way the rebalancer reads them, gates and ungates a license on
# the root association, and records what this Slurm prints for the command lines qauvern-hpc runs.
#
# The command lines come from qauvern-hpc's own code: run.sh computes them on the host and passes them in
#   SACCT_FIELDS  sacct_fields(version) (comma-separated)     SACCT_STATES  FINISHED_STATES
#   SQUEUE_FORMAT squeue.SQUEUE_FORMAT                        ASSOC_FORMAT  sacctmgr.ASSOC_FORMAT
#   ADMIN_COMMENT an AdminComment made by admin_comment.format_admin_comment
# and every file OUT/*.argv holds the exact argv used (one argument per line), so the tests can check that
# the recording is of the command the code runs today.
set -euo pipefail
W=$1
OUT=$2
: "${SACCT_FIELDS:?}" "${SACCT_STATES:?}" "${SQUEUE_FORMAT:?}" "${ASSOC_FORMAT:?}" "${ADMIN_COMMENT:?}"
eval "$(/opt/qauvern-sandbox/scripts/env.sh "$W")"
cluster="$(sed -n 's/^ClusterName=//p' "$SLURM_CONF")"
J="$W/jobs"
mkdir -p "$OUT"
export SLURM_TIME_FORMAT=%s

log() { printf 'record: %s\n' "$*" >&2; }

# sub USER SBATCH-OPTIONS...: submit as USER, print the job id.
sub() {
  local u=$1
  shift
  setpriv --reuid="$u" --regid="$u" --init-groups sbatch --parsable --chdir="$J" -o /dev/null "$@" | cut -d';' -f1
}

# keep NAME CMD...: run CMD, write its stdout to OUT/NAME, its argv to OUT/NAME.argv, stderr and exit status
# to OUT/NAME.status. Never fails (a release may not have a command or an option: that is what we record).
keep() {
  local name=$1 rc=0
  shift
  printf '%s\n' "$@" >"$OUT/$name.argv"
  "$@" >"$OUT/$name" 2>"$OUT/$name.stderr" || rc=$?
  printf '%s\n' "$rc" >"$OUT/$name.status"
  [[ -s $OUT/$name.stderr ]] || rm -f "$OUT/$name.stderr"
  return 0
}

# wait_gone ID...: until squeue no longer lists the jobs (finished), at most 180 s.
wait_gone() {
  local t=0
  while [[ -n $(squeue -h -j "$(
    IFS=,
    echo "$*"
  )" -o %i 2>/dev/null) ]]; do
    ((t++ < 360)) || {
      log "jobs $* still in the queue after 180 s"
      squeue
      return 1
    }
    sleep 0.5
  done
}

# wait_state ID STATE: until the job is in STATE, at most 60 s.
wait_state() {
  local t=0
  until [[ $(squeue -h -j "$1" -o %T 2>/dev/null) == "$2" ]]; do
    ((t++ < 120)) || {
      log "job $1 never reached $2"
      return 1
    }
    sleep 0.5
  done
}

# wait_accounted ID...: until slurmdbd has each job's final record (slurmctld sends them asynchronously: on
# 22.05 a query right after scancel misses the jobs, or shows one without its partition and QOS), at most 60 s.
wait_accounted() {
  local t=0 id line
  for id in "$@"; do
    while :; do
      line="$(sacct -n -X -P -j "$id" -o State,Partition,QOS 2>/dev/null | head -1)"
      [[ -n $line && $line != PENDING* && $line != RUNNING* && $line != *"||"* && $line != *"|Unknown" ]] && break
      ((t++ < 120)) || {
        log "job $id has no final accounting record after 60 s: $line"
        return 1
      }
      sleep 0.5
    done
  done
}

# wait_reason ID REASON: until the pending job shows REASON, at most 60 s; records what it showed last.
wait_reason() {
  local t=0 r=""
  while :; do
    r="$(squeue -h -j "$1" -o %r 2>/dev/null)"
    [[ $r == "$2" ]] && break
    ((t++ < 120)) || break
    sleep 0.5
  done
  printf '%s\n' "$r"
}

{
  sacct --version
  sbatch --version
} >"$OUT/version.txt"
keep sacct-helpformat.txt sacct --helpformat
keep squeue-helpformat.txt squeue --helpformat

start=$(($(date +%s) - 5))

# ----- jobs that finish: completed (with our AdminComment), failed, cancelled, an array, a requeued one -----
log "submitting jobs that finish"
ok=$(sub qalice -A physics -L qpu_physics:1,qpu:1 -t 5 -H --wrap 'sleep 1')
scontrol update JobId="$ok" AdminComment="$ADMIN_COMMENT"
scontrol release "$ok"
failed=$(sub qcarol -A chem -L qpu_chem:1 -t 5 -H --wrap 'exit 3')
# Free text before our record, with our own separator: AdminComment must stay the last field.
scontrol update JobId="$failed" AdminComment="checked by ops | $ADMIN_COMMENT"
scontrol release "$failed"
cancelled=$(sub qalice -A physics -H -t 5 --wrap true)
scancel "$cancelled"
array=$(sub qalice -A physics --array=0-1 -L qpu_physics:1 -t 5 --wrap 'sleep 1')
requeued=$(sub qcarol -A chem --requeue -L qpu_chem:1 -t 5 --wrap 'sleep 6')
wait_state "$requeued" RUNNING
scontrol requeue "$requeued"
wait_gone "$ok" "$failed" "$array" "$requeued"
printf 'ok=%s failed=%s cancelled=%s array=%s requeued=%s\n' "$ok" "$failed" "$cancelled" "$array" \
  "$requeued" >"$OUT/jobs.txt"

# ----- the license gate on the root association (what `rebalance` writes), and its idempotence -----
log "gating qpu_chem on the root association"
gate=(sacctmgr -i modify account where name=root "cluster=$cluster" set GrpTRES=license/qpu_chem=0)
keep sacctmgr-gate.txt "${gate[@]}"
keep sacctmgr-gate-again.txt "${gate[@]}"
fair=(sacctmgr -i modify account where name=physics "cluster=$cluster" set Fairshare=500)
keep sacctmgr-fairshare.txt "${fair[@]}"
keep sacctmgr-fairshare-again.txt "${fair[@]}"

# ----- jobs that stay pending, each the way the rebalancer reads it -----
log "submitting pending jobs"
gated=$(sub qcarol -A chem -L qpu_chem:1 -t 5 --wrap true)
held_array=$(sub qalice -A physics -H --array=0-2 -L qpu_physics:1,qpu:1 -t 1:30:00 --wrap true)
later=$(sub qalice -A physics --begin=now+1hour -L qpu_physics:1 -t 2-00:00:00 --wrap true)
unlimited=$(sub qcarol -A chem --begin=now+1hour -L qpu_chem:1 --wrap true)
no_license=$(sub qalice -A physics -H -t 5 --wrap true)
printf 'gated=%s held_array=%s later=%s unlimited=%s no_license=%s\n' "$gated" "$held_array" "$later" \
  "$unlimited" "$no_license" >>"$OUT/jobs.txt"
wait_reason "$gated" AssocGrpLicense >"$OUT/gated-reason.txt"

keep squeue.txt squeue -h -r -t PENDING -o "$SQUEUE_FORMAT"
keep squeue-clusters.txt squeue -h -r -t PENDING -o "$SQUEUE_FORMAT" -M "$cluster"
keep squeue.json squeue --json
keep scontrol-licenses.txt scontrol show licenses -o
keep sacctmgr-assoc.txt sacctmgr -n -P show assoc "format=$ASSOC_FORMAT"
keep sacctmgr-assoc-cluster.txt sacctmgr -n -P show assoc where "cluster=$cluster" "format=$ASSOC_FORMAT"
keep sacctmgr-tres.txt sacctmgr -n -P show tres format=type,name,id

# ----- ungate: the held job must start -----
log "ungating qpu_chem"
keep sacctmgr-ungate.txt sacctmgr -i modify account where name=root "cluster=$cluster" set GrpTRES=license/qpu_chem=-1
keep sacctmgr-assoc-ungated.txt sacctmgr -n -P show assoc "format=$ASSOC_FORMAT"
if wait_gone "$gated"; then echo finished >"$OUT/gated-after-ungate.txt"; else echo pending >"$OUT/gated-after-ungate.txt"; fi
scancel "$held_array" "$later" "$unlimited" "$no_license" || true
wait_accounted "$ok" "$failed" "$cancelled" "$array" "$requeued" "$gated" "$held_array" "$later" "$unlimited" \
  "$no_license"

# ----- sacct: the collector's command line (build_sacct_argv), with and without Restarts -----
end=$(($(date +%s) + 5))
base=(sacct --parsable2 --noheader --noconvert --allocations --duplicates --allusers "--starttime=uts$start"
  "--endtime=uts$end" "--clusters=$cluster" "--state=$SACCT_STATES")
keep sacct.txt "${base[@]}" "--format=$SACCT_FIELDS"
# The same without Restarts (DEFAULT_FIELDS), for releases whose sacct_fields() adds it.
keep sacct-default.txt "${base[@]}" "--format=${SACCT_FIELDS/,Restarts/}"
# 22.05's --json fails on its own times under SLURM_TIME_FORMAT=%s ("Invalid time specification", "Query
# empty or not RFC7320 compliant"): without it, and the jobs selected by id.
keep sacct.json env -u SLURM_TIME_FORMAT sacct --json --allocations --duplicates --allusers \
  "--jobs=$ok,$failed,$cancelled,$array,$requeued,$gated,$held_array,$later,$unlimited,$no_license"
log "recorded into $OUT"
