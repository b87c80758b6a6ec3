"""The renderer and the rendered observation sets: the body lands where the camera model says,
renders are deterministic for a seed, the real MediaPipe finds the rendered body, and the cache
round-trips and resumes. Needs OSMesa (Debian's libosmesa6, which .ci/run installs): without it
these tests skip on a developer's machine and fail in CI."""
import multiprocessing
import os

import numpy as np
import pytest
import torch

from engine.body.body_model import load_default_body
from engine.body.skeleton import SMPL_JOINT_NAMES
from engine.data.camera import Camera, intrinsics, look_at
from engine.data.dataset import Clip
from engine.data.observations import NoiseModel, landmarks_3d
from engine.data.render import Renderer, composite, projection_matrix, vertex_regions
from engine.data.rendered import (_save, background, body_colors, build_rendered_set, job_path, load_rendered_set,
                                  make_job, render_frames, sample_scene)
from streamer.landmarks import BODY_LANDMARKS, L
from streamer.pose import PoseDetector

J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}


@pytest.fixture(scope="module")
def renderer():
    try:
        r = Renderer(1280, 720)
    except Exception as e:  # noqa: BLE001 - any failure to get a GL context means no OSMesa here
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no OSMesa here ({e}); install Debian's libosmesa6")
    yield r
    r.close()


@pytest.fixture(scope="module")
def body():
    return load_default_body(mesh="full")


def front_camera(width=640, height=480, distance=3.2):
    R, t = look_at(np.array([0.0, 1.0, distance]), np.array([0.0, 0.9, 0.0]))
    return Camera(K=intrinsics(width, height, 60.0), R=R, t=t, width=width, height=height)


def standing_pose(T=1):
    pose = np.zeros((T, 24, 3), np.float32)
    pose[:, J["left_shoulder"]] = [0.0, 0.0, -1.2]  # arms down, a little away from the body
    pose[:, J["right_shoulder"]] = [0.0, 0.0, 1.2]
    return pose


def test_projection_matrix_maps_the_principal_point_to_the_centre():
    cam = Camera(K=np.array([[500.0, 0, 300], [0, 500, 200], [0, 0, 1]]), R=np.eye(3), t=np.zeros(3),
                 width=640, height=480)
    P = projection_matrix(cam)
    clip = P @ np.array([0.0, 0.0, -2.0, 1.0])  # on the optical axis, 2 m ahead (GL eye: -z)
    ndc = clip[:2] / clip[3]
    np.testing.assert_allclose(ndc, [2 * 300 / 640 - 1, 1 - 2 * 200 / 480])


def test_the_body_lands_where_the_camera_model_says(renderer, body):
    out = body.pose(torch.from_numpy(standing_pose()), with_vertices=True)
    cam = front_camera()
    rgba = renderer.render(out["vertices"][0].numpy(), body.faces.numpy(),
                           np.full((len(body.vertices), 3), 0.6), cam)
    assert rgba.shape == (480, 640, 4) and rgba.flags["C_CONTIGUOUS"]
    silhouette = rgba[..., 3] > 0
    uv, _ = cam.project(out["joints"][0].numpy())
    inside = [silhouette[int(round(v)), int(round(u))] for u, v in uv]
    assert all(inside), [n for n, ok in zip(SMPL_JOINT_NAMES, inside) if not ok]
    # The silhouette's extent is the projected vertices' extent, to the pixel.
    vuv, _ = cam.project(out["vertices"][0].numpy().astype(np.float64))
    rows, cols = np.flatnonzero(silhouette.any(1)), np.flatnonzero(silhouette.any(0))
    np.testing.assert_allclose([rows[0], rows[-1], cols[0], cols[-1]],
                               [vuv[:, 1].min(), vuv[:, 1].max(), vuv[:, 0].min(), vuv[:, 0].max()], atol=1.5)


def test_clothing_regions_cover_every_vertex(body):
    regions = vertex_regions(body.weights.numpy())
    total = sum(m.astype(int) for m in regions.values())
    assert (total == 1).all()
    scene = sample_scene(np.random.default_rng(0), bank_size=0)
    colors = body_colors(regions, scene)
    np.testing.assert_allclose(colors[regions["top"]][0], scene.top)


def test_composite_puts_the_body_over_the_background():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = [255, 0, 0, 255]
    rgba[0, 1] = [255, 0, 0, 127]
    out = composite(rgba, np.full((2, 2, 3), 100, np.uint8))
    assert out[0, 0].tolist() == [255, 0, 0] and out[1, 1].tolist() == [100, 100, 100]
    assert out[0, 1].tolist() == [177, 50, 50]


def short_clip(T=12, name="test/stand"):
    root = np.tile([0.0, 0.95, 0.0], (T, 1)).astype(np.float32)
    return Clip(clip=name, subject="test:1", split="test", caption=None, pose=standing_pose(T), root=root,
                contacts=np.zeros((T, 6), bool))


def test_renders_are_deterministic_for_a_seed(renderer, body):
    noise = NoiseModel.load()
    bank = np.zeros((0, 480, 640, 3), np.uint8)
    regions = vertex_regions(body.weights.numpy())
    faces = body.faces.numpy()

    def frames(seed):
        job = make_job(short_clip(4), body, seed, 0, noise, 0)
        return job, [img for _, img in render_frames(job, renderer, faces, regions, bank, body.stature)]

    (job_a, a), (job_b, b), (job_c, c) = frames(0), frames(0), frames(1)
    assert job_a.scene == job_b.scene and job_a.events == job_b.events
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert job_a.scene != job_c.scene and not np.array_equal(a[0][:10], c[0][:10]) or a[0].shape != c[0].shape


def test_background_kinds():
    scene = sample_scene(np.random.default_rng(3), bank_size=0)
    assert scene.background in ("solid", "gradient")
    img = background(scene, 64, 48, np.zeros((0, 480, 640, 3), np.uint8))
    assert img.shape == (48, 64, 3) and img.dtype == np.uint8


@pytest.mark.slow
def test_mediapipe_finds_the_rendered_body_where_it_is(renderer, body):
    """The real MediaPipe, in video mode, on a rendered standing body: detected in every frame, its
    body landmarks within 3 % of the person's height of our landmark placement."""
    T = 15
    out = body.pose(torch.from_numpy(standing_pose(T)), with_vertices=True)
    cam = front_camera()
    colors = np.tile([0.2, 0.35, 0.7], (len(body.vertices), 1))
    colors[vertex_regions(body.weights.numpy())["skin"]] = [0.85, 0.65, 0.5]
    truth, _ = cam.project(landmarks_3d(out["joints"].numpy().astype(float), out["world_rot"].numpy().astype(float)))
    height_px = truth[0, :, 1].max() - truth[0, :, 1].min()
    with PoseDetector() as detector:
        for t in range(T):
            rgba = renderer.render(out["vertices"][t].numpy(), body.faces.numpy(), colors, cam)
            found = detector.detect(composite(rgba, np.full((480, 640, 3), 200, np.uint8)))
            assert found is not None, f"frame {t}: no detection"
    err = np.linalg.norm(found.keypoints - truth[-1], axis=-1)[list(BODY_LANDMARKS)]
    assert err.max() < 0.03 * height_px, dict(zip([n for n in L if L[n] in BODY_LANDMARKS], err.round(1)))
    assert (found.visibility[list(BODY_LANDMARKS)] > 0.5).all()


@pytest.mark.slow
def test_rendered_set_round_trips_and_resumes(renderer, body, tmp_path):
    clips = [short_clip(10, "test/a"), short_clip(8, "test/b")]
    out = tmp_path / "rendered" / "test"
    first = build_rendered_set(clips, body, out, PoseDetector, seed=0, cameras=2)
    assert first["rendered"] == 4 and first["cached"] == 0 and first["frames"] == 36
    assert (tmp_path / "rendered" / "backgrounds.npz").exists()
    stamp = job_path(out, "test/b", 1).stat().st_mtime_ns
    again = build_rendered_set(clips, body, out, PoseDetector, seed=0, cameras=2)
    assert again["rendered"] == 0 and again["cached"] == 4
    assert job_path(out, "test/b", 1).stat().st_mtime_ns == stamp
    items = load_rendered_set(out, clips, 2)
    assert [(i.clip, i.camera_index) for i in items] == [("test/a", 0), ("test/a", 1), ("test/b", 0), ("test/b", 1)]
    b1 = items[3]
    assert b1.obs.keypoints.shape == (8, 33, 2) and b1.joints.shape == (8, 24, 3)
    assert b1.obs.detected.dtype == bool and b1.obs.world.shape == (8, 33, 3)
    np.testing.assert_array_equal(np.isnan(b1.obs.keypoints[:, 0, 0]), ~b1.obs.detected)
    job = make_job(clips[1], body, 0, 1, NoiseModel.load(), 1)
    np.testing.assert_allclose(b1.obs.camera.K, job.camera.K)
    np.testing.assert_allclose(b1.joints, job.joints, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="rendered jobs missing"):
        load_rendered_set(out, clips, 3)


@pytest.mark.slow
def test_worker_processes_render_what_this_process_renders(renderer, body, tmp_path):
    """Jobs rendered in two worker processes are the jobs rendered here (with a preview, which sees
    every frame), and sending the body to the workers leaves the caller's arrays of it intact.
    (`renderer` only to skip, like the other rendering tests, where there is no OSMesa.)"""
    clips = [short_clip(6, "test/a"), short_clip(5, "test/b")]
    faces = body.faces.numpy()
    before = faces.copy()
    seen = []
    here = build_rendered_set(clips, body, tmp_path / "r" / "here", PoseDetector, cameras=1,
                              preview=lambda job, t, image, found: seen.append((job.clip, t)))
    pool = build_rendered_set(clips, body, tmp_path / "r" / "pool", PoseDetector, cameras=1, workers=2)
    assert here["frames"] == pool["frames"] == 11 and len(seen) == 11
    for c in clips:
        with np.load(job_path(tmp_path / "r" / "here", c.clip, 0)) as a, \
                np.load(job_path(tmp_path / "r" / "pool", c.clip, 0)) as b:
            for key in ("keypoints", "visibility", "world", "joints", "detected"):
                np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_array_equal(faces, before)


def test_a_machine_without_opengl_is_a_clear_error_not_a_hang(body, tmp_path, monkeypatch):
    """Without the GL library the renderer says what to install, and the worker pool is never
    started (its workers would fail to start and be replaced for ever)."""
    import engine.data.render

    real = engine.data.render.importlib.import_module

    def no_gl(name, *args):
        if name == "OpenGL.GL":
            raise AttributeError("'NoneType' object has no attribute 'glGetError'")  # PyOpenGL's words
        return real(name, *args)

    monkeypatch.setattr(engine.data.render.importlib, "import_module", no_gl)
    with pytest.raises(RuntimeError, match="libosmesa6"):
        build_rendered_set([short_clip(3, "test/a")], body, tmp_path / "r", PoseDetector, cameras=1, workers=2)
    assert not job_path(tmp_path / "r", "test/a", 0).exists()


@pytest.mark.slow
def test_render_and_eval_rendered_from_the_command_line(renderer, tmp_path, capsys):
    """`genmo-live data render --data DIR --preview` and `genmo-live eval --obs rendered --data DIR`
    on a folder holding one real take (CMU 02_03, run/jog, 43 frames at 30 fps)."""
    import json
    import shutil
    from pathlib import Path

    from clients.cli.main import main

    take = Path(__file__).resolve().parents[3] / "shared/data/mocap/cmu_iclone_ccbase_bvh/02_03.bvh.gz"
    if not take.exists():
        pytest.skip("no ../shared/data/mocap here")
    data = tmp_path / "new_motion"
    data.mkdir()
    shutil.copy(take, data / "jog.bvh.gz")
    common = ["--data", str(data), "--cameras", "1", "--data.cache_dir", str(tmp_path / "cache")]
    preview = tmp_path / "preview.mp4"
    assert main(["data", "render", *common, "--preview", str(preview)]) == 0
    assert "1 jobs (0 already cached)" in capsys.readouterr().out and preview.stat().st_size > 10_000
    report = tmp_path / "report.json"
    assert main(["eval", "--model", "identity-baseline", "--obs", "rendered", *common, "--report", str(report)]) == 0
    assert "0 jobs (1 already cached)" in capsys.readouterr().out
    r = json.loads(report.read_text())
    assert r["obs"] == "rendered" and r["n_clips"] == 1 and r["n_frames"] == 43
    assert r["mpjpe_mm"] > 100 and r["rte_pct"] == pytest.approx(0.0, abs=1e-3)


def _save_many(path, n):
    for i in range(n):
        _save(path, {"images": np.full((32, 32), i, np.uint8)})


def test_two_processes_saving_one_cache_file_at_once_both_succeed(tmp_path):
    # A train and a test render started together both build the shared background bank; with one
    # temporary name for both, one process's rename found its file already moved and the render died.
    path = tmp_path / "backgrounds.npz"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_save_many, args=(path, 40)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0, 0]
    assert np.load(path)["images"].shape == (32, 32)
    assert list(tmp_path.iterdir()) == [path]
