"""Which hosts may be reached: none that resolves to a non-global address unless the lake allows it."""

from __future__ import annotations

import ipaddress
import socket

from lakegen.artifacts.remote.settings import POLICIES_FILE, Refused, RemoteError, StorageSettings


def check_host(host: str, port: int | None, settings: StorageSettings) -> list[str]:
    """The addresses ``host`` resolves to, after refusing any that is not global unless allowed."""
    host = host.strip("[]").lower()
    allowed = host in settings.allow_hosts or f"{host}:{port}" in settings.allow_hosts
    try:
        infos = socket.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise RemoteError(f"cannot resolve host '{host}': {e}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not allowed:
        for address in addresses:
            why = _not_global(address)
            if why:
                named = host if host == address else f"{host} ({address})"
                raise Refused(
                    f"refused: {named} is {why}; a lake that needs it lists '{host}' under "
                    f"storage.allow_hosts in {POLICIES_FILE}"
                )
    return addresses


def _not_global(address: str) -> str | None:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (where cloud metadata services answer)"
    if ip.is_private:
        return "a private address"
    if not ip.is_global or ip.is_multicast:
        return "not a public address"
    return None
