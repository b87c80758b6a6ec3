"""The typed configuration: one object from configs/*.yaml, overridable from the CLI, validated in
one place (configs.config)."""
