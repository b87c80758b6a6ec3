"""genmo-live run: the live pipeline (source -> MediaPipe -> engine -> outputs) until stopped."""
from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path


def run_overrides(args) -> dict:
    """The run flags as the settings they stand for, so they pass the config's own checks
    (configs.config) with every other setting: {dotted key: value} for the flags given."""
    flags = {"source.source": args.source, "source.realtime": False if args.no_realtime else None,
             "source.loop": True if args.loop else None, "engine.steps": args.steps, "engine.prompt": args.prompt,
             "engine.legs": args.legs,
             "engine.lag": args.lag, "outputs.ws": args.ws, "outputs.vmc": args.vmc, "outputs.vrchat": args.vrchat,
             "outputs.record": args.record, "outputs.viewer": "" if args.headless else args.viewer,
             "outputs.avatar": args.avatar}
    return {key: value for key, value in flags.items() if value is not None}


def cmd_run(args, cfg) -> int:
    from clients.live import format_run_report, lost_recordings, run_live, write_run_report
    from clients.outputs import check_files, check_writable
    from clients.outputs import validate as validate_outputs

    validate_outputs(cfg)
    check_files(cfg)
    if args.report:
        check_writable(Path(args.report), "--report")

    def make_outputs(live_engine, control):
        from clients.outputs import build_outputs

        return build_outputs(cfg, control, live_engine.body, live_engine.rate, camera=live_engine.timed_by_capture)

    def stop_on_term(signum, frame):
        # A service manager's stop: end as on Ctrl-C, report and flush. `timeout make run` delivers
        # it twice (make passes it on): the repeat must not break into that shutdown.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
        signal.signal(signal.SIGTERM, stop_on_term)
    report = run_live(cfg, duration=args.duration, make_outputs=make_outputs)
    print(format_run_report(report))
    failed = bool(report["errors"] and not report["poses_out"]) or bool(lost_recordings(report))
    if args.report:
        try:
            write_run_report(report, Path(args.report))
            print(f"wrote {args.report}")
        except OSError as e:
            print(f"error: cannot write the report {args.report} ({e.strerror or e})", file=sys.stderr)
            failed = True
    return 1 if failed else 0


def add_commands(sub, parent) -> None:
    """Register this module's subcommands on `sub`, each with the shared config options `parent`."""
    rn = sub.add_parser("run", parents=[parent], help="run the live pipeline: webcam, video file, the sample clip "
                                                      "or WebRTC -> MediaPipe -> engine -> outputs")
    rn.add_argument("--source", help="webcam | sample | webrtc | PATH (default: the webcam if there is one, "
                                     "else the sample clip in a loop)")
    rn.add_argument("--steps", type=int, help="denoising steps per window (1 = estimation mode)")
    rn.add_argument("--prompt", help="text that drives the motion while you are not seen")
    rn.add_argument("--legs", help="text that steers your legs while they are not seen (a desk hides them), "
                                   "e.g. \"a person sits on a chair\"")
    rn.add_argument("--lag", type=int, help="output lag, frames")
    rn.add_argument("--no-realtime", action="store_true", help="read a video file as fast as possible")
    rn.add_argument("--loop", action="store_true", help="play a video file again at its end")
    rn.add_argument("--headless", action="store_true", help="no viewer")
    rn.add_argument("--duration", type=float, metavar="S", help="stop S seconds after the first frame")
    rn.add_argument("--report", metavar="FILE", help="write the run's measurements as JSON")
    rn.add_argument("--ws", action="append", metavar="HOST:PORT", help="WebSocket pose stream and control")
    rn.add_argument("--viewer", metavar="HOST:PORT", help="serve the browser viewer (uses the first --ws, "
                                                         "or starts one on 127.0.0.1:8765)")
    rn.add_argument("--avatar", metavar="FILE.vrm", help="show this VRM avatar (VRM 0.x or 1.0) in the viewer "
                                                         "instead of the default body")
    rn.add_argument("--vmc", action="append", metavar="HOST:PORT", help="send VMC protocol (VSeeFace, Warudo, "
                                                                       "VNyan, EVMC4U; they listen on 39539)")
    rn.add_argument("--vrchat", action="append", metavar="HOST:PORT", help="send VRChat OSC trackers "
                                                                          "(VRChat listens on 127.0.0.1:9000)")
    rn.add_argument("--record", action="append", metavar="PATH", help="record the take: PATH.npz and/or PATH.bvh")
    rn.set_defaults(handler=cmd_run, overrides=run_overrides)
