"""The one error tree of k1prov.

Every error a user can cause or meet derives from K1provError. Exceptions of the
SDKs (openstacksdk, paramiko, Fabric) are caught in the one module that talks to
them and re-raised as one of these; the CLI turns them into one line and an exit
code. Fields are structured so that callers (and --json) need not parse messages.
"""
from __future__ import annotations

import errno


class K1provError(Exception):
    """Root of every k1prov error. `exit_code` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InventoryError(K1provError):
    """A located problem in an inventory file: FILE:LINE: FIELD: REASON."""

    exit_code = 2

    def __init__(self, reason: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None):
        self.reason, self.file, self.line, self.field = reason, file, line, field
        where = ""
        if file:
            where = f"{file}:{line}: " if line else f"{file}: "
        super().__init__(f"{where}{field + ': ' if field else ''}{reason}")


class SecretError(InventoryError):
    """A password reference that cannot be resolved (never carries the secret)."""


class ConfigError(K1provError):
    """Bad settings outside the inventory (CLI options, clouds.yaml entry, lab settings)."""

    exit_code = 2


class CloudError(K1provError):
    """Ironic or Glance could not be reached or refused a request."""

    def __init__(self, message: str, *, service: str | None = None, node: str | None = None,
                 transient: bool = False):
        # transient: the service did not answer (down, refused, timed out), as opposed
        # to answering with a refusal; worth another try later, and it stops a verb.
        self.service, self.node, self.transient = service, node, transient
        super().__init__(message)


class NodeError(K1provError):
    """One node failed; carries the node name and Ironic's last_error when there is one."""

    def __init__(self, node: str, reason: str, *, transient: bool = False):
        # transient: Ironic was busy (503, no free conductor worker): the fan-out engine
        # slows down and tries the node again; not a problem of the node.
        self.node, self.reason, self.transient = node, reason, transient
        super().__init__(f"{node}: {reason}")


class LabError(K1provError):
    """The lab could not be set up, started or stopped."""


class LockError(K1provError):
    """Another k1prov run holds the cluster's lock."""


class StateError(K1provError):
    """k1prov's own files (the state directory: lock, run records, host keys, caches)
    cannot be written: the disk is full, over quota or read-only."""

    # What a full or read-only disk says; any other OSError is a bug to show as such.
    ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)

    def __init__(self, path: str, reason: str):
        self.path = path
        super().__init__(f"cannot write {path}: {reason}; free space there (or make it writable) "
                         "and run again")

    @classmethod
    def translate(cls, exc: BaseException, path: object = None) -> "StateError | None":
        """The StateError an OSError of a full or read-only disk stands for (writing
        `path`, default the error's own file name), else None."""
        if isinstance(exc, OSError) and exc.errno in cls.ERRNOS:
            where = path or exc.filename or "k1prov's state directory"
            return cls(str(where), exc.strerror or str(exc))
        return None


class TransportError(K1provError):
    """SSH or another transport failed for one host (connection, auth, host key)."""

    def __init__(self, host: str, reason: str, *, transient: bool = False):
        self.host, self.reason, self.transient = host, reason, transient
        super().__init__(f"{host}: {reason}")
