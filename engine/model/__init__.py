"""The network and what it needs at run time: the denoiser, the motion representation and its
normaliser, the diffusion schedule and samplers, the conditions, the text encoder, the per-frame
lifter, mirror averaging, the compute device and checkpoint I/O. On the live path: imports nothing
from data, train or evaluate."""
