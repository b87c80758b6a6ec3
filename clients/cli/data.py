"""genmo-live data STEP: build, render, compare, caption and preview the motion dataset."""
from __future__ import annotations

import argparse
from pathlib import Path

from clients.cli.clip_sets import (CAPTION_CACHE, clip_set_args, dataset_split, mocap_folders, print_and_save,
                                   render_body, rendered_set)
from configs.config import ConfigError


def cmd_data_build(args, cfg) -> int:
    from configs.config import resolve_path
    from engine.body.loading import load_body
    from engine.data.dataset import build

    out = resolve_path(args.out or cfg.data.cache_dir)
    if args.data:
        folders = [resolve_path(args.data)]
        if not folders[0].is_dir():
            raise ConfigError(f"--data: {folders[0]} is not a folder")
    else:
        folders = mocap_folders(cfg)
        if not folders[0].is_dir():
            raise ConfigError(f"config key 'data.mocap_dir': {folders[0]} is not a folder")
    print(f"building the dataset from {', '.join(map(str, folders))} into {out}")
    index = build(folders, out, load_body(cfg.body), resolve_path(cfg.data.cmu_index), all_test=args.all_test)
    report = (out / "retarget_report.md").read_text()
    print(report.split("## Skipped")[0].split("## Every clip")[0].strip())
    for split in ("train", "val", "test"):
        rs = [r for r in index["clips"] if r["split"] == split]
        print(f"{split:5s}: {len(rs):4d} clips, {sum(r['frames'] for r in rs) / 108000:.2f} h")
    print(f"skipped {len(index['skipped'])} files (reasons in the report); full table: {out / 'retarget_report.md'}")
    return 0


def cmd_data_captions(args, cfg) -> int:
    from engine.body.loading import load_body
    from engine.train import encode_captions

    cache, _, clips = dataset_split(argparse.Namespace(data=None, split="train"), cfg, load_body(cfg.body))
    path = cache / CAPTION_CACHE
    bank = encode_captions(clips, "cpu", path)
    if bank is None:
        raise ConfigError("the text encoder is not installed here: nothing to encode the captions with")
    print(f"{len(bank.index)} training captions encoded in {path}")
    return 0


def cmd_data_render(args, cfg) -> int:
    import cv2
    import numpy as np

    from engine.data.rendered import draw_overlay

    body = render_body(cfg)
    cache, split, clips = dataset_split(args, cfg, body)
    writer, written = None, [0]

    def preview(job, t, image, found):
        nonlocal writer
        if written[0] >= args.preview_frames:
            return
        if writer is None:
            writer = cv2.VideoWriter(args.preview, cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 480))
        uv, _ = job.camera.project(job.joints[t])
        frame = draw_overlay(image, uv, found)
        scale = min(640 / frame.shape[1], 480 / frame.shape[0])
        small = cv2.resize(frame, (int(frame.shape[1] * scale), int(frame.shape[0] * scale)))
        canvas = np.zeros((480, 640, 3), np.uint8)
        canvas[:small.shape[0], :small.shape[1]] = small
        writer.write(canvas)
        written[0] += 1

    try:
        out = rendered_set(args, cfg, body, cache, split, clips, preview if args.preview else None)
        if not args.max_minutes:
            from engine.data.rendered import detection_report, load_rendered_set

            report = detection_report(load_rendered_set(out, clips, args.cameras))
            print("MediaPipe found the person on fully-in-view frames: " + "; ".join(
                f"{name} {r['detected_pct']} % of {r['frames']}" for name, r in report.items()))
    finally:
        if writer is not None:
            writer.release()
            print(f"wrote {args.preview} ({written[0]} frames: ground-truth skeleton green, MediaPipe red)")
    return 0


def cmd_data_compare_obs(args, cfg) -> int:
    from engine.data.obs_report import compare, format_report
    from engine.data.rendered import load_rendered_set

    body = render_body(cfg)
    cache, split, clips = dataset_split(args, cfg, body)
    out = rendered_set(args, cfg, body, cache, split, clips)
    report = compare(load_rendered_set(out, clips, args.cameras), clips, body)
    print_and_save(format_report(report), report, args.report)
    return 0


def cmd_data_preview(args, cfg) -> int:
    import torch

    from configs.config import resolve_path
    from engine.body.loading import load_body
    from engine.data.dataset import find_clip
    from engine.data.preview import write_preview

    body = load_body(cfg.body)
    path = Path(args.clip)
    if path.is_file():
        from engine.data.mocap_io import load_motion
        from engine.data.retarget import retarget

        rc = retarget(load_motion(path), body)
        name, pose, root = rc.clip, rc.pose, rc.root
    else:
        try:
            clip = find_clip(resolve_path(cfg.data.cache_dir), args.clip)
        except (FileNotFoundError, KeyError) as e:
            raise ConfigError(str(e).strip('"')) from None
        name, pose, root = clip.clip, clip.pose, clip.root
    joints = body.pose(torch.from_numpy(pose), torch.from_numpy(root))["joints"].numpy()
    out = write_preview(joints, Path(args.out), title=name)
    print(f"wrote {out} ({len(joints)} frames of {name})")
    return 0


def add_commands(sub, parent) -> None:
    """Register this module's subcommands on `sub`, each with the shared config options `parent`."""
    data = sub.add_parser("data", help="build and preview the motion dataset")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="STEP")
    build = data_sub.add_parser("build", parents=[parent], help="retarget all mocap into the dataset cache")
    build.add_argument("--data", metavar="DIR",
                       help="build from this mocap folder alone (default: data.mocap_dir and data.extra_mocap_dirs)")
    build.add_argument("--out", metavar="DIR", help="cache folder (default: data.cache_dir)")
    build.add_argument("--all-test", action="store_true",
                       help="put every clip in the test split (evaluate new motion without retraining)")
    build.set_defaults(handler=cmd_data_build)
    render = data_sub.add_parser("render", parents=[parent],
                                 help="render clips on the default body and run MediaPipe on the frames")
    clip_set_args(render)
    render.add_argument("--max-minutes", type=float, metavar="M", help="render only the first M minutes of motion")
    render.add_argument("--out", metavar="DIR", help="cache folder (default: <data.cache_dir>/rendered/<split>)")
    render.add_argument("--preview", metavar="FILE.mp4", help="also write the first frames with MediaPipe's "
                                                             "landmarks and the true skeleton drawn on them")
    render.add_argument("--preview-frames", type=int, default=600, metavar="N")
    render.set_defaults(handler=cmd_data_render)
    compare = data_sub.add_parser("compare-obs", parents=[parent],
                                  help="how synthetic landmarks differ from MediaPipe's on rendered frames")
    clip_set_args(compare)
    compare.add_argument("--report", metavar="FILE", help="write the full report (JSON) here")
    compare.set_defaults(handler=cmd_data_compare_obs)
    captions = data_sub.add_parser("captions", parents=[parent],
                                   help=f"encode the training captions into <data.cache_dir>/{CAPTION_CACHE}, for "
                                        "training where the text model is not installed (a lent GPU)")
    captions.set_defaults(handler=cmd_data_captions)
    preview = data_sub.add_parser("preview", parents=[parent], help="draw a clip on our skeleton")
    preview.add_argument("clip", help="a cached clip id (or a unique part of one), or a mocap file")
    preview.add_argument("--out", required=True, metavar="FILE", help="output .mp4 or .png")
    preview.set_defaults(handler=cmd_data_preview)
