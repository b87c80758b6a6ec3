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
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from typing import Awaitable, Callable
from urllib.parse import quote

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0

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
