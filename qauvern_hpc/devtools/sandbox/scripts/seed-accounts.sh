#!/usr/bin/env bash
# seed-accounts.sh WORKDIR SPEC...        create accounts, users and their associations in the sandbox
# seed-accounts.sh WORKDIR --unix-only USER...   only create Unix users (e.g. one with no association)
#
# SPEC is ACCOUNT[@PARENT][:USER[,USER...]], e.g.  physics:qalice,qbob  chemistry:qcarol  theory@physics:qbob
# A user's first account becomes its default account. Users must exist as Unix users to submit jobs: missing
# ones are created (no home directory, home /nonexistent). Everything is idempotent: sacctmgr's "Nothing new
# added" (exit 1) is a no-op. Waits until slurmctld knows each new association, so a submit right after works.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

sb_require_root
[[ -d ${1:-} && $# -ge 2 ]] || sb_die "usage: $(basename "$0") WORKDIR ACCOUNT[@PARENT][:USER,...]... | WORKDIR --unix-only USER..."
sb_paths "$1"
sb_lock
shift
[[ -f $SLURM_CONF ]] || sb_die "$SLURM_CONF does not exist: run up.sh $W first"
cluster="$(sed -n 's/^ClusterName=//p' "$SLURM_CONF")"
name_re='^[a-z_][a-z0-9_.-]*$'

unix_user() {
  local u=$1
  [[ $u =~ $name_re ]] || sb_die "invalid user name: $u"
  id "$u" >/dev/null 2>&1 && return 0
  sb_log "creating Unix user $u"
  # Two sandboxes seeding at once may race on the same user: accept it when it exists afterwards.
  useradd --no-create-home --home-dir /nonexistent --shell /bin/bash --user-group "$u" 2>/dev/null ||
    id "$u" >/dev/null 2>&1 || sb_die "useradd $u failed"
}

# sacctmgr -i add ...; exit 1 with "Nothing new added" means it existed.
sacct_add() {
  local out
  if ! out="$(sacctmgr -i add "$@" 2>&1)"; then
    grep -q 'Nothing new added' <<<"$out" || sb_die "sacctmgr add $*: $out"
  fi
}

wait_assoc() { # until slurmctld's association manager has user U in account A (slurmdbd pushes it)
  local u=$1 a=$2 deadline=$((SECONDS + 20))
  while ! scontrol show assoc_mgr users="$u" accounts="$a" flags=assoc 2>/dev/null |
    grep -q "Account=$a UserName=$u("; do
    ((SECONDS < deadline)) || sb_die "slurmctld did not learn the association $u/$a within 20s"
    sleep 0.2
  done
}

if [[ $1 == --unix-only ]]; then
  shift
  for u in "$@"; do unix_user "$u"; done
  exit 0
fi

for spec in "$@"; do
  acct_part=${spec%%:*}
  users=""
  [[ $spec == *:* ]] && users=${spec#*:}
  account=${acct_part%%@*}
  parent=""
  [[ $acct_part == *@* ]] && parent=${acct_part#*@}
  [[ $account =~ $name_re ]] || sb_die "invalid account name in '$spec'"
  # Per cluster: on several clusters sharing one slurmdbd the account exists once but needs an association
  # on each cluster (sacctmgr add account with cluster= adds the missing one).
  if [[ -z $(sacctmgr -n -P show assoc where account="$account" cluster="$cluster" format=account 2>/dev/null) ]]; then
    sb_log "adding account $account${parent:+ (parent $parent)} on cluster $cluster"
    sacct_add account "$account" cluster="$cluster" description="$account" organization=sandbox \
      ${parent:+parent="$parent"}
  fi
  IFS=, read -r -a user_list <<<"$users"
  for u in "${user_list[@]}"; do
    [[ -n $u ]] || continue
    unix_user "$u"
    if [[ -z $(sacctmgr -n -P show assoc where user="$u" account="$account" cluster="$cluster" format=user 2>/dev/null) ]]; then
      sb_log "adding user $u to account $account"
      sacct_add user "$u" account="$account" cluster="$cluster"
    fi
    if sb_alive slurmctld; then wait_assoc "$u" "$account"; fi
  done
done
