"""SIGINT to a `k1prov deploy` of many fake-hardware nodes on an all-in-one lab: does it end?

    .venv/bin/python benchmarks/interrupt_deploy.py NODES DELAYS [PORT_OFFSET BRIDGE CIDR]
    .venv/bin/python benchmarks/interrupt_deploy.py 300 10,80 15300 k1p22c 10.252.124.1/24

A lab of its own (one machine, unused), NODES fake nodes enrolled, then per delay: undeploy,
`k1prov -v deploy` started, SIGINT after DELAY s, again 30 s later, SIGTERM 30 s after that;
prints when and how it ended and the tail of its stderr. Run from a script's background
(`... &` in sh), k1prov inherits SIGINT ignored: the case the CLI now handles (issue 22).
"""
import os, signal, subprocess, sys, tempfile, time, json
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_bench import inventory_text
from k1prov.lab import Lab, LabSettings

N = int(sys.argv[1]) if len(sys.argv) > 1 else 300
K1 = str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "k1prov")
root = Path(tempfile.mkdtemp(prefix="k1prov-interrupt-"))
o = int(sys.argv[3]) if len(sys.argv) > 3 else 15300
BRIDGE = sys.argv[4] if len(sys.argv) > 4 else "k1p22c"
CIDR = sys.argv[5] if len(sys.argv) > 5 else "10.252.124.1/24"
lab = Lab(LabSettings(root=root / "lab", venv=LabSettings.default().venv, nodes=1, clouds_yaml=root / "clouds.yaml",
    ironic_port=6385 + o, glance_port=9292 + o, http_port=8088 + o, bmc_base_port=6230 + o,
    keystone_port=5000 + o, mariadb_port=3306 + o, bridge=BRIDGE, cidr=CIDR, conductors=0, auth="none"))
env = dict(os.environ, K1PROV_STATE_DIR=str(root / "state"))
results = []
try:
    lab.up()
    inv = root / "inv.yaml"
    inv.write_text(inventory_text(lab.settings, cluster="sig", count=N, image=Path("sig.img")))
    r = subprocess.run([K1, "nodes", "enroll", "-i", str(inv)], env=env, capture_output=True, text=True)
    print("enroll exit", r.returncode, flush=True)
    for delay in [float(x) for x in (sys.argv[2] if len(sys.argv) > 2 else "15,60").split(",")]:
        subprocess.run([K1, "undeploy", "-i", str(inv)], env=env, capture_output=True, text=True)
        err = open(root / f"deploy-{delay}.err", "w")
        t0 = time.monotonic()
        p = subprocess.Popen([K1, "-v", "deploy", "-i", str(inv)], env=env, stdout=subprocess.DEVNULL, stderr=err)
        time.sleep(delay)
        sigs = []
        for sig, wait in ((signal.SIGINT, 30), (signal.SIGINT, 30), (signal.SIGTERM, 30)):
            if p.poll() is not None:
                break
            p.send_signal(sig)
            sigs.append((sig.name, round(time.monotonic() - t0, 1)))
            try:
                p.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        if p.poll() is None:
            p.kill(); p.wait()
        res = {"delay": delay, "signals": sigs, "exit": p.returncode, "ended_at": round(time.monotonic() - t0, 1),
               "load": os.getloadavg()}
        print(json.dumps(res), flush=True)
        err.close()
        print((root / f"deploy-{delay}.err").read_text()[-1500:], flush=True)
        results.append(res)
finally:
    lab.down()
    import shutil
    shutil.rmtree(root, ignore_errors=True)
print(json.dumps(results))
