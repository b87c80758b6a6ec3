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

import hmac
import ipaddress
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
