"""The browser viewer (`genmo-live run --viewer HOST:PORT`): the live pose on the default body.

ViewerServer serves a page (clients/web/viewer.html and viewer.js, three.js vendored under
clients/web/vendor) that reads the pose stream of a WebSocketServer (clients/ws.py) and draws the
body skinned live, its root trail, the frame's source and the stream's rate and latency, with a
box that sets the engine's text prompt. The page needs nothing from the internet.

    viewer = ViewerServer("127.0.0.1", 8080, "ws://127.0.0.1:8765/", body)   # serving once constructed
    viewer = ViewerServer(..., avatar=Path("me.vrm"))   # a VRM avatar (configs.config.check_avatar) instead
    viewer.show_preview(preview)   # with preview_fps set: the camera preview (streamer.preview), any thread
    viewer.close()

Routes: GET / the page; GET /config.json {"ws": the WebSocket URL, "preview": null, or with the
camera preview on {"fps", "bones": landmark index pairs to draw}, "avatar": {"url": "avatar.vrm" and
"name": its file's name, or both null without one, "max_bytes": the largest avatar file, dropped
ones too}}; GET /body.json the body (see body_json); GET /avatar.vrm the avatar's file (404
without one); GET /preview.json?have=SEQ the newest camera preview unless it is preview SEQ (see
preview_json; 204 when it is, or when there is none yet; 404 with the preview off): not "newer
than", so a page that outlives a restarted run takes the new run's previews from its first; GET
/viewer.js, /vendor/three.module.min.js and /vendor/three-vrm.module.min.js the scripts. With a
token, the page, config.json, body.json, avatar.vrm and preview.json need ?token= (403 without);
the page passes the token on to the WebSocket as its first message. The page's own ?ws= overrides
the WebSocket URL. Without a token, every request must name this machine as its Host and come from
no other site (streamer.access); with one, wrong tokens from an address are answered one at a
time, each later than the last.

A connection that does not send a whole request within 10 s (the head within 10 s of opening or of
the last answer, the body within 10 s more) is closed, however slowly its bytes trickle in; so is an
idle keep-alive connection after 10 s (streamer.server_thread.http_site).

The server lives on an asyncio loop in a daemon thread (streamer/server_thread.py), like the
WebSocket server's.
"""
from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import re
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from aiohttp import web

from configs.config import MAX_AVATAR_BYTES, ConfigError
from engine.body.body_model import Body
from engine.body.conventions import bone_for_smpl
from engine.model.conditions import landmark_conditions
from streamer.access import GuessThrottle, guard
from streamer.landmarks import L, inside_image, present_landmarks
from streamer.preview import Preview
from streamer.server_thread import REQUEST_TIMEOUT_S, ServerThread, http_site, http_url

log = logging.getLogger(__name__)

WEB = Path(__file__).resolve().parent / "web"
STATIC = {  # path -> (file, content type)
    "/viewer.js": (WEB / "viewer.js", "text/javascript"),
    "/vendor/three.module.min.js": (WEB / "vendor" / "three.module.min.js", "text/javascript"),
    "/vendor/three-vrm.module.min.js": (WEB / "vendor" / "three-vrm.module.min.js", "text/javascript"),
}
INFLUENCES = 4  # skinning weights kept per vertex, as three.js and most engines do
# The camera preview's limbs, each with the landmarks whose visibility is its confidence.
LIMBS = {f"{side} {limb}": tuple(L[f"{side}_{joint}"] for joint in joints)
         for limb, joints in (("arm", ("shoulder", "elbow", "wrist")), ("leg", ("hip", "knee", "ankle")))
         for side in ("left", "right")}
LIMBS["torso"] = tuple(L[n] for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip"))
# The lines drawn between landmarks on the preview: the body's, each side's foot and hand.
PREVIEW_BONES = [(L[a], L[b]) for a, b in (
    ("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"),
    *((f"{s}_{a}", f"{s}_{b}") for s in ("left", "right") for a, b in (
        ("shoulder", "hip"), ("shoulder", "elbow"), ("elbow", "wrist"), ("wrist", "index"), ("wrist", "pinky"),
        ("hip", "knee"), ("knee", "ankle"), ("ankle", "heel"), ("heel", "foot_index"), ("ankle", "foot_index"))))]
MAX_SEQ_DIGITS = 18  # ?have=: longer is no preview number this server gave out


def body_json(body: Body) -> dict:
    """What the page needs to pose `body`, as flat lists (metres):

    rest_joints: 24*3; parents: 24 (-1 for the root); names: 24; stature; humanoid: 24, the VRM
    humanoid bone each joint drives (engine.body.conventions), null for the hand joints, which none does.
    mesh: None for a skeleton-only body, else vertices V*3 (rest pose), faces F*3 (vertex indices),
    skin_index V*4 and skin_weight V*4: each vertex's four heaviest joints, weights renormalised
    to sum to 1 (the default body has at most five non-zero, the four carry over 99 %).
    """
    out = {"rest_joints": np.round(body.rest_joints.numpy().astype(np.float64), 5).reshape(-1).tolist(),
           "parents": list(body.parents), "names": list(body.names), "stature": body.stature,
           "humanoid": [bone_for_smpl(name).vrm for name in body.names], "mesh": None}
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


def limb_confidence(keypoints, visibility, width: int, height: int) -> dict[str, float]:
    """(33, 2) pixels and (33,) visibility -> {limb: the mean visibility of its landmarks}, a
    landmark outside the picture (or not found: NaN) counting 0."""
    vis = np.where(inside_image(keypoints, width, height), np.nan_to_num(visibility, nan=0.0), 0.0)
    return {name: round(float(vis[list(index)].mean()), 3) for name, index in LIMBS.items()}


def preview_json(preview: Preview, seq: int) -> dict:
    """What the page draws of one camera preview (preview number `seq`): the frame's id and
    capture time, the camera picture's size (width, height), its landmarks as [x, y, visibility]
    in that picture's pixels (null where MediaPipe found none), which are present (what the engine
    uses: streamer.landmarks.present_landmarks), the person's box as the engine sees it ([x0, y0,
    x1, y1] pixels, or null: engine.model.conditions), each limb's confidence (limb_confidence) and
    the picture itself, scaled (`jpeg`, base64)."""
    p = preview.packet
    kp, vis = p.keypoints.astype(np.float64), p.visibility.astype(np.float64)
    # a focal length of 1 pixel leaves the box in pixels, relative to the picture's centre
    c = landmark_conditions(kp[None], vis[None], p.width, p.height, 1.0)
    box = None
    if c["has_box"][0]:
        x, y, size = c["box"][0].astype(np.float64) + (p.width / 2, p.height / 2, 0)
        box = [round(v, 1) for v in (x - size / 2, y - size / 2, x + size / 2, y + size / 2)]
    landmarks = [None if not np.isfinite(xy).all() else [round(float(xy[0]), 1), round(float(xy[1]), 1),
                                                          round(float(v), 3)] for xy, v in zip(kp, vis)]
    return {"seq": seq, "frame_id": p.frame_id, "t_capture": p.t_capture, "width": p.width, "height": p.height,
            "landmarks": landmarks, "present": present_landmarks(kp, vis, p.width, p.height).astype(int).tolist(),
            "box": box, "limbs": limb_confidence(kp, vis, p.width, p.height),
            "jpeg": base64.b64encode(preview.jpeg).decode()}


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
    for a request's head, and again for its body (streamer.server_thread.http_site). preview_fps:
    the camera preview's rate, which the page polls at (None: no preview). avatar: a VRM file the
    page shows instead of `body`'s mesh, already checked (configs.config.check_avatar). Raises
    ConfigError when it cannot listen."""

    name = "viewer"

    def __init__(self, host: str, port: int, ws_url: str, body: Body, token: str | None = None,
                 request_timeout_s: float = REQUEST_TIMEOUT_S, preview_fps: float | None = None,
                 avatar: Path | None = None):
        self.host, self.ws_url, self.token, self.avatar = host, ws_url, token or None, avatar
        self.request_timeout_s, self.preview_fps = request_timeout_s, preview_fps
        self._preview: tuple[int, Preview] | None = None  # the newest, with its number
        self._preview_body: tuple[int, bytes] | None = None  # its JSON, made once on the first request
        self._throttle = GuessThrottle()
        self._body = json.dumps(body_json(body), separators=(",", ":")).encode()
        self._server = ServerThread("viewer-server", functools.partial(self._serve, port), what="the viewer",
                                    host=host, port=port, hint="--viewer HOST:PORT", error_type=ConfigError)
        self.port = self._server.port
        self.url = http_url("http", host, self.port, self.token)
        log.info("viewer on %s", self.url)

    def show_preview(self, preview: Preview) -> None:
        """The newest camera preview, from any thread (one assignment: the engine's thread never
        waits for the server's); the page takes it on its next poll."""
        self._preview = (self._preview[0] + 1 if self._preview else 0, preview)

    def close(self) -> None:
        """Stop the server and its thread."""
        self._server.stop()

    # --- the loop thread -----------------------------------------------------------------------

    async def _serve(self, port: int, ready, stop: asyncio.Event) -> None:
        app = web.Application(middlewares=[guard(self.token)])
        app.router.add_get("/", self._page)
        app.router.add_get("/config.json", self._config)
        app.router.add_get("/body.json", self._body_json)
        app.router.add_get("/preview.json", self._preview_json)
        app.router.add_get("/avatar.vrm", self._avatar)
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
        preview = None if self.preview_fps is None else {"fps": self.preview_fps, "bones": PREVIEW_BONES}
        avatar = {"url": "avatar.vrm" if self.avatar else None, "name": self.avatar.name if self.avatar else None,
                  "max_bytes": MAX_AVATAR_BYTES}
        return web.json_response({"ws": browser_ws_url(self.ws_url, request.url.host), "preview": preview,
                                  "avatar": avatar},
                                 headers={"Cache-Control": "no-store"})

    async def _preview_json(self, request: web.Request) -> web.Response:
        if not await self._allowed(request):
            return self._forbidden()
        if self.preview_fps is None:
            return web.Response(status=404, text="the camera preview is off (--outputs.preview true turns it on)\n")
        have = request.query.get("have", "-1")
        if not re.fullmatch(rf"-?[0-9]{{1,{MAX_SEQ_DIGITS}}}", have):
            return web.Response(status=400, text="have: a preview number\n")
        current = self._preview
        if current is None or current[0] == int(have):
            return web.Response(status=204, headers={"Cache-Control": "no-store"})
        if self._preview_body is None or self._preview_body[0] != current[0]:
            self._preview_body = (current[0], json.dumps(preview_json(current[1], current[0]),
                                                         separators=(",", ":")).encode())
        return web.Response(body=self._preview_body[1], content_type="application/json",
                            headers={"Cache-Control": "no-store"})

    async def _body_json(self, request: web.Request) -> web.Response:
        if not await self._allowed(request):
            return self._forbidden()
        return web.Response(body=self._body, content_type="application/json", headers={"Cache-Control": "no-store"})

    async def _avatar(self, request: web.Request) -> web.StreamResponse:
        if not await self._allowed(request):
            return self._forbidden()
        if self.avatar is None:
            return web.Response(status=404, text="no avatar (--avatar FILE.vrm shows one)\n")
        return web.FileResponse(self.avatar, headers={"Content-Type": "model/gltf-binary", "Cache-Control": "no-store"})

    async def _static(self, request: web.Request) -> web.Response:
        path, content_type = STATIC[request.path]
        return web.Response(body=path.read_bytes(), content_type=content_type)
