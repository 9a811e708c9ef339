"""``asft train``: train a model on preference pairs (no arguments: the built-in default job)."""

from __future__ import annotations

import argparse
import os


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model on preference pairs (no arguments: ASFT on the built-in task)",
        description=(
            "Train with a registered loss (`asft losses` lists them). Without --config, runs the "
            "default job: ASFT on the built-in task with the packaged SmolLM2-135M-Instruct, "
            "a few minutes on a CPU. Settings are read from --config, then --set, then the "
            "shortcut flags. Multi-process: torchrun --nproc_per_node N -m asft.cli train ..."
        ),
    )
    p.add_argument("--config", "-c", metavar="FILE", help="YAML config (see --help-config)")
    p.add_argument("--output-dir", "-o", metavar="DIR", help="output folder (output_dir)")
    p.add_argument("--max-steps", type=int, metavar="N", help="optimizer steps (training.max_steps)")
    p.add_argument("--loss", metavar="NAME", action=_LossName)
    p.add_argument("--model", metavar="NAME", help="hub id, folder, smollm2-135m or tiny-llama (model.name)")
    p.add_argument("--data", metavar="SOURCE", help="data source, e.g. builtin:mixed or a .jsonl file (data.source)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="set any config field, e.g. --set optim.lr=1e-5 --set loss.hparams.beta=0.1")
    p.add_argument("--push-to-hub", metavar="REPO",
                   help="push the final model and a generated model card to this Hub repository "
                        "(hub.repo_id; token from $HF_TOKEN or `hf auth login`, checked before training)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest complete checkpoint in the output folder")
    p.add_argument("--overwrite", action="store_true", help="replace a previous run in the output folder")
    p.add_argument("--help-config", action="store_true", help="list every config field and exit")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=run)


class _LossName(argparse.Action):
    """``--loss``: its help lists the registry's names, read only when help is shown (the
    registry imports torch, which ``asft --help`` should not pay for). Unknown names are
    rejected by the config, with a suggestion."""

    @property
    def help(self) -> str:
        from asft.losses import LOSSES

        return f"loss (loss.name): {', '.join(LOSSES)}"

    @help.setter
    def help(self, value: str | None) -> None:
        pass

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)


def overrides_from_args(args: argparse.Namespace) -> list[str | tuple[str, object]]:
    """``--set`` items followed by the shortcut flags (which therefore win)."""
    items: list[str | tuple[str, object]] = list(args.overrides)
    for flag, key in (("output_dir", "output_dir"), ("max_steps", "training.max_steps"),
                      ("loss", "loss.name"), ("model", "model.name"), ("data", "data.source"),
                      ("push_to_hub", "hub.repo_id")):
        value = getattr(args, flag)
        if value is not None:
            items.append((key, value))
    return items


def run(args: argparse.Namespace) -> int:
    from asft.config import describe, load_config, to_yaml

    if args.help_config:
        print(describe(), end="")
        return 0
    cfg = load_config(args.config, overrides_from_args(args))
    if args.print_config:
        print(to_yaml(cfg), end="")
        return 0

    pushing = bool(cfg.hub.repo_id) and _is_main()
    if pushing:
        from asft.model.hub import token

        token(cfg.hub)  # now, not after hours of training: the push is at the end

    if cfg.online.rounds:
        from asft.experiments.online import train_online as train
    else:
        from asft.train import train

    result = train(cfg, resume=args.resume, overwrite=args.overwrite)
    if _is_main():
        print(summary(result))
    if pushing:
        from asft.train.publish import publish

        print(f"  hub      {publish(result.output_dir, cfg.hub)}")
    return 0


def _is_main() -> bool:
    return os.environ.get("RANK", "0") == "0"


def summary(result) -> str:
    """What the run did, in a few lines (printed at the end of ``asft train``)."""
    lines = [f"asft train: {result.steps} steps, {result.pairs_seen} pairs, "
             f"{result.elapsed_s:.0f} s" + (f" (resumed from {result.resumed_from.name})"
                                           if result.resumed_from else "")]
    if result.loss_first is not None and result.loss_last is not None:
        lines.append(f"  loss                      {result.loss_first:.4f} -> {result.loss_last:.4f}")
    first, last = result.probe_first, result.probe_last
    for side in ("chosen", "rejected"):
        key = f"probe/logps/{side}"
        if key in first and key in last:
            lines.append(f"  held-out {side:<8} log-prob {first[key]:.4f} -> {last[key]:.4f} "
                         f"({last[key] - first[key]:+.4f} nats/token)")
    if "probe/accuracy" in first and "probe/accuracy" in last:
        lines.append(f"  held-out pair accuracy    {first['probe/accuracy']:.2f} -> {last['probe/accuracy']:.2f}")
    lines.append(f"  model    {result.model_dir}")
    lines.append(f"  metrics  {result.metrics_path}")
    lines.append(f"  plot     asft plot {result.output_dir} --output {result.output_dir / 'dynamics.png'}")
    lines.append(f"  config   {result.config_path}")
    return "\n".join(lines)

