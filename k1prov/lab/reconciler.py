"""The lab's hardware: every simulated machine does what its BMC and its disk say.

    python -m k1prov.lab.reconciler --root ROOT --bmc-state-dir DIR --bmc-base-port P \
        --count N --venv VENV --tftp-root T --bridge B --cidr C --disk-gb G \
        --bmc-username U --bmc-password-file F [--power-off]

Every POLL_INTERVAL it reads the BMC simulators' state files (DIR/<port>.json: power,
boot device, boot counter) and brings each machine (k1prov.lab.machine.Machine) in
line, like the hardware behind a BMC would:

- BMC off -> the machine stops whatever runs (agent or host) and releases its disk;
- a new boot (power on, reset, cycle: the boot counter moved) -> the machine boots
  from the BMC's boot device: `network` starts the deploy agent if the PXE config for
  its MAC names a deploy kernel and ramdisk, anything else boots the disk;
- the agent pressed the power button (its `poweroff`/`reboot`) -> chassis power
  off/reset over IPMI, so the BMC and Ironic see it as on a real machine.

It never reads Ironic's API or database: what a machine does follows from its power,
its boot device, the PXE config "on the network" and its own disk. A machine whose
boot fails (no PXE config, no bootable disk) stays powered on with nothing running,
and the reason is in its state file and the log. One machine's failure never stops the
others. Logs go to stderr, which the lab sends to ROOT/logs/reconciler.log.

This process is the machines' hardware logic, not their power: like a BMC's software,
it may restart (`lab up` from another installation of k1prov, or after an upgrade,
restarts it) and the machines keep running. SIGTERM lets the boots and stops under way
finish and exits, leaving every machine as it is; at start it takes over what runs
(Machine.adopt) and boots only machines whose BMC is on and on which nothing runs any
more. `--power-off` is the power cut of `lab down`: every machine stops (their disks
stay), and the process exits.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

RECONCILER_MODULE = "k1prov.lab.reconciler"
# Seconds between two looks at the BMC state files.
POLL_INTERVAL = 0.3
# The heartbeat file is touched every pass; `lab status` calls a staler one dead.
HEARTBEAT_MAX_AGE = 10.0
# Machines booted or stopped at the same time (each is a few subprocesses).
WORKERS = 8
# One ipmitool call (the power button).
IPMI_TIMEOUT = 30.0
# `--power-off`: the lab hosts still running after their machines were powered off.
HOSTS_STOP_TIMEOUT = 60.0

log = logging.getLogger("k1prov.lab.reconciler")


def heartbeat_path(root: Path) -> Path:
    return Path(root) / "run" / "reconciler.heartbeat"


def heartbeat_age(root: Path) -> float | None:
    try:
        return time.time() - heartbeat_path(root).stat().st_mtime
    except OSError:
        return None


def read_bmc(state_dir: Path, port: int) -> dict:
    try:
        state = json.loads((Path(state_dir) / f"{port}.json").read_text())
    except (OSError, ValueError):
        return {"power": "off", "boot_device": "default", "boots": 0}
    state.setdefault("boots", 0)
    return state


# Actions, decided from the BMC and the machine (pure, tested in tests/unit).
BOOT, OFF, BUTTON = "boot", "off", "button"


def decide(bmc: dict, machine_state: dict, *, running: str | None, button: str | None,
           has_resources: bool) -> str | None:
    """What machine should do now, given its BMC's state and its own."""
    if bmc.get("power") != "on":
        return OFF if (running or has_resources or machine_state.get("running")) else None
    if machine_state.get("boots") != bmc.get("boots"):
        return BOOT
    if running == "agent" and button and not machine_state.get("button_pressed"):
        return BUTTON
    return None


class Hardware:
    """All machines of the lab, driven from their BMCs' state files."""

    def __init__(self, *, machines: dict, bmc_state_dir: Path, ipmi: "Ipmi"):
        self.machines = machines
        self.bmc_state_dir = Path(bmc_state_dir)
        self.ipmi = ipmi
        self._busy: dict[int, Future] = {}

    def pass_once(self, pool: ThreadPoolExecutor) -> None:
        for port, fut in list(self._busy.items()):
            if fut.done():
                del self._busy[port]
        for port, machine in self.machines.items():
            if port in self._busy:
                continue
            bmc = read_bmc(self.bmc_state_dir, port)
            state = machine.state()
            running = machine.running()
            has_resources = bool(state.get("running")) or machine.loop is not None
            action = decide(bmc, state, running=running, button=machine.button(),
                            has_resources=has_resources)
            if action is not None:
                self._busy[port] = pool.submit(self._carry_out, machine, action, bmc)

    def _carry_out(self, machine, action: str, bmc: dict) -> None:
        started = time.monotonic()
        try:
            if action == OFF:
                machine.power_off()
            elif action == BOOT:
                try:
                    what = machine.boot(bmc.get("boot_device", "default"), bmc["boots"])
                except Exception as exc:  # noqa: BLE001 - a machine that does not boot hangs
                    machine._save(running=None, boot_error=str(exc))
                    log.warning("%s: boot %s from %s failed: %s", machine.name, bmc["boots"],
                                bmc.get("boot_device"), exc)
                    return
                log.info("%s: booted %s in %.2f s", machine.name, what, time.monotonic() - started)
            elif action == BUTTON:
                request = machine.button()
                machine._save(button_pressed=request)
                verb = "reset" if request == "reboot" else "off"
                log.info("%s: the agent asked for %s: chassis power %s", machine.name, request, verb)
                self.ipmi.power(machine.port, verb)
        except Exception as exc:  # noqa: BLE001 - logged; the next pass tries again
            log.error("%s: %s: %s", machine.name, action, exc)

    def adopt_all(self) -> None:
        for machine in self.machines.values():
            try:
                what = machine.adopt()
            except Exception as exc:  # noqa: BLE001 - that machine boots again instead
                log.error("%s: cannot take over what runs: %s", machine.name, exc)
                machine._save(boots=None)
                continue
            if what:
                log.info("%s: %s still running: taken over", machine.name, what)

    def stop_all(self) -> int:
        """Power every machine off; returns how many did not stop."""
        failed = 0
        for machine in self.machines.values():
            try:
                machine.power_off()
            except Exception as exc:  # noqa: BLE001 - one machine must not keep the others on
                log.error("%s: power off: %s", machine.name, exc)
                failed += 1
        return failed


class Ipmi:
    """The power button: chassis power commands to a machine's own BMC."""

    def __init__(self, username: str, password_file: Path):
        self.username = username
        self.password_file = Path(password_file)

    def power(self, port: int, verb: str) -> None:
        argv = ["ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", str(port), "-U", self.username,
                "-f", str(self.password_file), "chassis", "power", verb]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=IPMI_TIMEOUT)
        if result.returncode != 0:
            raise RuntimeError(f"ipmitool power {verb} on port {port}: {result.stderr.strip()}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="k1prov-lab-reconciler", description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, type=Path)
    p.add_argument("--bmc-state-dir", required=True, type=Path)
    p.add_argument("--bmc-base-port", required=True, type=int)
    p.add_argument("--count", required=True, type=int)
    p.add_argument("--venv", required=True, type=Path)
    p.add_argument("--tftp-root", required=True, type=Path)
    p.add_argument("--bridge", required=True)
    p.add_argument("--cidr", required=True)
    p.add_argument("--disk-gb", required=True, type=int)
    p.add_argument("--bmc-username", required=True)
    p.add_argument("--bmc-password-file", required=True, type=Path)
    p.add_argument("--host-init", default="plain", choices=("plain", "systemd"),
                   help="what a host booted from its disk runs as PID 1 (k1prov.lab.hosts)")
    p.add_argument("--power-off", action="store_true",
                   help="power every machine down and exit (lab down)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from k1prov.lab.hosts import HostBooter
    from k1prov.lab.machine import Machine, lab_id, remove_lab_cgroups
    from k1prov.lab.pxe import Dhcp
    from k1prov.lab.netns import LabNetwork

    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    stopping = threading.Event()

    def on_term(signum, frame):
        stopping.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    network = LabNetwork(bridge=args.bridge, cidr=args.cidr)
    network.ensure()
    iface = ipaddress.IPv4Interface(args.cidr)
    dhcp = Dhcp(Path("/run/k1prov-lab") / args.bridge / "leases.json", iface.network, str(iface.ip))
    booter = HostBooter(args.root / "boot", network=network, init=args.host_init)
    ident = lab_id(args.root)
    machines = {port: Machine(port, root=args.root / "machines", lab_id=ident, venv=args.venv,
                              tftp_root=args.tftp_root, bridge=args.bridge, dhcp=dhcp, booter=booter,
                              disk_gb=args.disk_gb)
                for port in range(args.bmc_base_port, args.bmc_base_port + args.count)}
    hw = Hardware(machines=machines, bmc_state_dir=args.bmc_state_dir,
                  ipmi=Ipmi(args.bmc_username, args.bmc_password_file))
    if args.power_off:
        log.info("hardware: powering every machine down")
        failed = hw.stop_all()
        try:
            booter.stop_all(timeout=HOSTS_STOP_TIMEOUT)
        except Exception as exc:  # noqa: BLE001
            log.error("stopping hosts: %s", exc)
            failed += 1
        remove_lab_cgroups(ident)
        log.info("hardware: every machine is off" if not failed else
                 f"hardware: {failed} machine(s) or hosts did not stop (above)")
        return 1 if failed else 0
    hw.adopt_all()
    beat = heartbeat_path(args.root)
    beat.parent.mkdir(parents=True, exist_ok=True)
    log.info("hardware: %d machines (BMCs %d-%d), bridge %s", args.count, args.bmc_base_port,
             args.bmc_base_port + args.count - 1, args.bridge)
    pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="machine")
    failing: str | None = None
    try:
        while not stopping.is_set():
            try:
                hw.pass_once(pool)
                failing = None
            except Exception as exc:  # noqa: BLE001 - a bad state file: next pass
                if str(exc) != failing:
                    log.warning("pass failed: %s", exc)
                failing = str(exc)
            beat.touch()
            stopping.wait(POLL_INTERVAL)
    finally:
        # The boots and stops under way finish (within the lab's stop grace: one killed
        # half-way is booted again by the next process); what runs keeps running, for the
        # next process (or `--power-off`) to take over.
        pool.shutdown(wait=True, cancel_futures=True)
        beat.unlink(missing_ok=True)
        log.info("hardware: stopped; the machines are left as they are")
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
