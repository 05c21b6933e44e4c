"""The lab's deploy simulation: boot a lab host for every deployed, powered-on lab node.

The lab's nodes use Ironic's `fake` deploy interface: Ironic runs the real state
machine (available -> deploying -> active, rebuild, deleted -> available) but writes
no disk and never touches power. This process plays the part of the machine:

    python -m k1prov.lab.reconciler --root ROOT --ironic-url URL --glance-url URL \
        --bmc-state-dir DIR --bmc-base-port P --count N

Every POLL_INTERVAL it lists Ironic's nodes and reads the BMC simulators' state files
(DIR/<ipmi_port>.json) and brings each lab host in line:

- a node that becomes `active` (a new deploy generation: Ironic's provision_updated_at
  moved) is powered on **through Ironic's power API**, so Ironic's ipmitool driver
  sends the real IPMI "chassis power on" to the BMC simulator and Ironic's own
  power_state stays true. A real deploy ends the same way: the conductor powers the
  node on into its instance. (k1prov's deploy verb does not do it: it must not know
  that it talks to a lab.)
- active + BMC on -> the host runs: its disk is the Glance image named in
  instance_info.image_source, downloaded (GET /v2/images/ID/file) into ROOT/image-cache
  and checked against Glance's os_hash_value, so the host boots the bytes Glance holds;
  its configuration is instance_info.configdrive (Ironic shows it because the lab's
  policy allows `show_instance_secrets`), turned into the ISO a real node would get and
  read back with host_config_from_config_drive.
- BMC off -> the host stops (its writable layer stays, like a disk).
- a new generation while a host runs (rebuild), or the node leaving `active` (undeploy)
  -> the host stops and its writable layer is wiped; after an undeploy the reconciler
  powers the node off through Ironic once it is `available` again.

Nodes are lab nodes when their BMC is one of the lab's (127.0.0.1, port in the lab's
range); others are ignored. One node's failure is logged and retried on a later pass
(at most every RETRY_BACKOFF); it never stops the others. SIGTERM stops every host and
exits. Logs go to stderr, which the lab sends to ROOT/logs/reconciler.log.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RECONCILER_MODULE = "k1prov.lab.reconciler"
# Seconds between two looks at Ironic and the BMC state files.
POLL_INTERVAL = 0.5
# The heartbeat file is touched every pass; `lab status` calls a staler one dead.
HEARTBEAT_MAX_AGE = 10.0
# Hosts booted, stopped or wiped at the same time (each is a few subprocesses).
WORKERS = 8
# One HTTP request to Ironic or Glance.
HTTP_TIMEOUT = 30.0
# Downloading one image from Glance.
DOWNLOAD_TIMEOUT = 1800.0
# Booting or stopping one host.
HOST_TIMEOUT = 60.0
# A node whose last action failed is tried again after this long.
RETRY_BACKOFF = 2.0
IRONIC_API_VERSION = "1.78"
CHUNK = 1024 * 1024
# States from which Ironic accepts a power request and in which an undeployed node rests.
STABLE_STATES = {"available", "manageable", "enroll"}

log = logging.getLogger("k1prov.lab.reconciler")


def heartbeat_path(root: Path) -> Path:
    return Path(root) / "run" / "reconciler.heartbeat"


def heartbeat_age(root: Path) -> float | None:
    try:
        return time.time() - heartbeat_path(root).stat().st_mtime
    except OSError:
        return None


# ---------------------------------------------------------------- the decision (pure)

# Actions, in the order they are carried out when several apply.
POWER_ON, POWER_OFF, STOP, WIPE, BOOT = "power-on", "power-off", "stop", "wipe", "boot"


@dataclass(frozen=True)
class NodeView:
    """What the reconciler knows about one lab node in one pass."""

    name: str
    uuid: str
    provision_state: str
    generation: str           # provision_updated_at: moves with every provision state change
    bmc_on: bool
    host_running: bool
    host_has_disk: bool       # a writable layer exists (running or stopped)


@dataclass
class NodeRecord:
    """What the reconciler did to a node, kept across passes and restarts."""

    powered_for: str | None = None    # generation it asked Ironic to power on for
    booted_for: str | None = None     # generation the host's disk belongs to

    def to_dict(self) -> dict[str, Any]:
        return {"powered_for": self.powered_for, "booted_for": self.booted_for}


def decide(view: NodeView, rec: NodeRecord) -> list[str]:
    """The actions that bring the host in line with the node, in order."""
    actions: list[str] = []
    if view.provision_state == "active":
        new_deploy = rec.booted_for is not None and rec.booted_for != view.generation
        if new_deploy and (view.host_running or view.host_has_disk):
            # Rebuild: the old disk content is gone, whatever the power state.
            actions += ([STOP] if view.host_running else []) + [WIPE]
        if rec.powered_for != view.generation and not view.bmc_on:
            actions.append(POWER_ON)
            return actions        # boot once the BMC says on (next pass)
        if view.bmc_on and (not view.host_running or new_deploy):
            actions.append(BOOT)
        elif not view.bmc_on and view.host_running:
            actions.append(STOP)
        return actions
    # Not active: deploying, deleting, cleaning, available, ... the instance is gone.
    if view.host_running:
        actions.append(STOP)
    if view.host_running or view.host_has_disk:
        actions.append(WIPE)
    if rec.powered_for is not None and view.bmc_on and view.provision_state in STABLE_STATES:
        actions.append(POWER_OFF)
    return actions


# ---------------------------------------------------------------- Ironic and Glance over HTTP


def _http_json(method: str, url: str, *, body: dict | None = None, headers: dict | None = None,
               timeout: float = HTTP_TIMEOUT) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Accept": "application/json", "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode(errors="replace")
        raise _lab_error(f"{method} {url}: HTTP {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise _lab_error(f"{method} {url}: {getattr(exc, 'reason', exc)}") from None
    return json.loads(raw) if raw else None


def _lab_error(message: str) -> Exception:
    from k1prov.errors import LabError as K1LabError

    return K1LabError(message)


class Ironic:
    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self._headers = {"X-OpenStack-Ironic-API-Version": IRONIC_API_VERSION}

    def nodes(self) -> list[dict]:
        fields = ("uuid,name,provision_state,provision_updated_at,power_state,driver_info,"
                  "instance_info")
        data = _http_json("GET", f"{self.url}/v1/nodes?fields={fields}", headers=self._headers)
        return data.get("nodes", [])

    def set_power(self, uuid: str, on: bool) -> None:
        _http_json("PUT", f"{self.url}/v1/nodes/{uuid}/states/power",
                   body={"target": "power on" if on else "power off"}, headers=self._headers)


class ImageCache:
    """Glance images downloaded once, checked against Glance's own hash."""

    def __init__(self, directory: Path, glance_url: str):
        self.directory = Path(directory)
        self.glance_url = glance_url.rstrip("/")
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def path_for(self, image_source: str, instance_info: dict) -> Path:
        if image_source.startswith("file://"):
            return Path(image_source[len("file://"):])
        if image_source.startswith(("http://", "https://")):
            algo = instance_info.get("image_os_hash_algo") or "sha256"
            digest = instance_info.get("image_os_hash_value")
            if not digest:
                raise _lab_error(f"image {image_source}: no image_os_hash_value to check it by")
            return self._fetch(image_source, algo, digest)
        meta = _http_json("GET", f"{self.glance_url}/v2/images/{image_source}")
        if meta.get("status") != "active":
            raise _lab_error(f"glance image {image_source} is {meta.get('status')}")
        algo, digest = meta.get("os_hash_algo"), meta.get("os_hash_value")
        if not algo or not digest:
            raise _lab_error(f"glance image {image_source} has no os_hash_value")
        return self._fetch(f"{self.glance_url}/v2/images/{image_source}/file", algo, digest)

    def _fetch(self, url: str, algo: str, digest: str) -> Path:
        # Named by content: a cached file is the verified bytes, whatever URL gave them.
        target = self.directory / f"{algo}-{digest[:32]}.img"
        with self._lock(target.name):
            if target.is_file():
                return target
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.part")
            started = time.monotonic()
            h = hashlib.new(algo)
            try:
                with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as resp, open(tmp, "wb") as out:
                    while chunk := resp.read(CHUNK):
                        if time.monotonic() - started > DOWNLOAD_TIMEOUT:
                            raise _lab_error(f"download of {url} did not finish in time")
                        h.update(chunk)
                        out.write(chunk)
            except (urllib.error.URLError, OSError) as exc:
                tmp.unlink(missing_ok=True)
                raise _lab_error(f"download of {url}: {getattr(exc, 'reason', exc)}") from None
            if h.hexdigest() != digest:
                tmp.unlink(missing_ok=True)
                raise _lab_error(f"{url}: {algo} of the downloaded bytes is {h.hexdigest()[:16]}..., "
                                 f"the image says {digest[:16]}...")
            os.replace(tmp, target)
            log.info("cached %s as %s (%.1f s)", url, target.name, time.monotonic() - started)
            return target


def host_config_of(instance_info: dict):
    """The HostConfig of the node's config drive, in whichever form Ironic keeps it."""
    from k1prov.configdrive import build_config_drive_iso
    from k1prov.lab.configdrive_apply import host_config_from_config_drive

    drive = instance_info.get("configdrive")
    if not drive:
        raise _lab_error("instance_info has no configdrive")
    if drive == "******":
        raise _lab_error("Ironic masks the config drive (policy show_instance_secrets)")
    if isinstance(drive, dict):
        # The JSON form: build the ISO the node would be given, then read it as the node does.
        drive = build_config_drive_iso(drive)
    return host_config_from_config_drive(drive.encode() if isinstance(drive, str) else drive)


# ---------------------------------------------------------------- the loop


@dataclass
class Reconciler:
    root: Path
    ironic: Ironic
    images: ImageCache
    bmc_state_dir: Path
    bmc_ports: range
    booter: Any                                  # k1prov.lab.hosts.HostBooter
    records: dict[str, NodeRecord] = field(default_factory=dict)
    _busy: dict[str, Future] = field(default_factory=dict)
    _failed_at: dict[str, float] = field(default_factory=dict)

    @property
    def _records_file(self) -> Path:
        return self.root / "reconciler-state.json"

    def load(self) -> None:
        try:
            data = json.loads(self._records_file.read_text())
        except (OSError, ValueError):
            return
        self.records = {name: NodeRecord(**rec) for name, rec in data.items()}

    def _save(self) -> None:
        tmp = self._records_file.with_name(self._records_file.name + ".tmp")
        tmp.write_text(json.dumps({n: r.to_dict() for n, r in self.records.items()}, indent=1))
        os.replace(tmp, self._records_file)

    def _bmc_on(self, port: int) -> bool:
        try:
            return json.loads((self.bmc_state_dir / f"{port}.json").read_text()).get("power") == "on"
        except (OSError, ValueError):
            return False

    def _lab_port(self, node: dict) -> int | None:
        info = node.get("driver_info") or {}
        try:
            port = int(info.get("ipmi_port"))
        except (TypeError, ValueError):
            return None
        if info.get("ipmi_address") not in ("127.0.0.1", "localhost") or port not in self.bmc_ports:
            return None
        return port

    def view(self, node: dict, port: int) -> NodeView:
        status = self.booter.status(node["name"])
        return NodeView(name=node["name"], uuid=node["uuid"], provision_state=node["provision_state"],
                        generation=str(node.get("provision_updated_at") or ""),
                        bmc_on=self._bmc_on(port), host_running=status.state == "running",
                        host_has_disk=status.state in ("running", "stopped"))

    def pass_once(self, pool: ThreadPoolExecutor) -> None:
        for name, fut in list(self._busy.items()):
            if fut.done():
                del self._busy[name]
        nodes = self.ironic.nodes()
        seen = set()
        for node in nodes:
            port = self._lab_port(node)
            name = node.get("name")
            if port is None or not name:
                continue
            seen.add(name)
            if name in self._busy:
                continue
            if time.monotonic() - self._failed_at.get(name, -RETRY_BACKOFF) < RETRY_BACKOFF:
                continue
            try:
                view = self.view(node, port)
            except Exception as exc:  # noqa: BLE001 - one bad node must not stop the others
                self._fail(name, exc)
                continue
            rec = self.records.setdefault(name, NodeRecord())
            actions = decide(view, rec)
            if actions:
                self._busy[name] = pool.submit(self._carry_out, node, view, rec, actions)
        # A node deleted from Ironic takes its host with it.
        for info in self.booter.list():
            if info.name not in seen and info.name not in self._busy:
                self._busy[info.name] = pool.submit(self._remove_orphan, info.name)

    def _fail(self, name: str, exc: BaseException) -> None:
        self._failed_at[name] = time.monotonic()
        log.error("%s: %s", name, exc)

    def _carry_out(self, node: dict, view: NodeView, rec: NodeRecord, actions: list[str]) -> None:
        name = view.name
        try:
            for action in actions:
                started = time.monotonic()
                if action == POWER_ON:
                    self.ironic.set_power(view.uuid, True)
                    rec.powered_for = view.generation
                elif action == POWER_OFF:
                    self.ironic.set_power(view.uuid, False)
                    rec.powered_for = None
                elif action == STOP:
                    self.booter.stop(name, timeout=HOST_TIMEOUT)
                elif action == WIPE:
                    self.booter.wipe(name)
                    rec.booted_for = None
                elif action == BOOT:
                    info = node.get("instance_info") or {}
                    source = info.get("image_source")
                    if not source:
                        raise _lab_error("instance_info has no image_source")
                    image = self.images.path_for(str(source), info)
                    config = host_config_of(info)
                    self.booter.boot(name, image, config, timeout=HOST_TIMEOUT)
                    rec.booted_for = view.generation
                    # An operator power-on of an active node also counts as powered.
                    rec.powered_for = view.generation
                log.info("%s: %s (%s, bmc %s) in %.2f s", name, action, view.provision_state,
                         "on" if view.bmc_on else "off", time.monotonic() - started)
            self._failed_at.pop(name, None)
        except Exception as exc:  # noqa: BLE001 - logged, retried later; the others go on
            self._fail(name, exc)
        finally:
            self._save()

    def _remove_orphan(self, name: str) -> None:
        try:
            self.booter.stop(name, timeout=HOST_TIMEOUT)
            self.booter.wipe(name)
            self.records.pop(name, None)
            log.info("%s: node gone from Ironic, host removed", name)
        except Exception as exc:  # noqa: BLE001
            self._fail(name, exc)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="k1prov-lab-reconciler", description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, type=Path)
    p.add_argument("--ironic-url", required=True)
    p.add_argument("--glance-url", required=True)
    p.add_argument("--bmc-state-dir", required=True, type=Path)
    p.add_argument("--bmc-base-port", required=True, type=int)
    p.add_argument("--count", required=True, type=int)
    p.add_argument("--bridge", default="k1plab0")
    p.add_argument("--cidr", default="10.251.0.1/24")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from k1prov.lab.hosts import HostBooter
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
    booter = HostBooter(args.root / "machines", network=network)
    rec = Reconciler(root=args.root, ironic=Ironic(args.ironic_url),
                     images=ImageCache(args.root / "image-cache", args.glance_url),
                     bmc_state_dir=args.bmc_state_dir,
                     bmc_ports=range(args.bmc_base_port, args.bmc_base_port + args.count),
                     booter=booter)
    rec.load()
    beat = heartbeat_path(args.root)
    beat.parent.mkdir(parents=True, exist_ok=True)
    log.info("reconciler: watching %s, BMCs %d-%d, bridge %s", args.ironic_url, args.bmc_base_port,
             args.bmc_base_port + args.count - 1, args.bridge)
    pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="host")
    failing: str | None = None
    try:
        while not stopping.is_set():
            try:
                rec.pass_once(pool)
                failing = None
            except Exception as exc:  # noqa: BLE001 - Ironic restarting, a bad answer: next pass
                if str(exc) != failing:       # once per kind of failure, not twice a second
                    log.warning("pass failed: %s", exc)
                failing = str(exc)
            beat.touch()
            stopping.wait(POLL_INTERVAL)
    finally:
        log.info("reconciler: stopping every lab host")
        pool.shutdown(wait=True, cancel_futures=True)
        try:
            booter.stop_all(timeout=HOST_TIMEOUT)
        except Exception as exc:  # noqa: BLE001
            log.error("stopping hosts: %s", exc)
        rec._save()
        beat.unlink(missing_ok=True)
        # Every host of ours is stopped (their disks stay). Another lab on this machine may
        # share the bridge: remove it only when no host of anyone is attached any more.
        ports = Path(f"/sys/class/net/{network.bridge}/brif")
        if network.exists() and not (ports.is_dir() and any(ports.iterdir())):
            network.remove()
        log.info("reconciler: stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
