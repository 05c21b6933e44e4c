"""The lab's Apache Mesos: an operator's own build (a tarball and its SHA512SUMS), found
through a setting, served to the lab hosts over HTTP and installed by the role scripts'
`source: tarball` path like any site's build.

No Mesos package is reachable from the lab machine; the build in ../shared/mesos/
(relative to the repository root) is what the tests and CI use. Without a build the lab
says that Mesos is off and why; nothing pretends to run it.

    build = find_mesos_build()          # None: Mesos is off (mesos_off_reason() says why)
    build.role_settings(url_base)       # the inventory's roles.mesos for that build
    publish(http_dir)                   # `lab up`: the build at fixed places under http_dir

`lab up` publishes the build at a fixed URL, {http_url}/mesos/lab-build, with a SHA512SUMS
beside it (http_dir/mesos/SHA512SUMS, also served), so that a static lab inventory
(inventories/lab.yaml) names the build without knowing it: `roles.mesos.url` is that URL
and `roles.mesos.sha512_file` that file, read on this machine when the role scripts are
rendered. Without a build both are removed, and such an inventory is refused with the
missing file named, never served a stale build.
"""
from __future__ import annotations

import os
import shutil
import re
from dataclasses import dataclass
from pathlib import Path

from k1prov.atomic_file import write_if_changed

# Setting: a directory holding one Mesos build tarball (*.tar.xz / *.tar.gz / *.tgz)
# and SHA512SUMS; "off" switches Mesos off explicitly.
MESOS_DIR_ENV = "K1PROV_LAB_MESOS"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MESOS_DIR = REPO_ROOT.parent / "shared" / "mesos"
_ARCHIVES = ("*.tar.xz", "*.tar.gz", "*.tgz")
_SUM_RE = re.compile(r"^([0-9a-fA-F]{128})\s+\*?(\S+)$")


@dataclass(frozen=True)
class MesosBuild:
    directory: Path
    tarball: Path
    sha512: str

    def url(self, base: str) -> str:
        return base.rstrip("/") + "/" + self.tarball.name

    def role_settings(self, base: str) -> dict:
        """roles.mesos for lab hosts: the build over HTTP with its checksum; the posix
        launcher and isolators (lab hosts have no cgroup hierarchy of their own)."""
        return {"source": "tarball", "url": self.url(base), "sha512": self.sha512,
                "isolation": "posix/cpu,posix/mem", "agent_flags": {"launcher": "posix"}}


def mesos_dir_setting() -> str:
    return os.environ.get(MESOS_DIR_ENV, "") or str(DEFAULT_MESOS_DIR)


def _find(directory: Path) -> MesosBuild | str:
    if not directory.is_dir():
        return f"no Mesos build at {directory} (set {MESOS_DIR_ENV} to a directory with one)"
    archives = sorted(p for pattern in _ARCHIVES for p in directory.glob(pattern))
    if len(archives) != 1:
        return f"{directory}: expected one Mesos build tarball, found {len(archives)}"
    sums = directory / "SHA512SUMS"
    if not sums.is_file():
        return f"{directory}: no SHA512SUMS beside {archives[0].name}"
    for line in sums.read_text().splitlines():
        match = _SUM_RE.match(line.strip())
        if match and match.group(2) == archives[0].name:
            return MesosBuild(directory=directory, tarball=archives[0], sha512=match.group(1).lower())
    return f"{sums}: no sha512 for {archives[0].name}"


def find_mesos_build(setting: str | None = None) -> MesosBuild | None:
    """The build the setting names (default: ../shared/mesos beside the repository), or
    None when there is none (or the setting is "off")."""
    found = _find_or_reason(setting)
    return found if isinstance(found, MesosBuild) else None


def mesos_off_reason(setting: str | None = None) -> str:
    """'' when a build is found, else one line saying why Mesos is off in the lab."""
    found = _find_or_reason(setting)
    return "" if isinstance(found, MesosBuild) else f"Mesos is off in the lab: {found}"


def _find_or_reason(setting: str | None) -> MesosBuild | str:
    value = setting if setting is not None else mesos_dir_setting()
    if value.strip().lower() == "off":
        return f"{MESOS_DIR_ENV}=off"
    return _find(Path(value).expanduser())


# Where `lab up` publishes the build under the lab's HTTP directory (and URL).
PUBLISHED_DIR = "mesos"
PUBLISHED_NAME = "lab-build"
PUBLISHED_SUMS = "SHA512SUMS"


def published_url(http_url: str) -> str:
    """The fixed URL of the lab's published build (what lab inventories name)."""
    return f"{http_url.rstrip('/')}/{PUBLISHED_DIR}/{PUBLISHED_NAME}"


def published_sums(http_dir: Path) -> Path:
    """The checksum file `lab up` writes beside the published build."""
    return Path(http_dir) / PUBLISHED_DIR / PUBLISHED_SUMS


def _link(source: Path, target: Path) -> None:
    """target = source's bytes (a hard link when the file system allows, else a copy),
    replaced atomically; nothing done when it is already there."""
    if (target.is_file() and target.stat().st_size == source.stat().st_size
            and target.stat().st_mtime_ns >= source.stat().st_mtime_ns):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        os.link(source, partial)
    except OSError:
        shutil.copyfile(source, partial)
    os.replace(partial, target)


def publish(http_dir: Path, setting: str | None = None) -> tuple[MesosBuild | None, str]:
    """Put the build where the lab's HTTP server serves it: http_dir/mesos/<tarball> and
    the fixed http_dir/mesos/lab-build, with SHA512SUMS listing both (the build's own
    digest). Returns (build, "mesos/lab-build") or (None, the reason Mesos is off); when
    off, whatever an earlier `lab up` published is removed."""
    found = _find_or_reason(setting)
    where = Path(http_dir) / PUBLISHED_DIR
    if not isinstance(found, MesosBuild):
        shutil.rmtree(where, ignore_errors=True)
        return None, f"Mesos is off in the lab: {found}"
    for name in (found.tarball.name, PUBLISHED_NAME):
        _link(found.tarball, where / name)
    for old in where.iterdir():
        if old.name not in (found.tarball.name, PUBLISHED_NAME, PUBLISHED_SUMS):
            old.unlink()        # an earlier build, or a .partial of an interrupted copy
    write_if_changed(published_sums(http_dir), "".join(
        f"{found.sha512}  {name}\n" for name in (found.tarball.name, PUBLISHED_NAME)))
    return found, f"{PUBLISHED_DIR}/{PUBLISHED_NAME}"
