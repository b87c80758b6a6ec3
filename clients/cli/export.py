"""genmo-live info, export and export-weights: what is installed, and files out of a take or a training run."""
from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path

from configs.config import ConfigError


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def info_report(cfg) -> dict:
    """What `genmo-live info` prints: versions, device, body in use, weights location."""
    from engine.body.loading import load_body
    from engine.model.device import describe_device, select_device
    from engine.paths import WEIGHTS_PATH

    body = load_body(cfg.body)
    versions = {"genmo-live": _version("genmo-live"), "python": platform.python_version()}
    for dist in ("torch", "numpy", "mediapipe", "opencv-contrib-python", "websockets", "python-osc",
                 "aiortc", "sentence-transformers", "smplx", "torch-tensorrt"):
        versions[dist] = _version(dist)
    return {
        "versions": versions,
        "device": describe_device(select_device(cfg.device)),
        "body": {
            "model": body.kind,
            "source": body.source,
            "joints": len(body.names),
            "stature_m": round(body.stature, 4),
            "lowest_rest_y_m": round(body.lowest_rest_point(), 4),
            "vertices": 0 if body.vertices is None else int(body.vertices.shape[0]),
            "faces": 0 if body.faces is None else int(body.faces.shape[0]),
        },
        "weights": str(WEIGHTS_PATH) if WEIGHTS_PATH.exists() else None,
        "weights_expected_at": str(WEIGHTS_PATH),
    }


def _print_info(report: dict) -> None:
    v = report["versions"]
    print(f"genmo-live {v.pop('genmo-live')}  (python {v.pop('python')})")
    print("packages: " + ", ".join(f"{k} {ver}" for k, ver in v.items() if ver)
          + "; not installed: " + (", ".join(k for k, ver in v.items() if not ver) or "none"))
    print(f"device:   {report['device']}")
    b = report["body"]
    mesh = f"{b['vertices']} vertices, {b['faces']} faces" if b["vertices"] else "no mesh"
    print(f"body:     {b['model']} — {b['joints']} joints, stature {b['stature_m']:.3f} m, "
          f"lowest rest point y = {b['lowest_rest_y_m'] * 1000:.1f} mm, {mesh}")
    print(f"          from {b['source']}")
    weights = report["weights"] or f"none yet (the trained engine will be at {report['weights_expected_at']})"
    print(f"weights:  {weights}")


def cmd_info(args, cfg) -> int:
    report = info_report(cfg)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_info(report)
    return 0


def cmd_export(args, cfg) -> int:
    from clients.recorder import export

    take = Path(args.take)
    out = Path(args.to) if args.to else take.with_suffix(".bvh")
    try:
        export(take, out)
    except (OSError, KeyError, ValueError) as e:
        raise ConfigError(f"export {take}: {e}") from None
    print(f"wrote {out}")
    return 0


def cmd_export_weights(args, cfg) -> int:
    from engine.model.checkpoint import export_weights
    from engine.paths import WEIGHTS_PATH

    out = export_weights(Path(args.checkpoint), Path(args.to) if args.to else WEIGHTS_PATH)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def add_commands(sub, parent) -> None:
    """Register this module's subcommands on `sub`, each with the shared config options `parent`."""
    info = sub.add_parser("info", parents=[parent], help="versions, device, body and weights in use")
    info.add_argument("--json", action="store_true", help="print the report as JSON")
    info.set_defaults(handler=cmd_info)
    ew = sub.add_parser("export-weights", parents=[parent],
                        help="a training checkpoint -> the weights the product loads (no optimiser, float16)")
    ew.add_argument("checkpoint", help="runs/NAME/last.pt")
    ew.add_argument("--to", metavar="PATH", help="default: assets/genmo_live.pt")
    ew.set_defaults(handler=cmd_export_weights)
    ex = sub.add_parser("export", parents=[parent], help="convert a recorded take (.npz) into a BVH")
    ex.add_argument("take", help="a take recorded with `genmo-live run --record PATH.npz`")
    ex.add_argument("--to", metavar="PATH.bvh", help="output file (default: the take's name, .bvh)")
    ex.set_defaults(handler=cmd_export)
