"""What a pose is: the SMPL skeleton, rotations, forward kinematics and skinning, the body models
(the bundled default body, the procedural skeleton, the user's SMPL model) and the output
conventions (Unity / VRM / Unreal). On the live path: imports nothing from data, train or evaluate."""
