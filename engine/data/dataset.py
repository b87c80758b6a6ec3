"""The motion dataset: every mocap clip under ../shared/data/mocap and ../shared/data/mocap_new
(data.mocap_dir and data.extra_mocap_dirs) retargeted onto our body, split by subject
(configs/data_split.yaml), captioned, and cached as one .npz shard per split.

    genmo-live data build [--data DIR] [--out DIR]

Cache layout (git-ignored, rebuilt by the command above):
    <cache>/train.npz, val.npz, test.npz   pose (N, 24, 3) float32 axis-angle, root (N, 3) float32
                                           metres, contacts (N, 6) bool, clip_start (C + 1,) int64
    <cache>/index.json                     one record per clip: id, dataset, subject, split, frames,
                                           caption, category and kind, retarget errors, flagged;
                                           and the skipped files with the reason
    <cache>/retarget_report.md             the retarget errors per set and per clip, the skipped
                                           files, and the minutes per split and kind
"""
from __future__ import annotations

import csv
import fnmatch
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from engine.body.body_model import Body
from engine.data.retarget import RetargetedClip, retarget

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
SPLIT_FILE = REPO_ROOT / "configs" / "data_split.yaml"
SPLITS = ("train", "val", "test")
FLAG_BONE_ERROR_DEG = 8.0


@dataclass
class Clip:
    """One cached clip at 30 fps: pose (T, 24, 3) axis-angle, root (T, 3) pelvis position in metres,
    contacts (T, 6) bool (engine.body.skeleton.CONTACT_JOINTS), caption text or None, and what it
    shows (kind_of: seated, idle or other)."""

    clip: str
    subject: str
    split: str
    caption: str | None
    pose: np.ndarray
    root: np.ndarray
    contacts: np.ndarray
    kind: str = "other"


def load_split_rules(path: Path = SPLIT_FILE) -> dict[str, list[str]]:
    """{"test": [subject patterns], "val": [...]}; every other subject is train."""
    rules = yaml.safe_load(Path(path).read_text())
    unknown = set(rules) - {"test", "val"}
    if unknown:
        raise ValueError(f"{path}: unknown split(s) {sorted(unknown)}; only test and val are listed")
    return {k: list(v or []) for k, v in rules.items()}


def split_of(subject: str, rules: dict[str, list[str]]) -> str:
    for split in ("test", "val"):
        if any(fnmatch.fnmatchcase(subject, p) for p in rules.get(split, [])):
            return split
    return "train"


@dataclass(frozen=True)
class CmuEntry:
    """One CMU trial in an index: its one-line description ("walk", "Unknown") and its subject's
    ("Subject #107 (Walking with obstacles 1)")."""

    description: str
    subject: str = ""


def load_cmu_index(*paths: Path) -> dict[str, CmuEntry]:
    """CMU trial id "SS_TT" -> CmuEntry, from any number of indexes; the first that lists a trial
    wins. A .csv is ../shared/data/cmu_index's (clip_id, description, subject_description); any
    other file is Hahne's text index (cmu-mocap-index-text.txt: "Subject #N (...)" lines, then
    one "SS_TT<tab>description" line per trial), which also has subjects 111, 113 and 114, absent
    from the CSV."""
    out: dict[str, CmuEntry] = {}
    for path in paths:
        found: dict[str, CmuEntry] = {}
        if Path(path).suffix.lower() == ".csv":
            with open(path, newline="", encoding="utf-8") as f:
                found = {row["clip_id"]: CmuEntry(row["description"].strip(),
                                                  (row.get("subject_description") or "").strip())
                         for row in csv.DictReader(f)}
        else:
            subject = ""
            for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("Subject #"):
                    subject = line.strip()
                elif (m := re.match(r"^(\d+_\d+)\t(.*)$", line)):
                    found[m[1]] = CmuEntry(m[2].strip(), subject)
        for k, v in found.items():
            out.setdefault(k, v)
    return out


# HDM05 class names and the CMU benchmark's action folders are terse identifiers; these read as the
# sentences the text encoder is trained on.
_NAMED_ACTIONS = {
    "depositFloorR": "bend down and put an object on the floor with the right hand",
    "elbowToKnee1RepsLelbowStart": "touch each elbow to the opposite knee",
    "grabHighR": "reach up high with the right hand",
    "hopBothLegs1hops": "hop on both legs",
    "jogLeftCircle4StepsRstart": "jog in a circle to the left",
    "kickLFront1Reps": "kick forward with the left leg",
    "lieDownFloor": "lie down on the floor",
    "rotateArmsBothBackward1Reps": "rotate both arms backward",
    "sneak2StepsLStart": "sneak forward",
    "squat1Reps": "squat",
    "throwBasketball": "throw a basketball",
    "basketball": "play basketball", "basketball_signal": "make basketball referee signals",
    "directing_traffic": "direct traffic", "jumping": "jump", "running": "run", "soccer": "play soccer",
    "walking": "walk", "walking_extra": "walk", "washwindow": "wash a window",
    "salsa": "dance salsa", "indian": "perform an Indian dance", "martial": "practise martial arts",
}


def _words(camel: str) -> str:
    """"WalkTurnLeft45" -> "walk turn left 45"."""
    return " ".join(w.lower() for w in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", camel))


# CMU descriptions that say nothing about the motion on their own.
_CMU_TERSE = {"story": "tell a story with hand gestures while walking a few steps"}
# ReActIdle (its README): the performer was asked to act idle, or was recorded unaware.
IDLE_ACTED = "a person stands idle, acting natural"
IDLE_GENUINE = "a person stands idle naturally, unaware of being recorded"


def cmu_caption(entry: CmuEntry) -> str | None:
    """A caption from a CMU description, tidied where the Huge FBX library's takes name things
    for a file list rather than a reader: the two-person note goes ("... (2 subjects - subject
    A)"), CamelCase and underscores become words ("WalkStraight", "Reach_Left001" -> "walk
    straight", "Reach Left"; glued three-digit take counters go), "Unknown" falls back to the
    subject's description ("Walking with obstacles 1" -> "Walking with obstacles"). Plain
    descriptions come back as they are. None when nothing is left."""
    text = re.sub(r"\s*\((?:2 )?subjects - subject [AB]\)$", "", entry.description.strip())
    if text.lower() in ("", "unknown"):
        found = re.search(r"\((.+)\)", entry.subject)
        text = re.sub(r"\s*\d+$", "", found[1]) if found else ""
    text = _CMU_TERSE.get(text.lower(), text)
    words = []
    for token in text.replace("_", " ").split(" "):
        token = re.sub(r"(?<=[A-Za-z])\d{3}$", "", token)
        words.append(_words(token) if re.search(r"[a-z][A-Z]", token) else token)
    return " ".join(w for w in words if w) or None


def caption_for(clip_id: str, cmu_id: str | None, cmu_index: dict[str, CmuEntry]) -> str | None:
    """A text caption: CMU's description where the trial is known (`cmu_caption`), ReActIdle's
    standing idle (acted or genuine), else one from the take name."""
    if cmu_id and cmu_id in cmu_index:
        return cmu_caption(cmu_index[cmu_id])
    parts = clip_id.split("/")
    if parts[0] == "reactidle_bvh":
        return IDLE_ACTED if parts[1] == "acted" else IDLE_GENUINE
    for part in reversed(parts):
        for name, sentence in _NAMED_ACTIONS.items():
            if part == name or part.startswith(name + "_") or f"_{name}_" in part:
                return sentence
    if parts[0] == "accad_bvh":
        # "Male1_B10_WalkTurnLeft45" -> "walk turn left 45"
        take = parts[-1].split("_", 2)[-1].replace("_Take_001", "")
        return _words(take)
    return None


# The kinds of motion the split is checked on (configs/data_split.yaml) and the report counts:
# chair or stool sitting (the CMU sets' sit_chair_stool category: sitting down, seated, standing
# up), standing idle (ReActIdle, and the CMU sets' idle categories), and everything else.
SEATED_CATEGORIES = frozenset({"sit_chair_stool"})
IDLE_CATEGORIES = frozenset({"idle_acted", "idle_genuine", "idle_standing", "idle_wait"})
KINDS = ("seated", "idle", "other")


def kind_of(category: str | None) -> str:
    """"seated", "idle" or "other" for a clip's category (mocap_io.clip_info; None: other)."""
    return "seated" if category in SEATED_CATEGORIES else "idle" if category in IDLE_CATEGORIES else "other"


def build(mocap_roots: Path | list[Path], out_dir: Path, body: Body, cmu_index_path: Path | None = None,
          split_file: Path = SPLIT_FILE, all_test: bool = False) -> dict:
    """Retarget every clip under `mocap_roots` (one folder or a list) and write the cache to
    `out_dir`. Returns the index.

    Captions come from the CMU index at `cmu_index_path` and, for trials it lacks, from any
    cmu-mocap-index-text.txt under the roots (the Huge FBX sets ship one).
    all_test: put every clip in the test split (to evaluate on new motion without retraining).
    """
    from engine.data.mocap_io import SkippedClip, iter_motions, list_clips

    roots = [Path(mocap_roots)] if isinstance(mocap_roots, (str, Path)) else [Path(r) for r in mocap_roots]
    rules = load_split_rules(split_file)
    indexes = [cmu_index_path] if cmu_index_path and Path(cmu_index_path).exists() else []
    indexes += [p for root in roots for p in sorted(root.rglob("cmu-mocap-index-text.txt"))]
    cmu_index = load_cmu_index(*indexes)
    out_dir.mkdir(parents=True, exist_ok=True)
    clips: dict[str, list[RetargetedClip]] = {s: [] for s in SPLITS}
    records, skipped = [], []
    motions = (item for root in roots for item in iter_motions(root))
    total = sum(len(list_clips(root)) for root in roots)
    for item in tqdm(motions, total=total, desc="retarget", unit="clip"):
        if isinstance(item, SkippedClip):
            skipped.append({"clip": item.clip, "reason": item.reason})
            continue
        try:
            rc = retarget(item, body)
        except ValueError as e:
            skipped.append({"clip": item.clip, "reason": str(e)})
            continue
        split = "test" if all_test else split_of(rc.subject, rules)
        clips[split].append(rc)
        records.append({
            "clip": rc.clip, "dataset": rc.dataset, "subject": rc.subject, "split": split,
            "frames": int(len(rc.pose)), "source_fps": rc.source_fps,
            "caption": caption_for(rc.clip, rc.cmu_id, cmu_index),
            "category": item.category, "kind": kind_of(item.category),
            "bone_error_deg": round(rc.mean_bone_error_deg, 3),
            "bone_error_p95_deg": round(float(np.percentile(rc.bone_error_deg, 95)), 3),
            "root_error_cm": round(rc.root_error_m * 100, 2),
            "flagged": rc.mean_bone_error_deg > FLAG_BONE_ERROR_DEG,
        })
    for split, items in clips.items():
        _write_shard(out_dir / f"{split}.npz", items)
    index = {"fps": 30.0, "clips": records, "skipped": skipped}
    (out_dir / "index.json").write_text(json.dumps(index, indent=1))
    (out_dir / "retarget_report.md").write_text(retarget_report(records, skipped))
    return index


def _write_shard(path: Path, items: list[RetargetedClip]) -> None:
    lengths = [len(c.pose) for c in items]
    start = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)

    def cat(attr, shape, dtype):
        return np.concatenate([getattr(c, attr) for c in items]) if items else np.zeros(shape, dtype)

    np.savez_compressed(path, clip=np.array([c.clip for c in items]), clip_start=start,
                        pose=cat("pose", (0, 24, 3), np.float32), root=cat("root", (0, 3), np.float32),
                        contacts=cat("contacts", (0, 6), bool))


def load_clips(cache_dir: Path, split: str) -> list[Clip]:
    """The cached clips of one split."""
    index = json.loads((cache_dir / "index.json").read_text())
    meta = {r["clip"]: r for r in index["clips"]}
    with np.load(cache_dir / f"{split}.npz") as d:
        # Each d[key] decompresses the whole array again: read every array once.
        names, start, pose, root, contacts = (d[k] for k in ("clip", "clip_start", "pose", "root", "contacts"))
    out = []
    for i, name in enumerate(names):
        a, b = start[i], start[i + 1]
        r = meta[str(name)]
        out.append(Clip(clip=str(name), subject=r["subject"], split=split, caption=r["caption"],
                        pose=pose[a:b], root=root[a:b], contacts=contacts[a:b], kind=r.get("kind", "other")))
    return out


def _minutes(records: list[dict]) -> float:
    return sum(r["frames"] for r in records) / 30 / 60


def retarget_report(records: list[dict], skipped: list[dict]) -> str:
    """Markdown: the error distribution, the errors per set, the minutes per split and kind, the
    skipped files, and every clip's numbers, grouped by set."""
    errs = np.array([r["bone_error_deg"] for r in records]) if records else np.zeros(1)
    edges = [0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 90]
    hist, _ = np.histogram(errs, bins=edges)
    lines = [
        "# Retarget report",
        "",
        f"{len(records)} clips, {sum(r['frames'] for r in records) / 30 / 3600:.2f} h at 30 fps; "
        f"{len(skipped)} files skipped.",
        "",
        "Per-clip mean angle between our bones and the source's (every mapped bone, every frame): "
        f"median {np.median(errs):.2f}°, mean {errs.mean():.2f}°, max {errs.max():.2f}°; "
        f"{int((errs > FLAG_BONE_ERROR_DEG).sum())} clips over {FLAG_BONE_ERROR_DEG:.0f}° (flagged).",
        "",
        "| mean bone error | clips |", "|---|---|",
    ]
    lines += [f"| {a}–{b}° | {n} |" for a, b, n in zip(edges[:-1], edges[1:], hist)]
    datasets = sorted({r["dataset"] for r in records} | {s["clip"].split("/")[0] for s in skipped})
    lines += ["", "## Per dataset", "",
              "Bone error: the per-clip mean, its median and 95th percentile over the set's clips; "
              "root error: the median over clips of the mean pelvis displacement error.", "",
              "| dataset | clips | minutes | bone error median (°) | p95 (°) | root error median (cm) | flagged "
              "| skipped |", "|---|---|---|---|---|---|---|---|"]
    for ds in datasets:
        rs = [r for r in records if r["dataset"] == ds]
        n_skipped = sum(s["clip"].split("/")[0] == ds for s in skipped)
        if not rs:
            lines.append(f"| {ds} | 0 | 0.0 | | | | | {n_skipped} |")
            continue
        e = [r["bone_error_deg"] for r in rs]
        lines.append(f"| {ds} | {len(rs)} | {_minutes(rs):.1f} | {np.median(e):.2f} | {np.percentile(e, 95):.2f} "
                     f"| {np.median([r['root_error_cm'] for r in rs]):.1f} | {sum(r['flagged'] for r in rs)} "
                     f"| {n_skipped} |")
    lines += ["", "## Per split", "", "Minutes of motion per split and kind (seated: chair or stool sitting; "
              "idle: standing idle), and the subjects of each kind.", "",
              "| split | clips | subjects | minutes | " + " | ".join(KINDS) + " | seated subjects | idle subjects |",
              "|---|---|---|---|" + "---|" * len(KINDS) + "---|---|"]
    for split in SPLITS:
        rs = [r for r in records if r["split"] == split]
        kinds = [_minutes([r for r in rs if r.get("kind", "other") == k]) for k in KINDS]
        who = [", ".join(sorted({r["subject"] for r in rs if r.get("kind") == k})) for k in ("seated", "idle")]
        lines.append(f"| {split} | {len(rs)} | {len({r['subject'] for r in rs})} | {_minutes(rs):.1f} | "
                     + " | ".join(f"{m:.1f}" for m in kinds) + f" | {who[0]} | {who[1]} |")
    if skipped:
        lines += ["", "## Skipped", ""] + [f"- `{s['clip']}`: {s['reason']}"
                                           for s in sorted(skipped, key=lambda s: s["clip"])]
    lines += ["", "## Every clip"]
    for ds in datasets:
        rs = sorted((r for r in records if r["dataset"] == ds), key=lambda r: -r["bone_error_deg"])
        if not rs:
            continue
        lines += ["", f"### {ds}", "", "| clip | split | frames | bone error (°) | p95 (°) | root error (cm) | caption |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['clip']} | {r['split']} | {r['frames']} | {r['bone_error_deg']:.2f}"
                  f"{' ⚑' if r['flagged'] else ''} | {r['bone_error_p95_deg']:.2f} | {r['root_error_cm']:.1f} | "
                  f"{r['caption'] or ''} |" for r in rs]
    return "\n".join(lines) + "\n"


def find_clip(cache_dir: Path, name: str) -> Clip:
    """A cached clip by its id or by a part of it that names exactly one clip."""
    index_path = cache_dir / "index.json"
    if not index_path.exists():
        raise FileNotFoundError(f"no dataset cache at {cache_dir}: run `genmo-live data build` first")
    records = json.loads(index_path.read_text())["clips"]
    exact = [r for r in records if r["clip"] == name]
    matches = exact or [r for r in records if name in r["clip"]]
    if len(matches) != 1:
        some = ", ".join(r["clip"] for r in matches[:5])
        raise KeyError(f"{len(matches)} cached clips match {name!r}" + (f" (e.g. {some})" if matches else ""))
    r = matches[0]
    return next(c for c in load_clips(cache_dir, r["split"]) if c.clip == r["clip"])
