"""Start a lab (Ironic, Glance, HTTP server, BMC simulators) for integration tests.

    lab = start_lab(tmp_root, nodes=3, port_offset=20000)
    try: ... finally: lab.down()

or `with running_lab(tmp_root, nodes=3) as lab: ...`. Every port is the default plus
`port_offset`, and the bridge and subnet are their own, so a test lab never meets a lab
the user runs on the default ports or the test session's lab; the
clouds.yaml entry goes to tmp_root/clouds.yaml, never the user's. The virtualenv is the
shared one (K1PROV_LAB_VENV, default ~/.cache/k1prov/lab-venv): installed once (about
a minute), reused by every session.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Iterator

from k1prov.lab import Lab, LabSettings

DEFAULT_PORT_OFFSET = 20000
FIXTURE_BRIDGE, FIXTURE_CIDR = "k1plabfix0", "10.252.200.1/24"


def session_port_offset() -> int:
    """The test session lab's port offset (K1PROV_TEST_LAB_PORT_OFFSET; CI's is 10000)."""
    return int(os.environ.get("K1PROV_TEST_LAB_PORT_OFFSET", "10000"))


def session_network() -> dict[str, str]:
    """The test session lab's bridge and subnet (K1PROV_TEST_LAB_BRIDGE, _CIDR)."""
    return {"bridge": os.environ.get("K1PROV_TEST_LAB_BRIDGE", "k1plab0"),
            "cidr": os.environ.get("K1PROV_TEST_LAB_CIDR", "10.251.0.1/24")}


def beside_session_lab(tmp_root: Path, *, shift: int, nodes: int = 1, **more) -> LabSettings:
    """A test file's own lab beside the session's (which is up through a whole run): on the
    session's bridge and subnet, its ports the session's offset plus `shift` (one per file)."""
    return lab_settings(tmp_root, nodes=nodes, port_offset=session_port_offset() + shift,
                        **{**session_network(), **more})


def lab_settings(tmp_root: Path, *, nodes: int = 3, port_offset: int = DEFAULT_PORT_OFFSET,
                 **more) -> LabSettings:
    """`more`: other LabSettings fields (auth, token_expiration, bridge, cidr). Every port,
    MariaDB's too (used with conductors), is its default plus `port_offset`."""
    base = LabSettings.default()
    # A bridge and subnet of its own: a lab takes its bridge down with it.
    # Without auth unless the test names a mode: these labs test other things, and k1prov
    # would otherwise read the session lab's clouds.yaml entry (OS_CLIENT_CONFIG_FILE), which
    # has the same name. The session's own lab runs Keystone, as `lab up` does.
    more = {"bridge": FIXTURE_BRIDGE, "cidr": FIXTURE_CIDR, "auth": "none", **more}
    return LabSettings(root=Path(tmp_root), venv=base.venv,
                       ironic_port=base.ironic_port + port_offset,
                       glance_port=base.glance_port + port_offset,
                       http_port=base.http_port + port_offset,
                       bmc_base_port=base.bmc_base_port + port_offset,
                       keystone_port=base.keystone_port + port_offset,
                       mariadb_port=base.mariadb_port + port_offset,
                       nodes=nodes, clouds_yaml=Path(tmp_root) / "clouds.yaml", **more)


def start_lab(tmp_root: Path, *, nodes: int = 3, port_offset: int = DEFAULT_PORT_OFFSET,
              **more) -> Lab:
    """Bring a lab up in tmp_root and return it; the caller calls `down()`."""
    lab = Lab(lab_settings(tmp_root, nodes=nodes, port_offset=port_offset, **more))
    bring_up(lab)
    return lab


def bring_up(lab: Lab) -> None:
    """`lab.up()` with its progress on stderr; a lab that is not healthy is taken down."""
    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"[lab {time.monotonic() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    try:
        status = lab.up(progress=progress)
    except BaseException:
        lab.down()
        raise
    if not status.ok:
        lab.down()
        raise AssertionError(f"lab is up but not healthy: {status.to_dict()}")


@contextlib.contextmanager
def running_lab(tmp_root: Path, *, nodes: int = 3,
                port_offset: int = DEFAULT_PORT_OFFSET) -> Iterator[Lab]:
    lab = start_lab(tmp_root, nodes=nodes, port_offset=port_offset)
    try:
        yield lab
    finally:
        lab.down()
