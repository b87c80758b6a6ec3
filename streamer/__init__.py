"""Ingest: frame sources (webcam, video file, sample clip, WebRTC), MediaPipe Pose and its landmark
topology, the landmark packets and the ingest process. On the live path: imports nothing from
engine.data, training, evaluation, bench/ or tools/."""
