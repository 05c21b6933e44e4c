#!/usr/bin/env bash
# The VM lab's deploy ramdisk: a real ironic-python-agent (IPA) kernel + initramfs, built with
# ironic-python-agent-builder (diskimage-builder), Debian bookworm, IPA from its PyPI sdist.
# Recipe from /work/shared/vm-proto (NOTES.md, "Pitfalls"); about 4 minutes on 2 cores.
#
#   scripts/vm-lab/build-ipa-ramdisk.sh          # prints the directory with ipa.kernel, ipa.initramfs
#
# Cached: a second run with the same versions and elements prints the cached directory at once
# (K1PROV_IPA_CACHE, default ~/.cache/k1prov/ipa-ramdisk/<IPA version>-bookworm[-slim]/).
# Default is the slim ramdisk (element k1-vm-slim: no gcc, no sound/GPU/wireless modules) that
# runs in a 1.5 GiB VM with `rootfstype=ramfs`; K1PROV_IPA_SLIM=0 builds the full one (3 GiB VM).
# Needs root (DIB chroots), the Debian packages of scripts/apt-packages.txt, and PyPI and
# deb.debian.org. Nothing here is run by the test suite.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

IPA_VERSION=${IPA_VERSION:-13.0.0}
# Versions seen working together (vm-proto NOTES.md, "Versions").
BUILDER_PINS=(ironic-python-agent-builder==7.4.0 diskimage-builder==3.43.0)
slim=${K1PROV_IPA_SLIM:-1}
name="$IPA_VERSION-bookworm$([[ $slim == 1 ]] && echo -slim)"
cache=${K1PROV_IPA_CACHE:-$HOME/.cache/k1prov/ipa-ramdisk}
out=$cache/$name
if [[ -s $out/ipa.kernel && -s $out/ipa.initramfs ]]; then
    echo "$out"
    exit 0
fi
[[ $(id -u) == 0 ]] || { echo "build-ipa-ramdisk.sh: needs root (diskimage-builder chroots)" >&2; exit 1; }
work=$cache/work
mkdir -p "$work/src" "$work/tmp" "$work/home" "$out.partial"

# 1. The builder's venv, from Debian's python3 (pyenv's on PATH has no matching headers).
venv=$work/builder-venv
if [[ ! -x $venv/bin/ironic-python-agent-builder ]]; then
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install -q "${BUILDER_PINS[@]}"
fi

# 2. DIB git-clones IPA and openstack/requirements from opendev, which is out of reach: local
# git repos instead. IPA from its sdist, tagged so that pbr sees the version.
ipa_src=$work/src/ironic-python-agent-$IPA_VERSION
if [[ ! -d $ipa_src/.git ]]; then
    rm -rf "$ipa_src" "$work/src/sdist"
    "$venv/bin/pip" download -q --no-deps --no-binary :all: "ironic-python-agent==$IPA_VERSION" -d "$work/src/sdist"
    tar -xzf "$work/src/sdist/ironic_python_agent-$IPA_VERSION.tar.gz" -C "$work/src"
    mv "$work/src/ironic_python_agent-$IPA_VERSION" "$ipa_src"
    chown -R root:root "$ipa_src"       # tar keeps the packager's uid: git's "dubious ownership"
    git -C "$ipa_src" init -q -b master
    git -C "$ipa_src" add -A
    git -C "$ipa_src" -c user.email=k1prov@localhost -c user.name=k1prov commit -qm "IPA $IPA_VERSION sdist"
    git -C "$ipa_src" tag -a "$IPA_VERSION" -m "$IPA_VERSION"
fi
# An empty upper-constraints.txt: pip resolves IPA's requirements freely (not pinned yet).
reqs=$work/src/requirements
if [[ ! -d $reqs/.git ]]; then
    mkdir -p "$reqs"
    : > "$reqs/upper-constraints.txt"
    git -C "$reqs" init -q -b master
    git -C "$reqs" add -A
    git -C "$reqs" -c user.email=k1prov@localhost -c user.name=k1prov commit -qm "empty upper-constraints"
fi

# 3. Build.
export HOME=$work/home                  # DIB caches under ~/.cache/image-create
export TMP_DIR=$work/tmp DIB_NO_TMPFS=1
export DIB_REPOLOCATION_ironic_python_agent=$ipa_src DIB_REPOREF_ironic_python_agent=master
export DIB_REPOLOCATION_requirements=$reqs DIB_REPOREF_requirements=master
# simple-init would git-clone glean; it pip-installs glean from PyPI anyway.
export DIB_INSTALLTYPE_glean=package
# security.debian.org answered 400 here; deb.debian.org serves both.
export DIB_DISTRIBUTION_MIRROR=${DIB_DISTRIBUTION_MIRROR:-http://deb.debian.org/debian}
export DIB_DEBIAN_SECURITY_MIRROR=${DIB_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# A TLS-intercepting proxy to PyPI: element k1-host-ca puts the host's local CAs into the
# chroot (and takes them out again); every pip uses the system bundle.
export PIP_CERT=/etc/ssl/certs/ca-certificates.crt
unset PIP_FIND_LINKS
export ELEMENTS_PATH=$here/dib-elements
export PATH=$venv/bin:$PATH
extra=(-e k1-host-ca)
[[ $slim == 1 ]] && extra+=(-e k1-vm-slim)
start=$(date +%s)
nice -n 19 ironic-python-agent-builder -o "$out.partial/ipa" --release bookworm "${extra[@]}" debian-minimal \
    > "$out.partial/build.log" 2>&1 || {
    echo "build-ipa-ramdisk.sh: ironic-python-agent-builder failed; log $out.partial/build.log" >&2
    tail -20 "$out.partial/build.log" >&2
    exit 1
}
echo "built in $(( $(date +%s) - start )) s" >> "$out.partial/build.log"
rm -rf "$out"
mv "$out.partial" "$out"
echo "$out"
