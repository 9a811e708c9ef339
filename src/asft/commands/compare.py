"""``asft compare``: train several methods on the same model, data and budget, evaluate each,
and write a Markdown report with the likelihood-dynamics plot.

Method list syntax (see :mod:`asft.evaluate.methods`): items separated by ``,`` or ``;``; a
method's hyperparameters follow a ``:`` and are ``key=value`` items, so
``sft,dpo,asft,asft:beta=0.1,sft_weight=0`` is four methods, the last with two settings.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

from asft import atomic
from asft.errors import AsftError

DEFAULT_OUTPUT = Path("runs") / "compare"


def register(sub: argparse._SubParsersAction) -> None:
    from asft.experiments.compare import DEFAULT_METHODS

    p = sub.add_parser(
        "compare", help="train and evaluate several methods on equal terms; write a report",
        description="Train each method with the same model, data, steps, batch and seed, "
        "evaluate each (and the untrained model) on the same held-out pairs, and write "
        "report.md, results.json and dynamics.png. Rerunning the same command resumes: "
        "finished methods are not run again.",
    )
    p.add_argument("--methods", action="append", metavar="SPECS",
                   help=f"methods, name[:key=value,...] separated by ',' or ';' (repeatable; "
                   f"default: {DEFAULT_METHODS})")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                   help=f"output folder (default: {DEFAULT_OUTPUT})")
    p.add_argument("--config", help="base training YAML (default: the trainer's default job)")
    p.add_argument("--model", help="override model.name (default: the config's, smollm2-135m)")
    p.add_argument("--data", help="override data.source (default: the config's, the built-in task)")
    p.add_argument("--max-steps", type=int, help="override training.max_steps")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="any training override, e.g. --set optim.lr=1e-5 (repeatable)")
    p.add_argument("--eval-data", help="held-out source (default: the training source's test split)")
    p.add_argument("--eval-split", help="split of the held-out source")
    p.add_argument("--eval-samples", type=int, default=100, help="held-out pairs (default: 100)")
    p.add_argument("--max-new-tokens", type=int, default=24, help="tokens per answer (default: 24)")
    p.add_argument("--no-isolate", action="store_true",
                   help="run every job in this process (faster start; no per-method peak memory)")
    p.add_argument("--rerun", action="store_true", help="run every method again")
    p.set_defaults(func=run)


def _settings(args):
    from asft.evaluate.methods import parse_methods
    from asft.experiments.compare import DEFAULT_METHODS, CompareSettings, training_config

    overrides = list(args.overrides)
    for flag, key in ((args.model, "model.name"), (args.data, "data.source"),
                      (args.max_steps, "training.max_steps")):
        if flag is not None:
            overrides.append(f"{key}={flag}")
    if args.eval_samples < 1:
        raise AsftError(f"--eval-samples must be >= 1, got {args.eval_samples}")
    if args.max_new_tokens < 1:
        raise AsftError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    try:
        methods = parse_methods(args.methods or [DEFAULT_METHODS])
    except ValueError as err:
        raise AsftError(f"--methods: {err}") from None
    settings = CompareSettings(
        methods=methods, output_dir=args.output, config=args.config, overrides=overrides,
        eval_data=args.eval_data, eval_split=args.eval_split, eval_samples=args.eval_samples,
        max_new_tokens=args.max_new_tokens, isolate=not args.no_isolate, rerun=args.rerun,
    )
    for method in [None, *methods]:  # every config is validated before anything runs
        training_config(settings, method)
    return settings


def _check_same_settings(settings, path: Path) -> None:
    """Refuse to resume a comparison made with other settings (its results would be mixed in)."""
    current = {k: v for k, v in asdict(settings).items()
               if k not in ("methods", "output_dir", "isolate", "rerun")}
    current = json.loads(json.dumps(current, default=str))
    if path.is_file() and not settings.rerun:
        try:
            previous = json.loads(path.read_text())
        except (OSError, ValueError, RecursionError):
            raise AsftError(f"{path} is unreadable, so the settings of the comparison in "
                            f"{settings.output_dir} are unknown; pass --rerun or use another --output") from None
        if not isinstance(previous, dict):
            previous = {}
        if previous != current:
            changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
            raise AsftError(f"{settings.output_dir} holds a comparison with other settings "
                            f"({', '.join(changed)}); use another --output or pass --rerun")
    atomic.write_json(path, current)


def reproduce_command(settings) -> str:
    """An ``asft compare`` command line that recreates ``settings``."""
    parts = ["asft", "compare", "--methods", "; ".join(m.label for m in settings.methods),
             "--output", str(settings.output_dir)]
    if settings.config:
        parts += ["--config", settings.config]
    for item in settings.overrides:
        parts += ["--set", item]
    for flag, value in (("--eval-data", settings.eval_data), ("--eval-split", settings.eval_split)):
        if value is not None:
            parts += [flag, value]
    parts += ["--eval-samples", str(settings.eval_samples),
              "--max-new-tokens", str(settings.max_new_tokens)]
    if not settings.isolate:
        parts.append("--no-isolate")
    return " ".join(shlex.quote(p) for p in parts)


def run(args: argparse.Namespace) -> int:
    from asft.evaluate.dynamics import load_run
    from asft.evaluate.plots import plot_dynamics
    from asft.experiments.compare import describe_machine, run_compare, training_config
    from asft.experiments.report import render_report

    settings = _settings(args)
    out = settings.output_dir
    out.mkdir(parents=True, exist_ok=True)
    _check_same_settings(settings, out / "settings.json")
    results = run_compare(settings, log=lambda m: print(m, file=sys.stderr, flush=True))

    runs = []
    for method in settings.methods:
        run_dir = out / "runs" / method.slug
        try:
            curves = load_run(run_dir)
        except ValueError:
            continue
        runs.append((method.label, curves.series))
    plot = None
    if runs:
        plot_dynamics(runs, out / "dynamics.png", "Held-out probe log-likelihood during training")
        plot = "dynamics.png"

    cfg = training_config(settings, None)
    eval_src = settings.eval_data or cfg.data.source
    eval_split = settings.eval_split or (None if settings.eval_data else "test")
    title = f"Method comparison: {cfg.model.name} on {cfg.data.source}"
    info = {
        "model": f"{cfg.model.name} ({cfg.model.dtype} weights, {cfg.training.precision} compute)",
        "training data": cfg.data.source,
        "budget per method": f"{cfg.training.max_steps} steps x {cfg.training.batch_size} pairs "
                             f"x {cfg.training.grad_accum} accumulation, lr {cfg.optim.lr:g} "
                             f"({cfg.optim.schedule}), seed {cfg.seed}; first {cfg.data.limit} "
                             f"pairs of the source ({cfg.data.probe_size} held out as the probe)",
        "held-out evaluation": f"{eval_src}" + (f" ({eval_split} split)" if eval_split else "")
                               + f", first {settings.eval_samples} pairs, greedy, "
                               f"{settings.max_new_tokens} new tokens",
        "machine": describe_machine(),
        "peak memory": "per method, its own process" if settings.isolate else "not measured (--no-isolate)",
    }
    text = render_report(results, title, info, plot, reproduce_command(settings))
    atomic.write_text(out / "report.md", text)
    atomic.write_json(out / "results.json", [asdict(r) for r in results])
    print(text)
    print(f"report: {out / 'report.md'}")
    failed = [r.label for r in results if r.error]
    if failed:
        print(f"asft compare: {len(failed)} job(s) failed: {', '.join(failed)}; rerun the same "
              "command to retry them", file=sys.stderr)
        return 1
    return 0
