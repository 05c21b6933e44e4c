"""Where an image comes from, one small class per kind, picked in one place (`detect`),
as metalsmith's sources.py does: a local file or an http(s) URL that k1prov registers in
Glance, a URL (or file) that Ironic fetches itself bypassing Glance, and an image that is
already in Glance by name. The preflight asks a source to `check` itself (what `images
register` would refuse) and for the local file it still lacks (`missing_file`); `images
register` asks it to `register` itself; `nodes enroll` asks it to `find` the ref an
earlier `images register` gave it (never uploading); deploy and reimage ask it for the
node's `instance_info`.

    source = detect(resolve_images(inv).user)
    source.check("images.user")
    registered = source.register(ctx, progress=None, visibility=None)
    info = source.instance_info(ctx)
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from k1prov import glance
from k1prov.context import VerbContext
from k1prov.errors import ConfigError, InventoryError
from k1prov.image_content import direct_image_info, local_path, parse_checksum
from k1prov.inventory.model import ImageSource

# progress(bytes done, bytes total) while one image uploads.
Progress = Callable[[int, int], None]


@dataclass
class Registered:
    """What `images register` did with one image: the reference Ironic gets (a Glance
    image id, or the URL Ironic fetches), the row's action and changes."""

    ref: str
    action: str
    changes: list[str] = field(default_factory=list)
    uuid: str | None = None


@dataclass(frozen=True)
class GlanceImage:
    """An image in Glance by name (k1prov's, of this cluster): `reimage --image NAME`, or an
    inventory image with neither a file nor a URL to register."""

    name: str
    through_glance: ClassVar[bool] = True

    def check(self, field: str) -> None:
        """As an inventory image, a name alone (or both a file and a URL) is refused."""
        raise InventoryError("give exactly one of file or url", field=field)

    def missing_file(self) -> str | None:
        return None

    def register(self, ctx: VerbContext, *, progress: Progress | None = None,
                 visibility: str | None = None) -> Registered:
        raise InventoryError(f"image {self.name}: give exactly one of file or url",
                             field=f"images.{self.name}")

    def find(self, ctx: VerbContext) -> str | None:
        """The Glance id of the newest active image of that name, or None."""
        newest = self._newest(ctx)
        return newest.id if newest is not None else None

    def _newest(self, ctx: VerbContext) -> Any | None:
        candidates = [img for img in glance.list_own_images(ctx.conn, ctx.inventory.cluster, name=self.name)
                      if img.status == "active"]
        return candidates[-1] if candidates else None   # newest: what the last `images register` uploaded

    def instance_info(self, ctx: VerbContext) -> dict[str, Any]:
        """The newest active image of that name that `images register` uploaded."""
        inv = ctx.inventory
        image = self._newest(ctx)
        if image is None:
            raise ConfigError(f"image {self.name!r} of cluster {inv.cluster} is not in Glance "
                              f"(run `k1prov images register -i {inv.path}` first)")
        size = image.virtual_size or image.size or 0
        # Ironic needs root_gb for a partition image; harmless for whole-disk.
        return {"image_source": image.id, "root_gb": max(1, math.ceil(size / 2**30))}


@dataclass(frozen=True)
class _Uploaded:
    """An image k1prov puts into Glance (find-or-create by name and checksum); deploy then
    reads it back from Glance by name."""

    src: ImageSource
    through_glance: ClassVar[bool] = True

    @property
    def name(self) -> str:
        return self.src.name

    def check(self, field: str) -> None:
        """A checksum given must be one Glance and Ironic can read (`field`: the slot)."""
        if self.src.checksum:
            parse_checksum(self.src.checksum, field=f"{field}.checksum")

    def missing_file(self) -> str | None:
        return _missing(self.src)

    def register(self, ctx: VerbContext, *, progress: Progress | None = None,
                 visibility: str | None = None) -> Registered:
        reg = glance.register_image(ctx.conn, self.src, cluster=ctx.inventory.cluster,
                                    timeout=ctx.timeouts.image_upload, progress=progress,
                                    visibility=visibility)
        return Registered(ref=reg.id, uuid=reg.id, action="unchanged" if reg.reused else "uploaded",
                          changes=[reg.checksum])

    def find(self, ctx: VerbContext) -> str | None:
        return GlanceImage(self.name).find(ctx)

    def instance_info(self, ctx: VerbContext) -> dict[str, Any]:
        return GlanceImage(self.name).instance_info(ctx)


class FileImage(_Uploaded):
    """A local file: hashed here, then uploaded into Glance (k1prov.glance)."""


class UrlImage(_Uploaded):
    """An http(s) URL: streamed into Glance and hashed on the way (k1prov.glance)."""


@dataclass(frozen=True)
class DirectImage:
    """An image Ironic fetches itself, bypassing Glance (`bypass_glance: true`): its URL (or
    a file:// URL) and checksum go into instance_info (image_content.direct_image_info)."""

    src: ImageSource
    through_glance: ClassVar[bool] = False

    @property
    def name(self) -> str:
        return self.src.name

    def check(self, field: str) -> None:
        """Exactly one of file or url, a readable checksum, and one at all: Ironic checks
        the image itself, with nothing from Glance to go on."""
        if bool(self.src.file) == bool(self.src.url):
            raise InventoryError("give exactly one of file or url", field=field)
        if self.src.checksum:
            parse_checksum(self.src.checksum, field=f"{field}.checksum")
        if not (self.src.checksum or self.src.checksum_url or self.src.file):
            raise InventoryError("an image that bypasses Glance needs a checksum or checksum_url",
                                 field=f"{field}.checksum")

    def missing_file(self) -> str | None:
        return _missing(self.src)

    def register(self, ctx: VerbContext, *, progress: Progress | None = None,
                 visibility: str | None = None) -> Registered:
        url = direct_image_info(self.src)["image_source"]
        return Registered(ref=url, action="bypasses glance", changes=[url])

    def find(self, ctx: VerbContext) -> str:
        """Its URL (register's ref): nothing was uploaded, so there is nothing to look for."""
        return self.src.url or local_path(self.src).resolve().as_uri()

    def instance_info(self, ctx: VerbContext) -> dict[str, Any]:
        return direct_image_info(self.src)


Source = GlanceImage | FileImage | UrlImage | DirectImage


def _missing(src: ImageSource) -> str | None:
    """src.file when it names a local file that is not there (yet)."""
    if src.file and not Path(os.path.expandvars(os.path.expanduser(src.file))).is_file():
        return src.file
    return None


def detect(src: ImageSource) -> Source:
    """The one place that tells the kinds apart."""
    if src.bypass_glance:
        return DirectImage(src)
    if src.file and not src.url:
        return FileImage(src)
    if src.url and not src.file:
        return UrlImage(src)
    return GlanceImage(src.name)
