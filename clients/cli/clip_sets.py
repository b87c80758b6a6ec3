"""The clip sets the offline subcommands (data, eval, bench quality, train) work on: a split of the
dataset cache (built when missing), its rendered set (rendered when missing), and their reports."""
from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from configs.config import ConfigError

CAPTION_CACHE = "captions.pt"  # in the data cache: the training captions, encoded (genmo-live data captions)
# Processes rendering a rendered set at once: two on a 2-core machine render 1.7x as fast as one
# (MediaPipe alone does not fill both cores); each holds about 1 GB.
RENDER_WORKERS = min(os.cpu_count() or 1, 8)


def clip_set_args(p: argparse.ArgumentParser) -> None:
    """The options that choose a set of clips and how they are seen (eval, data render, compare-obs)."""
    p.add_argument("--split", choices=["train", "val", "test"], default="test")
    p.add_argument("--data", metavar="DIR", help="use this folder of mocap instead (every clip is test)")
    p.add_argument("--seed", type=int, default=0, help="seed of the cameras, scenes, noise and occlusions")
    p.add_argument("--cameras", type=int, default=3, help="rendered sets: cameras (scenes) per clip")
    p.add_argument("--workers", type=int, default=RENDER_WORKERS,
                   help="rendered sets: processes rendering at once (default: the CPU count, at most 8)")


def mocap_folders(cfg) -> list[Path]:
    """The folders the dataset is built from: data.mocap_dir, then those of data.extra_mocap_dirs
    that exist (a note names any that does not)."""
    from configs.config import resolve_path

    folders = [resolve_path(cfg.data.mocap_dir)]
    for extra in cfg.data.extra_mocap_dirs:
        path = resolve_path(extra)
        if path.is_dir():
            folders.append(path)
        else:
            print(f"note: data.extra_mocap_dirs: {path} is not here, left out of the dataset")
    return folders


def ensure_cache(mocap: Path | list[Path], cache: Path, body, cmu_index: Path, all_test: bool = False) -> None:
    """Build the dataset cache from `mocap` (a folder or a list) into `cache` unless it is already there."""
    from engine.data.dataset import build

    if (cache / "index.json").exists():
        return
    folders = [mocap] if isinstance(mocap, Path) else list(mocap)
    for folder in folders:
        if not folder.is_dir():
            raise ConfigError(f"{folder} is not a folder of motion capture")
    print(f"no dataset cache at {cache}: building it from {', '.join(map(str, folders))}")
    build(folders, cache, body, cmu_index, all_test=all_test)


def dataset_split(args, cfg, body):
    """(cache folder, split, clips) that --data DIR or --split name, building the cache if needed."""
    import hashlib

    from configs.config import resolve_path
    from engine.data.dataset import load_clips

    cmu_index = resolve_path(cfg.data.cmu_index)
    if args.data:
        mocap = resolve_path(args.data)
        key = hashlib.sha1(str(mocap).encode()).hexdigest()[:10]
        cache, split = resolve_path(cfg.data.cache_dir) / f"eval_{mocap.name}_{key}", "test"
        ensure_cache(mocap, cache, body, cmu_index, all_test=True)
    else:
        cache, split = resolve_path(cfg.data.cache_dir), args.split
        if not (cache / "index.json").exists():  # (no note on absent extra folders once it is built)
            ensure_cache(mocap_folders(cfg), cache, body, cmu_index)
    clips = load_clips(cache, split)
    if not clips:
        raise ConfigError(f"the {split} split of {cache} has no clips")
    return cache, split, clips


def render_body(cfg):
    """The body to render: the configured one, with the default body's full mesh."""
    from engine.body.loading import load_body

    body_cfg = dataclasses.replace(cfg.body, mesh="full") if cfg.body.model == "default" else cfg.body
    body = load_body(body_cfg)
    if not body.has_mesh:
        raise ConfigError(f"config key 'body.model': the {body.kind} body has no mesh to render")
    return body


def rendered_set(args, cfg, body, cache, split, clips, preview=None) -> Path:
    """Render (or resume) the rendered set of `clips`; its folder."""
    from engine.data.rendered import build_rendered_set
    from streamer.pose import PoseDetector

    out = Path(args.out) if getattr(args, "out", None) else cache / "rendered" / split
    summary = build_rendered_set(clips, body, out, PoseDetector, seed=args.seed, cameras=args.cameras,
                                 max_minutes=getattr(args, "max_minutes", None), preview=preview,
                                 workers=getattr(args, "workers", None) or RENDER_WORKERS)
    print(f"rendered {summary['rendered']} jobs ({summary['cached']} already cached) of "
          f"{summary['motion_minutes']} min of motion x {args.cameras} cameras into {out}: "
          f"{summary['frames']} frames in {summary['seconds']} s"
          + (f", {summary['fps']} frames/s (render + MediaPipe)" if summary["fps"] else ""))
    return out


def print_and_save(text: str, report: dict, path: str | None) -> None:
    """Print a report's table and, when asked, write the report as JSON."""
    from engine.evaluate.protocol import write_report

    print(text)
    if path:
        write_report(report, Path(path))
        print(f"wrote {path}")
