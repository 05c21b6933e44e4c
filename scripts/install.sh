#!/usr/bin/env bash
# Installs what k1prov, its tests and its lab need on a fresh Debian 12 machine (as root):
# the Debian packages listed in scripts/apt-packages.txt and k1prov's own virtualenv (.venv).
# The lab's own virtualenv (Ironic, Glance, pyghmi) is created by `k1prov lab up` itself.
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t packages < <(grep -Ev '^\s*(#|$)' scripts/apt-packages.txt | sort -u)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "install.sh: apt-get install ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
fi
.venv/bin/pip install -q -e '.[test]'
echo "install.sh: ok (.venv/bin/k1prov)" >&2
