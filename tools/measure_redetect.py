#!/usr/bin/env python3
"""Measure MediaPipe's detection rate with and without re-detection in a crop (dev tool).

Renders jobs of a rendered set exactly as `genmo-live data render` does (engine.data.rendered: the same
seeded cameras, scenes and events, so frame for frame what the cached set was made from) and runs
two streamer.pose.PoseDetector on every frame, in order, one pair per job: PoseDetector(redetect=
False), the tracker alone, and PoseDetector(), the tracker with re-detection in a crop. Both see the
same frames, and re-detection never changes what the tracker does, so the difference is the crop's.

Reported on the frames where the person is fully in view (engine.data.rendered.fully_in_view): the
detection rate, overall, by person height (fraction of the image height) and in the second after
a missing span; on the frames without the person (missing spans), how often something is
detected anyway; how far the detected landmarks are from the true ones (median over body
landmarks, in person heights) on the in-view frames the tracker found and on those only
re-detection found; the milliseconds per frame.

    .venv/bin/python tools/measure_redetect.py [--clips 20] [--split test] [--cameras 3] [--out r.json]

The clips are spread evenly over the split, each through every camera (jobs = clips x cameras);
the default 20 clips x 3 cameras (60 jobs, 6,018 frames) took 8 minutes on the shared 2-core machine.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from configs.config import load_config, resolve_path
from engine.body.body_model import load_default_body
from engine.data.dataset import load_clips
from engine.data.observations import NoiseModel, landmarks_3d
from engine.data.render import Renderer, vertex_regions
from engine.data.rendered import fully_in_view, load_background_bank, make_job, person_height, render_frames
from streamer.landmarks import BODY_LANDMARKS
from streamer.pose import PoseDetector

HEIGHT_BINS = (0.0, 0.2, 0.3, 0.4, np.inf)
AFTER_MISSING = 30  # frames (1 s) after a missing span that count as "re-finding the person"
VARIANTS = {"tracker": dict(redetect=False), "redetect": {}}


def after_missing(events, num_frames: int, frames: int = AFTER_MISSING) -> np.ndarray:
    """(T,) bool: the `frames` frames after the end of each whole-body missing span."""
    mask = np.zeros(num_frames, bool)
    for _, end in events.missing_spans:
        mask[end:end + frames] = True
    return mask


def measure_job(job, renderer, faces, regions, bank, stature: float) -> dict:
    """Render one job and run every variant on each frame. Per frame (T,): fully in view, person
    height (fraction of the image), after a missing span, absent (in a missing span); per variant:
    detected, seconds in detect(), and the landmark error (median over body landmarks, in person
    heights; NaN without a detection)."""
    T = len(job.joints)
    truth, _ = job.camera.project(landmarks_3d(job.joints, job.world_rot, stature))
    height = person_height(job.joints, job.camera)
    out = {"in_view": fully_in_view(job.joints, job.camera, job.events), "height": height,
           "after_missing": after_missing(job.events, T), "absent": job.events.missing_mask(T)}
    detectors = {name: PoseDetector(**kw) for name, kw in VARIANTS.items()}
    per = {name: {"detected": np.zeros(T, bool), "seconds": np.zeros(T), "error": np.full(T, np.nan)}
           for name in detectors}
    try:
        for t, image in render_frames(job, renderer, faces, regions, bank, stature):
            for name, detector in detectors.items():
                start = time.perf_counter()
                found = detector.detect(image)
                per[name]["seconds"][t] = time.perf_counter() - start
                if found is not None:
                    err = np.linalg.norm(found.keypoints - truth[t], axis=-1)[list(BODY_LANDMARKS)]
                    per[name]["detected"][t] = True
                    per[name]["error"][t] = np.median(err) / (height[t] * job.camera.height)
    finally:
        for detector in detectors.values():
            detector.close()
    return {**out, **{f"{name}/{k}": v for name, arrays in per.items() for k, v in arrays.items()}}


def summarize(records: list[dict]) -> dict:
    """The report (JSON-ready) of measure_job's records."""
    cat = {k: np.concatenate([r[k] for r in records]) for k in records[0]}
    view, h = cat["in_view"], cat["height"]
    subsets = {"in view": view, "after a missing span": view & cat["after_missing"]}
    for lo, hi in zip(HEIGHT_BINS[:-1], HEIGHT_BINS[1:]):
        label = f"height < {hi:.0%}" if lo == 0 else f"height >= {lo:.0%}" if hi == np.inf else f"{lo:.0%}-{hi:.0%}"
        subsets[label] = view & (h >= lo) & (h < hi)
    rate = {label: {"frames": int(m.sum()),
                    **{name: round(float(cat[f"{name}/detected"][m].mean()), 4) if m.any() else None
                       for name in VARIANTS}}
            for label, m in subsets.items()}
    only_crop = view & cat["redetect/detected"] & ~cat["tracker/detected"]
    both = view & cat["tracker/detected"]
    missed = ~cat["tracker/detected"]  # the only frames on which re-detection runs
    absent = cat["absent"]
    ms = {name: round(1000 * float(cat[f"{name}/seconds"].mean()), 2) for name in VARIANTS}
    return {
        "jobs": len(records), "frames": int(len(view)), "detection_rate": rate,
        "in_view_frames_found_only_by_redetect": int(only_crop.sum()),
        "frames_lost_by_redetect": int((cat["tracker/detected"] & ~cat["redetect/detected"]).sum()),
        "detections_without_the_person": {"frames": int(absent.sum()),
                                          **{name: int(cat[f"{name}/detected"][absent].sum()) for name in VARIANTS}},
        "median_error_per_height": {
            "tracker detections": round(float(np.nanmedian(cat["tracker/error"][both])), 4),
            "re-detections": round(float(np.nanmedian(cat["redetect/error"][only_crop])), 4)
            if only_crop.any() else None,
            "re-detections > 10 % of height": int((cat["redetect/error"][only_crop] > 0.1).sum())},
        "ms_per_frame": ms,
        "extra_ms_where_tracker_found_nobody": round(1000 * float(
            (cat["redetect/seconds"] - cat["tracker/seconds"])[missed].mean()), 2) if missed.any() else None,
    }


def format_report(report: dict) -> str:
    lines = [f"{report['jobs']} jobs, {report['frames']} frames; detection rate on frames fully in view:",
             f"  {'':24s} {'frames':>7s} {'tracker':>8s} {'redetect':>9s}"]
    for label, r in report["detection_rate"].items():
        cells = "".join(f" {r[n]:8.1%}" if r[n] is not None else f" {'—':>8s}" for n in VARIANTS)
        lines.append(f"  {label:24s} {r['frames']:7d}{cells}")
    e = report["median_error_per_height"]
    lines += [f"in view, found only by re-detection: {report['in_view_frames_found_only_by_redetect']} frames "
              f"(lost by it: {report['frames_lost_by_redetect']}); median landmark error "
              f"{e['tracker detections']:.1%} of the height on tracker detections, "
              f"{e['re-detections'] if e['re-detections'] is None else format(e['re-detections'], '.1%')}"
              f" on re-detections ({e['re-detections > 10 % of height']} over 10 %)",
              f"detections on the {report['detections_without_the_person']['frames']} frames without the person: "
              + ", ".join(f"{n} {report['detections_without_the_person'][n]}" for n in VARIANTS),
              "ms per frame: " + ", ".join(f"{n} {v}" for n, v in report["ms_per_frame"].items())
              + f"; extra ms where the tracker found nobody: {report['extra_ms_where_tracker_found_nobody']}"]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", default="test")
    ap.add_argument("--cameras", type=int, default=3)
    ap.add_argument("--clips", type=int, default=20, help="how many of the split's clips, spread evenly")
    ap.add_argument("--seed", type=int, default=0, help="the rendered set's seed")
    ap.add_argument("--out", type=Path, help="write the report as JSON here")
    args = ap.parse_args()
    cache = resolve_path(load_config().data.cache_dir)
    clips = load_clips(cache, args.split)
    picked = [(clips[i], k) for i in np.unique(np.linspace(0, len(clips) - 1, args.clips).round().astype(int))
              for k in range(args.cameras)]
    body = load_default_body(mesh="full")
    bank = load_background_bank(cache / "rendered" / args.split, PoseDetector)
    noise, faces, regions = NoiseModel.load(), body.faces.numpy(), vertex_regions(body.weights.numpy())
    records = []
    with Renderer(1280, 720) as renderer:
        for clip, k in tqdm(picked, desc="render + 2 x MediaPipe", unit="job"):
            job = make_job(clip, body, args.seed, k, noise, len(bank))
            records.append(measure_job(job, renderer, faces, regions, bank, body.stature))
    report = summarize(records)
    print(format_report(report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
