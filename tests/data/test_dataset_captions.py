"""engine.data.dataset: CMU captions (../shared/data/cmu_index and the Huge FBX sets' text index),
ReActIdle's standing-idle captions, the kinds of motion, and the report's per-set and per-split
tables."""
from __future__ import annotations

import pytest

from engine.data.dataset import (IDLE_ACTED, IDLE_GENUINE, CmuEntry, caption_for, cmu_caption, kind_of,
                                 load_cmu_index, retarget_report)
from engine.data.mocap_io import MOCAP_NEW_ROOT, clip_info

CMU_CSV = MOCAP_NEW_ROOT.parent / "cmu_index" / "cmu_mocap_index.csv"
CMU_TEXT = MOCAP_NEW_ROOT / "cmu_hugefbx_daz_bvh" / "cmu-mocap-index-text.txt"


@pytest.mark.parametrize("description, subject, caption", [
    ("walk", "", "walk"),                                                  # plain: unchanged
    ("Start Walk Stop", "", "Start Walk Stop"),
    ("sit on high stool, stand up", "", "sit on high stool, stand up"),
    ("friends meet, hang out; A sits, B joins A (2 subjects - subject A)", "",
     "friends meet, hang out; A sits, B joins A"),
    ("B sits; A pulls up B (subjects - subject B)", "", "B sits; A pulls up B"),
    ("WalkStraight", "", "walk straight"),
    ("rangeOfMotion", "", "range of motion"),
    ("Reach_Left001", "", "Reach Left"),
    ("Sun Salutation002", "", "Sun Salutation"),
    ("Unknown", "Subject #107 (Walking with obstacles 1)", "Walking with obstacles"),
    ("Unknown", "", None),
    ("Story", "Subject #138 (Marching, Walking and Talking)",
     "tell a story with hand gestures while walking a few steps"),
])
def test_cmu_caption(description, subject, caption):
    assert cmu_caption(CmuEntry(description, subject)) == caption


def test_kinds():
    assert [kind_of(c) for c in ("sit_chair_stool", "idle_acted", "idle_genuine", "idle_standing",
                                 "idle_wait", "sit_floor", "walk", None)] == \
        ["seated", "idle", "idle", "idle", "idle", "other", "other", "other"]


@pytest.mark.skipif(not (CMU_CSV.exists() and CMU_TEXT.exists()), reason="no CMU indexes here")
@pytest.mark.parametrize("rel, caption", [
    ("cmu_hugefbx_daz_bvh/bvh/13_01.bvh.gz", "sit on high stool, stand up"),
    ("cmu_hugefbx_daz_bvh/bvh/18_12.bvh.gz", "friends meet, hang out; A sits, B joins A"),
    ("cmu_hugefbx_daz_bvh/bvh/111_09.bvh.gz", "Get up from chair"),      # only in the text index
    ("cmu_hugefbx_more_bvh/bvh/113_25.bvh.gz", "Walk"),                  # only in the text index
    ("cmu_hugefbx_more_bvh/bvh/107_01.bvh.gz", "Walking with obstacles"),
    ("cmu_hugefbx_daz_bvh/bvh/144_22.bvh.gz", "Reach Left"),
    ("reactidle_bvh/acted/001_acted.bvh.gz", IDLE_ACTED),
    ("reactidle_bvh/genuine/015_genuine.bvh.gz", IDLE_GENUINE),
])
def test_captions_of_real_clips(rel, caption):
    path = MOCAP_NEW_ROOT / rel
    index = load_cmu_index(CMU_CSV, CMU_TEXT)
    info = clip_info(path)
    assert caption_for(info.clip, info.cmu_id, index) == caption


def test_the_csv_wins_and_the_text_index_fills_in(tmp_path):
    csv_path = tmp_path / "index.csv"
    csv_path.write_text('clip_id,description,subject_description\n01_01,"walk, turn",Subject #1 (walks)\n')
    text = tmp_path / "cmu-mocap-index-text.txt"
    text.write_text("Subject #1 (walks)\n\n01_01\tsomething else\n\nSubject #111 (pregnant woman)\n\n"
                    "111_09\tGet up from chair\n")
    assert load_cmu_index(csv_path, text) == {"01_01": CmuEntry("walk, turn", "Subject #1 (walks)"),
                                              "111_09": CmuEntry("Get up from chair",
                                                                 "Subject #111 (pregnant woman)")}


def test_report_per_set_and_per_split():
    def rec(clip, split, kind, err, frames=1800):
        return {"clip": clip, "dataset": clip.split("/")[0], "subject": "s:" + clip[-1], "split": split,
                "frames": frames, "caption": None, "kind": kind, "bone_error_deg": err,
                "bone_error_p95_deg": err, "root_error_cm": 1.0, "flagged": err > 8}

    records = [rec("a/1", "train", "other", 2.0), rec("a/2", "test", "seated", 4.0),
               rec("b/3", "val", "idle", 6.0, 900), rec("b/4", "val", "seated", 9.0)]
    report = retarget_report(records, [{"clip": "b/5", "reason": "marker glitch"}])
    assert "| a | 2 | 2.0 | 3.00 | 3.90 | 1.0 | 0 | 0 |" in report
    assert "| b | 2 | 1.5 | 7.50 | 8.85 | 1.0 | 1 | 1 |" in report
    assert "| val | 2 | 2 | 1.5 | 1.0 | 0.5 | 0.0 | s:4 | s:3 |" in report
    assert "| test | 1 | 1 | 1.0 | 1.0 | 0.0 | 0.0 | s:2 |  |" in report
    assert "- `b/5`: marker glitch" in report and "### a" in report and "### b" in report
