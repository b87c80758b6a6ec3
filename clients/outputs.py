"""The outputs of a run, built from the config (`outputs:` section, or the `run` flags)."""
from __future__ import annotations

import tempfile
from pathlib import Path

from configs.config import ConfigError
from streamer.access import is_loopback

DEFAULT_WS = "127.0.0.1:8765"


def host_port(text: str, what: str) -> tuple[str, int]:
    """'HOST:PORT' (or '[v6]:PORT') -> (host, port), with an error naming the setting."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise ConfigError(f"{what}: expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def check_exposure(host: str, token: str, what: str) -> None:
    """Servers listen on loopback unless the user says otherwise, and then only with a token."""
    if not is_loopback(host) and not token:
        raise ConfigError(f"{what} listens on {host}, beyond this machine: set a token (--token SECRET) "
                          f"that clients must present")


def check_writable(path: Path, what: str) -> None:
    """A file the run will write can be: its folder made (if missing) and a file created in it, or
    ConfigError naming `what`, before the engine loads rather than after."""
    try:
        if path.is_dir():
            raise OSError(f"{path} is a folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".genmo-live-check-"):
            pass
    except OSError as e:
        raise ConfigError(f"{what}: cannot write {path} ({e.strerror or e})") from None


def check_files(cfg) -> None:
    """Before the engine loads (ConfigError otherwise): a source file readable, every recording in
    a format the recorder writes and a place it can write."""
    from clients.recorder import check_recording_path
    from streamer.frames import SourceError
    from streamer.sources import check_source

    for spec in cfg.outputs.record:
        try:
            check_recording_path(Path(spec))
        except ValueError as e:
            raise ConfigError(f"outputs.record: {e}") from None
        check_writable(Path(spec), "outputs.record")
    try:
        check_source(cfg.source.source)
    except SourceError as e:
        raise ConfigError(f"source.source: {e}") from None


def validate(cfg) -> None:
    """Every address well-formed and every server beyond loopback guarded by a token, checked
    before anything starts (ConfigError otherwise)."""
    o = cfg.outputs
    for spec in o.ws:
        check_exposure(host_port(spec, "outputs.ws")[0], cfg.token, "the WebSocket server")
    if o.viewer:
        check_exposure(host_port(o.viewer, "outputs.viewer")[0], cfg.token, "the viewer")
    for key in ("vmc", "vrchat"):
        for spec in getattr(o, key):
            host_port(spec, f"outputs.{key}")
    if cfg.source.source == "webrtc":
        check_exposure(cfg.source.webrtc_host, cfg.token, "the WebRTC capture page")


def build_outputs(cfg, control, body, fps: float, camera: bool = False) -> tuple[list, list]:
    """(outputs that receive every pose, services that only need closing at the end). fps: the
    source's rate; camera: a camera's recordings take their rate from its frames' capture times.
    The config is checked first (`validate`); if one output cannot start, those already started
    are closed again."""
    validate(cfg)
    o = cfg.outputs
    outputs, services = [], []
    ws = list(o.ws) or ([DEFAULT_WS] if o.viewer else [])  # the viewer reads poses from a WebSocket
    try:
        for spec in ws:
            from clients.ws import WebSocketServer

            outputs.append(WebSocketServer(*host_port(spec, "outputs.ws"), control, body, fps, cfg.token or None))
        if o.viewer:
            from clients.viewer import ViewerServer

            services.append(ViewerServer(*host_port(o.viewer, "outputs.viewer"), outputs[0].url, body,
                                         cfg.token or None, preview_fps=o.preview_fps if o.preview else None,
                                         avatar=Path(o.avatar) if o.avatar else None))
        for spec in o.vmc:
            from clients.vmc import VmcSender

            outputs.append(VmcSender(*host_port(spec, "outputs.vmc"), body, o.vmc_rate))
        for spec in o.vrchat:
            from clients.vrchat import VrchatTrackers

            outputs.append(VrchatTrackers(*host_port(spec, "outputs.vrchat"), list(o.vrchat_trackers), body))
        for path in o.record:
            from clients.recorder import Recorder

            outputs.append(Recorder(Path(path), body, fps, timed_by_capture=camera))
    except Exception:
        for started in outputs + services:
            started.close()
        raise
    return outputs, services
