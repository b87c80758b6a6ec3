"""Forward kinematics and skinning speed: ours against smplx's `batch_rigid_transform` (the
reference implementation, when the `smpl` extra is installed), same inputs, same run.

    genmo-live bench kinematics [--threads 2] [--repeats 50]
"""
from __future__ import annotations

import torch

from bench.timing import median_ms
from engine.body.body_model import load_default_body
from engine.body.kinematics import forward_kinematics, skin
from engine.body.rotations import axis_angle_to_matrix
from engine.body.skeleton import NUM_JOINTS, SMPL_PARENTS

BATCHES = (1, 120, 1024)


def _smplx_fk():
    try:
        from smplx.lbs import batch_rigid_transform
    except ImportError:
        return None
    parents = torch.tensor(SMPL_PARENTS)

    def fk(rot, rest):
        return batch_rigid_transform(rot, rest.expand(rot.shape[0], -1, -1), parents)
    return fk


def run(repeats: int = 50) -> list[dict]:
    """Rows of {case, batch, ours_ms, baseline_ms}; baseline_ms is None without smplx."""
    rows = []
    g = torch.Generator().manual_seed(0)
    smplx_fk = _smplx_fk()
    meshes = {m: load_default_body(mesh=m) for m in ("lowres", "full")}
    rest = meshes["lowres"].rest_joints
    for batch in BATCHES:
        rot = axis_angle_to_matrix(torch.randn(batch, NUM_JOINTS, 3, generator=g) * 0.5)
        with torch.inference_mode():
            rows.append({
                "case": "FK 24 joints", "batch": batch,
                "ours_ms": median_ms(lambda: forward_kinematics(rot, rest, SMPL_PARENTS), repeats),
                "baseline_ms": None if smplx_fk is None else median_ms(lambda: smplx_fk(rot, rest[None]), repeats),
            })
            for name, body in meshes.items():
                if batch > 120 and name == "full":
                    continue  # 1024 x 13.7k vertices is not a case the product has
                joints, world_rot = forward_kinematics(rot, body.rest_joints, SMPL_PARENTS)
                rows.append({
                    "case": f"LBS {body.vertices.shape[0]} vertices", "batch": batch,
                    "ours_ms": median_ms(lambda: skin(body.vertices, body.weights, body.rest_joints,
                                                      joints, world_rot), repeats),
                    "baseline_ms": None,
                })
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = ["| case | batch | ours (ms) | smplx batch_rigid_transform (ms) |", "|---|---|---|---|"]
    for r in rows:
        base = "—" if r["baseline_ms"] is None else f"{r['baseline_ms']:.3f}"
        lines.append(f"| {r['case']} | {r['batch']} | {r['ours_ms']:.3f} | {base} |")
    return "\n".join(lines)
