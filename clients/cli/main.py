"""`genmo-live`: the one command line, with a subcommand per job.

The parser lives here; each group of subcommands is a module beside it that registers its own:
run, export (info, export, export-weights), bench, data, train (train, eval). Every subcommand
takes `--config FILE` and one `--section.key VALUE` flag per setting in configs/config.py, so any
setting can be changed for one run without editing YAML.
"""
from __future__ import annotations

import argparse
import logging
import sys

from clients.cli import bench, data, export, run, train
from configs.config import DEFAULT_CONFIG_PATH, ConfigError, leaf_fields, load_config, parse_override


def _config_parent() -> argparse.ArgumentParser:
    """Options shared by every subcommand: the config file and one flag per setting."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("configuration (defaults from configs/default.yaml)")
    group.add_argument("--config", default=str(DEFAULT_CONFIG_PATH), metavar="FILE",
                       help="YAML config file")
    for key, _, f in leaf_fields():
        group.add_argument(f"--{key}", dest=f"cfg:{key}", metavar="VALUE", default=None,
                           type=parse_override, help=f.metadata.get("help"))
    return parent


def _load(args):
    """The config file, with the --section.key flags and then a subcommand's own flags that stand
    for settings (its `overrides(args)`) over it, validated together."""
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg:") and v is not None}
    if hasattr(args, "overrides"):
        overrides.update(args.overrides(args))
    return load_config(args.config, overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genmo-live", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parent = _config_parent()
    for group in (export, bench, data, train, run):
        group.add_commands(sub, parent)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = _load(args)
    except ConfigError as e:
        parser.exit(2, f"genmo-live: {e}\n")
    logging.basicConfig(level=cfg.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aioice").setLevel(logging.WARNING)  # it logs every ICE connectivity check
    from engine.body.smpl import SmplModelError

    try:
        return args.handler(args, cfg)
    except (ConfigError, SmplModelError) as e:
        parser.exit(2, f"genmo-live: {e}\n")


if __name__ == "__main__":
    sys.exit(main())
