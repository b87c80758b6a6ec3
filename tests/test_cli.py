"""The `genmo-live` command line, run as a user runs it (the installed console script)."""
import json
import shutil
import subprocess
import sys

import pytest

from clients.cli import main


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


@pytest.mark.parametrize("command", ["run", "train", "eval", "bench", "data"])
def test_unbuilt_subcommands_say_so(command, capsys):
    assert main([command]) == 2
    assert "not built yet" in capsys.readouterr().err
