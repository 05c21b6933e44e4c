"""Write the flag lists of a Mesos build as k1prov data: k1prov/roles/mesos-flags/<major.minor>.json.

    python3 scripts/mesos_flags.py ../shared/mesos/mesos-1.12.0-c1b42f7-debian12-amd64.tar.xz

Unpacks the build's sbin/ and lib/ into a temporary directory and reads the flags from
`mesos-master --help` and `mesos-agent --help` (the binaries' own list, aliases included:
`--agent_ping_timeout=VALUE, --slave_ping_timeout=VALUE`). The build's run-time libraries
must be installed (../shared/mesos/README.md lists them). Standard library only.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent.parent / "k1prov" / "roles" / "mesos-flags"
# One binary's --help or --version: instant; a hang is an error.
RUN_TIMEOUT = 60
_FLAG_RE = re.compile(r"--(?:\[no-\])?([a-z0-9_]+)")


def flags_of(binary: Path) -> list[str]:
    text = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=RUN_TIMEOUT).stdout
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("  --"):
            # The flag column ends where the help text starts (two spaces or more).
            names.update(_FLAG_RE.findall(re.split(r"\s{2,}", line.strip())[0]))
    if not names:
        raise SystemExit(f"{binary} --help listed no flags")
    return sorted(names)


def main(tarball: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(tarball) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(("mesos/sbin/", "mesos/lib/"))]
            tar.extractall(tmp, members=members, filter="tar")
        sbin = Path(tmp) / "mesos" / "sbin"
        version = subprocess.run([str(sbin / "mesos-master"), "--version"], capture_output=True, text=True,
                                 timeout=RUN_TIMEOUT).stdout.split()[-1]
        data = {"version": version, "source": Path(tarball).name,
                "master": flags_of(sbin / "mesos-master"), "agent": flags_of(sbin / "mesos-agent")}
    major_minor = ".".join(version.split(".")[:2])
    out = OUT_DIR / f"{major_minor}.json"
    out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"{out}: {len(data['master'])} master flags, {len(data['agent'])} agent flags (Mesos {version})")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
