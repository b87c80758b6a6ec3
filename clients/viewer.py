"""The browser viewer (`genmo-live run --viewer HOST:PORT`): the live pose on the default body.

ViewerServer serves a page (clients/web/viewer.html and viewer.js, three.js vendored under
clients/web/vendor) that reads the pose stream of a WebSocketServer (clients/ws.py) and draws the
body skinned live, its root trail, the frame's source and the stream's rate and latency, with a
box that sets the engine's text prompt. The page needs nothing from the internet.

    viewer = ViewerServer("127.0.0.1", 8080, "ws://127.0.0.1:8765/", body)   # serving once constructed
    viewer.close()

Routes: GET / the page; GET /config.json {"ws": the WebSocket URL}; GET /body.json the body (see
body_json); GET /viewer.js and /vendor/three.module.min.js the scripts. With a token, the page,
config.json and body.json need ?token= (403 without); the page passes the token on to the
WebSocket as its first message. The page's own ?ws= overrides the WebSocket URL. Without a token,
every request must name this machine as its Host and come from no other site (streamer.access);
with one, wrong tokens from an address are answered one at a time, each later than the last.

A connection that does not send a whole request within 10 s (the head within 10 s of opening or of
the last answer, the body within 10 s more) is closed, however slowly its bytes trickle in; so is an
idle keep-alive connection after 10 s (streamer.server_thread.http_site).

The server lives on an asyncio loop in a daemon thread (streamer/server_thread.py), like the
WebSocket server's.
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from aiohttp import web

from configs.config import ConfigError
from engine.body.body_model import Body
from streamer.access import GuessThrottle, guard
from streamer.server_thread import REQUEST_TIMEOUT_S, ServerThread, http_site, http_url

log = logging.getLogger(__name__)

WEB = Path(__file__).resolve().parent / "web"
STATIC = {  # path -> (file, content type)
    "/viewer.js": (WEB / "viewer.js", "text/javascript"),
    "/vendor/three.module.min.js": (WEB / "vendor" / "three.module.min.js", "text/javascript"),
}
INFLUENCES = 4  # skinning weights kept per vertex, as three.js and most engines do


def body_json(body: Body) -> dict:
    """What the page needs to pose `body`, as flat lists (metres):

    rest_joints: 24*3; parents: 24 (-1 for the root); names: 24; stature.
    mesh: None for a skeleton-only body, else vertices V*3 (rest pose), faces F*3 (vertex indices),
    skin_index V*4 and skin_weight V*4: each vertex's four heaviest joints, weights renormalised
    to sum to 1 (the default body has at most five non-zero, the four carry over 99 %).
    """
    out = {"rest_joints": np.round(body.rest_joints.numpy().astype(np.float64), 5).reshape(-1).tolist(),
           "parents": list(body.parents), "names": list(body.names), "stature": body.stature, "mesh": None}
    if body.has_mesh:
        weights = body.weights.numpy()
        index = np.argsort(-weights, axis=1)[:, :INFLUENCES]
        top = np.take_along_axis(weights, index, axis=1)
        top = top / top.sum(1, keepdims=True)
        out["mesh"] = {"vertices": np.round(body.vertices.numpy().astype(np.float64), 5).reshape(-1).tolist(),
                       "faces": body.faces.numpy().reshape(-1).tolist(),
                       "skin_index": index.reshape(-1).tolist(),
                       "skin_weight": np.round(top.astype(np.float64), 5).reshape(-1).tolist()}
    return out


def browser_ws_url(ws_url: str, page_host: str) -> str:
    """The WebSocket URL as the browser should use it: a server on every interface (0.0.0.0, ::)
    is reached at the host the page itself came from (`page_host`, without its port)."""
    parts = urlsplit(ws_url)
    if parts.hostname not in ("0.0.0.0", "::"):
        return ws_url
    host = f"[{page_host}]" if ":" in page_host else page_host
    return parts._replace(netloc=f"{host}:{parts.port}").geturl()


class ViewerServer:
    """Serves the viewer page for the pose stream at `ws_url` with `body`'s mesh, at
    http://HOST:PORT/ from construction until close(). port 0 picks a free port (`port`, `url`).
    token: required by the page and its data when set. request_timeout_s: seconds a connection has
    for a request's head, and again for its body (streamer.server_thread.http_site). Raises
    ConfigError when it cannot listen."""

    name = "viewer"

    def __init__(self, host: str, port: int, ws_url: str, body: Body, token: str | None = None,
                 request_timeout_s: float = REQUEST_TIMEOUT_S):
        self.host, self.ws_url, self.token = host, ws_url, token or None
        self.request_timeout_s = request_timeout_s
        self._throttle = GuessThrottle()
        self._body = json.dumps(body_json(body), separators=(",", ":")).encode()
        self._server = ServerThread("viewer-server", functools.partial(self._serve, port), what="the viewer",
                                    host=host, port=port, hint="--viewer HOST:PORT", error_type=ConfigError)
        self.port = self._server.port
        self.url = http_url("http", host, self.port, self.token)
        log.info("viewer on %s", self.url)

    def close(self) -> None:
        """Stop the server and its thread."""
        self._server.stop()

    # --- the loop thread -----------------------------------------------------------------------

    async def _serve(self, port: int, ready, stop: asyncio.Event) -> None:
        app = web.Application(middlewares=[guard(self.token)])
        app.router.add_get("/", self._page)
        app.router.add_get("/config.json", self._config)
        app.router.add_get("/body.json", self._body_json)
        for path in STATIC:
            app.router.add_get(path, self._static)
        async with http_site(app, self.host, port, self.request_timeout_s) as bound:
            ready(bound)
            await stop.wait()

    async def _allowed(self, request: web.Request) -> bool:
        return self.token is None or await self._throttle.check(request.remote or "", request.query.get("token"),
                                                                self.token)

    def _forbidden(self) -> web.Response:
        return web.Response(status=403, text="missing or wrong token: open the viewer at the URL genmo-live logged\n")

    async def _page(self, request: web.Request) -> web.Response:
        if not await self._allowed(request):
            return self._forbidden()
        return web.Response(body=(WEB / "viewer.html").read_bytes(), content_type="text/html",
                            headers={"Cache-Control": "no-store"})

    async def _config(self, request: web.Request) -> web.Response:
        if not await self._allowed(request):
            return self._forbidden()
        return web.json_response({"ws": browser_ws_url(self.ws_url, request.url.host)},
                                 headers={"Cache-Control": "no-store"})

    async def _body_json(self, request: web.Request) -> web.Response:
        if not await self._allowed(request):
            return self._forbidden()
        return web.Response(body=self._body, content_type="application/json", headers={"Cache-Control": "no-store"})

    async def _static(self, request: web.Request) -> web.Response:
        path, content_type = STATIC[request.path]
        return web.Response(body=path.read_bytes(), content_type=content_type)
