#!/usr/bin/env bash
# Refreshes constraints.txt, on purpose: installs k1prov and its test extras, unpinned, into a
# throwaway virtualenv of Debian's python3 (the interpreter scripts/install.sh uses) and
# writes every resolved version. Commit the result together with the figures measured on it:
# benchmarks/check_fanout.sh before and after, and benchmarks/README.md says which versions
# its figures are for.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${K1PROV_PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --upgrade pip
"$tmp/venv/bin/pip" install -q '.[test]'
{
    echo "# Every package of k1prov's virtualenv (.venv), as scripts/install.sh installs them:"
    echo "# pip install -c constraints.txt. Made by scripts/refresh-constraints.sh with"
    echo "# $("$python" --version) ($python) on $(date -u +%Y-%m-%d); refresh on purpose, never by hand."
    "$tmp/venv/bin/pip" freeze --exclude k1prov | LC_ALL=C sort -f
} > constraints.txt
echo "refresh-constraints.sh: $(grep -vc '^#' constraints.txt) packages written to constraints.txt" >&2
