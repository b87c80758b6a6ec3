"""Left-right mirror images of what the models read and write, and mirror averaging.

Mirroring the image (x -> W - x about the principal point) is reflecting the scene through the
camera's x = 0 plane, S = diag(-1, 1, 1): every orientation R becomes S R S, every position and
velocity S v, and each left joint, landmark and contact trades places with its right one. Our
body's rest pose is symmetric (engine.body.body_model), so the mirrored motion is a motion of the same body.
Training mirrors clips the same way (engine.train.mirror), so the mirror image of a test input is
as familiar to a model as the input itself; averaging the model's answer for it, mirrored back,
with its answer for the input ("flip test-time augmentation") cancels part of its error.
"""
from __future__ import annotations

import torch

from engine.body.skeleton import CONTACT_JOINTS, SMPL_JOINT_NAMES
from engine.model.denoiser import Conditions
from engine.model.motion import CAM_T, NUM_BODY, ROTATIONS, VELOCITY, Normalizer
from streamer.landmarks import MIRROR as MIRROR_LANDMARKS


def _swapped(names) -> list[int]:
    """Index of each name's mirror image (left <-> right) in `names`."""
    names = list(names)
    return [names.index(n.replace("left", "#").replace("right", "left").replace("#", "right")) for n in names]


MIRROR_JOINTS = _swapped(SMPL_JOINT_NAMES)
MIRROR_CONTACTS = _swapped(CONTACT_JOINTS)

# Sign of each entry of a 6D block (the first two rows of R) in S R S: entry (i, j) times s_i s_j.
_ROT6D_SIGN = torch.tensor([1.0, -1.0, -1.0, -1.0, 1.0, 1.0])
# The motion vector's rows in mirrored order: body joint j's block from its mirror's place.
_BLOCK_ORDER = [MIRROR_JOINTS[j + 1] - 1 for j in range(NUM_BODY)] + [NUM_BODY, NUM_BODY + 1]


def mirror_motion(x: torch.Tensor) -> torch.Tensor:
    """(..., 144) motion vectors (engine.model.motion, not normalised) -> those of the mirror image."""
    blocks = x[..., ROTATIONS].unflatten(-1, (NUM_BODY + 2, 6))[..., _BLOCK_ORDER, :]
    out = x.clone()
    out[..., ROTATIONS] = (blocks * _ROT6D_SIGN.to(x)).flatten(-2)
    out[..., VELOCITY.start] = -x[..., VELOCITY.start]
    out[..., CAM_T.start] = -x[..., CAM_T.start]
    return out


def mirror_contacts(logits: torch.Tensor) -> torch.Tensor:
    """(..., 6) per-contact-joint values (engine.body.skeleton.CONTACT_JOINTS) -> the mirror image's."""
    return logits[..., MIRROR_CONTACTS]


def mirror_conditions(c: Conditions) -> Conditions:
    """Conditions of the mirrored image: landmarks x -> -x about the box centre and left/right
    swapped, the box centre's x -> -x about the principal point. Text is kept as it is (a prompt
    naming a side would need its words swapped: engine.train.mirror_caption)."""
    keypoints = c.keypoints[..., MIRROR_LANDMARKS, :] * torch.tensor([-1.0, 1.0]).to(c.keypoints)
    box = c.box * torch.tensor([-1.0, 1.0, 1.0]).to(c.box)
    return Conditions(keypoints, c.visible[..., MIRROR_LANDMARKS], box, c.has_box,
                      c.text, c.text_mask, c.text_frames)


def _cat(a: Conditions, b: Conditions) -> Conditions:
    """Two Conditions batches as one (text fields only when both have them)."""
    def cat(u, v):
        return None if u is None or v is None else torch.cat([u, v])

    return Conditions(*(cat(getattr(a, f), getattr(b, f)) for f in
                        ("keypoints", "visible", "box", "has_box", "text", "text_mask", "text_frames")))


def mirror_averaged(model, norm: Normalizer):
    """A model (x_t (B, L, 144) normalised, t (B,), Conditions) -> (x0, contact logits) that runs
    `model` on its input and on the input's mirror image in one batch of 2B and returns the mean of
    the first answer and the second one mirrored back (x0 averaged in normalised space, where the
    6D blocks are decoded with a Gram-Schmidt step, so their mean is a rotation again)."""
    def mirrored(x: torch.Tensor) -> torch.Tensor:
        return norm(mirror_motion(norm.inverse(x)))

    def averaged(x_t: torch.Tensor, t: torch.Tensor, c: Conditions):
        B = x_t.shape[0]
        x0, logits = model(torch.cat([x_t, mirrored(x_t)]), torch.cat([t, t]), _cat(c, mirror_conditions(c)))
        return (x0[:B] + mirrored(x0[B:])) / 2, (logits[:B] + mirror_contacts(logits[B:])) / 2

    return averaged
