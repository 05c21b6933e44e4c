#!/usr/bin/env bash
# Installs what k1prov, its tests and its lab need on a fresh Debian 12 machine (as root):
# the Debian packages listed in scripts/apt-packages.txt and k1prov's own virtualenv (.venv),
# from Debian's python3 with the versions pinned in constraints.txt.
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

# libvirtd's QEMU driver resolves its compiled-in user libvirt-qemu at start, even though the
# VM lab's qemu.conf runs QEMU as root (k1prov/lab/vm_libvirt.py). libvirt-daemon-system would
# create it, but it depends on systemd as init; this is the user its postinst makes.
if ! getent passwd libvirt-qemu >/dev/null; then
    useradd --system --no-create-home --home-dir /var/lib/libvirt --shell /usr/sbin/nologin \
        --user-group libvirt-qemu
fi

# Debian's python3, not whichever comes first in PATH (pyenv's, on some machines): the
# interpreter is part of what the benchmarks measured (benchmarks/README.md). A .venv made
# from another interpreter is made again.
python=${K1PROV_PYTHON:-/usr/bin/python3}
home=$(dirname "$(readlink -f "$python")")
if [[ -x .venv/bin/python ]] && ! grep -qx "home = $home" .venv/pyvenv.cfg; then
    echo "install.sh: .venv was made from another interpreter; making it again from $python" >&2
    rm -rf .venv
fi
if [[ ! -x .venv/bin/python ]]; then
    "$python" -m venv .venv
    .venv/bin/pip install -q --upgrade pip
fi
# constraints.txt: the versions the benchmarks were measured with (scripts/refresh-constraints.sh).
.venv/bin/pip install -q -c constraints.txt -e '.[test]'
echo "install.sh: ok (.venv/bin/k1prov)" >&2
