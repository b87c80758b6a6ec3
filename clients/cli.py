"""`genmo-live`: the one command line, with a subcommand per job.

Every subcommand takes `--config FILE` and one `--section.key VALUE` flag per setting in
configs/config.py, so any setting can be changed for one run without editing YAML.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import signal
import sys
import threading
from importlib import metadata
from pathlib import Path

from configs.config import DEFAULT_CONFIG_PATH, ConfigError, leaf_fields, load_config, parse_override

log = logging.getLogger("genmo-live")
# Where `genmo-live train --model ARCH` writes without --out; `eval --model per-frame` reads there.
TRAIN_OUT = {"denoiser": "runs/default", "per-frame": "runs/per-frame"}
CAPTION_CACHE = "captions.pt"  # in the data cache: the training captions, encoded (genmo-live data captions)
# Processes rendering a rendered set at once: two on a 2-core machine render 1.7x as fast as one
# (MediaPipe alone does not fill both cores); each holds about 1 GB.
RENDER_WORKERS = min(os.cpu_count() or 1, 8)

def _config_parent() -> argparse.ArgumentParser:
    """Options shared by every subcommand: the config file and one flag per setting."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("configuration (defaults from configs/default.yaml)")
    group.add_argument("--config", default=str(DEFAULT_CONFIG_PATH), metavar="FILE",
                       help="YAML config file")
    for key, _, f in leaf_fields():
        group.add_argument(f"--{key}", dest=f"cfg:{key}", metavar="VALUE", default=None,
                           type=parse_override, help=f.metadata.get("help"))
    return parent


def _load(args):
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg:") and v is not None}
    return load_config(args.config, overrides)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def info_report(cfg) -> dict:
    """What `genmo-live info` prints: versions, device, body in use, weights location."""
    from engine.body import load_body
    from engine.device import describe_device, select_device
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


def _bench_quality(args, cfg) -> int:
    """genmo-live bench quality: bench.quality with the configured weights, the committed lifter,
    the rendered and synthetic test sets (built when missing)."""
    import torch

    from bench import mediapipe_ik, quality
    from configs.config import resolve_path
    from engine.body import load_body
    from engine.evaluate import build_test_set, live_predictor, model_predictor, rendered_test_set
    from engine.paths import LIFTER_PATH, WEIGHTS_PATH
    from engine.rendered import load_rendered_set
    from engine.runtime import LiveEngine
    from engine.text import TextEncoder
    from engine.train import load_model
    from streamer.packets import LandmarkPacket
    from streamer.pose import PoseDetector

    torch.set_num_threads(args.threads)
    weights = Path(args.model) if args.model else (resolve_path(cfg.engine.weights) if cfg.engine.weights else WEIGHTS_PATH)
    lifter = Path(args.lifter) if args.lifter else LIFTER_PATH
    for what, path in (("weights", weights), ("per-frame lifter", lifter))[:1 if args.no_ground_truth else 2]:
        if not path.is_file():
            raise ConfigError(f"bench quality: no {what} at {path}")
    clips = quality.video_clips()
    if not clips:
        raise ConfigError(f"bench quality: no clips in {quality.VIDEO_ROOT}")
    clips = clips[:args.clips] if args.clips else clips
    body = load_body(cfg.body)
    model, norm, _ = load_model(weights)
    text = TextEncoder()

    def engine_factory(fps: float = 30.0):
        return LiveEngine(model, norm, body, cfg.engine, text_encoder=text, fps=fps)

    warm = engine_factory()  # the first pass of a torch model and the text model's load, not timed
    warm.load_prompt()
    warm.push([LandmarkPacket.empty(0, 0.0, 640, 480)])
    rendered = synthetic = None
    predictors = {}
    if not args.no_ground_truth:
        cache, split, test_clips = _dataset_split(argparse.Namespace(data=None, split="test"), cfg, body)
        out = _render(argparse.Namespace(seed=0, cameras=3), cfg, _render_body(cfg), cache, split, test_clips)
        rendered = rendered_test_set(load_rendered_set(out, test_clips, 3), test_clips)[:args.gt_items or None]
        synthetic = build_test_set(test_clips, body, 0)[:args.gt_items or None]
        models = {"genmo-live": live_predictor(weights, body, cfg.engine), "genmo-live-offline": model_predictor(weights, body),
                  "per-frame": model_predictor(lifter, body)}
        predictors = {"rendered": {**models, "mediapipe-ik": mediapipe_ik.predictor(body)}, "synthetic": models}
    out_dir = Path(args.out)
    command = "genmo-live " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("genmo-live") else "genmo-live bench quality"
    print(f"genmo-live bench quality: {len(clips)} real clips, weights {weights}, lifter {lifter}, "
          f"{args.threads} torch threads; results in {out_dir}")
    summary = quality.run(body, engine_factory, predictors, rendered, synthetic, out_dir, clips, PoseDetector, command)
    text_md = (out_dir / "summary.md").read_text()
    print(text_md)
    if args.readme:
        prefix = Path(os.path.relpath(out_dir, Path(args.readme).parent)).as_posix() + "/"
        quality.put_in_readme(Path(args.readme), quality.summary_markdown(summary, out_dir, prefix))
        print(f"updated the results section of {args.readme}")
    return 0


def cmd_bench(args, cfg) -> int:
    import torch

    from bench import engine, kinematics, train

    if args.target == "quality":
        return _bench_quality(args, cfg)
    if args.target == "live":
        from bench import live
        from streamer.sources import SAMPLE_CLIP

        clip = args.clip or str(SAMPLE_CLIP)
        print(f"genmo-live bench live on {clip}: engine {cfg.engine.threads} torch thread(s), MediaPipe in the "
              f"ingest process")
        rows = live.run(cfg, clip)
        print(json.dumps(rows, indent=2) if args.json else live.format_rows(rows))
        return 0
    torch.set_num_threads(args.threads)
    print(f"genmo-live bench {args.target}: {args.threads} torch threads, median of {args.repeats} runs")
    if args.target == "engine":
        rows, fmt = engine.run(args.repeats, args.model), engine.format_rows
    elif args.target == "train":
        rows, fmt = train.run(args.repeats), train.format_rows
    else:
        rows, fmt = kinematics.run(args.repeats), kinematics.format_rows
    print(json.dumps(rows, indent=2) if args.json else fmt(rows))
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
    from engine.paths import WEIGHTS_PATH
    from engine.train import export_weights

    out = export_weights(Path(args.checkpoint), Path(args.to) if args.to else WEIGHTS_PATH)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def cmd_data_build(args, cfg) -> int:
    from configs.config import resolve_path
    from engine.body import load_body
    from engine.dataset import build

    mocap = resolve_path(args.data or cfg.data.mocap_dir)
    out = resolve_path(args.out or cfg.data.cache_dir)
    if not mocap.is_dir():
        raise ConfigError(f"config key 'data.mocap_dir': {mocap} is not a folder")
    print(f"building the dataset from {mocap} into {out}")
    index = build(mocap, out, load_body(cfg.body), resolve_path(cfg.data.cmu_index), all_test=args.all_test)
    report = (out / "retarget_report.md").read_text()
    print(report.split("## Skipped")[0].split("## Every clip")[0].strip())
    for split in ("train", "val", "test"):
        rs = [r for r in index["clips"] if r["split"] == split]
        print(f"{split:5s}: {len(rs):4d} clips, {sum(r['frames'] for r in rs) / 108000:.2f} h")
    print(f"skipped {len(index['skipped'])} files; full table: {out / 'retarget_report.md'}")
    return 0


def _ensure_cache(mocap: Path, cache: Path, body, cmu_index: Path, all_test: bool = False) -> None:
    """Build the dataset cache from `mocap` into `cache` unless it is already there."""
    from engine.dataset import build

    if (cache / "index.json").exists():
        return
    if not mocap.is_dir():
        raise ConfigError(f"{mocap} is not a folder of motion capture")
    print(f"no dataset cache at {cache}: building it from {mocap}")
    build(mocap, cache, body, cmu_index, all_test=all_test)


def _dataset_split(args, cfg, body):
    """(cache folder, split, clips) that --data DIR or --split name, building the cache if needed."""
    import hashlib

    from configs.config import resolve_path
    from engine.dataset import load_clips

    cmu_index = resolve_path(cfg.data.cmu_index)
    if args.data:
        mocap = resolve_path(args.data)
        key = hashlib.sha1(str(mocap).encode()).hexdigest()[:10]
        cache, split = resolve_path(cfg.data.cache_dir) / f"eval_{mocap.name}_{key}", "test"
        _ensure_cache(mocap, cache, body, cmu_index, all_test=True)
    else:
        cache, split = resolve_path(cfg.data.cache_dir), args.split
        _ensure_cache(resolve_path(cfg.data.mocap_dir), cache, body, cmu_index)
    clips = load_clips(cache, split)
    if not clips:
        raise ConfigError(f"the {split} split of {cache} has no clips")
    return cache, split, clips


def _render_body(cfg):
    """The body to render: the configured one, with the default body's full mesh."""
    import dataclasses

    from engine.body import load_body

    body_cfg = dataclasses.replace(cfg.body, mesh="full") if cfg.body.model == "default" else cfg.body
    body = load_body(body_cfg)
    if not body.has_mesh:
        raise ConfigError(f"config key 'body.model': the {body.kind} body has no mesh to render")
    return body


def _render(args, cfg, body, cache, split, clips, preview=None) -> Path:
    """Render (or resume) the rendered set of `clips`; its folder."""
    from engine.rendered import build_rendered_set
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


def cmd_eval(args, cfg) -> int:
    from engine.body import load_body
    from engine.device import select_device
    from engine.evaluate import (BASELINES, build_test_set, evaluate, format_report, live_predictor,
                                 model_predictor, rendered_test_set)
    from engine.rendered import load_rendered_set

    model = args.model
    if model == "per-frame":
        model = str(Path(TRAIN_OUT["per-frame"]) / "last.pt")
        if not Path(model).is_file():
            raise ConfigError(f"--model per-frame: no trained lifter at {model}; train it first with "
                              f"`genmo-live train --model per-frame` (or give a checkpoint's path)")
    baselines = [*BASELINES, "mediapipe-ik"]
    if model not in baselines and not Path(model).is_file():
        raise ConfigError(f"--model {model}: no such file and no such baseline; "
                          f"baselines: {', '.join(baselines)}, per-frame")
    if args.obs == "rendered" and args.fps != 30.0:
        raise ConfigError("--fps resamples the synthetic test set; the rendered set is at 30 fps")
    if not 1.0 <= args.fps <= 240.0:
        raise ConfigError(f"--fps {args.fps}: give a camera's frame rate, 1 to 240")
    if model == "mediapipe-ik" and args.obs != "rendered":
        raise ConfigError("--model mediapipe-ik reads MediaPipe's own 3D landmarks: evaluate it with --obs rendered")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    body = load_body(cfg.body)
    if args.text_control:
        from engine.evaluate import text_control

        if model in baselines:
            raise ConfigError("--text-control needs a trained model, not a baseline")
        report = {"model": model, "seconds": 4.0, "seed": args.seed, "guidance": cfg.engine.guidance,
                  "prompts": text_control(model, body, seed=args.seed, engine=cfg.engine)}
        _print_and_save(json.dumps(report["prompts"], indent=1), report, args.report)
        return 0
    cache, split, clips = _dataset_split(args, cfg, body)
    if args.obs == "rendered":
        out = _render(args, cfg, _render_body(cfg), cache, split, clips)
        items = rendered_test_set(load_rendered_set(out, clips, args.cameras), clips)
    else:
        items = build_test_set(clips, body, args.seed, fps=args.fps)
    print(f"evaluating {model} on {len(items)} {args.obs} {split} sequences "
          f"({sum(it.obs.num_frames for it in items)} frames at {args.fps:g} fps), seed {args.seed}")
    device = str(select_device(cfg.device))
    mirror = args.mirror_average or cfg.engine.mirror_average
    engine = dataclasses.replace(cfg.engine, steps=args.ddim_steps, mirror_average=mirror)
    if model == "mediapipe-ik":
        from bench.mediapipe_ik import predictor
        predictor = predictor(body)
    elif model in BASELINES:
        predictor = BASELINES[model](body)
    elif args.live:
        predictor = live_predictor(model, body, engine, device=device)
    else:
        predictor = model_predictor(model, body, steps=args.ddim_steps, device=device, mirror_average=mirror)
    report = evaluate(predictor, items)
    report = {"model": model, "split": split, "seed": args.seed, "obs": args.obs, "fps": args.fps,
              "ddim_steps": args.ddim_steps,
              "live": bool(args.live), "mirror_average": mirror,
              **({"engine": dataclasses.asdict(engine)} if args.live else {}), "data": str(cache), **report}
    _print_and_save(format_report(report), report, args.report)
    return 0


def _print_and_save(text: str, report: dict, path: str | None) -> None:
    """Print a report's table and, when asked, write the report as JSON."""
    from engine.evaluate import write_report

    print(text)
    if path:
        write_report(report, Path(path))
        print(f"wrote {path}")


def cmd_train(args, cfg) -> int:
    import torch

    from engine.body import load_body
    from engine.device import select_device
    from engine.lifter import LifterConfig
    from engine.model import ModelConfig
    from engine.train import CheckpointError, TrainConfig, train

    sizes = {k: getattr(args, k) for k in ("width", "layers", "heads", "mlp") if getattr(args, k) is not None}
    deepen_to = None
    if args.start_from:
        if sizes.keys() - {"layers"} or (sizes and args.model == "per-frame"):
            raise ConfigError("train --from keeps the checkpoint's sizes; only a denoiser's --layers can grow")
        deepen_to = sizes.pop("layers", None)
    body = load_body(cfg.body)
    cache, _, clips = _dataset_split(argparse.Namespace(data=None, split="train"), cfg, body)
    device = str(select_device(cfg.device))
    torch.set_num_threads(args.threads)
    tc = TrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, warmup=args.warmup, seed=args.seed,
                     rendered=args.rendered or "", rendered_share=args.rendered_share, text_share=args.text_share,
                     clip_caption_share=args.clip_caption_share, text_drop_observations=args.text_drop_observations,
                     mix_share=args.mix_share, precision=args.precision, tail_frames=args.tail_frames,
                     tail_weight=args.tail_weight, minutes=args.minutes, caption_cache=str(cache / CAPTION_CACHE))
    if args.model == "per-frame":
        if sizes.keys() - {"width", "layers"}:
            raise ConfigError("--heads and --mlp size the denoiser; the per-frame lifter takes --width and --layers")
        mc = LifterConfig(**sizes)
        what = "per-frame lifter (estimation pass only, no text)"
    else:
        mc = ModelConfig(**sizes)
        what = "denoiser"
    out = Path(args.out or TRAIN_OUT[args.model])
    print(f"training the {what} on {len(clips)} train clips "
          f"({sum(len(c.pose) for c in clips) / 1800:.1f} min) for {tc.steps} steps of {tc.batch} windows "
          f"on {device}; checkpoints in {out}")
    try:
        path = train(clips, body, out, tc, mc, device=device, resume=args.resume, start_from=args.start_from,
                     deepen_to=deepen_to)
    except CheckpointError as e:
        raise ConfigError(f"train --from: {e}") from None
    print(f"wrote {path}")
    return 0


def cmd_data_captions(args, cfg) -> int:
    from engine.body import load_body
    from engine.train import encode_captions

    cache, _, clips = _dataset_split(argparse.Namespace(data=None, split="train"), cfg, load_body(cfg.body))
    path = cache / CAPTION_CACHE
    bank = encode_captions(clips, "cpu", path)
    if bank is None:
        raise ConfigError("the text encoder is not installed here: nothing to encode the captions with")
    print(f"{len(bank.index)} training captions encoded in {path}")
    return 0


def cmd_data_render(args, cfg) -> int:
    import cv2
    import numpy as np

    from engine.rendered import draw_overlay

    body = _render_body(cfg)
    cache, split, clips = _dataset_split(args, cfg, body)
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
        out = _render(args, cfg, body, cache, split, clips, preview if args.preview else None)
        if not args.max_minutes:
            from engine.rendered import detection_report, load_rendered_set

            report = detection_report(load_rendered_set(out, clips, args.cameras))
            print("MediaPipe found the person on fully-in-view frames: " + "; ".join(
                f"{name} {r['detected_pct']} % of {r['frames']}" for name, r in report.items()))
    finally:
        if writer is not None:
            writer.release()
            print(f"wrote {args.preview} ({written[0]} frames: ground-truth skeleton green, MediaPipe red)")
    return 0


def cmd_data_compare_obs(args, cfg) -> int:
    from engine.obs_report import compare, format_report
    from engine.rendered import load_rendered_set

    body = _render_body(cfg)
    cache, split, clips = _dataset_split(args, cfg, body)
    out = _render(args, cfg, body, cache, split, clips)
    report = compare(load_rendered_set(out, clips, args.cameras), clips, body)
    _print_and_save(format_report(report), report, args.report)
    return 0


def cmd_data_preview(args, cfg) -> int:
    import torch

    from configs.config import resolve_path
    from engine.body import load_body
    from engine.dataset import find_clip
    from engine.preview import write_preview

    body = load_body(cfg.body)
    path = Path(args.clip)
    if path.is_file():
        from engine.mocap_io import load_motion
        from engine.retarget import retarget

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


def cmd_run(args, cfg) -> int:
    import dataclasses

    from clients.live import format_run_report, run_live, write_run_report
    from clients.outputs import validate as validate_outputs

    source = dataclasses.replace(cfg.source, **{k: v for k, v in {
        "source": args.source, "realtime": False if args.no_realtime else None, "loop": True if args.loop else None,
    }.items() if v is not None})
    engine = dataclasses.replace(cfg.engine, **{k: v for k, v in {
        "steps": args.steps, "prompt": args.prompt, "lag": args.lag}.items() if v is not None})
    outputs = dataclasses.replace(cfg.outputs, **{k: v for k, v in {
        "ws": args.ws, "vmc": args.vmc, "vrchat": args.vrchat, "record": args.record, "viewer": args.viewer,
    }.items() if v is not None})
    if args.headless:
        outputs = dataclasses.replace(outputs, viewer="")
    cfg = dataclasses.replace(cfg, source=source, engine=engine, outputs=outputs)
    validate_outputs(cfg)

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
    if args.report:
        write_run_report(report, Path(args.report))
        print(f"wrote {args.report}")
    return 1 if report["errors"] and not report["poses_out"] else 0


def _clip_set_args(p: argparse.ArgumentParser) -> None:
    """The options that choose a set of clips and how they are seen (eval, data render, compare-obs)."""
    p.add_argument("--split", choices=["train", "val", "test"], default="test")
    p.add_argument("--data", metavar="DIR", help="use this folder of mocap instead (every clip is test)")
    p.add_argument("--seed", type=int, default=0, help="seed of the cameras, scenes, noise and occlusions")
    p.add_argument("--cameras", type=int, default=3, help="rendered sets: cameras (scenes) per clip")
    p.add_argument("--workers", type=int, default=RENDER_WORKERS,
                   help="rendered sets: processes rendering at once (default: the CPU count, at most 8)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genmo-live", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parent = _config_parent()
    info = sub.add_parser("info", parents=[parent], help="versions, device, body and weights in use")
    info.add_argument("--json", action="store_true", help="print the report as JSON")
    info.set_defaults(handler=cmd_info)
    bench = sub.add_parser("bench", parents=[parent], help="benchmark speed against a baseline")
    bench.add_argument("target", choices=["kinematics", "engine", "train", "live", "quality"], help="what to benchmark")
    bench.add_argument("--clip", metavar="PATH", help="live: the video (default: the bundled sample clip)")
    bench.add_argument("--model", metavar="PATH", help="engine: also time this checkpoint; quality: the weights "
                                                       "(default: the configured ones)")
    bench.add_argument("--lifter", metavar="PATH", help="quality: the per-frame lifter (default assets/per_frame_lifter.pt)")
    bench.add_argument("--out", metavar="DIR", default="bench/results", help="quality: where results go")
    bench.add_argument("--readme", metavar="PATH", help="quality: put the summary into this README's results section")
    bench.add_argument("--clips", type=int, help="quality: only the first N real clips")
    bench.add_argument("--gt-items", type=int, help="quality: only the first N ground-truth sequences of each set")
    bench.add_argument("--no-ground-truth", action="store_true", help="quality: the real clips only")
    bench.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    bench.add_argument("--repeats", type=int, default=50, help="timed runs per case (median reported)")
    bench.add_argument("--json", action="store_true", help="print the rows as JSON")
    bench.set_defaults(handler=cmd_bench)
    ew = sub.add_parser("export-weights", parents=[parent],
                        help="a training checkpoint -> the weights the product loads (no optimiser, float16)")
    ew.add_argument("checkpoint", help="runs/NAME/last.pt")
    ew.add_argument("--to", metavar="PATH", help="default: assets/genmo_live.pt")
    ew.set_defaults(handler=cmd_export_weights)
    ex = sub.add_parser("export", parents=[parent], help="convert a recorded take (.npz) into a BVH")
    ex.add_argument("take", help="a take recorded with `genmo-live run --record PATH.npz`")
    ex.add_argument("--to", metavar="PATH.bvh", help="output file (default: the take's name, .bvh)")
    ex.set_defaults(handler=cmd_export)
    data = sub.add_parser("data", help="build and preview the motion dataset")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="STEP")
    build = data_sub.add_parser("build", parents=[parent], help="retarget all mocap into the dataset cache")
    build.add_argument("--data", metavar="DIR", help="mocap folder (default: data.mocap_dir)")
    build.add_argument("--out", metavar="DIR", help="cache folder (default: data.cache_dir)")
    build.add_argument("--all-test", action="store_true",
                       help="put every clip in the test split (evaluate new motion without retraining)")
    build.set_defaults(handler=cmd_data_build)
    render = data_sub.add_parser("render", parents=[parent],
                                 help="render clips on the default body and run MediaPipe on the frames")
    _clip_set_args(render)
    render.add_argument("--max-minutes", type=float, metavar="M", help="render only the first M minutes of motion")
    render.add_argument("--out", metavar="DIR", help="cache folder (default: <data.cache_dir>/rendered/<split>)")
    render.add_argument("--preview", metavar="FILE.mp4", help="also write the first frames with MediaPipe's "
                                                             "landmarks and the true skeleton drawn on them")
    render.add_argument("--preview-frames", type=int, default=600, metavar="N")
    render.set_defaults(handler=cmd_data_render)
    compare = data_sub.add_parser("compare-obs", parents=[parent],
                                  help="how synthetic landmarks differ from MediaPipe's on rendered frames")
    _clip_set_args(compare)
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
    ev = sub.add_parser("eval", parents=[parent], help="evaluate a model or baseline on the synthetic test set")
    ev.add_argument("--model", required=True, metavar="PATH|BASELINE",
                    help="a trained checkpoint, a baseline name (identity-baseline, ground-truth, mediapipe-ik: "
                         "MediaPipe's 3D landmarks through IK, --obs rendered), or per-frame: the per-frame "
                         "lifter where `train --model per-frame` writes it")
    _clip_set_args(ev)
    ev.add_argument("--report", metavar="FILE", help="write the full report (JSON) here")
    ev.add_argument("--threads", type=int, metavar="N",
                    help="torch CPU threads (default: one per core; give 1 to each of evaluations run side "
                         "by side, or they slow each other down dozens of times over)")
    ev.add_argument("--ddim-steps", type=int, default=1, metavar="K",
                    help="trained models: 1 = estimation mode (one pass), K > 1 = K DDIM steps")
    ev.add_argument("--live", action="store_true",
                    help="a trained denoiser as the product streams it: the live engine with the engine "
                         "settings (--engine.lag N, ...) fed one frame at a time (each pose from past frames "
                         "only, and N newer ones), not one pass over each whole clip")
    ev.add_argument("--fps", type=float, default=30.0,
                    help="synthetic observations: the camera's frame rate (each test clip resampled to it); "
                         "the live engine is told it, as a source's own rate is")
    ev.add_argument("--mirror-average", action="store_true",
                    help="trained models: average each pass with the pass over the mirror image (twice the "
                         "work; the same as --engine.mirror_average true)")
    ev.add_argument("--obs", choices=["synthetic", "rendered"], default="synthetic",
                    help="synthetic: projected landmarks with MediaPipe's measured noise (fast); "
                         "rendered: the real MediaPipe on rendered frames (rendered on first use)")
    ev.add_argument("--text-control", action="store_true",
                    help="instead: generate 4 s from 'a person walks forward' and 'a person stands still' with "
                         "nobody in view, and report how far the root moves and the foot skate")
    ev.set_defaults(handler=cmd_eval)
    tr = sub.add_parser("train", parents=[parent], help="train the motion denoiser or the baseline (resumable)")
    tr.add_argument("--model", choices=list(TRAIN_OUT), default="denoiser",
                    help="denoiser, or per-frame: the per-frame lifter baseline (same data, losses and budget)")
    tr.add_argument("--out", metavar="DIR",
                    help="checkpoint folder (git-ignored; default runs/default, per-frame: runs/per-frame)")
    tr.add_argument("--steps", type=int, default=3000)
    tr.add_argument("--batch", type=int, default=24, help="windows of 120 frames per step")
    tr.add_argument("--minutes", type=float, default=0.0, metavar="M",
                    help="stop after M minutes of training steps, the schedule ending there (0: no limit)")
    tr.add_argument("--lr", type=float, default=4e-4)
    tr.add_argument("--warmup", type=int, default=200, help="steps of linear warm-up of the learning rate")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--width", type=int, help="default 256; per-frame: 1024")
    tr.add_argument("--layers", type=int, help="default 6; per-frame: 4; with --from, more than the "
                                               "checkpoint's deepens it (new layers start as the identity)")
    tr.add_argument("--heads", type=int, help="default 4 (denoiser only)")
    tr.add_argument("--mlp", type=int, help="default 1024 (denoiser only)")
    tr.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    tr.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                    help="the forward passes in bfloat16 mixed precision or float32; auto: bf16 where the "
                         "CPU (AVX512-BF16/AMX) or GPU does it natively")
    tr.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    tr.add_argument("--from", dest="start_from", metavar="CHECKPOINT",
                    help="fine-tune: start from this checkpoint or exported weights, at its step, with a "
                         "warm-up and cosine schedule of its own to --steps (with --resume, <out>/last.pt "
                         "once there is one)")
    tr.add_argument("--rendered", metavar="DIR", help="a rendered set of train clips (genmo-live data render "
                                                     "--split train) to mix in: real MediaPipe output")
    tr.add_argument("--rendered-share", type=float, default=0.3, help="share of windows from --rendered")
    tr.add_argument("--mix-share", type=float, default=0.25,
                    help="share of the clips seen, each round, with the upper body of another clip over their "
                         "legs (new pairings of arms and legs; 0 = none)")
    tr.add_argument("--tail-weight", type=float, default=0.0,
                    help="extra loss weight on each window's last --tail-frames frames, the live engine's "
                         "case (its newest frame has no future in view); 0 = every frame alike")
    tr.add_argument("--tail-frames", type=int, default=8, help="see --tail-weight")
    tr.add_argument("--text-share", type=float, default=0.6,
                    help="share of windows told a caption (needs the text extra; 0 = no text); the rest "
                         "train the unconditional branch of classifier-free guidance")
    tr.add_argument("--clip-caption-share", type=float, default=0.2,
                    help="of the windows with text, share told the clip's own caption instead of its "
                         "motion captions")
    tr.add_argument("--text-drop-observations", type=float, default=0.5,
                    help="generation pass: share of the windows with text that lose their observations on "
                         "the text's frames")
    tr.set_defaults(handler=cmd_train)
    rn = sub.add_parser("run", parents=[parent], help="run the live pipeline: webcam, video file, the sample clip "
                                                      "or WebRTC -> MediaPipe -> engine -> outputs")
    rn.add_argument("--source", help="webcam | sample | webrtc | PATH (default: the webcam if there is one, "
                                     "else the sample clip in a loop)")
    rn.add_argument("--steps", type=int, help="denoising steps per window (1 = estimation mode)")
    rn.add_argument("--prompt", help="text that drives the motion while you are not seen")
    rn.add_argument("--lag", type=int, help="output lag, frames")
    rn.add_argument("--no-realtime", action="store_true", help="read a video file as fast as possible")
    rn.add_argument("--loop", action="store_true", help="play a video file again at its end")
    rn.add_argument("--headless", action="store_true", help="no viewer")
    rn.add_argument("--duration", type=float, metavar="S", help="stop S seconds after the first frame")
    rn.add_argument("--report", metavar="FILE", help="write the run's measurements as JSON")
    rn.add_argument("--ws", action="append", metavar="HOST:PORT", help="WebSocket pose stream and control")
    rn.add_argument("--viewer", metavar="HOST:PORT", help="serve the browser viewer (uses the first --ws, "
                                                         "or starts one on 127.0.0.1:8765)")
    rn.add_argument("--vmc", action="append", metavar="HOST:PORT", help="send VMC protocol (VSeeFace, Warudo, "
                                                                       "VNyan, EVMC4U; they listen on 39539)")
    rn.add_argument("--vrchat", action="append", metavar="HOST:PORT", help="send VRChat OSC trackers "
                                                                          "(VRChat listens on 127.0.0.1:9000)")
    rn.add_argument("--record", action="append", metavar="PATH", help="record the take: PATH.npz and/or PATH.bvh")
    rn.set_defaults(handler=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = _load(args)
    except ConfigError as e:
        parser.exit(2, f"genmo-live: {e}\n")
    logging.basicConfig(level=cfg.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aioice").setLevel(logging.WARNING)  # it logs every ICE connectivity check
    from engine.smpl import SmplModelError

    try:
        return args.handler(args, cfg)
    except (ConfigError, SmplModelError) as e:
        parser.exit(2, f"genmo-live: {e}\n")


if __name__ == "__main__":
    sys.exit(main())
