"""Re-detection in a crop (streamer.pose): the crop geometry is exact, and the real MediaPipe finds
a small person again after losing them, and a small person it never saw, with the landmarks where
the person is; the frames for which re-detection is measured (engine.data.rendered.fully_in_view)."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.data.camera import Camera, intrinsics, look_at
from engine.data.observations import Events
from engine.data.rendered import fully_in_view, person_height
from streamer.landmarks import BODY_LANDMARKS
from streamer.pose import PoseDetector, crop_box, from_crop, landmark_box, scan_tiles

SAMPLE = Path(__file__).resolve().parents[2] / "assets" / "sample" / "webcam_sample.mp4"


def test_from_crop_maps_crop_coordinates_back_exactly():
    crop = (130, 45, 391, 306)
    pixels = np.array([[130.0, 45.0], [391.0, 306.0], [200.25, 100.5], [-10.0, 400.0]])  # also outside it
    normalized = (pixels - [130, 45]) / [261, 261]
    np.testing.assert_allclose(from_crop(normalized, crop), pixels, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(from_crop(np.array([[0.5, 0.5]]), (0, 0, 640, 480)), [[320.0, 240.0]])


def test_crop_box_is_a_square_around_the_box_inside_the_image():
    assert crop_box((300, 200, 340, 300), 640, 480, scale=2.0) == (220, 150, 420, 350)  # 2 x the longer side
    assert crop_box((600, 400, 640, 480), 640, 480, scale=2.0) == (480, 320, 640, 480)  # moved inside
    assert crop_box((100, 0, 300, 480), 640, 480, scale=2.0) == (0, 0, 640, 480)       # cut to the image
    x0, y0, x1, y1 = crop_box((639.5, 479.5, 639.5, 479.5), 640, 480)                 # a point: never empty
    assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 480


def test_scan_tiles_hold_anything_up_to_half_a_tile():
    rng = np.random.default_rng(0)
    for width, height in ((640, 480), (1280, 720), (480, 640)):
        tiles = np.array(scan_tiles(width, height, 0.5))
        side = round(0.5 * min(width, height))
        assert (tiles[:, 2] - tiles[:, 0] == side).all() and (tiles[:, 3] - tiles[:, 1] == side).all()
        assert (tiles[:, :2] >= 0).all() and (tiles[:, 2] <= width).all() and (tiles[:, 3] <= height).all()
        for _ in range(200):
            w, h = rng.uniform(1, side / 2, 2)
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            inside = ((tiles[:, 0] <= x) & (tiles[:, 1] <= y)
                      & (tiles[:, 2] >= x + w) & (tiles[:, 3] >= y + h))
            assert inside.any(), (width, height, x, y, w, h)


def test_fully_in_view_and_person_height():
    R, t = look_at(np.array([0.0, 1.0, 4.0]), np.array([0.0, 1.0, 0.0]))
    cam = Camera(K=intrinsics(640, 480, 60.0), R=R, t=t, width=640, height=480)
    joints = np.zeros((6, 24, 3))
    joints[:, :, 1] = np.linspace(0.2, 1.7, 24)   # a 1.5 m column of joints, 4 m ahead
    joints[5, 0] = [0.0, 1.0, 5.0]                 # one joint behind the camera
    events = Events(limb_spans=((1, 2, (13,)),), missing_spans=((3, 4),), swap_spans=())
    np.testing.assert_array_equal(fully_in_view(joints, cam, events), [True, False, True, False, True, False])
    f = cam.K[1, 1]
    np.testing.assert_allclose(person_height(joints, cam)[0], 1.5 * f / 4.0 / 480, rtol=1e-9)


def first_frame() -> np.ndarray:
    ok, bgr = cv2.VideoCapture(str(SAMPLE)).read()
    assert ok, SAMPLE
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


CANVAS = (1080, 1440)          # a wide camera's image (height, width)
ANCHOR = np.array([900, 540])  # where the person's box centre is pasted, canvas pixels


def pasted(frame: np.ndarray, centre: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """A black canvas with `frame` shrunk by `scale` in it, its point `centre` at ANCHOR; and the
    offset: a frame pixel p lands at offset + scale * p."""
    small = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    offset = (ANCHOR - centre * scale).round().astype(int)
    canvas = np.zeros((*CANVAS, 3), np.uint8)
    canvas[offset[1]:offset[1] + small.shape[0], offset[0]:offset[0] + small.shape[1]] = small
    return canvas, offset


def run(frames: list[np.ndarray], **kw) -> list:
    with PoseDetector(**kw) as detector:
        return [detector.detect(f) for f in frames]


def assert_where_pasted(found, reference, offset, scale):
    """The body landmarks within 3 % of the person's height of the shrunk full-size detection."""
    expected = offset + scale * reference.keypoints
    err = np.linalg.norm(found.keypoints - expected, axis=-1)[list(BODY_LANDMARKS)]
    height = scale * np.ptp(reference.keypoints[:, 1])
    assert np.median(err) < 0.03 * height, (np.median(err), height)


@pytest.mark.slow
def test_a_small_person_is_found_again_after_a_gap():
    """The tracker follows the person as they shrink to 18 % of the image height, loses them over 5
    empty frames, and (MediaPipe's full-frame detector missing people that small) re-detection in a
    crop around the last box finds them on the first frame back."""
    frame = first_frame()
    (reference,) = run([frame], redetect=False)
    assert reference is not None
    box = landmark_box(reference.keypoints)
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    scales = [1.0] * 5 + list(np.geomspace(1.0, 0.3, 15)) + [None] * 5 + [0.3] * 10
    frames = [np.zeros((*CANVAS, 3), np.uint8) if s is None else pasted(frame, centre, s)[0] for s in scales]
    plain, redetect = run(frames, redetect=False), run(frames)
    # Re-detection never changes what the tracker returns.
    for a, b in zip(plain, redetect):
        if a is not None:
            np.testing.assert_array_equal(a.keypoints, b.keypoints)
    assert all(d is None for d in redetect[20:25])
    for found in redetect[25:]:
        assert found is not None
        assert_where_pasted(found, reference, pasted(frame, centre, 0.3)[1], 0.3)
        body = list(BODY_LANDMARKS)
        np.testing.assert_allclose(found.world[body], reference.world[body], atol=0.15)  # metres


@pytest.mark.slow
def test_a_small_person_never_seen_is_found_by_the_scan():
    """A person at 18 % of the image height from the first frame: the scan's tiles, one per frame,
    find them within one round of the tiles."""
    frame = first_frame()
    (reference,) = run([frame], redetect=False)
    box = landmark_box(reference.keypoints)
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    image, offset = pasted(frame, centre, 0.3)
    rounds = len(scan_tiles(CANVAS[1], CANVAS[0]))
    found = run([image] * (rounds + 3))
    first = next(i for i, d in enumerate(found) if d is not None)
    assert first < rounds and all(d is not None for d in found[first:])
    assert_where_pasted(found[-1], reference, offset, 0.3)


def test_detection_report_counts_only_frames_in_full_view():
    from engine.body.body_model import load_default_body
    from engine.data.observations import Observation
    from engine.data.rendered import RenderedItem, detection_report

    body = load_default_body()
    joints = np.repeat(body.rest_joints.numpy()[None].astype(np.float64), 10, 0)
    R, t = look_at(np.array([0.0, 1.0, 3.0]), np.array([0.0, 0.9, 0.0]))
    cam = Camera(K=intrinsics(640, 480, 60.0), R=R, t=t, width=640, height=480)
    detected = np.array([1, 1, 0, 1, 1, 1, 1, 0, 0, 0], bool)
    obs = Observation(np.zeros((10, 33, 2), np.float32), np.zeros((10, 33), np.float32), detected, cam,
                      Events(limb_spans=(), missing_spans=((7, 10),), swap_spans=()))
    report = detection_report([RenderedItem("toy", 0, obs, joints, {})])
    assert report["all"] == {"frames": 7, "detected_pct": 85.7}  # the missing span does not count
    assert report["height >= 0.4"]["frames"] == 7 and report["height 0.2-0.3"] == {"frames": 0, "detected_pct": None}
