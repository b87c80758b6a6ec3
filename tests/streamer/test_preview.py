"""The camera preview (streamer/preview.py): its size, its schedule, its message, and the ingest
process sending it on the bundled sample clip (real MediaPipe, real JPEGs) only when asked."""
import queue
import time

import cv2
import numpy as np
import pytest

from streamer.ingest import Ingest, IngestOptions
from streamer.packets import LandmarkPacket
from streamer.preview import (MAX_JPEG_BYTES, Preview, PreviewOptions, encode_jpeg, next_preview_due,
                              preview_size)


def test_a_preview_is_at_most_the_asked_width_and_twice_that_tall_never_enlarged():
    assert preview_size(1280, 720, 320) == (320, 180)
    assert preview_size(720, 720, 320) == (320, 320)
    assert preview_size(160, 120, 320) == (160, 120)
    assert preview_size(100, 4000, 320) == (16, 640)  # a browser's odd frame: bounded all the same
    assert preview_size(10000, 1, 64) == (64, 1)


def test_previews_keep_the_asked_rate_on_a_jittery_camera_and_start_over_after_a_stall():
    rng = np.random.default_rng(0)
    times = np.arange(30 * 60) / 30 + rng.normal(0, 0.004, 30 * 60)  # a minute of 30 fps, 4 ms jitter
    due, taken = float("-inf"), []
    for t in times:
        if t >= due:
            due = next_preview_due(t, due, 5.0)
            taken.append(t)
    assert len(taken) == pytest.approx(5 * 60, abs=2)
    assert np.diff(taken).max() < 0.2 + 2 / 30  # never a frame's wait more than one frame late
    assert next_preview_due(10.0, 3.0, 5.0) == pytest.approx(10.2)  # after a 7 s stall: from now, no burst


def test_a_preview_message_carries_the_frame_s_landmarks_and_a_jpeg_and_nothing_else():
    packet = LandmarkPacket(7, 1.5, 640, 480, np.full((33, 2), 12.5, np.float32),
                            np.linspace(0, 1, 33, dtype=np.float32))
    rgb = np.zeros((480, 640, 3), np.uint8)
    rgb[:, :320] = (200, 30, 30)
    jpeg = encode_jpeg(rgb, preview_size(640, 480, 320))
    back = Preview.from_bytes(Preview(packet, jpeg).to_bytes())
    assert back.packet.frame_id == 7 and np.array_equal(back.packet.keypoints, packet.keypoints)
    picture = cv2.imdecode(np.frombuffer(back.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape == (240, 320, 3)
    assert np.abs(picture[120, 80].astype(int) - (30, 30, 200)).max() < 10  # red on the left, RGB kept
    for bad in (packet.to_bytes() + b"GIF89a", packet.to_bytes() + b"\xff\xd8\xff" + bytes(MAX_JPEG_BYTES),
                jpeg):
        with pytest.raises(ValueError):
            Preview.from_bytes(bad)


def run_ingest(options: IngestOptions) -> tuple[list[bytes], list[bytes], dict]:
    """The ingest process on `options` to the end of its source: (packets, previews, end event)."""
    ingest = Ingest(options)
    packets, previews, end = [], [], None
    ingest.start()
    try:
        while end is None:
            try:
                packets.append(ingest.packets.get(timeout=0.05))
            except queue.Empty:
                pass
            while ingest.previews is not None:
                try:
                    previews.append(ingest.previews.get_nowait())
                except queue.Empty:
                    break
            try:
                kind, payload = ingest.events.get_nowait()
                end = payload if kind == "end" else None
            except queue.Empty:
                pass
        time.sleep(0.2)  # what the process put just before its end event
        for q, got in ((ingest.packets, packets), (ingest.previews, previews)):
            while q is not None:
                try:
                    got.append(q.get(timeout=0.1))
                except queue.Empty:
                    break
    finally:
        ingest.stop()
    return packets, previews, end


@pytest.mark.slow
def test_the_ingest_sends_previews_of_the_sample_clip_at_the_asked_rate_and_size():
    """Paced like a camera (the clip: 187 frames at 20 fps, 720x720): 5 previews a second,
    256 pixels wide, each a JPEG of its frame with that frame's landmarks."""
    packets, previews, end = run_ingest(IngestOptions(source="sample", preview=PreviewOptions(width=256, fps=5.0)))
    assert len(packets) == end["frames_in"] == 187
    by_id = {p.frame_id: p for p in map(LandmarkPacket.from_bytes, packets)}
    # 9.35 s of video, more when the busy machine held a frame back (the file then goes on from
    # its late frame, as a camera would)
    seconds = by_id[186].t_capture - by_id[0].t_capture
    assert end["previews"] == len(previews) + end["previews_dropped"]
    assert len(previews) == pytest.approx(seconds * 5 + 1, abs=2), (len(previews), seconds, end)
    ids = []
    for data in previews:
        preview = Preview.from_bytes(data)
        picture = cv2.imdecode(np.frombuffer(preview.jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert picture.shape == (256, 256, 3)
        assert len(preview.jpeg) < 40_000
        original = by_id[preview.packet.frame_id]
        assert np.array_equal(preview.packet.keypoints, original.keypoints, equal_nan=True)
        ids.append(preview.packet.frame_id)
    # every 4th frame of 20 fps (a frame late now and then on a busy machine, whose frames then
    # come bunched: the schedule runs on their capture times)
    assert np.median(np.diff(ids)) == 4 and min(np.diff(ids)) >= 1
    assert sum(Preview.from_bytes(d).packet.detected for d in previews) > 0.8 * len(previews)


@pytest.mark.slow
def test_without_a_preview_the_ingest_encodes_and_sends_none():
    packets, previews, end = run_ingest(IngestOptions(source="sample", realtime=False))
    assert len(packets) == 187 and previews == []
    assert end["previews"] == end["previews_dropped"] == 0
    assert Ingest(IngestOptions(source="sample")).previews is None  # not even a queue
