"""Delivery to client notify_urls only reaches public addresses (SPEC 8).

Validation refuses private IP literals up front; this resolver closes the rest: a public
name that resolves to a private, loopback or link-local address is dropped at
connection time, so a client cannot point the gateway into the mall's network.
"""

from __future__ import annotations

import ipaddress
import socket

from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver


class PublicOnlyResolver(AbstractResolver):
    def __init__(self, *, allow_loopback: bool):
        self._inner = DefaultResolver()
        self._allow_loopback = allow_loopback

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET):
        answers = await self._inner.resolve(host, port, family)
        allowed = [a for a in answers if self._allowed(a["host"])]
        if not allowed:
            raise OSError(f"{host} resolves to no public address")
        return allowed

    def _allowed(self, address: str) -> bool:
        ip = ipaddress.ip_address(address)
        return ip.is_global or (self._allow_loopback and ip.is_loopback)

    async def close(self) -> None:
        await self._inner.close()
