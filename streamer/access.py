"""Who may talk to the servers on this machine (the WebRTC capture page, the WebSocket stream, the
viewer): loopback addresses, the Host a client asked for, a page's Origin and tokens, each checked
the one way written here.

A server on loopback without a token trusts this machine's own programs, not every web page open in
the user's browser. A page's Origin, and the Host its request names, must be this machine: an IP
literal in 127.0.0.0/8, ::1, or the name localhost. Any other name is a web site, even one that
begins "127.0.0.1." or that its owner's DNS points at 127.0.0.1 (DNS rebinding: the browser then
sends that name as Host, which is how it is caught). With a token, the token is the check.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
from collections import OrderedDict
from urllib.parse import urlsplit

from aiohttp import web


def is_loopback(host: str) -> bool:
    """Whether `host` (an IP literal, IPv6 with or without brackets, or "localhost") is this
    machine's loopback."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def loopback_origin(origin: str) -> bool:
    """Whether a browser's Origin header ("http://127.0.0.1:8080") names a page served from this
    machine; "null" (a file or a sandboxed frame) does not."""
    try:
        parts = urlsplit(origin)
        host = parts.hostname
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and host is not None and is_loopback(host)


def loopback_host(host_header: str) -> bool:
    """Whether an HTTP Host header ("127.0.0.1:8080", "[::1]:8080", "localhost") names this machine."""
    return loopback_origin(f"http://{host_header}")


def same_token(presented, token: str) -> bool:
    """The token a client presented against the server's, in constant time. Anything else than
    text, and text no UTF-8 can hold (a lone surrogate from a JSON escape), is a wrong token."""
    if not isinstance(presented, str):
        return False
    try:
        return hmac.compare_digest(presented.encode(), token.encode())
    except UnicodeEncodeError:
        return False


def request_refusal(hosts: list[str], origins: list[str], token: str | None) -> str | None:
    """Why a request must be refused (one line), or None. Its Host and Origin headers, as lists:
    more than one of either is no one's. With no token, a Host that is not this machine and a page
    from elsewhere are refused too."""
    if len(hosts) > 1 or len(origins) > 1:
        return "more than one Host or Origin header"
    if token is not None:
        return None
    if not hosts or not loopback_host(hosts[0]):
        return (f"Host {hosts[0] if hosts else None!r} is not this machine: open the page at 127.0.0.1 or "
                f"localhost, or set a token")
    if origins and not loopback_origin(origins[0]):
        return f"pages at {origins[0]} need the server's token"
    return None


def guard(token: str | None):
    """aiohttp middleware: every request passes request_refusal first (403 with its line)."""
    @web.middleware
    async def check(request: web.Request, handler):
        refusal = request_refusal(request.headers.getall("Host", []), request.headers.getall("Origin", []), token)
        if refusal:
            return web.Response(status=403, text=refusal + "\n")
        return await handler(request)

    return check


class GuessThrottle:
    """Token checks from one address, one at a time, each after a wait that doubles with every
    wrong token from there (FIRST_WAIT_S up to MAX_WAIT_S), so guessing costs an attacker time,
    not the server: 300 guesses a second become a few a minute. A right token clears the address.
    Remembers the last MAX_ADDRESSES addresses. On one asyncio loop (a server's).

        ok = await throttle.check(address, presented, token)   # same_token, in the address's turn
    """

    FIRST_WAIT_S = 0.25
    MAX_WAIT_S = 30.0
    MAX_ADDRESSES = 1024

    def __init__(self):
        self._failures: OrderedDict[str, int] = OrderedDict()
        # address -> (its lock, checks waiting or running): kept only while there are some
        self._turns: dict[str, tuple[asyncio.Lock, int]] = {}

    def wait_s(self, address: str) -> float:
        failures = self._failures.get(address, 0)
        return 0.0 if not failures else min(self.FIRST_WAIT_S * 2 ** (failures - 1), self.MAX_WAIT_S)

    @contextlib.asynccontextmanager
    async def turn(self, address: str):
        lock, users = self._turns.get(address, (None, 0))
        lock = lock or asyncio.Lock()
        self._turns[address] = (lock, users + 1)
        try:
            async with lock:
                await asyncio.sleep(self.wait_s(address))
                yield
        finally:
            lock, users = self._turns[address]
            if users == 1:
                del self._turns[address]
            else:
                self._turns[address] = (lock, users - 1)

    async def check(self, address: str, presented, token: str) -> bool:
        """same_token(presented, token), in `address`'s turn, its outcome recorded."""
        async with self.turn(address):
            ok = same_token(presented, token)
            self.record(address, ok)
        return ok

    def record(self, address: str, ok: bool) -> None:
        if ok:
            self._failures.pop(address, None)
            return
        self._failures[address] = self._failures.get(address, 0) + 1
        self._failures.move_to_end(address)
        while len(self._failures) > self.MAX_ADDRESSES:
            self._failures.popitem(last=False)
