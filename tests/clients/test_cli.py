"""The `genmo-live` command line, run as a user runs it (the installed console script)."""
import json
import shutil
import subprocess
import sys

import pytest


def run_cli(*args):
    exe = shutil.which("genmo-live") or str(__import__("pathlib").Path(sys.executable).with_name("genmo-live"))
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=300)


def test_info_reports_the_default_body():
    out = run_cli("info", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    body = report["body"]
    assert body["model"] == "default" and body["joints"] == 24
    assert abs(body["stature_m"] - 1.70) <= 0.01
    assert abs(body["lowest_rest_y_m"]) <= 0.005
    assert body["vertices"] > 1000
    assert report["versions"]["torch"].startswith("2.13.0")
    assert report["device"].startswith(("CPU", "GPU"))


def test_info_human_readable_and_overrides():
    out = run_cli("info", "--body.model", "procedural", "--body.stature", "1.80")
    assert out.returncode == 0, out.stderr
    assert "procedural — 24 joints, stature 1.800 m" in out.stdout
    assert "device:" in out.stdout and "weights:" in out.stdout


def test_bad_setting_is_a_clear_error():
    out = run_cli("info", "--body.stature", "tall")
    assert out.returncode == 2
    assert "config key 'body.stature': expected float, got 'tall'" in out.stderr


@pytest.mark.parametrize("flags, message", [
    (["--ws", "0.0.0.0:8765"], "the WebSocket server listens on 0.0.0.0, beyond this machine: set a token"),
    (["--viewer", "192.168.1.5:8080"], "the viewer listens on 192.168.1.5"),
    (["--vmc", "localhost"], "outputs.vmc: expected HOST:PORT, got 'localhost'"),
    (["--source", "webrtc", "--source.webrtc_host", "0.0.0.0"], "the WebRTC capture page listens on 0.0.0.0"),
])
def test_run_refuses_bad_addresses_and_unguarded_servers_before_starting(flags, message):
    out = run_cli("run", *flags)
    assert out.returncode == 2 and message in out.stderr


@pytest.mark.parametrize("flags, message", [
    (["--steps", "0"], "config key 'engine.steps': 0 is below the minimum 1"),
    (["--lag", "100"], "config key 'engine.lag': 100 is above the maximum 60"),
    (["--prompt", b"walk\xff"], "config key 'engine.prompt': not valid text"),  # not UTF-8
    (["--prompt", "a" * 201], "config key 'engine.prompt': 201 characters, at most 200"),
    (["--legs", "a" * 201], "config key 'engine.legs': 201 characters, at most 200"),
    (["--record", "take.mp4"], "outputs.record: cannot record to take.mp4: the suffix must be .npz or .bvh"),
    (["--record", "/dev/null/take.npz"], "outputs.record: cannot write /dev/null/take.npz"),
    (["--report", "/dev/null/run.json"], "--report: cannot write /dev/null/run.json"),
    (["--source", "no/such/clip.mp4"], "source.source: video file no/such/clip.mp4 does not exist"),
    (["--source", "pyproject.toml"], "source.source: pyproject.toml is not a video OpenCV can read"),
])
def test_run_refuses_bad_flags_with_one_line_before_loading_the_engine(flags, message):
    """Every run flag passes the config's checks, and files are checked before the engine loads:
    on main these were tracebacks, some of them after a 10 s engine load."""
    out = run_cli("run", "--headless", *flags)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0, out.stderr  # one line: no engine loaded, nothing started


@pytest.mark.parametrize("share", ["--desk-share", "--mix-share", "--rendered-share", "--text-share",
                                   "--clip-caption-share", "--text-drop-observations"])
def test_train_refuses_a_share_outside_0_to_1(share):
    out = run_cli("train", share, "1.5")
    assert out.returncode == 2 and f"{share} 1.5: give a share from 0 to 1" in out.stderr


def test_train_refuses_a_refresh_below_one_step():
    out = run_cli("train", "--refresh", "0")
    assert out.returncode == 2 and "--refresh 0: give the steps between observations" in out.stderr


def test_train_from_weights_refuses_new_sizes_other_than_more_layers():
    out = run_cli("train", "--from", "assets/genmo_live.pt", "--width", "256")
    assert out.returncode == 2 and "train --from keeps the checkpoint's sizes" in out.stderr


def test_train_refuses_a_rendered_folder_with_no_jobs(tmp_path):
    """On main an empty or misspelt --rendered folder trained on "0 rendered jobs" without a word of warning."""
    out = run_cli("train", "--rendered", str(tmp_path), "--steps", "1")
    assert out.returncode == 2 and f"--rendered {tmp_path}: no rendered jobs there" in out.stderr
    assert "Traceback" not in out.stderr


def test_bench_kinematics_runs_with_baseline():
    out = run_cli("bench", "kinematics", "--repeats", "2", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout[out.stdout.index("["):])
    fk = [r for r in rows if r["case"] == "FK 24 joints"]
    assert [r["batch"] for r in fk] == [1, 120, 1024]
    assert all(r["ours_ms"] > 0 and r["baseline_ms"] > 0 for r in fk)  # smplx is in the dev extra
    assert any(r["case"].startswith("LBS") for r in rows)


def test_bench_engine_times_every_size_and_step_count():
    out = run_cli("bench", "engine", "--repeats", "2", "--frames", "3", "--streams", "1,2", "--max-streams", "2",
                  "--threads", "1", "--json")
    assert out.returncode == 0, out.stderr
    tables = json.loads(out.stdout[out.stdout.index("{"):])
    rows = tables["windows"]
    plain = {(r["case"].split(" ")[0], r["steps"]) for r in rows if not r["case"].endswith("mirror-averaged")}
    assert plain == {(w, k) for w in ("256", "192") for k in (1, 2, 5)}
    mirrored = [(r["case"].split(" ")[0], r["steps"]) for r in rows if r["case"].endswith("mirror-averaged")]
    assert sorted(mirrored) == [("192", 1), ("256", 1)]
    assert all(r["ms"] > 0 and r["params_m"] > 1 for r in rows)
    # The live engine's rows and the streams' (their maths and markdown: tests/bench/test_engine_bench.py)
    assert {(r["path"], r["threads"]) for r in tables["per_frame"]} == {
        (p, n) for p in ("window pass", "cached causal step") for n in (1, 2)}
    assert [r["streams"] for r in tables["streams"]] == [1, 2, 1, 2]  # model only, then the whole engine
    assert [0 <= r["streams"] <= 2 for r in tables["streams_at_30fps"]] == [True, True]


def test_bench_train_times_both_models_in_both_precisions():
    out = run_cli("bench", "train", "--repeats", "1", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout[out.stdout.index("["):])
    assert {(r["case"].split(",")[0], r["precision"]) for r in rows} == {
        (m, p) for m in ("denoiser", "per-frame lifter") for p in ("fp32", "bf16")}
    assert all(r["ms"] > 0 for r in rows)


def test_missing_smpl_model_is_a_clear_error(tmp_path):
    out = run_cli("info", "--body.model", "smpl", "--body.smpl_path", str(tmp_path / "nowhere"))
    assert out.returncode == 2
    assert "SMPL model not found" in out.stderr and "Traceback" not in out.stderr


def test_cuda_without_gpu_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = run_cli("info", "--device", "cuda")
    assert out.returncode == 2 and "config key 'device'" in out.stderr


def test_eval_refuses_the_desk_scenario_on_the_rendered_set_in_one_line():
    out = run_cli("eval", "--model", "identity-baseline", "--scenario", "desk", "--obs", "rendered")
    assert out.returncode == 2 and "--scenario desk: the rendered set has no desk scenes yet" in out.stderr
    assert "Traceback" not in out.stderr


def test_extra_mocap_folders_that_are_absent_or_not_folders_are_left_out_with_a_note(tmp_path, capsys):
    """data.extra_mocap_dirs comes from a config file or a flag: a folder that is not there (or a
    file) is named in a note and left out of the dataset, never a traceback; a value that is no
    list is refused by the config's check."""
    from clients.cli.clip_sets import mocap_folders
    from configs.config import load_config

    (tmp_path / "a_file").write_text("x")
    (tmp_path / "more").mkdir()
    extra = [str(tmp_path / "more"), str(tmp_path / "missing"), str(tmp_path / "a_file")]
    cfg = load_config(overrides={"data.extra_mocap_dirs": extra})
    folders = mocap_folders(cfg)
    assert folders[1:] == [tmp_path / "more"]
    printed = capsys.readouterr().out
    assert "missing is not here" in printed and "a_file is not here" in printed
    out = run_cli("data", "build", "--data.extra_mocap_dirs", "somewhere")
    assert out.returncode == 2 and "data.extra_mocap_dirs" in out.stderr and "Traceback" not in out.stderr
