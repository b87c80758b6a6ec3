"""genmo-live train and eval: training the denoiser or the per-frame lifter, and evaluating a model or baseline."""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from clients.cli.clip_sets import CAPTION_CACHE, clip_set_args, dataset_split, print_and_save, render_body, rendered_set
from configs.config import ConfigError

# Where `genmo-live train --model ARCH` writes without --out; `eval --model per-frame` reads there.
TRAIN_OUT = {"denoiser": "runs/default", "per-frame": "runs/per-frame"}

def cmd_eval(args, cfg) -> int:
    from engine.body.loading import load_body
    from engine.data.rendered import load_rendered_set
    from engine.evaluate.protocol import (BASELINES, build_test_set, evaluate, format_report, live_predictor,
                                          model_predictor, rendered_test_set)
    from engine.model.device import select_device

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
    if args.scenario != "default" and args.obs == "rendered":
        raise ConfigError(f"--scenario {args.scenario}: the rendered set has no desk scenes yet; "
                          "evaluate the scenario with --obs synthetic")
    if model == "mediapipe-ik" and args.obs != "rendered":
        raise ConfigError("--model mediapipe-ik reads MediaPipe's own 3D landmarks: evaluate it with --obs rendered")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    body = load_body(cfg.body)
    if args.text_control:
        from engine.evaluate.protocol import text_control

        if model in baselines:
            raise ConfigError("--text-control needs a trained model, not a baseline")
        report = {"model": model, "seconds": 4.0, "seed": args.seed, "guidance": cfg.engine.guidance,
                  "prompts": text_control(model, body, seed=args.seed, engine=cfg.engine)}
        print_and_save(json.dumps(report["prompts"], indent=1), report, args.report)
        return 0
    cache, split, clips = dataset_split(args, cfg, body)
    if args.obs == "rendered":
        out = rendered_set(args, cfg, render_body(cfg), cache, split, clips)
        items = rendered_test_set(load_rendered_set(out, clips, args.cameras), clips)
    else:
        items = build_test_set(clips, body, args.seed, fps=args.fps, scenario=args.scenario)
    print(f"evaluating {model} on {len(items)} {args.obs} {split} sequences ({args.scenario} scenario, "
          f"{sum(it.obs.num_frames for it in items)} frames at {args.fps:g} fps), seed {args.seed}")
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
    report = {"model": model, "split": split, "seed": args.seed, "obs": args.obs, "scenario": args.scenario,
              "fps": args.fps,
              "ddim_steps": args.ddim_steps,
              "live": bool(args.live), "mirror_average": mirror,
              **({"engine": dataclasses.asdict(engine)} if args.live else {}), "data": str(cache), **report}
    print_and_save(format_report(report), report, args.report)
    return 0


def cmd_train(args, cfg) -> int:
    import torch

    from engine.body.loading import load_body
    from engine.model.checkpoint import CheckpointError
    from engine.model.denoiser import ModelConfig
    from engine.model.device import select_device
    from engine.model.lifter import LifterConfig
    from engine.train import TrainConfig, train

    if args.rendered and not any(Path(args.rendered).glob("*.npz")):
        raise ConfigError(f"--rendered {args.rendered}: no rendered jobs there "
                          "(genmo-live data render --split train makes them)")
    for share in ("mix_share", "desk_share", "rendered_share", "text_share", "clip_caption_share",
                  "text_drop_observations"):
        if not 0.0 <= getattr(args, share) <= 1.0:
            raise ConfigError(f"--{share.replace('_', '-')} {getattr(args, share)}: give a share from 0 to 1")
    if args.refresh < 1:
        raise ConfigError(f"--refresh {args.refresh}: give the steps between observations, 1 or more")
    sizes = {k: getattr(args, k) for k in ("width", "layers", "heads", "mlp") if getattr(args, k) is not None}
    deepen_to = None
    if args.start_from:
        if sizes.keys() - {"layers"} or (sizes and args.model == "per-frame"):
            raise ConfigError("train --from keeps the checkpoint's sizes; only a denoiser's --layers can grow")
        deepen_to = sizes.pop("layers", None)
    body = load_body(cfg.body)
    cache, _, clips = dataset_split(argparse.Namespace(data=None, split="train"), cfg, body)
    device = str(select_device(cfg.device))
    torch.set_num_threads(args.threads)
    tc = TrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, warmup=args.warmup, seed=args.seed,
                     rendered=args.rendered or "", rendered_share=args.rendered_share, text_share=args.text_share,
                     clip_caption_share=args.clip_caption_share, text_drop_observations=args.text_drop_observations,
                     mix_share=args.mix_share, desk_share=args.desk_share, refresh=args.refresh,
                     precision=args.precision, tail_frames=args.tail_frames,
                     tail_weight=args.tail_weight, minutes=args.minutes, caption_cache=str(cache / CAPTION_CACHE))
    if args.model == "per-frame":
        if args.causal:
            raise ConfigError("--causal makes a denoiser causal; the per-frame lifter sees one frame anyway")
        if sizes.keys() - {"width", "layers"}:
            raise ConfigError("--heads and --mlp size the denoiser; the per-frame lifter takes --width and --layers")
        mc = LifterConfig(**sizes)
        what = "per-frame lifter (estimation pass only, no text)"
    else:
        mc = ModelConfig(**sizes, causal=args.causal)
        what = "causal denoiser" if args.causal else "denoiser"
    out = Path(args.out or TRAIN_OUT[args.model])
    print(f"training the {what} on {len(clips)} train clips "
          f"({sum(len(c.pose) for c in clips) / 1800:.1f} min) for {tc.steps} steps of {tc.batch} windows "
          f"on {device}; checkpoints in {out}")
    try:
        path = train(clips, body, out, tc, mc, device=device, resume=args.resume, start_from=args.start_from,
                     deepen_to=deepen_to, causal=args.causal)
    except CheckpointError as e:
        raise ConfigError(f"train --from: {e}") from None
    print(f"wrote {path}")
    return 0


def add_commands(sub, parent) -> None:
    """Register this module's subcommands on `sub`, each with the shared config options `parent`."""
    ev = sub.add_parser("eval", parents=[parent], help="evaluate a model or baseline on the synthetic test set")
    ev.add_argument("--model", required=True, metavar="PATH|BASELINE",
                    help="a trained checkpoint, a baseline name (identity-baseline, ground-truth, mediapipe-ik: "
                         "MediaPipe's 3D landmarks through IK, --obs rendered), or per-frame: the per-frame "
                         "lifter where `train --model per-frame` writes it")
    clip_set_args(ev)
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
    ev.add_argument("--scenario", choices=["default", "desk"], default="default",
                    help="where the camera is: default (anywhere around the person, 1.5-6 m away) or desk "
                         "(0.9-1.3 m high, 0.6-1.5 m away, framing the head to the waist, a desk hiding the legs; "
                         "synthetic observations)")
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
    tr.add_argument("--causal", action="store_true",
                    help="a causal denoiser: each frame attends only to the frames before it, so the live engine "
                         "runs it one frame at a time (engine.model.streaming); with --from, the checkpoint's "
                         "model made causal")
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
    tr.add_argument("--refresh", type=int, default=300, metavar="STEPS",
                    help="steps between new observations of every clip (each round observes all of them: "
                         "minutes on a CPU with hours of data)")
    tr.add_argument("--desk-share", type=float, default=0.2,
                    help="share of the clips seen, each round, by a desk webcam with the legs hidden the "
                         "whole clip (eval --scenario desk's view), so hidden legs come from the prior; 0 = none")
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
