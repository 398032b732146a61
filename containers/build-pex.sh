#!/usr/bin/env bash
# Build a single-file qauvern-hpc (a PEX: the package and its dependencies in one executable zip) for
# machines where pip installs are unwelcome, e.g. a login node: copy the file, run it with Python 3.11+.
#   containers/build-pex.sh [OUT]      (default dist/qauvern-hpc.pex; needs `pip install pex`)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dist/qauvern-hpc.pex}
if ! python3 -m pex --version >/dev/null 2>&1; then
  echo "build-pex.sh: pex is not installed: python3 -m pip install pex" >&2
  exit 2
fi
mkdir -p "$(dirname "$out")"
python3 -m pex . -c qauvern-hpc -o "$out" --python-shebang '/usr/bin/env python3'
echo "$out"
