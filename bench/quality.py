"""The quality benchmark: genmo-live side by side with what users run today.

    genmo-live bench quality [--out bench/results] [--readme README.md]     (make bench)

Two parts, every system fed the same frames in the same run:
1. Real video (every clip in ../shared/data/video/, no ground truth). One MediaPipe pass per clip
   (the product's detector, streamer.pose), then per frame both systems: genmo-live's live engine
   (engine.live.engine.LiveEngine, the default settings, as `genmo-live run` streams it) and the
   `mediapipe-ik` baseline (bench.mediapipe_ik). Measured: jitter on still segments (where the 2D
   landmarks say the person is still), foot skate, ground penetration, left/right swaps, bone-length
   variation (also of MediaPipe's own 3D landmarks), and capture->pose latency (MediaPipe's time on
   the frame plus the system's). Clips over 45 frames/s are taken at every other frame (a 30 fps
   camera). Plots: joint trajectories of both systems, and a strip of frames with both skeletons.
2. Ground truth (engine.evaluate.protocol's protocol): on the rendered test set (real MediaPipe on rendered
   bodies) genmo-live live, genmo-live over each whole clip (`genmo-live-offline`, the eval
   protocol's pass), the per-frame lifter and mediapipe-ik; on the synthetic test set the models.

Writes JSON, PNG and summary.md (and summary.json's headline figures) under --out; --readme puts
summary.md into the README between its bench markers.
"""
from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from bench import video_metrics as vm
from bench.mediapipe_ik import MediapipeIK
from clients.live import percentiles
from engine.body.body_model import Body
from engine.body.skeleton import SMPL_PARENTS
from engine.data.rendered import VIDEO_ROOT
from engine.model.conditions import assumed_focal
from streamer.packets import LandmarkPacket

log = logging.getLogger(__name__)

SYSTEMS = ("genmo-live", "mediapipe-ik")
MODEL_FPS = 30.0
STRIP_FRAMES = 5
COLORS_BGR = {"genmo-live": (40, 140, 255), "mediapipe-ik": (230, 140, 40)}   # orange, blue
COLORS_PLOT = {"genmo-live": "tab:orange", "mediapipe-ik": "tab:blue"}
README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"


@dataclass
class ClipRun:
    """One real clip through both systems. Per frame: keypoints (T, 33, 2), visibility (T, 33),
    world landmarks (T, 33, 3) yup (NaN without a detection), keypoint_ms (T,); per system: world
    joints (T, 24, 3) y-up, camera joints (T, 24, 3) OpenCV, processing ms (T,); genmo-live's
    source per frame. strip: frame index -> RGB image, for the picture. size: (width, height)."""

    name: str
    fps: float
    keypoints: np.ndarray
    visibility: np.ndarray
    world: np.ndarray
    keypoint_ms: np.ndarray
    joints: dict
    joints_cam: dict
    ms: dict
    sources: list
    strip: dict
    size: tuple


def video_clips(root: Path = VIDEO_ROOT) -> list[Path]:
    return sorted(root.rglob("*.mp4"))


def clip_name(path: Path, root: Path = VIDEO_ROOT) -> str:
    return str(path.relative_to(root).with_suffix(""))


def run_clip(path: Path, engine_factory, body: Body, detector_factory) -> ClipRun:
    """One clip through MediaPipe, then genmo-live (engine_factory(fps): a fresh LiveEngine for
    the clip's frame rate) and mediapipe-ik, frame by frame, each timed."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise RuntimeError(f"cannot read {path}")
    src_fps = cap.get(cv2.CAP_PROP_FPS) or MODEL_FPS
    every = 2 if src_fps > 45 else 1
    fps = src_fps / every
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) // every
    strip_at = set(np.linspace(total * 0.1, total * 0.9, STRIP_FRAMES).astype(int).tolist())
    engine = engine_factory(fps)
    ik = MediapipeIK(body)
    rows = {k: [] for k in ("kp", "vis", "world", "kp_ms", "sources")}
    out = {s: ([], [], []) for s in SYSTEMS}
    strip, size = {}, None
    with detector_factory() as detector:
        i = k = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            k += 1
            if (k - 1) % every:
                continue
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            size = (rgb.shape[1], rgb.shape[0])
            t0 = time.perf_counter()
            det = detector.detect(rgb)
            t1 = time.perf_counter()
            packet = LandmarkPacket.of_detection(i, i / fps, *size, det)
            (f,) = engine.push([packet])  # lag 0: this frame's pose
            t2 = time.perf_counter()
            ik_world, ik_cam = ik.step(None if det is None else det.world, packet.keypoints, packet.visibility,
                                       *size, i / fps)
            t3 = time.perf_counter()
            for s, (jw, jc, ms) in (("genmo-live", (f.joints, f.joints_cam, t2 - t1)),
                                    ("mediapipe-ik", (ik_world, ik_cam, t3 - t2))):
                out[s][0].append(jw)
                out[s][1].append(jc)
                out[s][2].append(ms * 1000)
            for key, value in (("kp", packet.keypoints), ("vis", packet.visibility), ("kp_ms", (t1 - t0) * 1000),
                               ("world", np.full((33, 3), np.nan) if det is None else det.world),
                               ("sources", f.source)):
                rows[key].append(value)
            if i in strip_at:
                strip[i] = rgb
            i += 1
    cap.release()
    if size is None:
        raise RuntimeError(f"{path}: no frames")
    return ClipRun(name=clip_name(path), fps=fps, keypoints=np.stack(rows["kp"]), visibility=np.stack(rows["vis"]),
                   world=np.stack(rows["world"]), keypoint_ms=np.asarray(rows["kp_ms"]),
                   joints={s: np.stack(v[0]) for s, v in out.items()},
                   joints_cam={s: np.stack(v[1]) for s, v in out.items()},
                   ms={s: np.asarray(v[2]) for s, v in out.items()}, sources=rows["sources"], strip=strip, size=size)


def clip_report(run: ClipRun, still: np.ndarray, rest: np.ndarray) -> dict:
    """Per system: the no-ground-truth measures (bench.video_metrics) on the clip's still frames
    (T,) bool and its latency; plus the frames, still frames, detections, and MediaPipe's own 3D
    landmarks' swaps and bone variation."""
    detected = np.isfinite(run.world).all((1, 2))
    report = {"frames": len(still), "fps": round(run.fps, 2), "still_frames": int(still.sum()),
              "detected_frames": int(detected.sum())}
    for s in SYSTEMS:
        r = vm.motion_report(run.joints[s], rest, still, run.fps)
        lat = percentiles((run.keypoint_ms + run.ms[s]).tolist())
        r.update(latency_ms_p50=lat["p50"], latency_ms_p95=lat["p95"],
                 processing_ms_p50=percentiles(run.ms[s].tolist())["p50"])
        report[s] = r
    rel = run.world - (run.world[:, [vm.L["left_hip"]]] + run.world[:, [vm.L["right_hip"]]]) / 2
    report["mediapipe-landmarks"] = {
        "swaps": vm.swap_events(rel[detected], vm.LANDMARK_SWAP_PAIRS),
        "bone_cv_pct": vm.bone_length_cv_pct(rel, vm.LANDMARK_BONES)}
    report["genmo-live"]["sources"] = {k: run.sources.count(k) for k in sorted(set(run.sources))}
    return report


def overall(clips: dict[str, dict], runs: list[ClipRun]) -> dict:
    """Per system over every clip: jitter weighted by still frames, the other measures by frames,
    swaps summed, latency percentiles of all frames together."""
    out = {}
    for s in SYSTEMS:
        def mean(key, weight):
            vals = [(c[s][key], c[weight]) for c in clips.values() if np.isfinite(c[s][key]) and c[weight]]
            w = sum(n for _, n in vals)
            return sum(v * n for v, n in vals) / w if w else float("nan")

        lat = percentiles(np.concatenate([r.keypoint_ms + r.ms[s] for r in runs]).tolist())
        out[s] = {"jitter_still": mean("jitter_still", "still_frames"),
                  "foot_skate_mm": mean("foot_skate_mm", "frames"),
                  "penetration_mm": mean("penetration_mm", "frames"),
                  "swaps": sum(c[s]["swaps"] for c in clips.values()),
                  "bone_cv_pct": mean("bone_cv_pct", "frames"),
                  "latency_ms_p50": lat["p50"], "latency_ms_p95": lat["p95"]}
    out["mediapipe-landmarks"] = {"swaps": sum(c["mediapipe-landmarks"]["swaps"] for c in clips.values())}
    return out


# ----------------------------------------------------------------------------------------------
# Pictures
# ----------------------------------------------------------------------------------------------

def project(joints_cam: np.ndarray, width: int, height: int) -> np.ndarray:
    """(24, 3) OpenCV camera-frame joints -> (24, 2) pixels through the camera both systems are
    told about (60° field of view, centred)."""
    f = assumed_focal(width)
    z = np.maximum(joints_cam[:, 2:], 1e-3)
    return joints_cam[:, :2] / z * f + [width / 2, height / 2]


def frame_strip(run: ClipRun, path: Path, height: int = 260) -> Path:
    """The strip frames side by side, each with both systems' skeletons drawn over the video."""
    tiles = []
    for i, rgb in sorted(run.strip.items()):
        img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        w, h = run.size
        thick = max(2, round(h / 250))
        for s in SYSTEMS:
            uv = project(run.joints_cam[s][i], w, h)
            for j, p in enumerate(SMPL_PARENTS):
                if p >= 0 and np.isfinite(uv[[j, p]]).all():
                    cv2.line(img, tuple(int(v) for v in uv[p]), tuple(int(v) for v in uv[j]), COLORS_BGR[s],
                             thick, cv2.LINE_AA)
        scale = height / h
        img = cv2.resize(img, (round(w * scale), height))
        cv2.putText(img, f"frame {i}", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
        tiles.append(img)
    strip = np.concatenate(tiles, 1)
    legend = np.full((34, strip.shape[1], 3), 255, np.uint8)
    x = 8
    for s in SYSTEMS:
        cv2.rectangle(legend, (x, 10), (x + 24, 24), COLORS_BGR[s], -1)
        cv2.putText(legend, s, (x + 32, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        x += 200
    cv2.imwrite(str(path), np.concatenate([strip, legend], 0), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return path


def trajectory_plot(run: ClipRun, still: np.ndarray, path: Path) -> Path:
    """Joint trajectories of both systems over time: pelvis height, left ankle height, left wrist
    height above the pelvis, pelvis sideways; still segments shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.arange(len(still)) / run.fps
    J = vm.J
    series = (("pelvis height (m)", lambda x: x[:, 0, 1]),
              ("left ankle height (m)", lambda x: x[:, J["left_ankle"], 1]),
              ("left wrist above pelvis (m)", lambda x: x[:, J["left_wrist"], 1] - x[:, 0, 1]),
              ("pelvis sideways x (m)", lambda x: x[:, 0, 0] - x[0, 0, 0]))
    fig, axes = plt.subplots(len(series), 1, figsize=(9, 8), sharex=True)
    for ax, (label, fn) in zip(axes, series):
        for a, b in vm.true_runs(still):
            ax.axvspan(t[a], t[b - 1], color="0.9", lw=0)
        for s in SYSTEMS:
            ax.plot(t, fn(run.joints[s]), color=COLORS_PLOT[s], lw=1.2, label=s)
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize=8)
    axes[0].set_title(f"{run.name}: joint trajectories (grey: still segments)", fontsize=10)
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------
# Ground truth
# ----------------------------------------------------------------------------------------------

HEADLINE = ("mpjpe_mm", "pa_mpjpe_mm", "accel_err_mm_s2", "jitter_mm_s3", "foot_skate_mm")


def ground_truth(predictors: dict, items: list, out_dir: Path, tag: str) -> dict:
    """engine.evaluate.protocol over `items` for each named predictor; the full reports go to
    out_dir/<tag>_<name>.json, the figures without per-clip rows are returned by name."""
    from engine.evaluate.protocol import evaluate, write_report

    tables = {}
    for name, predict in predictors.items():
        t0 = time.time()
        report = evaluate(predict, items)
        write_report(report, out_dir / f"{tag}_{name}.json")
        tables[name] = {k: v for k, v in report.items() if k != "per_clip"}
        tables[name]["seconds"] = round(time.time() - t0, 1)
        log.info("%s %s: MPJPE %.1f, PA-MPJPE %.1f mm (%.0f s)", tag, name, report["mpjpe_mm"],
                 report["pa_mpjpe_mm"], time.time() - t0)
    return tables


# ----------------------------------------------------------------------------------------------
# The summary
# ----------------------------------------------------------------------------------------------

def _f(v, digits=1):
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "—"
    if isinstance(v, (int, np.integer)):
        return f"{v:,}"
    return f"{v:,.{digits}f}"


def verdicts(summary: dict) -> list[str]:
    """Plain statements of where genmo-live is and is not better than the baseline, from the numbers."""
    lines = []
    o = summary["overall"]
    g, b = o["genmo-live"], o["mediapipe-ik"]
    if g["jitter_still"] and b["jitter_still"]:
        ratio = b["jitter_still"] / g["jitter_still"]
        lines.append(f"Real clips, jitter on still segments: genmo-live {_f(g['jitter_still'], 0)} vs mediapipe-ik "
                     f"{_f(b['jitter_still'], 0)} mm/s³, {ratio:.1f}x lower "
                     + ("(target 3x: met)." if ratio >= 3 else "(target 3x: NOT met)."))
    lines.append(f"Real clips, foot skate: genmo-live {_f(g['foot_skate_mm'])} vs {_f(b['foot_skate_mm'])} mm "
                 + ("(lower: met)." if g["foot_skate_mm"] < b["foot_skate_mm"] else "(NOT lower)."))
    lines.append(f"Latency p95: genmo-live {_f(g['latency_ms_p95'])} ms vs {_f(b['latency_ms_p95'])} ms "
                 + ("(equal or lower: met)." if g["latency_ms_p95"] <= b["latency_ms_p95"] else
                    f"(genmo-live is {g['latency_ms_p95'] - b['latency_ms_p95']:.1f} ms slower: its engine pass "
                    "costs more than IK, on top of the same MediaPipe time)."))
    r = summary.get("rendered", {})
    if "genmo-live" in r and "mediapipe-ik" in r:
        gr, br = r["genmo-live"], r["mediapipe-ik"]
        lines.append(f"Rendered ground truth, PA-MPJPE: genmo-live {_f(gr['pa_mpjpe_mm'])} vs mediapipe-ik "
                     f"{_f(br['pa_mpjpe_mm'])} mm " + ("(better: met)." if gr["pa_mpjpe_mm"] < br["pa_mpjpe_mm"]
                                                      else "(NOT better)."))
        ratio = br["accel_err_mm_s2"] / gr["accel_err_mm_s2"]
        lines.append(f"Rendered ground truth, acceleration error: {ratio:.1f}x lower than mediapipe-ik "
                     + ("(target 3x: met)." if ratio >= 3 else "(target 3x: NOT met)."))
    return lines


def summary_markdown(summary: dict, out_dir: Path, link_prefix: str) -> str:
    """The results section (README and summary.md)."""
    o = summary["overall"]
    lines = [f"Measured by `{summary['command']}` on {summary['machine']}, {summary['date']} "
             f"({summary['seconds'] / 60:.1f} min). Every system sees the same frames in the same run.", ""]
    lines += [f"- {v}" for v in verdicts(summary)] + [""]
    lines += ["**Real video** (no ground truth; all clips of `../shared/data/video/`):", "",
              "| system | jitter on still segments (mm/s³) | foot skate (mm) | ground penetration (mm) | "
              "left/right swaps | bone-length variation (%) | latency p50 / p95 (ms) |",
              "|---|---|---|---|---|---|---|"]
    for s in SYSTEMS:
        r = o[s]
        lines.append(f"| {s} | {_f(r['jitter_still'], 0)} | {_f(r['foot_skate_mm'])} | {_f(r['penetration_mm'])} | "
                     f"{r['swaps']} | {_f(r['bone_cv_pct'], 2)} | {_f(r['latency_ms_p50'])} / {_f(r['latency_ms_p95'])} |")
    lines.append(f"| MediaPipe's own 3D landmarks | | | | {o['mediapipe-landmarks']['swaps']} | "
                 f"{_f(np.mean([c['mediapipe-landmarks']['bone_cv_pct'] for c in summary['clips'].values()]), 2)} | |")
    lines += ["", "| clip | frames (still) | system | jitter still | foot skate | swaps | latency p95 |",
              "|---|---|---|---|---|---|---|"]
    for name, c in summary["clips"].items():
        for s in SYSTEMS:
            lines.append(f"| {name} | {c['frames']} ({c['still_frames']}) | {s} | {_f(c[s]['jitter_still'], 0)} | "
                         f"{_f(c[s]['foot_skate_mm'])} | {c[s]['swaps']} | {_f(c[s]['latency_ms_p95'])} |")
    for tag, title in (("rendered", "**Ground truth, rendered test set** (real MediaPipe on rendered bodies)"),
                       ("synthetic", "**Ground truth, synthetic test set** (the eval protocol's observations)")):
        if not summary.get(tag):
            continue
        lines += ["", f"{title}:", "", "| model | MPJPE | PA-MPJPE | accel err (mm/s²) | jitter (mm/s³) | "
                  "foot skate | occluded MPJPE | missing MPJPE | frames |", "|---|---|---|---|---|---|---|---|---|"]
        for name, r in summary[tag].items():
            lines.append(f"| {name} | {_f(r['mpjpe_mm'])} | {_f(r['pa_mpjpe_mm'])} | {_f(r['accel_err_mm_s2'], 0)} | "
                         f"{_f(r['jitter_mm_s3'], 0)} | {_f(r['foot_skate_mm'])} | {_f(r['occluded']['mpjpe_mm'])} | "
                         f"{_f(r['missing']['mpjpe_mm'])} | {r['n_frames']:,} |")
    lines += ["", "Plots (orange genmo-live, blue mediapipe-ik):", ""]
    for name in summary["clips"]:
        stem = name.replace("/", "__")
        lines.append(f"![{name} frames]({link_prefix}{stem}_strip.jpg)")
        lines.append(f"![{name} trajectories]({link_prefix}{stem}_trajectories.png)")
    return "\n".join(lines) + "\n"


def put_in_readme(readme: Path, text: str) -> None:
    """Replace what lies between the README's bench markers with `text`."""
    content = readme.read_text()
    if README_START not in content or README_END not in content:
        raise ValueError(f"{readme} has no {README_START} ... {README_END} section for the results")
    head, rest = content.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(f"{head}{README_START}\n{text}{README_END}{tail}")


def json_safe(value):
    """`value` with numpy numbers as Python ones and NaN / inf as None (null): strict JSON, which
    is what other languages' parsers read (a clip without still frames has no jitter)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


def machine() -> str:
    import os

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()} {os.cpu_count()} cores, {gpu}"


def run(body: Body, engine_factory, gt_predictors: dict, rendered_items: list | None, synthetic_items: list | None,
        out_dir: Path, clips: list[Path], detector_factory, command: str) -> dict:
    """Everything; writes out_dir and returns the summary. engine_factory(fps) -> a fresh LiveEngine;
    gt_predictors: {"rendered": {name: Predictor}, "synthetic": {...}}."""
    t0 = time.time()
    out_dir.mkdir(parents=True, exist_ok=True)
    rest = body.rest_joints.double().numpy()
    runs, reports = [], {}
    for path in tqdm(clips, desc="real clips", unit="clip"):
        r = run_clip(path, engine_factory, body, detector_factory)
        runs.append(r)
        still = vm.still_frames(r.keypoints, r.visibility, r.fps)
        reports[r.name] = clip_report(r, still, rest)
        stem = r.name.replace("/", "__")
        trajectory_plot(r, still, out_dir / f"{stem}_trajectories.png")
        frame_strip(r, out_dir / f"{stem}_strip.jpg")
        log.info("%s: %d frames, %d still", r.name, reports[r.name]["frames"], reports[r.name]["still_frames"])
    summary = {"command": command, "machine": machine(), "date": time.strftime("%Y-%m-%d"),
               "overall": overall(reports, runs), "clips": reports}
    if rendered_items:
        summary["rendered"] = ground_truth(gt_predictors["rendered"], rendered_items, out_dir, "rendered")
    if synthetic_items:
        summary["synthetic"] = ground_truth(gt_predictors["synthetic"], synthetic_items, out_dir, "synthetic")
    summary["seconds"] = round(time.time() - t0, 1)
    (out_dir / "summary.json").write_text(json.dumps(json_safe(summary), indent=1, allow_nan=False))
    (out_dir / "summary.md").write_text(summary_markdown(summary, out_dir, ""))
    return summary
