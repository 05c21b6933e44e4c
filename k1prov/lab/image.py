"""The lab's user image: a raw whole-disk image (an MBR partition table and one ext4
root partition) with Debian bookworm, sshd, Java 17, ZooKeeper 3.8 and Spark 3.5
(pyspark), built from the recipe in images/lab/.

Build: `debootstrap --variant=minbase bookworm`, then `apt-get install
--no-install-recommends` of images/lab/packages.txt inside the rootfs (services are
never started: /usr/sbin/policy-rc.d exits 101), pyspark from
images/lab/requirements-spark.txt into /opt/spark-venv (wheels built on the build
host, installed offline), images/lab/files/ copied over the rootfs, caches, docs and
build-time secrets (SSH host keys, machine-id) removed, `mkfs.ext4 -d`, and the
filesystem placed as partition 1 (from sector 2048, type 83, bootable) of a disk
image with an MBR partition table: what Ironic calls a whole-disk image. The agent
streams it onto a lab machine's disk and adds the config-drive partition after it;
the machine boots its root filesystem from partition 1 (k1prov/lab/machine.py).

Inside the image:
  JAVA_HOME  = /usr/lib/jvm/java-17-openjdk-amd64
  SPARK_HOME = /opt/spark  (symlink to the pyspark package: bin/, sbin/, jars/)
  pyspark    = /opt/spark-venv/bin/python
  ZooKeeper  = /usr/share/zookeeper (bin/zkServer.sh), config in /etc/zookeeper/conf
  init       = /usr/local/sbin/k1p-init (PID 1: sshd + orphan reaping) for
               `--host-init plain`; /lib/systemd/systemd for `--host-init systemd`
               (ssh.service with a drop-in, SYSTEMD_MASKED masked)
  daemons    = /usr/local/sbin/k1p-service start|stop|status NAME
(also written to /etc/environment, which sshd's PAM session reads).

The cache key is a hash of the recipe files and of BUILD_FORMAT; the image
`k1prov-lab-<key>.raw` and its sidecar `.raw.sha256` are written atomically (the
sidecar last, so its presence means the image is complete).
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from k1prov.lab.command import run

# Bump when the build procedure in this module changes in a way that changes the image.
BUILD_FORMAT = "3"  # 2: whole-disk image (MBR + partition 1); 3: + systemd, SYSTEMD_MASKED
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
RECIPE_DIR = Path(__file__).resolve().parents[2] / "images" / "lab"
SPARK_VENV = "/opt/spark-venv"
# Free room in the filesystem beyond the rootfs' size: ext4 metadata plus slack;
# hosts never write to it (their writes go to the overlay's upper layer).
SIZE_SLACK = 1.10
SIZE_EXTRA_MIB = 64
# Partition 1 starts at 1 MiB (sector 2048), as parted and sfdisk align it.
PARTITION_START_MIB = 1
# Units a host under systemd (`lab up --host-init systemd`) must not run. Its PID 1 has
# no CAP_SYS_ADMIN, no udev, no D-Bus and no console (k1prov/lab/hosts.py): these fail
# there or fight the role scripts (Debian's own zookeeper service from its init
# script, started at boot with the package's default config on port 2181; apt's and
# e2scrub's timers waking on every host at once).
SYSTEMD_MASKED = ("zookeeper.service", "systemd-logind.service", "console-getty.service", "getty.target",
                  "systemd-remount-fs.service", "systemd-firstboot.service", "e2scrub_reap.service",
                  "apt-daily.timer", "apt-daily-upgrade.timer", "fstrim.timer", "e2scrub_all.timer",
                  "dpkg-db-backup.timer")

Progress = Callable[[str], None]


def recipe_key(recipe_dir: Path = RECIPE_DIR) -> str:
    """Hash of every recipe file (path, mode and content) and of BUILD_FORMAT."""
    digest = hashlib.sha256(f"k1prov-lab-image {BUILD_FORMAT}\n".encode())
    for path in sorted(p for p in recipe_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(recipe_dir).as_posix()
        if rel == "README.md":
            continue  # documentation does not change the image
        digest.update(f"{rel}\0{path.stat().st_mode & 0o777:o}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def cached_image(cache_dir: Path, recipe_dir: Path = RECIPE_DIR) -> Path | None:
    """The complete cached image for the current recipe, or None."""
    image = cache_dir / f"k1prov-lab-{recipe_key(recipe_dir)}.raw"
    if image.exists() and _sidecar(image).exists():
        return image
    return None


def image_sha256(image: Path) -> str:
    """The sha256 written next to a built image (what Glance's os_hash_value is)."""
    return _sidecar(image).read_text().split()[0]


def build_lab_image(cache_dir: Path, *, timeout: float, progress: Progress | None = None,
                    recipe_dir: Path = RECIPE_DIR) -> Path:
    """Return the cached image for the current recipe, building it first if needed.

    Builds are serialised by a lock file in cache_dir, so concurrent callers (two
    test sessions) build once. Needs root, debootstrap and network access to the
    Debian mirror and PyPI.
    """
    say = progress or (lambda message: None)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with open(cache_dir / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = cached_image(cache_dir, recipe_dir)
        if found:
            say(f"lab image cached: {found}")
            return found
        key = recipe_key(recipe_dir)
        started = time.monotonic()
        image = _build(cache_dir, key, recipe_dir, deadline, say)
        say(f"lab image built in {time.monotonic() - started:.0f} s: {image} "
            f"({image.stat().st_size / 2**20:.0f} MiB)")
        return image


def _sidecar(image: Path) -> Path:
    return image.with_name(image.name + ".sha256")


def _build(cache_dir: Path, key: str, recipe_dir: Path, deadline: float, say: Progress) -> Path:
    work = cache_dir / f"build-{key}"
    rootfs = work / "rootfs"
    _remove_tree(work)
    work.mkdir()
    try:
        mirror, security = apt_mirrors()
        say(f"debootstrap {SUITE} from {mirror}")
        _run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror], deadline=deadline)
        wheels = _spark_wheels(cache_dir, recipe_dir, deadline, say)
        _install_recipe(rootfs, recipe_dir, mirror, security, wheels, deadline, say)
        _strip(rootfs)
        image = _make_disk(rootfs, cache_dir / f"k1prov-lab-{key}.raw", deadline, say)
    finally:
        _remove_tree(work)
    _remove_stale_images(cache_dir, keep=image)
    return image


def apt_mirrors() -> tuple[str, str]:
    """The Debian and Debian-security mirrors apt on this machine is configured with."""
    mirror, security = DEFAULT_MIRROR, DEFAULT_SECURITY_MIRROR
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file() or path.suffix not in ("", ".list", ".sources"):
            continue
        for uri in re.findall(r"(?:^deb\s+(?:\[[^]]*\]\s+)?|^URIs:\s*)(\S+)", path.read_text(), re.M):
            uri = uri.rstrip("/")
            if uri.endswith("/debian-security"):
                security = uri
            elif uri.endswith("/debian"):
                mirror = uri
    return mirror, security


def _spark_wheels(cache_dir: Path, recipe_dir: Path, deadline: float, say: Progress) -> Path:
    """Wheels for requirements-spark.txt, built once on the build host and kept in the cache.

    pyspark is published as an sdist of about 300 MB; building its wheel here means
    the image needs neither network nor build tools.
    """
    requirements = recipe_dir / "requirements-spark.txt"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:12]
    wheels = cache_dir / f"wheels-{digest}"
    if (wheels / ".complete").exists():
        return wheels
    say("pip wheel " + " ".join(_requirement_lines(requirements)))
    partial = cache_dir / f"wheels-{digest}.partial"
    _remove_tree(partial)
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(partial),
          "-r", str(requirements)], deadline=deadline)
    (partial / ".complete").write_text("")
    _remove_tree(wheels)
    partial.rename(wheels)
    return wheels


def _requirement_lines(requirements: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in requirements.read_text().splitlines())
    return [line for line in lines if line]


def _install_recipe(rootfs: Path, recipe_dir: Path, mirror: str, security: str, wheels: Path,
                    deadline: float, say: Progress) -> None:
    # The recipe files first: policy-rc.d and the dpkg excludes must be there before apt runs.
    shutil.copytree(recipe_dir / "files", rootfs, symlinks=True, dirs_exist_ok=True)
    (rootfs / "etc/apt/sources.list").write_text(
        f"deb {mirror} {SUITE} main\n"
        f"deb {mirror} {SUITE}-updates main\n"
        f"deb {security} {SUITE}-security main\n")
    packages = _requirement_lines(recipe_dir / "packages.txt")
    jre_deb = _jre_provider_deb(rootfs)
    shutil.copytree(wheels, rootfs / "tmp/wheels")
    shutil.copy(recipe_dir / "requirements-spark.txt", rootfs / "tmp/requirements-spark.txt")
    script = f"""
set -eu
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
apt-get update -q
apt-get install -y -q --no-install-recommends openjdk-17-jre-headless
apt-get install -y -q --no-install-recommends /tmp/{jre_deb.name}
apt-get install -y -q --no-install-recommends {' '.join(packages)}
python3 -m venv {SPARK_VENV}
{SPARK_VENV}/bin/pip install --quiet --no-index --no-compile --find-links /tmp/wheels \
    -r /tmp/requirements-spark.txt
ln -sfn "$({SPARK_VENV}/bin/python -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')" /opt/spark
test -x /opt/spark/sbin/spark-daemon.sh
systemctl mask --quiet {' '.join(SYSTEMD_MASKED)}
"""
    say("apt-get install " + " ".join(packages) + f"; pyspark into {SPARK_VENV}")
    with _chroot_mounts(rootfs):
        _run(["chroot", str(rootfs), "/bin/sh", "-c", script], deadline=deadline)


def _jre_provider_deb(rootfs: Path) -> Path:
    """A local package that provides default-jre on top of the headless JRE.

    Debian's zookeeper depends on default-jre, the full JRE with its X11 and sound
    libraries; no server here needs them.
    """
    pkg = rootfs / "tmp/k1prov-lab-jre"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN/control").write_text(
        "Package: k1prov-lab-jre\nVersion: 1.0\nArchitecture: all\nMaintainer: k1prov <k1prov@localhost>\n"
        "Depends: openjdk-17-jre-headless\nProvides: default-jre, java-runtime, java17-runtime\n"
        "Description: headless Java runtime standing in for default-jre in the k1prov lab image\n")
    _run(["chroot", str(rootfs), "dpkg-deb", "--build", "/tmp/k1prov-lab-jre", "/tmp/k1prov-lab-jre.deb"],
         deadline=time.monotonic() + 60)
    return rootfs / "tmp/k1prov-lab-jre.deb"


class _chroot_mounts:
    """/proc, /sys and /dev inside the rootfs while apt runs (Java's postinst needs /proc)."""

    def __init__(self, rootfs: Path):
        self.targets = [(["-t", "proc", "proc"], rootfs / "proc"),
                        (["-t", "sysfs", "sysfs"], rootfs / "sys"),
                        (["--bind", "/dev"], rootfs / "dev"),
                        (["--bind", "/dev/pts"], rootfs / "dev/pts")]
        self.mounted: list[Path] = []

    def __enter__(self):
        try:
            for args, target in self.targets:
                _run(["mount", *args, str(target)], deadline=time.monotonic() + 30)
                self.mounted.append(target)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info):
        for target in reversed(self.mounted):
            subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=30)
        self.mounted.clear()


def _strip(rootfs: Path) -> None:
    """Drop caches and docs, and the build host's traces (host keys, machine-id, resolver)."""
    for pattern in ("var/cache/apt/*", "var/lib/apt/lists/*", "var/log/apt/*", "var/log/*.log",
                    "tmp/*", "var/tmp/*", "usr/share/doc/*/[!c]*", "usr/share/man/*",
                    "usr/share/info/*", "usr/share/locale/*", "etc/ssh/ssh_host_*", "root/.cache"):
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    for name in ("etc/machine-id", "etc/resolv.conf", "etc/hostname"):
        path = rootfs / name
        if path.is_symlink() or path.exists():
            path.unlink()
        path.write_text("")


def _make_disk(rootfs: Path, image: Path, deadline: float, say: Progress) -> Path:
    used = int(subprocess.run(["du", "-sb", "--apparent-size", str(rootfs)], capture_output=True,
                              text=True, check=True).stdout.split()[0])
    size_mib = int(used * SIZE_SLACK / 2**20) + SIZE_EXTRA_MIB
    say(f"mkfs.ext4 -d rootfs ({used / 2**20:.0f} MiB) -> {size_mib} MiB image")
    partial = image.with_name(image.name + ".partial")
    fs = image.with_name(image.name + ".fs.partial")
    partial.unlink(missing_ok=True)
    fs.unlink(missing_ok=True)
    try:
        # No journal and no reserved blocks: hosts mount it read-only under an overlay.
        _run(["mkfs.ext4", "-q", "-F", "-L", "k1prov-lab", "-O", "^has_journal", "-m", "0",
              "-d", str(rootfs), str(fs), f"{size_mib}M"], deadline=deadline)
        disk_mib = size_mib + PARTITION_START_MIB
        with open(partial, "wb") as f:
            f.truncate(disk_mib * 2**20)
        _run_stdin(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(partial)],
                   f"label: dos\nstart={PARTITION_START_MIB * 2048}, type=83, bootable\n",
                   deadline=deadline)
        # conv=sparse: the filesystem's free blocks stay holes in the cached file.
        _run(["dd", f"if={fs}", f"of={partial}", "bs=1M", f"seek={PARTITION_START_MIB}",
              "conv=sparse,notrunc", "status=none"], deadline=deadline)
    finally:
        fs.unlink(missing_ok=True)
    say(f"whole-disk image: MBR + partition 1 of {size_mib} MiB")
    digest = _file_sha256(partial)
    os.replace(partial, image)
    sidecar = _sidecar(image)
    tmp = sidecar.with_name(sidecar.name + ".partial")
    tmp.write_text(f"{digest}  {image.name}\n")
    os.replace(tmp, sidecar)
    return image


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _remove_stale_images(cache_dir: Path, *, keep: Path) -> None:
    for old in cache_dir.glob("k1prov-lab-*.raw*"):
        if old.name not in (keep.name, _sidecar(keep).name):
            old.unlink(missing_ok=True)


def _remove_tree(path: Path) -> None:
    # A build interrupted inside _chroot_mounts may leave mounts below; never
    # delete through them into the real /proc, /sys or /dev.
    if not path.exists():
        return
    mounts = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True).stdout
    for target in sorted((m for m in mounts.split() if m.startswith(str(path) + "/")), reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, timeout=30)
    shutil.rmtree(path)


def _run(argv: list[str], *, deadline: float) -> None:
    run(argv, deadline=deadline, what="lab image build: " + " ".join(argv[:3]))


def _run_stdin(argv: list[str], stdin: str, *, deadline: float) -> None:
    run(argv, deadline=deadline, stdin=stdin, what="lab image build: " + " ".join(argv[:3]))
