"""An asyncio server in a daemon thread: what the WebRTC source, the WebSocket stream and the viewer
share, so that each keeps only its own serving code and all three start, fail and stop alike.

    async def serve(ready, stop):          # on the server's loop
        ...bind...
        ready(bound_port)
        await stop.wait()                  # stop(): an asyncio.Event, set by ServerThread.stop()
        ...clean up...

    server = ServerThread("ws-server", serve, what="the WebSocket server", host=host, port=port,
                          hint="--ws HOST:PORT", error_type=ConfigError)   # returns once bound
    server.port, server.loop, server.call_soon(fn, arg), server.stop()

Its own loop and thread keep the servers' network work off the engine's and the consumers' threads;
asyncio.run also cancels whatever a library (aiortc) leaves running, so no "task destroyed" warnings.

The HTTP servers (the WebRTC page, the viewer) serve their aiohttp app with http_site, which gives
every request a deadline:

    async with http_site(app, host, port, request_timeout_s) as bound_port:
        ready(bound_port)
        await stop.wait()

A connection must send a request's head within REQUEST_TIMEOUT_S of opening (or of its last
answer), and the body within REQUEST_TIMEOUT_S more; it is closed otherwise, unanswered, however
slowly its bytes keep trickling in. A browser's keep-alive connection left idle that long is
closed too, and the browser opens another when it needs one.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from typing import AsyncIterator, Awaitable, Callable
from urllib.parse import quote

from aiohttp import web

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
# A browser sends a request (a few kilobytes) whole, in well under a second even on a poor link,
# and reopens a closed idle connection at no cost; a client that opens connections and never
# finishes its requests (slowloris) holds each for this long at most, not for aiohttp's default
# hour, with the file descriptors the engine and the other servers share.
REQUEST_TIMEOUT_S = 10.0

Serve = Callable[[Callable[[int], None], asyncio.Event], Awaitable[None]]


def http_url(scheme: str, host: str, port: int, token: str | None = None) -> str:
    """scheme://HOST:PORT/ with an IPv6 host in brackets, and ?token= when there is a token (the
    pages carry it so that the URL a server logs is all a user needs to open)."""
    url_host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{url_host}:{port}/" + (f"?token={quote(token)}" if token else "")


class ServerThread:
    """Runs `serve(ready, stop)` on a new asyncio loop in a daemon thread named `name`, and returns
    once it has called ready(port) (`port`; `loop` is its loop).

    A failure to bind raises `error_type` (the caller's user-facing error: SourceError, ConfigError)
    saying what to do: "{what} cannot listen on HOST:PORT (reason); is another genmo-live running?
    Pick another port ({hint})"; so does a server that has not bound within START_TIMEOUT_S. Any
    other exception raised before ready() comes out of the constructor as it is.
    stop_timeout_s: how long stop() waits for `serve` to clean up."""

    def __init__(self, name: str, serve: Serve, *, what: str, host: str, port: int, hint: str,
                 error_type: type[Exception], stop_timeout_s: float = STOP_TIMEOUT_S):
        self.what, self.stop_timeout_s = what, stop_timeout_s
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stopped = False
        self._started: concurrent.futures.Future = concurrent.futures.Future()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main(serve)), name=name, daemon=True)
        self._thread.start()
        try:
            self.port: int = self._started.result(timeout=START_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            raise error_type(f"{what} did not start within {START_TIMEOUT_S:.0f} s") from None
        except OSError as e:
            self._thread.join(stop_timeout_s)
            raise error_type(f"{what} cannot listen on {host}:{port} ({e.strerror or e}); is another "
                             f"genmo-live running? Pick another port ({hint})") from None

    async def _main(self, serve: Serve) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await serve(self._started.set_result, self._stop)
        except Exception as e:  # noqa: BLE001 - before ready(): handed to __init__, which raises it
            if self._started.done():
                raise
            self._started.set_exception(e)

    def call_soon(self, fn: Callable, *args) -> bool:
        """Run fn(*args) on the server's loop, from any thread. False once the loop has ended (the
        server is stopping or stopped), when nothing will run."""
        try:
            self.loop.call_soon_threadsafe(fn, *args)
            return True
        except RuntimeError:  # the loop is closed
            return False

    def stop(self) -> None:
        """Set `serve`'s stop event and wait for its thread (a warning if it outlives stop_timeout_s).
        Once: later calls return at once, so that the servers' close() may be called twice."""
        if self._stopped:
            return
        self._stopped = True
        if self._thread.is_alive():
            self.call_soon(self._stop.set)
        self._thread.join(self.stop_timeout_s)
        if self._thread.is_alive():
            log.warning("%s thread did not stop within %.0f s", self.what, self.stop_timeout_s)


@contextlib.asynccontextmanager
async def http_site(app: web.Application, host: str, port: int,
                    request_timeout_s: float = REQUEST_TIMEOUT_S) -> AsyncIterator[int]:
    """Serve `app` on host:port for the duration of the block, which gets the bound port; requests
    have request_timeout_s seconds for their head and as long again for their body (the module
    docstring). Adds a middleware to `app`, after its own."""
    app.middlewares.append(_body_deadline(request_timeout_s))
    # aiohttp's keep-alive timer runs from the connection's opening and from each answer, and
    # arriving bytes do not re-arm it; when it fires while the request's head is still incomplete
    # it closes the connection (aiohttp/web_protocol.py: connection_made, _process_keepalive).
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0, keepalive_timeout=request_timeout_s)
    try:
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


def _body_deadline(timeout_s: float):
    """aiohttp middleware: the request's body read whole within timeout_s, else the connection
    closed unanswered, as the keep-alive timer does with a late head. The handler's own read()
    then returns the body at once."""
    @web.middleware
    async def read_in_time(request: web.Request, handler):
        try:
            async with asyncio.timeout(timeout_s):
                await request.read()
        except TimeoutError:
            request.protocol.force_close()
            raise web.HTTPRequestTimeout() from None  # written to no one: the connection is closed
        return await handler(request)

    return read_in_time
