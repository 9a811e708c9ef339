"""``asft push RUN_DIR``: publish a finished run's model and model card to the Hugging Face Hub
(what ``asft train --push-to-hub`` does at the end of a run; use it when that push failed or
to publish a run later)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "push", help="push a finished run's model and a generated model card to the Hub",
        description="Uploads RUN_DIR/model with a model card written from the run's config.yaml, "
        "data_report.json and metrics.jsonl. Settings come from the run's hub section, then "
        "these flags. The token is read from $HF_TOKEN (hub.token_env) or `hf auth login`.",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the output folder of `asft train`")
    p.add_argument("--repo", metavar="REPO", help="Hub repository, user/name (hub.repo_id)")
    visibility = p.add_mutually_exclusive_group()
    visibility.add_argument("--private", dest="private", action="store_true", default=None,
                            help="create the repository private (hub.private, the default)")
    visibility.add_argument("--public", dest="private", action="store_false",
                            help="create the repository public")
    p.add_argument("--endpoint", metavar="URL", help="Hub URL (hub.endpoint)")
    p.add_argument("--message", metavar="TEXT", help="commit message (hub.commit_message)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from asft.config import ConfigError, FieldError, load_config
    from asft.errors import AsftError
    from asft.train.publish import publish

    config_file = args.run_dir / "config.yaml"
    if not config_file.is_file():
        raise AsftError(f"{args.run_dir} is not a run folder of `asft train` (no config.yaml)")
    hub = load_config(config_file).hub
    changes = {"repo_id": args.repo, "private": args.private, "endpoint": args.endpoint,
               "commit_message": args.message}
    try:
        hub = dataclasses.replace(hub, **{k: v for k, v in changes.items() if v is not None})
    except FieldError as err:
        raise ConfigError(f"hub.{err.field_name}: {err.message}") from None
    if not hub.repo_id:
        raise AsftError(f"{config_file} names no hub.repo_id: pass --repo user/name")
    print(f"pushed to {publish(args.run_dir, hub)}")
    return 0
