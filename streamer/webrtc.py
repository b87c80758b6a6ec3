"""A browser camera as a frame source, over WebRTC.

WebRTCSource serves a capture page (streamer/web/capture.html) and a signalling endpoint from a
small aiohttp server; a browser that opens the page sends its camera to an aiortc peer connection,
and the decoded frames come out of the source like any other:

    with WebRTCSource() as src:           # logs "open http://127.0.0.1:8090/ in a browser ..."
        for frame in src:                 # Frame(rgb (H, W, 3) uint8, t_capture, index)
            ...

The server and the peer connections live on an asyncio loop in a daemon thread (a ServerThread,
streamer/server_thread.py); the consumer reads from a two-frame queue that drops the oldest frame
when it falls behind, so what it reads is at most two frames old. One browser at a time: a new offer
replaces the connected peer.

Loopback only by default: the server listens on 127.0.0.1, ICE uses 127.0.0.1 alone, and the
browser's other candidates are dropped from its offer, so nothing leaves the machine. Another
`host` (LAN use) needs a `token`, which the page URL carries and POST /offer must present (wrong
ones from an address answered one at a time, each later than the last). Without
a token, a request must name this machine as its Host and come from no other site
(streamer.access), so a web page cannot hang up the camera; and an offer replaces the connected
browser only once it has been answered. A connection that does not send a whole request within
10 s (the head within 10 s of opening or of the last answer, the body within 10 s more) is closed,
however slowly its bytes trickle in (streamer.server_thread.http_site).
"""
from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Iterator

import aioice.ice
import numpy as np
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from streamer.access import GuessThrottle, guard, is_loopback
from streamer.frames import Frame, Source, SourceError
from streamer.server_thread import REQUEST_TIMEOUT_S, ServerThread, http_site, http_url

log = logging.getLogger(__name__)

CAPTURE_PAGE = Path(__file__).resolve().parent / "web" / "capture.html"

# aioice offers no way to choose the addresses it gathers host candidates on (it takes every
# interface but loopback; upstream aiortc/aioice#2 and #57 are open, with a filter callable proposed
# but not built). So its module-level lookup is wrapped, and the wrapper changes nothing unless the
# calling task set _ICE_HOSTS: only the peer connections this module negotiates are restricted,
# any other aioice user in the process keeps the library's behaviour.
_ICE_HOSTS: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar("ice_hosts", default=None)
_aioice_host_addresses = aioice.ice.get_host_addresses


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _ICE_HOSTS.get()
    if chosen is None:
        return _aioice_host_addresses(use_ipv4, use_ipv6)
    return [a for a in chosen if (use_ipv6 if ":" in a else use_ipv4)]


aioice.ice.get_host_addresses = _host_addresses


def loopback_candidates_only(sdp: str) -> str:
    """The SDP without its ICE candidate lines on non-loopback addresses (mDNS `.local` names
    included): a loopback-only peer must not send to them, and resolving a `.local` name would send
    multicast onto the network.

    Browsers other than a test Chromium (--allow-loopback-in-peer-connection) offer no loopback
    candidate at all, yet they connect: their checks, sent from a LAN address to our 127.0.0.1
    candidate, stay inside the machine and make a peer-reflexive candidate. So once a candidate is
    dropped, `end-of-candidates` goes too: with it, aioice would give up at once for want of pairs."""
    lines = sdp.splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith("a=candidate:")
            or (len(line.split()) > 4 and is_loopback(line.split()[4]))]
    if len(kept) < len(lines):
        kept = [line for line in kept if not line.startswith("a=end-of-candidates")]
    return "".join(kept)


class OfferError(ValueError):
    """A POST /offer the server refuses; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def read_offer(body: bytes) -> dict:
    """A POST /offer body as its JSON object {sdp, type: "offer", token?}; OfferError (400) for
    anything else."""
    try:
        msg = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested thousands deep
        raise OfferError("the body is not JSON") from None
    if not isinstance(msg, dict):
        raise OfferError("the body must be a JSON object {sdp, type}")
    return msg


def parse_offer(msg: dict) -> RTCSessionDescription:
    """The offer in a body read by read_offer (its token already checked); OfferError (400) when it
    is not one."""
    sdp, kind = msg.get("sdp"), msg.get("type")
    if kind != "offer":
        raise OfferError(f'"type" must be "offer", not {kind!r}')
    if not isinstance(sdp, str) or "m=video" not in sdp:
        raise OfferError('"sdp" must be an SDP offer with a video track')
    return RTCSessionDescription(sdp=sdp, type="offer")


class WebRTCSource(Source):
    """Frames from a browser's camera. Serves http://HOST:PORT/ (the capture page) and POST /offer.

    host: where the server listens; anything but loopback needs `token`. port: 0 picks a free one
    (`port` and `url` then say which). ice_hosts: the addresses ICE host candidates use; default
    127.0.0.1 on loopback, every interface otherwise. request_timeout_s: seconds a connection has
    for a request's head, and again for its body (streamer.server_thread.http_site). Attributes:
    url (the page to open, token included), dropped (frames dropped because the consumer was
    slower than the camera).
    Frames: rgb (H, W, 3) uint8 at the browser's resolution (it may start lower and grow),
    t_capture = time.time() when the decoded frame reached the server, index 0, 1, ... across
    browsers."""

    name = "webrtc"
    fps = None
    live = True

    def __init__(self, host: str = "127.0.0.1", port: int = 8090, token: str | None = None,
                 ice_hosts: list[str] | None = None, request_timeout_s: float = REQUEST_TIMEOUT_S):
        loopback = is_loopback(host)
        if not loopback and not token:
            raise SourceError(f"listening on {host} lets other machines send video: give a token "
                              f"(webrtc.token) that the page URL will carry, or use 127.0.0.1")
        self.host, self.port, self.token = host, port, token or None
        self.request_timeout_s = request_timeout_s
        if ice_hosts is None:
            ice_hosts = ["127.0.0.1"] if loopback else None
        self._ice_hosts = tuple(ice_hosts) if ice_hosts is not None else None
        self._loopback_ice = self._ice_hosts is not None and all(is_loopback(h) for h in self._ice_hosts)
        self.dropped = 0
        self._index = 0
        # (av.VideoFrame, t_capture): converting to RGB only the frames the consumer takes, in its
        # thread, keeps the event loop free for the network.
        self._frames: queue.Queue = queue.Queue(maxsize=2)
        self._closed = threading.Event()
        self._peer: RTCPeerConnection | None = None
        self._peer_count = 0
        self._throttle = GuessThrottle()
        self._readers: dict[RTCPeerConnection, set[asyncio.Task]] = {}
        self._server = ServerThread("webrtc-source", self._serve, what="the WebRTC server", host=host, port=port,
                                    hint="webrtc.port", error_type=SourceError)
        self.port = self._server.port
        self.url = http_url("http", host, self.port, self.token)
        log.info("open %s in a browser to send your camera", self.url)

    # --- the consumer's side -------------------------------------------------------------------

    def __iter__(self) -> Iterator[Frame]:
        while not self._closed.is_set():
            item = self._frames.get()
            if item is None:  # close() was called
                return
            video_frame, t = item
            rgb = video_frame.to_ndarray(format="rgb24")
            # rows may be padded to the decoder's alignment
            yield Frame(np.ascontiguousarray(rgb), t, self._index)
            self._index += 1

    def close(self) -> None:
        """Hang up the browser, stop the server and its thread; iteration then ends."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._server.stop()
        while True:  # wake a consumer blocked in next()
            try:
                self._frames.put_nowait(None)
                break
            except queue.Full:
                self._drain_one()

    def _drain_one(self) -> bool:
        try:
            self._frames.get_nowait()
            return True
        except queue.Empty:  # the consumer took it first
            return False

    # --- the server's side (on the loop thread) ------------------------------------------------

    async def _serve(self, ready, stop: asyncio.Event) -> None:
        app = web.Application(middlewares=[guard(self.token)])
        app.router.add_get("/", self._page)
        app.router.add_post("/offer", self._offer)
        async with http_site(app, self.host, self.port, self.request_timeout_s) as bound:
            ready(bound)
            await stop.wait()
            peers = set(self._readers) | ({self._peer} if self._peer is not None else set())
            for pc in peers:
                await self._hang_up(pc)

    async def _hang_up(self, pc: RTCPeerConnection) -> None:
        if self._peer is pc:
            self._peer = None
        await pc.close()
        # a track whose media never started does not end when its connection closes
        readers = self._readers.pop(pc, set())
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(body=CAPTURE_PAGE.read_bytes(), content_type="text/html",
                            headers={"Cache-Control": "no-store"})

    async def _offer(self, request: web.Request) -> web.Response:
        try:
            msg = read_offer(await request.read())
            if self.token is not None and not await self._throttle.check(
                    request.remote or "", msg.get("token", request.query.get("token")), self.token):
                raise OfferError("missing or wrong token: open the page at the URL the server logged", 403)
            offer = parse_offer(msg)
        except OfferError as e:
            return web.json_response({"error": str(e)}, status=e.status)
        if self._loopback_ice:
            offer = RTCSessionDescription(sdp=loopback_candidates_only(offer.sdp), type="offer")

        self._peer_count += 1
        peer_id = self._peer_count
        # No ICE servers: aiortc would otherwise ask a public STUN server, and a local capture tool
        # has no business calling out (nor can it, on a machine without a network).
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))

        @pc.on("track")
        def on_track(track) -> None:
            if track.kind == "video":
                self._readers.setdefault(pc, set()).add(asyncio.ensure_future(self._read(track, peer_id)))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info("browser %d: %s", peer_id, pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                await self._hang_up(pc)

        _ICE_HOSTS.set(self._ice_hosts)  # this request's task, and the gathering it starts
        try:
            await pc.setRemoteDescription(offer)
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as e:  # noqa: BLE001 - aiortc raises many types on an SDP it cannot use
            # The connected browser, if any, keeps streaming: an offer that cannot be answered
            # replaces nothing.
            await self._hang_up(pc)
            return web.json_response({"error": f"unusable offer: {e}"}, status=400)
        if self._peer is not None:
            log.info("a new browser connected: closing the previous one")
            await self._hang_up(self._peer)
        self._peer = pc
        return web.json_response({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})

    async def _read(self, track, peer_id: int) -> None:
        first = True
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            t = time.time()
            if first:
                log.info("browser %d: receiving %dx%d video", peer_id, frame.width, frame.height)
                first = False
            try:
                self._frames.put_nowait((frame, t))
            except queue.Full:
                # only this thread puts, so after taking the oldest there is room
                self.dropped += self._drain_one()
                self._frames.put_nowait((frame, t))
