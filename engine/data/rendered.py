"""Rendered observation sets: our body, animated with the mocap clips, rendered through the
synthetic webcams, with the real MediaPipe run on the pixels. Exact 3D truth behind real detector
output, for evaluation and training.

    genmo-live data render --split test [--cameras 3] [--max-minutes M] [--preview out.mp4]

Each (clip, camera) pair is one job with its own seeded scene: the camera and occlusion events of
engine.data.observations (the same distributions as the synthetic set), clothing and skin colours,
light, and a background (solid, gradient, or a person-free crop of a frame from
../shared/data/video). Occlusion spans put a box in front of the limb; whole-body missing spans
render the scene without the person (they stepped out of view). MediaPipe runs in video mode, one
tracker per job, exactly as live. Each job's result is one .npz in the cache folder, written
atomically, so an interrupted build resumes where it stopped.

Cache layout: <out>/<split>/<clip id with / as __>__cam<k>.npz holding keypoints (T, 33, 2)
float32 px (NaN without a detection), visibility (T, 33), detected (T,), world (T, 33, 3)
MediaPipe's world landmarks (y up), joints (T, 24, 3) ground truth, the camera (K, R, t, width,
height) and the scene and events as JSON. <out>/backgrounds.npz: the background bank.
"""
from __future__ import annotations

import copy
import json
import multiprocessing as mp
import os
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
from tqdm import tqdm

from engine.body.body_model import Body
from engine.body.skeleton import SMPL_PARENTS
from engine.data.camera import Camera
from engine.data.dataset import Clip
from engine.data.observations import IMAGE_SIZES, Events, NoiseModel, Observation, box_height, landmarks_3d, sample_view
from engine.data.render import Renderer, composite, vertex_regions
from streamer.landmarks import NUM_LANDMARKS

RENDER_VERSION = 1
VIDEO_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "video"
# Single-person clips only: MediaPipe reports one person, so a second one (Sports2D has two) could
# not be kept out of the crops.
BACKGROUND_VIDEOS = ("temugeb_webcam/cam0_test.mp4",
                     *(f"pose2sim_singleperson/videos/cam0{i}.mp4" for i in range(1, 5)))
BACKGROUND_SIZE = (640, 480)  # the bank's images; resized to each camera's image
RENDER_SIZE = max(IMAGE_SIZES)  # the largest camera image a job may have
# Skin tones from light to dark (sRGB, 0-1), roughly spanning the Fitzpatrick scale.
SKIN_TONES = ((0.96, 0.80, 0.69), (0.92, 0.72, 0.58), (0.80, 0.60, 0.45), (0.65, 0.46, 0.32),
              (0.48, 0.33, 0.23), (0.33, 0.22, 0.15))

# A detector factory: called once per job, returns an object with detect(rgb) -> Detection | None
# and close(). The CLI passes streamer.pose.PoseDetector (the engine does not import the streamer).
DetectorFactory = Callable[[], object]


@dataclass(frozen=True)
class Scene:
    """How one job looks. Colours are RGB in [0, 1]; light_dir points towards the light (world)."""

    top: tuple
    trousers: tuple
    skin: tuple
    shoes: tuple
    light_dir: tuple
    light: float
    ambient: float
    background: str            # "solid", "gradient" or "video"
    background_colors: tuple   # solid: one colour; gradient: top and bottom
    background_index: int      # video: which image of the bank
    occluder: tuple


def _color(rng, lo=0.05, hi=0.95) -> tuple:
    return tuple(float(c) for c in rng.uniform(lo, hi, 3))


def sample_scene(rng: np.random.Generator, bank_size: int) -> Scene:
    """Clothing, skin, light and background for one job."""
    kind = ("solid", "gradient", "video")[rng.choice(3, p=(0.2, 0.2, 0.6) if bank_size else (0.5, 0.5, 0.0))]
    light_dir = rng.normal(size=3)
    light_dir[1] = abs(light_dir[1]) + 0.5  # from above
    return Scene(top=_color(rng), trousers=_color(rng, 0.05, 0.6),
                 skin=SKIN_TONES[rng.integers(len(SKIN_TONES))], shoes=_color(rng, 0.02, 0.3),
                 light_dir=tuple(float(v) for v in light_dir / np.linalg.norm(light_dir)),
                 light=float(rng.uniform(0.5, 0.9)), ambient=float(rng.uniform(0.25, 0.45)),
                 background=kind, background_colors=(_color(rng), _color(rng)),
                 background_index=int(rng.integers(max(bank_size, 1))), occluder=_color(rng, 0.1, 0.9))


def body_colors(regions: dict[str, np.ndarray], scene: Scene) -> np.ndarray:
    """(V, 3) vertex colours from engine.data.render.vertex_regions and a scene."""
    colors = np.zeros((len(next(iter(regions.values()))), 3))
    for name, mask in regions.items():
        colors[mask] = getattr(scene, name)
    return colors


def background(scene: Scene, width: int, height: int, bank: np.ndarray) -> np.ndarray:
    """(height, width, 3) uint8 RGB background of a scene."""
    if scene.background == "video":
        return cv2.resize(bank[scene.background_index], (width, height), interpolation=cv2.INTER_AREA)
    top = np.array(scene.background_colors[0])
    bottom = np.array(scene.background_colors[1] if scene.background == "gradient" else top)
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    image = (top * (1 - ramp) + bottom * ramp) * 255
    return np.ascontiguousarray(np.broadcast_to(image, (height, width, 3)).round().astype(np.uint8))


def _person_box(detector_factory: DetectorFactory, rgb: np.ndarray, grow: float = 0.35):
    """The (x0, y0, x1, y1) box of the person MediaPipe finds in a full frame (all 33 landmarks,
    grown by `grow` of its size on each side), or None."""
    detector = detector_factory()
    try:
        found = detector.detect(rgb)
    finally:
        detector.close()
    if found is None:
        return None
    (x0, y0), (x1, y1) = found.keypoints.min(0), found.keypoints.max(0)
    gx, gy = grow * (x1 - x0), grow * (y1 - y0)
    return x0 - gx, y0 - gy, x1 + gx, y1 + gy


def background_bank(detector_factory: DetectorFactory, video_root: Path = VIDEO_ROOT,
                    per_video: int = 12, seed: int = 0) -> np.ndarray:
    """(N, 480, 640, 3) uint8 RGB crops of frames of the shared videos that keep clear of the
    people in them (MediaPipe locates the person in the whole frame; crops overlapping that
    person's grown box, or in which it still finds someone, are not used), so a rendered body is
    the only person in its image. The bank is cached beside the rendered sets."""
    rng = np.random.default_rng(seed)
    out = []
    for name in BACKGROUND_VIDEOS:
        cap = cv2.VideoCapture(str(video_root / name))
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        for index in np.linspace(0, frames - 1, per_video).astype(int):
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            ok, bgr = cap.read()
            if not ok:
                continue
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            person = _person_box(detector_factory, rgb)
            h, w = rgb.shape[:2]
            for _ in range(50):  # tries to find a 4:3 crop clear of the person
                cw = int(min(w, h * rng.uniform(0.2, 0.5) * 4 / 3))
                ch = cw * 3 // 4
                y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
                clear = person is None or (x + cw < person[0] or x > person[2]
                                           or y + ch < person[1] or y > person[3])
                crop = cv2.resize(rgb[y:y + ch, x:x + cw], BACKGROUND_SIZE, interpolation=cv2.INTER_AREA)
                if clear and _person_box(detector_factory, crop) is None:
                    out.append(crop)
                    break
        cap.release()
    return np.stack(out) if out else np.zeros((0, BACKGROUND_SIZE[1], BACKGROUND_SIZE[0], 3), np.uint8)


def occluder_rect(uv: np.ndarray, group, margin: float) -> tuple[int, int, int, int] | None:
    """The image box (x0, y0, x1, y1) covering landmarks `group` of one frame's (33, 2) pixels,
    grown by `margin` pixels; None when none of them is in front of the camera."""
    pts = uv[list(group)]
    pts = pts[np.isfinite(pts).all(-1)]
    if not len(pts):
        return None
    (x0, y0), (x1, y1) = pts.min(0) - margin, pts.max(0) + margin
    return int(x0), int(y0), int(np.ceil(x1)), int(np.ceil(y1))


def job_rng(clip: str, seed: int, camera_index: int) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(clip.encode()), seed, camera_index, RENDER_VERSION])


def job_path(out_dir: Path, clip: str, camera_index: int) -> Path:
    return out_dir / f"{clip.replace('/', '__')}__cam{camera_index}.npz"


@dataclass
class Job:
    """What one (clip, camera) render needs: the clip posed on the body, its camera, scene, events."""

    clip: str
    camera_index: int
    joints: np.ndarray      # (T, 24, 3)
    world_rot: np.ndarray   # (T, 24, 3, 3)
    vertices: np.ndarray    # (T, V, 3)
    camera: Camera
    scene: Scene
    events: Events


def make_job(clip: Clip, body: Body, seed: int, camera_index: int, noise: NoiseModel, bank_size: int) -> Job:
    out = body.pose(torch.from_numpy(clip.pose), torch.from_numpy(clip.root), with_vertices=True)
    joints = out["joints"].numpy().astype(np.float64)
    world_rot = out["world_rot"].numpy().astype(np.float64)
    rng = job_rng(clip.clip, seed, camera_index)
    camera, events = sample_view(rng, joints, world_rot, noise)
    # MediaPipe makes its own left/right mistakes on the pixels.
    events = Events(limb_spans=events.limb_spans, missing_spans=events.missing_spans, swap_spans=())
    return Job(clip=clip.clip, camera_index=camera_index, joints=joints, world_rot=world_rot,
               vertices=out["vertices"].numpy(), camera=camera, scene=sample_scene(rng, bank_size),
               events=events)


def render_frames(job: Job, renderer: Renderer, faces: np.ndarray, regions: dict, bank: np.ndarray,
                  stature: float):
    """Yield each frame of a job: (t, RGB image (H, W, 3) uint8 C-contiguous)."""
    cam, scene = job.camera, job.scene
    colors = body_colors(regions, scene)
    back = background(scene, cam.width, cam.height, bank)
    uv, _ = cam.project(landmarks_3d(job.joints, job.world_rot, stature))
    absent = job.events.missing_mask(len(job.joints))
    box_h = box_height(uv)
    occluder = np.array(scene.occluder) * 255
    for t in range(len(job.joints)):
        if absent[t]:
            yield t, back.copy()
            continue
        image = composite(renderer.render(job.vertices[t], faces, colors, cam, np.array(scene.light_dir),
                                          scene.light, scene.ambient), back)
        for start, end, group in job.events.limb_spans:
            if start <= t < end:
                rect = occluder_rect(uv[t], group, 0.06 * np.nan_to_num(box_h[t], nan=100.0))
                if rect:
                    cv2.rectangle(image, rect[:2], rect[2:], occluder.tolist(), thickness=-1)
        yield t, image


def run_job(job: Job, renderer: Renderer, faces: np.ndarray, regions: dict, bank: np.ndarray,
            stature: float, detector_factory: DetectorFactory, preview: Callable | None = None) -> dict:
    """Render a job, run MediaPipe on every frame in order; the arrays of its cache file."""
    T = len(job.joints)
    keypoints = np.full((T, NUM_LANDMARKS, 2), np.nan, np.float32)
    visibility = np.zeros((T, NUM_LANDMARKS), np.float32)
    world = np.full((T, NUM_LANDMARKS, 3), np.nan, np.float32)
    detector = detector_factory()
    try:
        for t, image in render_frames(job, renderer, faces, regions, bank, stature):
            found = detector.detect(image)
            if found is not None:
                keypoints[t], visibility[t], world[t] = found.keypoints, found.visibility, found.world
            if preview is not None:
                preview(job, t, image, found)
    finally:
        detector.close()
    cam = job.camera
    return {"keypoints": keypoints, "visibility": visibility, "detected": np.isfinite(keypoints[:, 0, 0]),
            "world": world, "joints": job.joints.astype(np.float32), "K": cam.K, "R": cam.R, "t": cam.t,
            "size": np.array([cam.width, cam.height]), "clip": job.clip, "camera_index": job.camera_index,
            "scene": json.dumps(asdict(job.scene)), "events": json.dumps(asdict(job.events)),
            "version": RENDER_VERSION}


def _save(path: Path, arrays: dict) -> None:
    # A name of its own per process: two renders (train and test) share the background bank.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def load_background_bank(out_dir: Path, detector_factory: DetectorFactory) -> np.ndarray:
    """The background bank cached beside the rendered sets (<out_dir>/../backgrounds.npz), built and
    saved on first use."""
    path = out_dir.parent / "backgrounds.npz"
    if path.exists():
        return np.load(path)["images"]
    bank = background_bank(detector_factory)
    _save(path, {"images": bank})
    return bank


def fully_in_view(joints: np.ndarray, camera: Camera, events: Events) -> np.ndarray:
    """(T,) bool: the frames a detector should find the person on. joints (T, 24, 3) world metres:
    every joint in front of the camera inside the image, the person present (no missing span) and
    nothing in front of them (no occlusion span)."""
    uv, depth = camera.project(joints)
    T = len(joints)
    return ((camera.in_image(uv) & (depth > 0.1)).all(-1) & ~events.missing_mask(T)
            & ~events.limb_mask(T).any(-1))


def person_height(joints: np.ndarray, camera: Camera) -> np.ndarray:
    """(T,) height of the box around the projected joints (T, 24, 3), as a fraction of the image's."""
    return box_height(camera.project(joints)[0]) / camera.height


HEIGHT_BINS = (0.0, 0.2, 0.3, 0.4, 10.0)  # person height / image height, for detection_report


def detection_report(items: list[RenderedItem]) -> dict:
    """How often MediaPipe found the person where it should: on fully-in-view frames (fully_in_view),
    overall and by the person's height in the image (HEIGHT_BINS). {"all": {frames, detected_pct},
    "height 0.2-0.3": {...}, ...}."""
    seen, height = [], []
    for it in items:
        view = fully_in_view(it.joints, it.obs.camera, it.obs.events)
        seen.append(it.obs.detected[view])
        height.append(person_height(it.joints, it.obs.camera)[view])
    seen, height = np.concatenate(seen), np.concatenate(height)

    def row(mask):
        n = int(mask.sum())
        return {"frames": n, "detected_pct": round(100 * float(seen[mask].mean()), 1) if n else None}

    out = {"all": row(np.ones_like(seen))}
    for lo, hi in zip(HEIGHT_BINS[:-1], HEIGHT_BINS[1:]):
        out[f"height {lo:.1f}-{hi:.1f}" if hi < 10 else f"height >= {lo:.1f}"] = row((height >= lo) & (height < hi))
    return out


# A worker process renders this many jobs, then is replaced by a fresh one: one process over the
# 527-job train split grew by 50-100 MB a job and would have run out. The memory is held inside the
# native libraries (one MediaPipe detector over many frames does not grow; 36 short jobs in one
# process levelled off at 1 GB), so a fresh process is the bound that does not depend on the cause.
JOBS_PER_WORKER = 8
_worker: dict = {}


def _render_job(clip: Clip, camera_index: int, renderer: Renderer, ctx: dict,
                preview: Callable | None = None) -> int:
    """Render one (clip, camera) job into its cache file; its frame count."""
    body = ctx["body"]
    job = make_job(clip, body, ctx["seed"], camera_index, ctx["noise"], len(ctx["bank"]))
    _save(job_path(ctx["out_dir"], clip.clip, camera_index),
          run_job(job, renderer, ctx["faces"], ctx["regions"], ctx["bank"], body.stature, ctx["detector_factory"],
                  preview))
    return len(clip.pose)


def _start_worker(ctx: dict, platform: str) -> None:
    _worker.update(ctx, renderer=Renderer(RENDER_SIZE[0], RENDER_SIZE[1], platform))


def _worker_job(todo: tuple[Clip, int]) -> int:
    return _render_job(*todo, _worker["renderer"], _worker)


def build_rendered_set(clips: list[Clip], body: Body, out_dir: Path, detector_factory: DetectorFactory,
                       seed: int = 0, cameras: int = 3, max_minutes: float | None = None,
                       preview: Callable | None = None, platform: str = "osmesa", workers: int = 1) -> dict:
    """Render every (clip, camera) job not yet in `out_dir`, in `workers` processes (each replaced
    after JOBS_PER_WORKER jobs; with a `preview`, which sees the frames, in this process). Returns a
    summary: jobs done and skipped (already cached), frames, seconds and frames per second of the
    whole step. Each job's result depends only on its clip, camera index and seed."""
    if not body.has_mesh:
        raise ValueError(f"the {body.kind} body has no mesh to render")
    out_dir.mkdir(parents=True, exist_ok=True)
    bank = load_background_bank(out_dir, detector_factory)
    if max_minutes is not None:
        kept, frames = [], 0
        for c in clips:
            if frames >= max_minutes * 60 * 30:
                break
            kept.append(c)
            frames += len(c.pose)
        clips = kept
    jobs = [(c, k) for c in clips for k in range(cameras)]
    todo = [(c, k) for c, k in jobs if not job_path(out_dir, c.clip, k).exists()]
    # A copy of the body, and arrays of their own: sending tensors to a worker moves their storage
    # into shared memory, which would leave numpy views of them (here and the caller's) dangling.
    ctx = {"body": copy.deepcopy(body), "seed": seed, "noise": NoiseModel.load(), "bank": bank, "out_dir": out_dir,
           "faces": body.faces.numpy().copy(), "regions": vertex_regions(body.weights.numpy()),
           "detector_factory": detector_factory}
    start, frames = time.perf_counter(), 0
    if todo:
        with tqdm(total=sum(len(c.pose) for c, _ in todo), desc="render + MediaPipe", unit="frame") as bar:
            if preview is not None:
                with Renderer(RENDER_SIZE[0], RENDER_SIZE[1], platform) as renderer:
                    for clip, k in todo:
                        n = _render_job(clip, k, renderer, ctx, preview)
                        frames += n
                        bar.update(n)
            else:
                # A worker whose renderer fails to start is replaced by the pool for ever, so a
                # machine without OpenGL would hang here: fail here first, with the renderer's error.
                Renderer(RENDER_SIZE[0], RENDER_SIZE[1], platform).close()
                pool = mp.get_context("spawn").Pool(workers, _start_worker, (ctx, platform),
                                                    maxtasksperchild=JOBS_PER_WORKER)
                with pool:
                    for n in pool.imap_unordered(_worker_job, todo):
                        frames += n
                        bar.update(n)
    seconds = time.perf_counter() - start
    return {"jobs": len(jobs), "rendered": len(todo), "cached": len(jobs) - len(todo), "frames": frames,
            "seconds": round(seconds, 1), "fps": round(frames / seconds, 2) if frames else None,
            "motion_minutes": round(sum(len(c.pose) for c in clips) / 1800, 2), "cameras": cameras}


@dataclass
class RenderedItem:
    """One cached job: the observation MediaPipe made (its world landmarks included), the truth."""

    clip: str
    camera_index: int
    obs: Observation
    joints: np.ndarray      # (T, 24, 3)
    scene: dict


def load_job(path: Path) -> RenderedItem:
    with np.load(path) as d:
        w, h = (int(v) for v in d["size"])
        camera = Camera(K=d["K"], R=d["R"], t=d["t"], width=w, height=h)
        ev = json.loads(str(d["events"]))
        events = Events(limb_spans=tuple((a, b, tuple(g)) for a, b, g in ev["limb_spans"]),
                        missing_spans=tuple(tuple(s) for s in ev["missing_spans"]), swap_spans=())
        obs = Observation(keypoints=d["keypoints"], visibility=d["visibility"], detected=d["detected"],
                          camera=camera, events=events, world=d["world"])
        return RenderedItem(clip=str(d["clip"]), camera_index=int(d["camera_index"]), obs=obs,
                            joints=d["joints"].astype(np.float64),
                            scene=json.loads(str(d["scene"])))


def load_rendered_set(out_dir: Path, clips: list[Clip], cameras: int) -> list[RenderedItem]:
    """The cached jobs of `clips` x `cameras`, in order; missing ones are an error naming them."""
    paths = [job_path(out_dir, c.clip, k) for c in clips for k in range(cameras)]
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} rendered jobs missing in {out_dir} (e.g. {missing[0]}); "
                                "run `genmo-live data render` first")
    return [load_job(p) for p in paths]


def draw_overlay(image: np.ndarray, joints_uv: np.ndarray, found) -> np.ndarray:
    """A preview frame (BGR): the ground-truth skeleton in green, MediaPipe's landmarks in red
    (hollow where its visibility is below 0.5)."""
    out = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    for j, p in enumerate(SMPL_PARENTS):
        if p >= 0 and np.isfinite(joints_uv[[j, p]]).all():
            cv2.line(out, tuple(int(v) for v in joints_uv[p]), tuple(int(v) for v in joints_uv[j]),
                     (60, 200, 60), 2, cv2.LINE_AA)
    if found is not None:
        for (u, v), vis in zip(found.keypoints, found.visibility):
            cv2.circle(out, (int(u), int(v)), 4, (40, 40, 230), -1 if vis >= 0.5 else 1, cv2.LINE_AA)
    return out
