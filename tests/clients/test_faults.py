"""Faults a real run meets, done to a real `genmo-live run` process: its MediaPipe (ingest) process
killed (-9): poses flow again within 2 s; the engine killed (-9) while its ingest process serves the
WebRTC page: nothing is left behind, no ingest process and no port held, so the next run starts;
its recordings' disk full: the stream goes on, and the report and exit code say what was lost."""
from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import json
import time
from pathlib import Path

import numpy as np
import pytest
from websockets.sync.client import connect

from engine.data.mocap_io import parse_bvh

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    """The live (not zombie) processes whose parent is `pid`, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def ingest_processes(pid: int) -> list[int]:
    """The children of `pid` that are multiprocessing's spawned processes (not its resource tracker)."""
    found = []
    for child in children(pid):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except OSError:
            pass
    return found


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def start_webrtc_run(port: int) -> subprocess.Popen:
    """`genmo-live run --source webrtc` on `port`, returned once its capture page is served."""
    run = subprocess.Popen([sys.executable, "-m", "clients.cli", "run", "--source", "webrtc", "--headless",
                            "--source.webrtc_port", str(port)], cwd=REPO, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(120, run.kill)
    watchdog.start()
    try:
        for line in run.stderr:
            if "in a browser to send your camera" in line:
                return run
        raise AssertionError(f"the run ended before serving the page (exit code {run.wait()})")
    finally:
        watchdog.cancel()


def test_a_killed_engine_leaves_no_ingest_process_and_no_port_behind():
    """On main the ingest process waited for a browser's frame for ever after its engine was killed,
    holding the port, so the next `run --source webrtc` could not start."""
    port = free_port()
    run = start_webrtc_run(port)
    ingest = children(run.pid)  # the ingest process and multiprocessing's resource tracker
    assert ingest_processes(run.pid) and not port_free(port)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    killed = time.monotonic()
    while (any(running(pid) for pid in ingest) or not port_free(port)) and time.monotonic() - killed < 2.0:
        time.sleep(0.05)
    assert not any(running(pid) for pid in ingest), "the ingest process outlived its engine by 2 s"
    assert port_free(port)
    again = start_webrtc_run(port)  # the next run takes the same port
    again.send_signal(signal.SIGTERM)
    assert again.wait(timeout=60) == 0


def test_a_killed_mediapipe_process_is_started_again_and_poses_flow_within_2_s(tmp_path):
    """On main the run noticed the dead ingest process and went on with no poses at all."""
    port, report = free_port(), tmp_path / "run.json"
    run = subprocess.Popen([sys.executable, "-m", "clients.cli", "run", "--source", "sample", "--loop", "--headless",
                            "--ws", f"127.0.0.1:{port}", "--report", str(report)],
                           cwd=REPO, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(180, run.kill)
    watchdog.start()
    try:
        for line in run.stderr:  # the first status line: poses are flowing
            if "poses/s" in line:
                break
        threading.Thread(target=run.stderr.read, daemon=True).start()  # keep the pipe drained
        with connect(f"ws://127.0.0.1:{port}/") as ws:
            def next_pose() -> dict:
                while True:
                    msg = json.loads(ws.recv(timeout=30))
                    if msg["type"] == "pose":
                        return msg

            before = next_pose()
            (ingest,) = ingest_processes(run.pid)
            killed_at = time.time()
            os.kill(ingest, signal.SIGKILL)
            # A frame captured after the kill can only have come through the new process.
            pose = next_pose()
            while pose["t_capture"] <= killed_at:
                pose = next_pose()
            back_after = time.time() - killed_at
            assert pose["frame_id"] > before["frame_id"]  # numbered on, not from 0 again
        assert len(ingest_processes(run.pid)) == 1 and ingest not in ingest_processes(run.pid)
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=60) == 0
    finally:
        watchdog.cancel()
        run.kill()
    result = json.loads(report.read_text())
    assert result["ingest_restarts"] == 1 and result["poses_out"] > 0 and result["errors"] == []
    assert back_after <= 2.0, f"poses came back {back_after:.2f} s after the kill"


def test_a_full_disk_while_recording_is_reported_and_the_run_fails(tmp_path):
    """On main a full disk cost 362 of 402 frames with exit code 0 and nothing in the report. The
    disk here is a file-size limit on the run (RLIMIT_FSIZE: writes past 100 kB fail, EFBIG), which
    needs no root: the same failing write() a full disk gives, to every file the run writes."""
    takes, report = tmp_path / "takes", tmp_path / "run.json"
    takes.mkdir()

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))

    run = subprocess.run([sys.executable, "-m", "clients.cli", "run", "--source", "sample", "--no-realtime",
                          "--headless", "--record", str(takes / "take.bvh"), "--record", str(takes / "take.npz"),
                          "--report", str(report)], cwd=REPO, capture_output=True, text=True, timeout=300,
                         preexec_fn=limit_file_size)
    assert run.returncode == 1, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    result = json.loads(report.read_text())
    assert result["poses_out"] == 187 and result["errors"] == [] and result["engine_failures"] == 0
    recordings = {Path(o["path"]).suffix: o for o in result["outputs"]}
    for suffix, o in recordings.items():
        assert o["error"] == "File too large" and not o["complete"]
        assert o["frames_written"] > 0 and o["frames_lost"] > 0
        assert o["frames_written"] + o["frames_lost"] == 187
        assert f"recording incomplete: {o['path']}: {o['frames_written']} frames on disk" in run.stdout
    assert parse_bvh((takes / "take.bvh").read_text()).frames.shape[0] == recordings[".bvh"]["frames_written"]
    # The npz's first frames still fit: it is finished (a take of them), its journal gone.
    assert len(np.load(takes / "take.npz")["root"]) == recordings[".npz"]["frames_written"]
    assert not (takes / "take.npz.partial.npy").exists()
