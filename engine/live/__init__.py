"""The streaming engine: landmark packets in, one pose frame out per input frame (engine.live.engine),
its filters and the pose frame itself. On the live path: imports nothing from data, train or
evaluate."""
