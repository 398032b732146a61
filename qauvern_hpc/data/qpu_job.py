#!/usr/bin/env python3
"""A QPU job for the demo and the sandbox tests: standard library only, so any python3 can run it.

It uses what qauvern-hpc prepared for the job (QRMI's variables): for each resource in
QRMI_JOB_QPU_RESOURCES it takes the session the prolog opened (<name>_QRMI_IBM_QCS_SESSION_ID), submits
work into it through the IBM Quantum API and waits for it. A resource in job mode
(<name>_QRMI_IBM_QCS_SESSION_MODE=job, no session) gets its work submitted to the backend of the same
name, outside any session, as qrmi does. The emulator-specific job parameter
`emulator.quantum_seconds` says how much QPU time the work takes.

    qpu_job.py [QUANTUM_SECONDS]      (default 5)

Prints one line per resource: `<name> session=<id> job=<id> status=<status> quantum_seconds=<s>`
(`session=-` in job mode).
Exit 0 when every job completed, 3 when the job environment is missing or incomplete.
"""

import json
import os
import sys
import time
import urllib.parse
import urllib.request


def _request(method, url, token=None, crn=None, body=None, form=None):
    headers = {"Accept": "application/json"}
    data = None
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = "Bearer " + token
    if crn:
        headers["Service-CRN"] = crn
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    with urllib.request.urlopen(req, timeout=30) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else {}


def main(argv):
    seconds = float(argv[1]) if len(argv) > 1 else 5.0
    names = [n for n in os.environ.get("QRMI_JOB_QPU_RESOURCES", "").split(",") if n]
    if not names:
        print("qpu_job: QRMI_JOB_QPU_RESOURCES is not set (submitted without --qpu?)", file=sys.stderr)
        return 3
    ok = True
    for name in names:
        p = name + "_QRMI_IBM_QCS_"
        try:
            endpoint = os.environ[p + "ENDPOINT"]
            iam = os.environ[p + "IAM_ENDPOINT"]
            crn = os.environ[p + "SERVICE_CRN"]
            job_mode = os.environ.get(p + "SESSION_MODE") == "job"
            session = None if job_mode else os.environ[p + "SESSION_ID"]
            key = os.environ[p + "IAM_APIKEY"]
        except KeyError as exc:
            print(f"qpu_job: {name}: missing {exc.args[0]} in the job environment", file=sys.stderr)
            return 3
        token = _request(
            "POST",
            iam.rstrip("/") + "/identity/token",
            form={"grant_type": "urn:ibm:params:oauth:grant-type:apikey", "apikey": key},
        )["access_token"]
        if session is None:
            backend = name
        else:
            backend = _request("GET", f"{endpoint}/sessions/{session}", token, crn)["backend_name"]
        body = {
            "program_id": "sampler",
            "backend": backend,
            "params": {"emulator": {"quantum_seconds": seconds}},
        }
        if session is not None:
            body["session_id"] = session
        job = _request("POST", f"{endpoint}/jobs", token, crn, body=body)
        deadline = time.monotonic() + 120
        while True:
            info = _request("GET", f"{endpoint}/jobs/{job['id']}", token, crn)
            if info["status"] in ("Completed", "Failed", "Cancelled") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        used = (info.get("usage") or {}).get("quantum_seconds")
        print(
            f"{name} session={session or '-'} job={job['id']} status={info['status']} quantum_seconds={used}"
        )
        ok = ok and info["status"] == "Completed"
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
