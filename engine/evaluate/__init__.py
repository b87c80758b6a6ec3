"""Measuring the engine: the metrics (engine.evaluate.metrics) and the evaluation protocol over the
test sets (engine.evaluate.protocol). The live path never imports it."""
