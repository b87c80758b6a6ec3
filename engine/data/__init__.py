"""Training and test data, offline only: mocap I/O, retargeting to our skeleton, the dataset cache,
captions, the synthetic camera and observations, the renderer and rendered sets, previews and the
observation report. The live path never imports it."""
