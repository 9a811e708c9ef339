"""``asft compare``: train several methods on the same model, data and budget, evaluate each,
and write a Markdown report with the likelihood-dynamics plot.

Method list syntax (see :mod:`asft.evaluate.methods`): items separated by ``,`` or ``;``; a
method's hyperparameters follow a ``:`` and are ``key=value`` items, so
``sft,dpo,asft,asft:beta=0.1,sft_weight=0`` is four methods, the last with two settings.
A method's own learning rates are ``lr=`` with ``|`` between them: ``dpo:lr=5e-7|5e-6``.
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
from asft.model.load import ATTN_IMPLEMENTATIONS

DEFAULT_OUTPUT = Path("runs") / "compare"


def register(sub: argparse._SubParsersAction) -> None:
    from asft.experiments.compare import DEFAULT_METHODS
    from asft.experiments.sweep import CRITERIA

    p = sub.add_parser(
        "compare", help="train and evaluate several methods on equal terms; write a report",
        description="Train each method with the same model, data, steps, batch and seed, "
        "evaluate each (and the untrained model) on the same held-out pairs, and write "
        "report.md, results.json and dynamics.png. With --lrs and --seeds, each method's "
        "learning rate is chosen on validation pairs and the chosen one is retrained at each "
        "seed; numbers are means with 95% t-intervals. Rerunning the same command resumes: "
        "finished jobs are not run again.",
    )
    p.add_argument("--methods", action="append", metavar="SPECS",
                   help=f"methods, name[:key=value,...] separated by ',' or ';', a method's own "
                   f"learning rates as lr=A|B (repeatable; default: {DEFAULT_METHODS})")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                   help=f"output folder (default: {DEFAULT_OUTPUT})")
    p.add_argument("--config", help="base training YAML (default: the trainer's default job)")
    p.add_argument("--model", help="override model.name (default: the config's, smollm2-135m)")
    p.add_argument("--data", help="override data.source (default: the config's, the built-in task)")
    p.add_argument("--max-steps", type=int, help="override training.max_steps")
    p.add_argument("--attn-implementation", default=None,
                   choices=ATTN_IMPLEMENTATIONS,
                   help="override model.attn_implementation (training and evaluation)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="any training override, e.g. --set optim.lr=1e-5 (repeatable)")
    p.add_argument("--eval-data", help="held-out source (default: the training source's test split)")
    p.add_argument("--eval-split", help="split of the held-out source")
    p.add_argument("--eval-samples", type=int, default=100, help="held-out pairs (default: 100)")
    p.add_argument("--max-new-tokens", type=int, default=24, help="tokens per answer (default: 24)")
    p.add_argument("--lrs", metavar="LR,LR,...",
                   help="learning rates to try (a method's own: name:lr=A|B); with several, each "
                   "method's is chosen on validation pairs held out from training and test "
                   "(default: the config's optim.lr, no choice)")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="train each method at its learning rate with N seeds (the config's seed "
                   "and the next N-1); report means with 95%% t-intervals (default: 1)")
    p.add_argument("--select-by", choices=list(CRITERIA), default="accuracy",
                   help="validation criterion that chooses the learning rate: accuracy "
                   "(preference accuracy, no generation) or bleu4 (default: accuracy)")
    p.add_argument("--val-samples", type=int, default=100, metavar="N",
                   help="validation pairs, read after the training pairs of the training source "
                   "(default: 100)")
    p.add_argument("--no-isolate", action="store_true",
                   help="run every job in this process (faster start; no per-method peak memory)")
    p.add_argument("--rerun", action="store_true", help="run every method again")
    p.set_defaults(func=run)


def _settings(args):
    from asft.evaluate.methods import parse_lrs, parse_methods
    from asft.experiments.compare import DEFAULT_METHODS, CompareSettings, check_configs

    overrides = list(args.overrides)
    for flag, key in ((args.model, "model.name"), (args.data, "data.source"),
                      (args.max_steps, "training.max_steps"),
                      (args.attn_implementation, "model.attn_implementation")):
        if flag is not None:
            overrides.append(f"{key}={flag}")
    for flag, value in (("--eval-samples", args.eval_samples), ("--max-new-tokens", args.max_new_tokens),
                        ("--seeds", args.seeds), ("--val-samples", args.val_samples)):
        if value < 1:
            raise AsftError(f"{flag} must be >= 1, got {value}")
    try:
        methods = parse_methods(args.methods or [DEFAULT_METHODS], lr=True, stages=True)
    except ValueError as err:
        raise AsftError(f"--methods: {err}") from None
    try:
        lrs = list(parse_lrs(args.lrs, sep=",")) if args.lrs else []
    except ValueError as err:
        raise AsftError(f"--lrs: {err}") from None
    settings = CompareSettings(
        methods=methods, output_dir=args.output, config=args.config, overrides=overrides,
        eval_data=args.eval_data, eval_split=args.eval_split, eval_samples=args.eval_samples,
        max_new_tokens=args.max_new_tokens, isolate=not args.no_isolate, rerun=args.rerun,
        lrs=lrs, seeds=args.seeds, select_by=args.select_by, val_samples=args.val_samples,
    )
    check_configs(settings)  # every config is validated before anything runs
    return settings


# Settings that may change between reruns: methods, learning rates and seeds name their jobs'
# folders, so a new one runs new jobs and never reuses another's results.
_FREE = ("methods", "output_dir", "isolate", "rerun", "lrs", "seeds")
# Settings added after the first comparisons were made: recorded only when they differ from
# these defaults, so a comparison started before they existed still resumes.
_LATER = {"select_by": "accuracy", "val_samples": 100}


def _check_same_settings(settings, path: Path) -> None:
    """Refuse to resume a comparison made with other settings (its results would be mixed in)."""
    current = {k: v for k, v in asdict(settings).items()
               if k not in _FREE and not (k in _LATER and v == _LATER[k])}
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
    from asft.evaluate.methods import number_text

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
    if settings.lrs:
        parts += ["--lrs", ",".join(number_text(v) for v in settings.lrs)]
    if settings.seeds != 1:
        parts += ["--seeds", str(settings.seeds)]
    for flag, key in (("--select-by", "select_by"), ("--val-samples", "val_samples")):
        if getattr(settings, key) != _LATER[key]:
            parts += [flag, str(getattr(settings, key))]
    if not settings.isolate:
        parts.append("--no-isolate")
    return " ".join(shlex.quote(p) for p in parts)


def _plot(out: Path, results) -> str | None:
    """dynamics.png from each trained row's run (the first seed's), or None when none logged."""
    from asft.evaluate.dynamics import load_run
    from asft.evaluate.plots import plot_dynamics

    runs = []
    for r in results:
        if r.label == "base" or not r.run_dir:
            continue
        try:
            curves = load_run(out / r.run_dir)
        except ValueError:
            continue
        runs.append((r.label, curves.series))
    if not runs:
        return None
    plot_dynamics(runs, out / "dynamics.png", "Held-out probe log-likelihood during training")
    return "dynamics.png"


_CRITERION_TEXT = {
    "accuracy": "preference accuracy (mean log-prob per token of the chosen response above "
                "the rejected one's)",
    "bleu4": "BLEU-4 of greedy answers against the chosen responses",
}


def _info(settings, results) -> dict[str, str]:
    """The settings lines at the top of the report."""
    from asft.experiments.compare import describe_machine, training_config
    from asft.experiments.sweep import is_swept, seed_list

    cfg = training_config(settings, None)
    eval_src = settings.eval_data or cfg.data.source
    eval_split = settings.eval_split or (None if settings.eval_data else "test")
    seeds = seed_list(settings, cfg)
    lrs = {r.lr for r in results if r.lr is not None}
    lr = f"lr {next(iter(lrs)):g}" if len(lrs) == 1 else ("lr per method (see below)" if lrs
                                                        else f"lr {cfg.optim.lr:g}")
    seed = f"seed {cfg.seed}" if len(seeds) == 1 else "seeds " + ", ".join(map(str, seeds))
    info = {
        "model": f"{cfg.model.name} ({cfg.model.dtype} weights, {cfg.training.precision} compute)",
        "training data": cfg.data.source,
        "budget per method": f"{cfg.training.max_steps} steps x {cfg.training.batch_size} pairs "
                             f"x {cfg.training.grad_accum} accumulation, {lr} "
                             f"({cfg.optim.schedule}), {seed}; first {cfg.data.limit} "
                             f"pairs of the source ({cfg.data.probe_size} held out as the probe)",
        "held-out evaluation": f"{eval_src}" + (f" ({eval_split} split)" if eval_split else "")
                               + f", first {settings.eval_samples} pairs, greedy, "
                               f"{settings.max_new_tokens} new tokens",
    }
    if settings.selects(cfg):
        info["learning-rate selection"] = (
            f"each method with several learning rates is trained at each (seed {seeds[0]}) and "
            f"evaluated on {settings.val_samples} validation pairs (the pairs after the first "
            f"{cfg.data.limit} of {cfg.data.source}: never trained on, never tested; prompts "
            f"shared with training or test pairs removed); the highest validation "
            f"{_CRITERION_TEXT[settings.select_by]} is chosen, ties going to the smaller rate")
    swept = any(is_swept(settings, m) for m in settings.methods)
    if swept:
        info["intervals"] = ("95% t-interval over seeds (see below the table)" if len(seeds) > 1
                             else "none (n=1: one seed per method)")
    info["machine"] = describe_machine()
    info["peak memory"] = ("not measured (--no-isolate)" if not settings.isolate
                           else "per method, its own process"
                           + (" (the largest of its jobs)" if swept else ""))
    return info


def run(args: argparse.Namespace) -> int:
    from asft.experiments.compare import run_compare, training_config
    from asft.experiments.report import render_report

    settings = _settings(args)
    out = settings.output_dir
    out.mkdir(parents=True, exist_ok=True)
    _check_same_settings(settings, out / "settings.json")
    results = run_compare(settings, log=lambda m: print(m, file=sys.stderr, flush=True))
    plot = _plot(out, results)
    cfg = training_config(settings, None)
    title = f"Method comparison: {cfg.model.name} on {cfg.data.source}"
    text = render_report(results, title, _info(settings, results), plot, reproduce_command(settings))
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
