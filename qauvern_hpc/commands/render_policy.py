"""`qauvern-hpc render-policy`: compile the config into policy.json and qpu_policy.lua for the hooks."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from qauvern_hpc.core.errors import ExitCode, QauvernError

HELP = "write the submit-time policy table for job_submit.lua"
DESCRIPTION = """\
Validate the site config and compile it into the two files the Slurm hooks read, so that they never parse
YAML or load pydantic on the job path:

  policy.json      for the prolog/epilog (qauvern_hpc.policy.compiled.load_policy): resources, instances (CRN
  and
                   API key file path), ordered rules, default, endpoints, state_dir
  qpu_policy.lua   for job_submit.lua: the same rules as a Lua table

Neither file holds a secret (only key file paths), so both are written mode 0644, each atomically
(temporary file + rename): a job never sees a half-written policy. Run it after every config change; both
hooks read the files again for each job, so no Slurm restart is needed.

The default directory is the one holding slurm.conf ($SLURM_CONF, else /etc/slurm): Slurm wants
job_submit.lua there, job_submit.lua looks for qpu_policy.lua beside itself, and the hooks look for
policy.json there (or at $QAUVERN_HPC_POLICY).

With `admission.enabled`, job_submit.lua adds one pair license `qpu_<instance>__<backend>` per requested QPU
resource; Slurm refuses a job asking for a license it does not know, so the pairs must be in slurm.conf
(`Licenses=` and `AccountingStorageTRES=`, a slurmctld restart) before the policy is installed. The command
prints those two lines (`--print slurm` prints only them): merge their items into your own lines."""
EPILOG = """\
examples:
  qauvern-hpc render-policy                            write /etc/slurm/policy.json and qpu_policy.lua
  qauvern-hpc render-policy --output-dir /srv/slurm    somewhere else (set $QAUVERN_HPC_POLICY for the hooks)
  qauvern-hpc render-policy --print lua                show the Lua table, write nothing
  qauvern-hpc render-policy --print slurm              the slurm.conf license lines of the pair licenses

exit codes: 0 written, 1 could not write, 3 invalid config."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output-dir", "-o", metavar="DIR", help="where to write both files (default: beside slurm.conf)"
    )
    parser.add_argument(
        "--print",
        choices=("json", "lua", "slurm"),
        dest="print_format",
        help="print one rendered file (or the slurm.conf license lines) to stdout instead",
    )
    parser.add_argument(
        "--cluster",
        metavar="NAME",
        help="the Slurm cluster whose job_submit.lua reads the policy, for rules matching on `clusters` "
        "(default: ClusterName= of the slurm.conf beside the output)",
    )
    parser.add_argument(
        "--no-key-check",
        action="store_true",
        help="do not check that the API key files exist and are mode 0600",
    )


def run(args: argparse.Namespace) -> int:
    from qauvern_hpc.config import compile_policy, load_config_full
    from qauvern_hpc.policy.compiled import (
        POLICY_JSON,
        POLICY_LUA,
        default_policy_dir,
        render_json,
        render_lua,
        slurm_cluster_name,
        slurm_license_lines,
        write_policy_files,
    )

    loaded = load_config_full(args.config, check_key_files=not args.no_key_check)
    for warning in loaded.warnings:
        print(f"qauvern-hpc render-policy: warning: {warning}", file=sys.stderr)
    policy = compile_policy(loaded)
    license_lines = slurm_license_lines(policy)
    if args.print_format == "slurm":
        sys.stdout.write("".join(f"{line}\n" for line in license_lines))
        return ExitCode.OK
    out_dir = Path(args.output_dir) if args.output_dir else default_policy_dir()
    cluster = args.cluster or slurm_cluster_name(out_dir / "slurm.conf")
    if cluster is None and any(r.match.get("clusters") is not None for r in policy.rules):
        print(
            "qauvern-hpc render-policy: warning: rules match on clusters but the cluster is unknown "
            f"(no ClusterName= in {out_dir / 'slurm.conf'}): job_submit.lua matches them as cluster ''; "
            "pass --cluster NAME",
            file=sys.stderr,
        )
    if args.print_format:
        sys.stdout.write(render_json(policy) if args.print_format == "json" else render_lua(policy, cluster))
        return ExitCode.OK
    if not out_dir.is_dir():
        raise QauvernError(
            f"output directory {out_dir} does not exist", hint="create it, or pass --output-dir DIR"
        )
    json_path, lua_path = out_dir / POLICY_JSON, out_dir / POLICY_LUA
    try:
        write_policy_files(policy, json_path, lua_path, cluster)
    except OSError as exc:
        raise QauvernError(f"cannot write the policy into {out_dir}: {exc.strerror or exc}") from None
    if args.json:
        print(
            json.dumps(
                {
                    "written": [str(json_path), str(lua_path)],
                    "source": policy.source,
                    "source_sha256": policy.source_sha256,
                    "generated_at": policy.generated_at,
                    "rules": len(policy.rules),
                    "cluster": cluster,
                    "resources": list(policy.resources),
                    "slurm_conf": license_lines,
                },
                indent=2,
            )
        )
    else:
        print(f"wrote {json_path}")
        print(f"wrote {lua_path}")
        print(
            f"{len(policy.rules)} rules, {len(policy.resources)} resources, {len(policy.instances)} instances"
        )
        if license_lines:
            print("slurm.conf needs the pair licenses (admission): merge these items into your lines")
            for line in license_lines:
                print(f"  {line}")
    return ExitCode.OK
