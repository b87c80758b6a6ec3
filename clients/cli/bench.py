"""genmo-live bench TARGET: the benchmarks in bench/, each beside its baseline in one run."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from clients.cli.clip_sets import dataset_split, render_body, rendered_set
from configs.config import ConfigError


def _weights(args, cfg) -> Path:
    """The weights a bench runs: --model, else the configured ones, else the bundled ones."""
    from configs.config import resolve_path
    from engine.paths import WEIGHTS_PATH

    if args.model:
        return Path(args.model)
    return resolve_path(cfg.engine.weights) if cfg.engine.weights else WEIGHTS_PATH


def _bench_quality(args, cfg) -> int:
    """genmo-live bench quality: bench.quality with the configured weights, the committed lifter,
    the rendered and synthetic test sets (built when missing)."""
    import torch

    from bench import mediapipe_ik, quality
    from engine.body.loading import load_body
    from engine.data.rendered import load_rendered_set
    from engine.evaluate.protocol import build_test_set, live_predictor, model_predictor, rendered_test_set
    from engine.live.engine import LiveEngine
    from engine.model.checkpoint import load_model
    from engine.model.text import TextEncoder
    from engine.paths import LIFTER_PATH
    from streamer.packets import LandmarkPacket
    from streamer.pose import PoseDetector

    torch.set_num_threads(args.threads)
    weights = _weights(args, cfg)
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
        cache, split, test_clips = dataset_split(argparse.Namespace(data=None, split="test"), cfg, body)
        out = rendered_set(argparse.Namespace(seed=0, cameras=3), cfg, render_body(cfg), cache, split, test_clips)
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


def _bench_soak(args, cfg) -> int:
    """genmo-live bench soak: a real `genmo-live run` for --minutes, with this command's config
    file and --section.key flags."""
    from bench import soak

    if args.minutes <= 0:
        raise ConfigError(f"bench soak: --minutes must be above 0, not {args.minutes:g}")
    # JSON is YAML, so each value reads back in the run as it was parsed here (configs.config.parse_override)
    run_args = ["--config", args.config] + [arg for key, value in vars(args).items()
                                             if key.startswith("cfg:") and value is not None
                                             for arg in (f"--{key[4:]}", json.dumps(value, default=str))]
    print(f"genmo-live bench soak: {args.minutes:g} min of `genmo-live run` on {args.clip or 'the sample clip'} "
          f"in a loop, recorder on (npz and BVH), a WebSocket client reading every pose")
    try:
        result = soak.run(args.minutes, args.clip or "sample", run_args, cfg.token)
    except soak.SoakError as e:
        print(f"genmo-live bench soak: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if args.json else soak.format_result(result))
    return 0


def _bench_engine(args, cfg) -> int:
    """genmo-live bench engine: window passes of each model size at --threads; the live engine's
    time per frame, window pass against cached causal step, at 1 and 2 threads; batched streams at
    --threads. The live and stream rows use --model, else the configured weights."""
    from bench import engine

    if args.frames < 1 or args.max_streams < 1:
        raise ConfigError(f"bench engine: --frames and --max-streams must be at least 1, not {args.frames} and "
                          f"{args.max_streams}")
    try:
        streams = tuple(int(n) for n in args.streams.split(","))
    except ValueError:
        streams = ()
    if not streams or min(streams) < 1:
        raise ConfigError(f"bench engine: --streams takes stream counts like 1,8,32,128, not {args.streams!r}")
    weights = _weights(args, cfg)
    if not weights.is_file():
        raise ConfigError(f"bench engine: no weights at {weights}")
    print(f"genmo-live bench engine: window passes and streams at {args.threads} torch threads, median of "
          f"{args.repeats} runs; the live engine at {' and '.join(map(str, engine.LIVE_THREADS))} threads, "
          f"{args.frames} frames after {engine.WARMUP_FRAMES} of warm-up; live and stream rows with {weights}")
    tables = engine.run(args.repeats, args.model, weights, args.frames, streams, args.max_streams)
    print(json.dumps(tables, indent=2) if args.json else engine.format_tables(tables))
    return 0


def _bench_desk(args, cfg) -> int:
    """genmo-live bench desk: bench.desk on --clip (default the sample clip) with --model (default
    the configured weights)."""
    import torch

    from bench import desk
    from engine.body.loading import load_body
    from engine.model.checkpoint import load_model
    from engine.model.text import TextEncoder
    from streamer.pose import PoseDetector
    from streamer.sources import SAMPLE_CLIP

    if not 0.1 <= args.keep <= 1.0:
        raise ConfigError(f"bench desk: --keep {args.keep}: give the share of the image kept, 0.1 to 1")
    weights = _weights(args, cfg)
    if not weights.is_file():
        raise ConfigError(f"bench desk: no weights at {weights}")
    clip = Path(args.clip) if args.clip else SAMPLE_CLIP
    if not clip.is_file():
        raise ConfigError(f"bench desk: no video at {clip}")
    torch.set_num_threads(args.threads)
    model, norm, _ = load_model(weights)
    make = desk.engine_factory(model, norm, load_body(cfg.body), cfg.engine, TextEncoder())
    print(f"genmo-live bench desk: {clip} whole and cropped to its top {args.keep:.0%}, weights {weights}")
    report = desk.run(clip, args.keep, args.legs, make, PoseDetector, Path(args.out))
    report["weights"] = str(weights)
    print(json.dumps(report, indent=2) if args.json else desk.format_report(report))
    (Path(args.out) / "desk.json").write_text(json.dumps(report, indent=1))
    return 0


def cmd_bench(args, cfg) -> int:
    import torch

    from bench import kinematics, train

    if args.target == "quality":
        return _bench_quality(args, cfg)
    if args.target == "soak":
        return _bench_soak(args, cfg)
    if args.target == "desk":
        return _bench_desk(args, cfg)
    if args.target == "live":
        from bench import live
        from streamer.sources import SAMPLE_CLIP

        clip = args.clip or str(SAMPLE_CLIP)
        print(f"genmo-live bench live on {clip}: engine {cfg.engine.threads} torch thread(s), MediaPipe in the "
              f"ingest process")
        rows = live.run(cfg, clip, args.model)
        print(json.dumps(rows, indent=2) if args.json else live.format_rows(rows))
        return 0
    torch.set_num_threads(args.threads)
    if args.target == "engine":
        return _bench_engine(args, cfg)
    print(f"genmo-live bench {args.target}: {args.threads} torch threads, median of {args.repeats} runs")
    if args.target == "train":
        rows, fmt = train.run(args.repeats), train.format_rows
    else:
        rows, fmt = kinematics.run(args.repeats), kinematics.format_rows
    print(json.dumps(rows, indent=2) if args.json else fmt(rows))
    return 0


def add_commands(sub, parent) -> None:
    """Register this module's subcommands on `sub`, each with the shared config options `parent`."""
    bench = sub.add_parser("bench", parents=[parent], help="benchmark speed against a baseline")
    bench.add_argument("target", choices=["kinematics", "engine", "train", "live", "quality", "soak", "desk"],
                       help="what to benchmark")
    bench.add_argument("--clip", metavar="PATH", help="live, soak, desk: the video (default: the bundled sample clip)")
    bench.add_argument("--keep", type=float, default=0.55, help="desk: the share of the image's height kept, from "
                                                                "the top (default 0.55: the legs out of view)")
    bench.add_argument("--legs", default="a person sits on a chair", help="desk: the legs prompt of its third run")
    bench.add_argument("--minutes", type=float, default=15.0, help="soak: how long the run goes (default 15)")
    bench.add_argument("--model", metavar="PATH", help="engine, live: also time this checkpoint (engine: its live "
                                                       "and stream rows with it); quality, desk: the weights (default: "
                                                       "the configured ones)")
    bench.add_argument("--lifter", metavar="PATH", help="quality: the per-frame lifter (default assets/per_frame_lifter.pt)")
    bench.add_argument("--out", metavar="DIR", default="bench/results", help="quality, desk: where results go")
    bench.add_argument("--readme", metavar="PATH", help="quality: put the summary into this README's results section")
    bench.add_argument("--clips", type=int, help="quality: only the first N real clips")
    bench.add_argument("--gt-items", type=int, help="quality: only the first N ground-truth sequences of each set")
    bench.add_argument("--no-ground-truth", action="store_true", help="quality: the real clips only")
    bench.add_argument("--frames", type=int, default=300, help="engine: live-engine frames timed per row, after the "
                                                               "warm-up (default 300)")
    bench.add_argument("--streams", default="1,8,32,128", help="engine: the stream counts timed in one tick "
                                                                "(default 1,8,32,128)")
    bench.add_argument("--max-streams", type=int, default=4096, help="engine: how far the search for the most streams "
                                                                     "at 30 fps goes (default 4096)")
    bench.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2; engine: its window and "
                                                              "stream rows, the live-engine rows run at 1 and 2)")
    bench.add_argument("--repeats", type=int, default=50, help="timed runs per case (median reported)")
    bench.add_argument("--json", action="store_true", help="print the rows as JSON")
    bench.set_defaults(handler=cmd_bench)
