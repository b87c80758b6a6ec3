"""The motion engine, one sub-package per job. The live path (body, model, live) never imports
data, train or evaluate; tests/test_layout.py enforces it.

body/      what a pose is: the skeleton, rotations, kinematics, the body models, output conventions
model/     the network and what it needs at run time: denoiser, motion representation, samplers,
           conditions, text encoder, per-frame lifter, mirror averaging, device, checkpoints
live/      the streaming engine, its filters and the pose frame it emits
data/      training and test data: mocap I/O, retargeting, dataset, captions, synthetic and rendered
           observations, previews
train.py   the training loop
evaluate/  metrics and the evaluation protocol
paths.py   where the run-time assets live
"""
