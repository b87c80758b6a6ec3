"""A test VRM avatar built from our rest skeleton, for the viewer's tests and screenshots: no
third-party avatar is bundled (issue 30), so this one is made here.

    vrm_file("1.0")              # bytes of a .vrm: VRM 1.0; "0.x" for the old format, None for no VRM
    vrm_file("1.0", scale=0.85)  # the skeleton at 85 %, so the viewer's scaling to its height shows

Its body is a box along each bone (torso blue, the person's left green, right purple, head grey),
each skinned wholly to its bone, so a screenshot shows a figure whose sides can be told apart.
"""
from __future__ import annotations

import json
import struct

import numpy as np

from clients.viewer import body_json
from engine.body.body_model import load_default_body

# Half sizes (across, deep) in metres of the box that ends at each joint, from its parent joint.
BOX = {"spine1": (0.13, 0.085), "spine2": (0.13, 0.085), "spine3": (0.13, 0.085), "neck": (0.12, 0.08),
       "head": (0.045, 0.045), "hip": (0.08, 0.08), "knee": (0.07, 0.07), "ankle": (0.05, 0.05),
       "foot": (0.045, 0.04), "collar": (0.05, 0.05), "shoulder": (0.05, 0.05), "elbow": (0.045, 0.045),
       "wrist": (0.04, 0.04), "hand": (0.04, 0.015)}
# linear RGB; none is the default body's orange, which the viewer test looks for in a screenshot
COLOURS = {"torso": (0.15, 0.3, 0.8), "left": (0.15, 0.65, 0.25), "right": (0.55, 0.2, 0.75),
           "head": (0.8, 0.8, 0.8)}
FLOAT, UBYTE, USHORT = 5126, 5121, 5123


def box(p0, p1, across: float, deep: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A box from p0 to p1: (24, 3) positions, (24, 3) normals (flat: four corners a face) and
    (12, 3) triangles, counter-clockwise seen from outside (three.js draws only those sides)."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    axis = (p1 - p0) / np.linalg.norm(p1 - p0)
    side = np.cross(axis, [0.0, 0.0, 1.0])
    side = side / np.linalg.norm(side) if np.linalg.norm(side) > 1e-6 else np.array([1.0, 0.0, 0.0])
    half = ((p1 - p0) / 2, side * across, np.cross(axis, side) * deep)
    centre = (p0 + p1) / 2
    positions, normals, triangles = [], [], []
    for k in range(3):
        for sign in (1, -1):
            normal = sign * half[k] / np.linalg.norm(half[k])
            a, b = half[(k + 1) % 3], half[(k + 2) % 3]
            corners = [centre + sign * half[k] + s * a + t * b for s, t in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
            first = len(positions)
            positions += corners
            normals += [normal] * 4
            turn = np.dot(np.cross(corners[1] - corners[0], corners[2] - corners[0]), normal) > 0
            order = (0, 1, 2, 0, 2, 3) if turn else (0, 2, 1, 0, 3, 2)
            triangles += [[first + order[i], first + order[i + 1], first + order[i + 2]] for i in (0, 3)]
    return np.array(positions), np.array(normals), np.array(triangles)


def figure(rest: np.ndarray, names: list, parents: list) -> dict:
    """The boxes on the skeleton `rest` (24, 3): {colour: [(positions, normals, triangles, joint)]},
    each box moving with its joint's bone."""
    parts: dict[str, list] = {colour: [] for colour in COLOURS}
    for j, name in enumerate(names):
        p = parents[j]
        if p >= 0:  # the box between a joint and its parent turns with the parent's bone
            side = name.split("_")[0] if name.startswith(("left_", "right_")) else "torso"
            parts[side].append((*box(rest[p], rest[j], *BOX[name.split("_")[-1]]), p))
    head = names.index("head")
    parts["head"].append((*box(rest[head] - [0, 0.05, 0], rest[head] + [0, 0.17, 0], 0.085, 0.1), head))
    for s in ("left", "right"):  # toes: on past the foot joint, the way the foot points
        ankle, foot = names.index(f"{s}_ankle"), names.index(f"{s}_foot")
        forward = (rest[foot] - rest[ankle]) * [1, 0, 1]
        tip = rest[foot] + 0.06 * forward / np.linalg.norm(forward)
        parts[s].append((*box(rest[foot], tip, 0.045, 0.02), foot))
    return parts


def vrm_file(version: str | None, scale: float = 1.0) -> bytes:
    """A VRM (binary glTF) of `version` "1.0" or "0.x": the 22 humanoid bones of our rest skeleton
    scaled by `scale`, and the boxes on them. A 0.x avatar faces -z, as 0.x files do. None: the same
    glTF without the VRM extension, so no avatar."""
    data = body_json(load_default_body())
    rest = np.reshape(data["rest_joints"], (-1, 3))
    names, parents = data["names"], data["parents"]
    joints = [j for j, bone in enumerate(data["humanoid"]) if bone]
    node = {j: i for i, j in enumerate(joints)}
    turn = np.array([-1.0, 1.0, -1.0]) if version == "0.x" else np.ones(3)  # half round about y
    placed = rest * scale * turn
    nodes = [{"name": names[j], "translation": (placed[j] - (placed[parents[j]] if parents[j] >= 0 else 0)).tolist(),
              "children": [node[c] for c in joints if parents[c] == j]} for j in joints]
    nodes.append({"name": "body", "mesh": 0, "skin": 0})

    boxes = [(colour, *b) for colour, part in figure(rest, names, parents).items() for b in part]
    positions = np.concatenate([b[1] for b in boxes]) * scale * turn
    normals = np.concatenate([b[2] for b in boxes]) * turn
    skin_joints = np.zeros((len(positions), 4), np.uint8)  # one joint a vertex, wholly
    skin_joints[:, 0] = np.concatenate([np.full(len(b[1]), node[b[4]]) for b in boxes])
    weights = np.zeros((len(positions), 4), np.float32)
    weights[:, 0] = 1
    starts = np.cumsum([0] + [len(b[1]) for b in boxes])
    triangles = {colour: [] for colour in COLOURS}
    for (colour, _, _, faces, _), start in zip(boxes, starts):
        triangles[colour].append(faces + start)
    # the bind pose is the rest pose, whose joint frames are world-aligned: undo each joint's offset
    inverse_bind = np.tile(np.eye(4, dtype=np.float32), (len(joints), 1, 1))
    inverse_bind[:, 3, :3] = -placed[joints]  # column-major: the translation is the last column

    binary, views, accessors = b"", [], []

    def accessor(array: np.ndarray, component: int, kind: str, bounds: bool = False) -> int:
        nonlocal binary
        raw = np.ascontiguousarray(array).tobytes()
        views.append({"buffer": 0, "byteOffset": len(binary), "byteLength": len(raw)})
        binary += raw + b"\0" * (-len(raw) % 4)  # every view 4-byte aligned
        count = len(array) if kind != "SCALAR" else array.size
        accessors.append({"bufferView": len(views) - 1, "componentType": component, "count": count, "type": kind,
                          **({"min": array.min(0).tolist(), "max": array.max(0).tolist()} if bounds else {})})
        return len(accessors) - 1

    attributes = {"POSITION": accessor(positions.astype(np.float32), FLOAT, "VEC3", bounds=True),
                  "NORMAL": accessor(normals.astype(np.float32), FLOAT, "VEC3"),
                  "JOINTS_0": accessor(skin_joints, UBYTE, "VEC4"), "WEIGHTS_0": accessor(weights, FLOAT, "VEC4")}
    primitives = [{"attributes": attributes, "material": m,
                   "indices": accessor(np.concatenate(triangles[colour]).astype(np.uint16).ravel(), USHORT, "SCALAR")}
                  for m, colour in enumerate(COLOURS)]
    gltf = {
        "asset": {"version": "2.0", "generator": "genmo-live tests"},
        "scene": 0, "scenes": [{"nodes": [node[0], len(nodes) - 1]}], "nodes": nodes,
        "skins": [{"joints": list(range(len(joints))), "skeleton": node[0],
                   "inverseBindMatrices": accessor(inverse_bind.reshape(-1, 16), FLOAT, "MAT4")}],
        "meshes": [{"primitives": primitives}],
        "materials": [{"name": colour, "pbrMetallicRoughness": {"baseColorFactor": [*rgb, 1.0], "metallicFactor": 0.0,
                                                                 "roughnessFactor": 0.9}}
                      for colour, rgb in COLOURS.items()],
        "accessors": accessors, "bufferViews": views, "buffers": [{"byteLength": len(binary)}],
    }
    if version == "1.0":
        gltf["extensionsUsed"] = ["VRMC_vrm"]
        gltf["extensions"] = {"VRMC_vrm": {
            "specVersion": "1.0",
            "meta": {"name": "test avatar 1.0", "version": "1", "authors": ["genmo-live tests"],
                     "licenseUrl": "https://vrm.dev/licenses/1.0/"},
            "humanoid": {"humanBones": {data["humanoid"][j]: {"node": node[j]} for j in joints}}}}
    elif version == "0.x":
        gltf["extensionsUsed"] = ["VRM"]
        gltf["extensions"] = {"VRM": {
            "specVersion": "0.0", "exporterVersion": "genmo-live tests",
            "meta": {"title": "test avatar 0.x", "version": "1", "author": "genmo-live tests"},
            "humanoid": {"humanBones": [{"bone": data["humanoid"][j], "node": node[j]} for j in joints]}}}
    text = json.dumps(gltf).encode()
    text += b" " * (-len(text) % 4)  # chunks are 4-byte aligned
    chunks = struct.pack("<I4s", len(text), b"JSON") + text + struct.pack("<I4s", len(binary), b"BIN\0") + binary
    return struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks
