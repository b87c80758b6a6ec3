"""configs/data_split.yaml on the real files (../shared/data/mocap and mocap_new, read by path only):
val and test each hold a chair/stool-sitting subject and a ReActIdle idle performer, different ones,
besides the subjects they held before; train keeps some of both kinds."""
from __future__ import annotations

import fnmatch

import pytest

from engine.data.dataset import kind_of, load_split_rules, split_of
from engine.data.mocap_io import MOCAP_NEW_ROOT, MOCAP_ROOT, _files_tsv, clip_info, list_clips

pytestmark = pytest.mark.skipif(not (MOCAP_ROOT.is_dir() and MOCAP_NEW_ROOT.is_dir()),
                                reason="../shared/data/mocap or mocap_new is not here")

# The subjects held out before the new sets came (they must stay where they were).
EARLIER = {"test": ["hdm05:mm", "cmu:05", "cmu:07", "cmu_expmap:*_test"], "val": ["cmu:03", "cmu:06"]}


@pytest.fixture(scope="module")
def clips():
    return [clip_info(p) for root in (MOCAP_ROOT, MOCAP_NEW_ROOT) for p in list_clips(root)]


@pytest.fixture(scope="module")
def rules():
    return load_split_rules()


def subjects(clips, rules, split, kind=None, dataset=None):
    return {c.subject for c in clips if split_of(c.subject, rules) == split
            and (kind is None or kind_of(c.category) == kind) and (dataset is None or c.dataset == dataset)}


def test_earlier_subjects_kept(rules):
    for split, patterns in EARLIER.items():
        assert rules[split][:len(patterns)] == patterns


def test_every_pattern_names_real_subjects_and_none_two_splits(clips, rules):
    names = {c.subject for c in clips}
    for split in ("test", "val"):
        for pattern in rules[split]:
            assert fnmatch.filter(names, pattern), f"{split}: {pattern} matches no subject"
    both = {s for s in names if any(fnmatch.fnmatchcase(s, p) for p in rules["test"])
            and any(fnmatch.fnmatchcase(s, p) for p in rules["val"])}
    assert not both


def test_val_and_test_each_hold_a_seated_subject_and_an_idle_performer(clips, rules):
    seated = {split: subjects(clips, rules, split, "seated") for split in ("train", "val", "test")}
    idle = {split: subjects(clips, rules, split, "idle", "reactidle_bvh") for split in ("train", "val", "test")}
    for split in ("val", "test"):
        assert seated[split] and idle[split], split
    assert not seated["val"] & seated["test"] and not idle["val"] & idle["test"]
    # Train keeps both kinds: most sitting subjects and idle performers.
    assert len(seated["train"]) >= 8 and len(idle["train"]) >= 9


def test_held_out_sitting_is_at_least_a_minute_each(clips, rules):
    folder = MOCAP_NEW_ROOT / "cmu_hugefbx_daz_bvh"
    seconds = _files_tsv(folder, "dur_s")
    for split in ("val", "test"):
        sitting = sum(float(seconds[c.cmu_id]) for c in clips if c.dataset == folder.name
                      and kind_of(c.category) == "seated" and split_of(c.subject, rules) == split)
        assert sitting >= 60, (split, sitting)
