"""The `genmo-live` command line: the parser in clients.cli.main, one module per group of subcommands."""
