"""Put our record into a job's AdminComment without losing what an admin or a job_submit plugin wrote there.

Run detached by the prolog (`python3 -I -S admin_comment_set.py JOBID RECORD`), so the job never waits for
it: it reads the job's current AdminComment with `scontrol --json show job` (the text form on 22.05,
whose scontrol has no --json: see `current_comment`), merges our record in (`merge_admin_comment`: other
text kept, an older record of ours, e.g. from a requeued run, replaced) and writes the result back with
`scontrol update`. When the current value cannot be read, our record alone is written (as before merging
existed): the collector needs it more than the foreign text.

Standard library only, and only `qauvern_hpc.record.admin_comment` from the package (which is standard library
only too), so it starts in a few milliseconds. Environment: QAUVERN_HPC_SCONTROL (default `scontrol`),
PATH and SLURM_CONF as the hook had them. Exit status: 0 written, 1 not written (reason on stderr).
"""

import os
import subprocess
import sys

if __name__ == "__main__":  # run as a script with -I -S: make the package importable without site-packages
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from qauvern_hpc.record.admin_comment import (
    admin_comment_from_show_job,
    admin_comment_from_show_job_json,
    merge_admin_comment,
    show_job_is_ambiguous,
)

TIMEOUT = 30.0


def _scontrol(scontrol: str, *args: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of one scontrol call; (-1, "", reason) when it could not run."""
    try:
        done = subprocess.run(
            [scontrol, *args], capture_output=True, text=True, errors="replace", timeout=TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, "", str(exc)
    return done.returncode, done.stdout, done.stderr.strip()


def current_comment(scontrol: str, job_id: str) -> tuple[bool, str | None]:
    """(readable, the job's AdminComment). `scontrol --json show job` first (24.11, 26.05: user-controlled
    fields cannot forge it); then the text form (22.05), unless a job name, comment or path with a newline
    printed a second `   AdminComment=` line there (then unreadable: the user's text is never written as
    the admin's)."""
    rc, shown, _ = _scontrol(scontrol, "--json", "show", "job", job_id)
    if rc == 0:
        try:
            return True, admin_comment_from_show_job_json(shown, job_id)
        except ValueError:
            pass
    rc, shown, err = _scontrol(scontrol, "show", "job", job_id)
    if rc != 0:
        print(f"job {job_id}: cannot read AdminComment: {err}", file=sys.stderr)
        return False, None
    if show_job_is_ambiguous(shown):
        print(f"job {job_id}: cannot read AdminComment: several AdminComment= lines", file=sys.stderr)
        return False, None
    return True, admin_comment_from_show_job(shown)


def merged_comment(scontrol: str, job_id: str, ours: str) -> str:
    """What to write: our record merged into the current AdminComment, or ours alone when unreadable."""
    readable, current = current_comment(scontrol, job_id)
    return merge_admin_comment(current, ours) if readable else ours


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[0].isdigit():
        print("usage: admin_comment_set.py JOBID RECORD", file=sys.stderr)
        return 1
    job_id, ours = argv
    scontrol = os.environ.get("QAUVERN_HPC_SCONTROL") or "scontrol"
    try:
        text = merged_comment(scontrol, job_id, ours)
    except ValueError as exc:  # not a record of ours
        print(f"job {job_id}: {exc}", file=sys.stderr)
        return 1
    rc, _, err = _scontrol(scontrol, "update", f"JobId={job_id}", f"AdminComment={text}")
    if rc != 0:
        print(f"job {job_id}: cannot set AdminComment: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
