"""IPMI BMC simulator for the lab: N BMCs in one process, one event loop.

Run by the lab virtualenv's python (it imports only pyghmi and the standard library,
never k1prov, so that the lab venv does not need k1prov installed):

    bmcsim.py --state-dir D --base-port P --count N --username U --password-file F \
        [--flaky PORT:DROP:DELAY ...] [--dead PORT ...] [--lan-address PORT=ADDR ...]

BMC i listens on 127.0.0.1:(P+i) (UDP, IPMI 2.0 lanplus) and, given `--lan-address`, on
ADDR:(P+i) too: its address on the management LAN, not loopback. That is the address an
agent reports as its machine's BMC (ipa_hwm.py) and Ironic matches an inspection report
of a node without ports by (Ironic ignores every 127.0.0.0/8 BMC address for that). Both
sockets are one BMC: one power state, one boot device. Each BMC keeps its power state
and boot device in D/<port>.json, written atomically, so other parts of the lab (the
host that "boots" when its machine is powered on) can read it:

    {"power": "on" | "off", "boot_device": "network", "boots": 3, "changed": 1700000000.0}

`boots` counts power-ons, resets and cycles: a change of it is a (re)boot of the machine,
while a boot device change alone is not (k1prov/lab/machine.py).

Authentication (RAKP, wrong user or password refused) is pyghmi's own server code.

A lab fault, `--flaky PORT:DROP:DELAY`: the BMC on PORT drops each answer with
probability DROP (0.3: 30 %) and sends the others DELAY seconds late, like a BMC on a
congested or failing management network. What it did is counted in D/<port>.flaky.json
({"answers": N, "dropped": N, "late": N}): each dropped answer is one the client had to
ask again for.

Another, `--dead PORT`: the BMC on PORT is gone (its card lost power, its cable is out):
nothing listens there, so every request to it goes unanswered, while its machine keeps
the power state it had (D/<port>.json is left as it is). A restart without the option
brings the BMC back with that state.
"""
from __future__ import annotations

import argparse
import heapq
import ipaddress
import itertools
import json
import os
import random
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyghmi.ipmi.bmc as bmc
import pyghmi.ipmi.private.session as ipmisession

# Longest one event-loop iteration blocks; SIGTERM interrupts the select() anyway,
# this only bounds how long a pending stop waits when no packet arrives.
LOOP_TICK = 1.0


def write_state(path: Path, state: dict) -> None:
    """Write the JSON state atomically: readers never see a half-written file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(state, f)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_state(path: Path) -> dict:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"power": "off", "boot_device": "default", "boots": 0, "changed": time.time()}
    if state.get("power") not in ("on", "off"):
        state["power"] = "off"
    state.setdefault("boot_device", "default")
    state.setdefault("boots", 0)
    state.setdefault("changed", time.time())
    return state


class LabBmc(bmc.Bmc):
    """One simulated BMC whose machine state lives in a JSON file."""

    def __init__(self, authdata: dict[str, str], port: int, state_file: Path, *,
                 address: str = "127.0.0.1", state: dict | None = None):
        super().__init__(authdata, port=port, address=address)
        self.state_file = state_file
        if state is not None:
            # The same BMC on its other address: the very same state (updated in place).
            self.state = state
            return
        # A restart of the simulator keeps the machines' power state, like a BMC reboot does.
        self.state = read_state(state_file)
        write_state(state_file, self.state)

    def _update(self, **changes) -> None:
        self.state.update(changes, changed=time.time())
        write_state(self.state_file, self.state)

    def get_power_state(self):
        return self.state["power"]

    def power_on(self):
        if self.state["power"] != "on":
            self._update(power="on", boots=self.state["boots"] + 1)

    def power_off(self):
        self._update(power="off")

    def power_shutdown(self):
        # A real OS would shut down cleanly first; the lab host stops when it sees "off".
        self._update(power="off")

    def power_reset(self):
        # Reset of a machine that is off does nothing, as on real hardware.
        if self.state["power"] == "on":
            self._update(power="on", boots=self.state["boots"] + 1)

    def power_cycle(self):
        # Off then on: the "changed" time moves, so a host watcher sees the reboot.
        self._update(power="on", boots=self.state["boots"] + 1)

    def get_boot_device(self):
        return self.state["boot_device"]

    def set_boot_device(self, bootdevice):
        self._update(boot_device=bootdevice)

    def is_active(self):
        return self.state["power"] == "on"

    def cold_reset(self):
        # Resetting the BMC itself is not simulated; report success.
        return 0


@dataclass
class Flaky:
    """One flaky BMC: what it drops and delays, and the count of what it did."""
    drop: float
    delay: float
    counts_file: Path
    rng: random.Random
    counts: dict = field(default_factory=lambda: {"answers": 0, "dropped": 0, "late": 0})


class FlakyNetwork:
    """The answers of the flaky BMCs, dropped or held back, sent from the one event loop
    (pyghmi's sockets are not to be touched from other threads)."""

    def __init__(self, flaky: dict[int, Flaky]):
        self.flaky = flaky
        self._late: list = []          # heap of (due, seq, send arguments)
        self._seq = itertools.count()
        self._send = ipmisession._io_sendto

    def install(self) -> None:
        # Every answer of every BMC (and of their sessions) goes out through this function.
        ipmisession._io_sendto = self._sendto

    def _sendto(self, mysocket, packet, sockaddr):
        sock = getattr(mysocket, "fd", mysocket)
        try:
            port = sock.getsockname()[1]
        except OSError:
            port = None
        fault = self.flaky.get(port)
        if fault is None:
            return self._send(mysocket, packet, sockaddr)
        fault.counts["answers"] += 1
        if fault.rng.random() < fault.drop:
            fault.counts["dropped"] += 1
        else:
            fault.counts["late"] += 1
            heapq.heappush(self._late, (time.monotonic() + fault.delay, next(self._seq),
                                        (mysocket, bytes(packet), sockaddr)))
        write_state(fault.counts_file, fault.counts)

    def flush(self) -> float:
        """Send what is due; returns the seconds until the next one (LOOP_TICK if none)."""
        now = time.monotonic()
        while self._late and self._late[0][0] <= now:
            self._send(*heapq.heappop(self._late)[2])
        return min(LOOP_TICK, self._late[0][0] - now) if self._late else LOOP_TICK


def parse_flaky(text: str) -> tuple[int, float, float]:
    try:
        port, drop, delay = text.split(":")
        parsed = int(port), float(drop), float(delay)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected PORT:DROP:DELAY, like 6231:0.3:1") from None
    if not 0 <= parsed[1] < 1 or parsed[2] < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: DROP is in [0, 1), DELAY at least 0")
    return parsed


def parse_lan_address(text: str) -> tuple[int, str]:
    port, sep, address = text.partition("=")
    try:
        return int(port), str(ipaddress.IPv4Address(address))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected PORT=IPV4, like 6231=169.254.24.87") from None


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bmcsim", description=__doc__.splitlines()[0])
    p.add_argument("--state-dir", required=True, type=Path)
    p.add_argument("--base-port", required=True, type=int)
    p.add_argument("--count", required=True, type=int)
    p.add_argument("--username", required=True)
    p.add_argument("--password-file", required=True, type=Path)
    p.add_argument("--flaky", action="append", type=parse_flaky, default=[], metavar="PORT:DROP:DELAY",
                   help="the BMC on PORT drops answers with probability DROP and sends the rest DELAY s late")
    p.add_argument("--dead", action="append", type=int, default=[], metavar="PORT",
                   help="the BMC on PORT is gone: nothing listens there")
    p.add_argument("--lan-address", action="append", type=parse_lan_address, default=[],
                   metavar="PORT=ADDR", help="the BMC on PORT listens on ADDR too (its LAN address)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    password = args.password_file.read_text().rstrip("\n")
    args.state_dir.mkdir(parents=True, exist_ok=True)

    stopping = False

    def on_term(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    bmcs = []
    on_lan = 0
    lan = dict(args.lan_address)
    for i in range(args.count):
        port = args.base_port + i
        if port in args.dead:
            print(f"bmcsim: BMC {port} is dead: nothing listens there", flush=True)
            continue
        first = LabBmc({args.username: password}, port, args.state_dir / f"{port}.json")
        bmcs.append(first)
        if port in lan:
            bmcs.append(LabBmc({args.username: password}, port, first.state_file,
                               address=lan[port], state=first.state))
            on_lan += 1
    print(f"bmcsim: {len(bmcs) - on_lan} BMCs on 127.0.0.1:{args.base_port}-{args.base_port + args.count - 1}"
          + (f", {on_lan} of them on their LAN address too" if on_lan else ""), flush=True)
    # Seeded by port: a test run drops the same answers of the same exchange.
    network = FlakyNetwork({port: Flaky(drop, delay, args.state_dir / f"{port}.flaky.json", random.Random(port))
                            for port, drop, delay in args.flaky})
    for port, fault in network.flaky.items():
        write_state(fault.counts_file, fault.counts)
        print(f"bmcsim: BMC {port} is flaky: drops {fault.drop:.0%} of its answers, "
              f"sends the others {fault.delay:g} s late", flush=True)
    network.install()
    # All instances register their sockets with pyghmi's shared session machinery, so one
    # loop of wait_for_rsp serves every BMC.
    tick = LOOP_TICK
    while not stopping:
        ipmisession.Session.wait_for_rsp(tick)
        tick = network.flush()
    print("bmcsim: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
