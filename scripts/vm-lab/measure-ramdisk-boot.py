#!/usr/bin/env python3
"""Boot the deploy ramdisk on machine 0 of a running VM lab and time it: power on through the
machine's IPMI BMC -> DHCP -> kernel -> systemd -> the agent's first call to Ironic's API.

A measurement, not part of the lab: Ironic does not manage these machines yet, so this script
serves the ramdisk itself (HTTP on the lab bridge), points the lab's iPXE script at it for the
run, and answers the agent's API calls with 404 (logging them) so that the agent keeps
looking up. Everything is put back afterwards and the machine powered off.

    .venv/bin/k1prov lab up --kind vm
    scripts/vm-lab/build-ipa-ramdisk.sh            # prints DIR
    .venv/bin/python scripts/vm-lab/measure-ramdisk-boot.py DIR [--port 18080]
"""
from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from k1prov.lab.vm import VmLab, VmLabSettings
from k1prov.lab.vm_net import acks

p = argparse.ArgumentParser()
p.add_argument("ramdisk_dir", type=Path)
p.add_argument("--port", type=int, default=18080, help="HTTP port on the lab bridge (files + API)")
p.add_argument("--timeout", type=float, default=600)
a = p.parse_args()

lab = VmLab(VmLabSettings.default())
s = lab.settings
m = next(x for x in lab.status().machines if x["bmc"]["type"] == "ipmi")
calls: list[tuple[float, str]] = []


class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith(("/ipa.", "/boot")):
            return super().do_GET()
        calls.append((time.monotonic(), self.path))
        body = b'{"error_message": "not found (measurement)"}'
        self.send_response(404 if self.path.startswith("/v1/lookup") else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(
    (s.gateway, a.port), functools.partial(Handler, directory=str(a.ramdisk_dir)))
threading.Thread(target=server.serve_forever, daemon=True).start()
url = f"http://{s.gateway}:{a.port}"
script = s.tftp_root / "boot.ipxe"
original = script.read_text()
script.write_text(
    "#!ipxe\n"
    f"kernel {url}/ipa.kernel ipa-api-url={url} BOOTIF=01-${{net0/mac:hexhyp}} "
    "console=ttyS0,115200n8 nofb nomodeset vga=normal ipa-insecure=1 rootfstype=ramfs initrd=ipa.initramfs\n"
    f"initrd {url}/ipa.initramfs\nboot\n")
ipmi = ["ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", str(m["bmc"]["port"]), "-U", m["bmc"]["username"], "-E"]
env = {**os.environ, "IPMI_PASSWORD": lab.bmc_password()}
serial = Path(m["serial_log"])
offset = serial.stat().st_size if serial.exists() else 0
before = len(acks(s.dnsmasq_log, m["mac"]))
ev: dict[str, float] = {}
rss = 0
try:
    subprocess.run(ipmi + ["chassis", "bootdev", "pxe"], env=env, check=True, capture_output=True, timeout=60)
    t0 = time.monotonic()
    subprocess.run(ipmi + ["power", "on"], env=env, check=True, capture_output=True, timeout=60)
    while time.monotonic() - t0 < a.timeout and "lookup" not in ev:
        now = round(time.monotonic() - t0, 1)
        if len(acks(s.dnsmasq_log, m["mac"])) > before:
            ev.setdefault("dhcp", now)
        text = serial.read_bytes()[offset:].decode(errors="replace") if serial.exists() else ""
        for key, rx in (("kernel", r"Linux version"), ("systemd", r"systemd\[1\]|Welcome to"),
                        ("agent", r"ironic-python-agent")):
            if key not in ev and re.search(rx, text):
                ev[key] = now
        for t, path in calls:
            ev.setdefault("first_api_call", round(t - t0, 1))
            if path.startswith("/v1/lookup"):
                ev.setdefault("lookup", round(t - t0, 1))
        out = subprocess.run(["pgrep", "-f", f"guest={m['name']},"], capture_output=True, text=True)
        for pid in out.stdout.split():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = max(rss, int(line.split()[1]))
        time.sleep(0.5)
finally:
    subprocess.run(ipmi + ["power", "off"], env=env, capture_output=True, timeout=60)
    script.write_text(original)
    server.shutdown()
ramdisk = a.ramdisk_dir / "ipa.initramfs"
print(json.dumps({"machine": m["name"], "seconds_after_power_on": ev, "qemu_rss_max_mib": round(rss / 1024),
                  "guest_mib": s.memory_mib, "ramdisk_mb": round(ramdisk.stat().st_size / 1e6)}, indent=1))
sys.exit(0 if "lookup" in ev else 1)
