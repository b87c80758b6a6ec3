"""Benchmarks, run with `genmo-live bench TARGET`. Each reports a baseline side by side in the same run."""
