"""Checks and normal forms of the inventory's scalar values.

Each function returns the normal form or raises ValueError with a short reason that
the loader places after "FILE:LINE: FIELD: ". None of them is ever given a password.
"""
from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterable

from k1prov.image_content import split_checksum

# RFC 1123 host name label: letters, digits, '-', 1-63 characters, no '-' at either end.
# Node names become host names, Ironic node names and shell arguments, so nothing else.
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_CLUSTER = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_MAC = re.compile(r"^[0-9a-fA-F]{2}([:-])(?:[0-9a-fA-F]{2}\1){4}[0-9a-fA-F]{2}$")
_VERSION = re.compile(r"^[0-9]+(?:\.[0-9]+){0,3}(?:[-+~][0-9A-Za-z.+~-]+)?$")
_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")


def hostname(text: str) -> str:
    if not _LABEL.match(text):
        raise ValueError(f"{text!r} is not a valid host name (RFC 1123 label: letters, digits "
                         "and '-', 1-63 characters, not starting or ending with '-')")
    return text


def cluster_name(text: str) -> str:
    if not _CLUSTER.match(text):
        raise ValueError(f"{text!r} is not a valid cluster name (a-z, 0-9 and '-', 1-63 "
                         "characters, not starting or ending with '-')")
    return text


def mac(text: str) -> str:
    if not _MAC.match(text):
        raise ValueError(f"{text!r} is not a MAC address (six hex octets: 52:54:00:aa:00:01)")
    normal = text.lower().replace("-", ":")
    first = int(normal[:2], 16)
    if first & 1:
        raise ValueError(f"{normal} is a multicast MAC address, not a NIC's")
    if normal == "00:00:00:00:00:00":
        raise ValueError("00:00:00:00:00:00 is not a NIC's MAC address")
    return normal


def ipv4(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address (IPv4)") from None


def ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None


def port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"{value!r} is not a port number (1-65535)")
    return value


def checksum(text: str) -> str:
    """'sha256:HEX' / 'sha512:HEX' (the algorithm always written out), normalised."""
    algo, digest = split_checksum(text, bare_hex=False)
    return f"{algo}:{digest}"


def version(text: str) -> str:
    if not _VERSION.match(text):
        raise ValueError(f"{text!r} is not a version (like 3.5.7)")
    return text


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """" (did you mean 'X'?)" for the closest of `known`, "" when none is close."""
    close = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def major(version_text: str) -> int:
    return int(re.match(r"[0-9]+", version_text).group(0))


def url(text: str) -> str:
    scheme, sep, rest = text.partition("://")
    if scheme not in ("http", "https") or not sep or not rest or any(c.isspace() for c in text):
        raise ValueError(f"{text!r} is not an http(s) URL")
    return text


def gateway(text: str) -> str:
    """An SSH jump host: [user@]host[:port]."""
    user, at, hostport = text.rpartition("@")
    if at and not _USER.match(user):
        raise ValueError(f"{text!r}: {user!r} is not a user name")
    host, colon, port_text = hostport.partition(":")
    if colon:
        if not port_text.isdigit():
            raise ValueError(f"{text!r}: port {port_text!r} is not a number")
        port(int(port_text))
    try:
        ip(host)
    except ValueError:
        if not all(_LABEL.match(label) for label in host.split(".")):
            raise ValueError(f"{text!r} is not [user@]host[:port]") from None
    return text


def user_name(text: str) -> str:
    if not _USER.match(text):
        raise ValueError(f"{text!r} is not a user name")
    return text
