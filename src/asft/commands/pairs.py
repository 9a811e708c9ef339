"""``asft pairs``: on-policy preference pairs. Sample K answers per prompt with a model, score
them (``builtin`` verifier, LLM ``judge`` or ``reward-model:NAME``), write the better/worse
pairs as explicit-format JSON Lines for ``asft train`` (:mod:`asft.experiments.pairs`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asft.commands import judge_flags
from asft.errors import AsftError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pairs", help="sample answers with a model, score them, write preference pairs",
        description="Sample K answers per prompt of SOURCE with MODEL, score each (builtin: the "
        "built-in tasks' verifier with partial credit; judge: an OpenAI-compatible LLM judge's "
        "1-10 rating; reward-model:NAME: a sequence-classification model's logit), and write "
        "the better/worse pairs (explicit format, with score_chosen and score_rejected) to "
        "OUT. Samples and scores are saved beside OUT as they are made: rerunning the same "
        "command resumes. See docs/pairs.md.")
    p.add_argument("--model", required=True, help="the policy: model folder, hub id or short name")
    p.add_argument("--prompts", required=True, metavar="SOURCE",
                   help="builtin:<task>[:<split>] or a file whose records have a 'prompt' "
                        "(string or messages; optional 'system', 'answer')")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="PAIRS.jsonl",
                   help="where to write the pairs")
    p.add_argument("--samples", type=int, default=4, metavar="K", help="answers per prompt (default: 4)")
    p.add_argument("--scorer", default="builtin", metavar="builtin|judge|reward-model:NAME",
                   help="how answers are scored (default: builtin)")
    p.add_argument("--pairs", dest="pairing", default="best-worst", choices=("best-worst", "all"),
                   help="best-worst: the highest against the lowest score per prompt (default); "
                        "all: every better/worse pair, largest score gaps first")
    p.add_argument("--max-pairs-per-prompt", type=int, metavar="N", help="cap for --pairs all")
    p.add_argument("--selection", default="all", choices=("all", "rso"),
                   help="which samples may pair: all (default), or rso: those statistical "
                        "rejection sampling keeps (arXiv 2309.06657)")
    p.add_argument("--rso-beta", type=float, default=0.5,
                   help="RSO's temperature: small keeps the best answers (default: 0.5)")
    p.add_argument("--rso-accept", type=int, default=2, metavar="N",
                   help="samples RSO keeps per prompt (default: 2)")
    p.add_argument("--num-prompts", type=int, metavar="N", help="use only the first N prompts")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default: 0.8)")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass (default: 0.95)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="per answer (default: 256)")
    p.add_argument("--seed", type=int, default=0,
                   help="sampling seed; the same seed gives the same samples (default: 0)")
    p.add_argument("--batch-size", type=int, default=8,
                   help="rows per generate call and per reward-model pass (default: 8)")
    p.add_argument("--dtype", default="fp32", help="fp32, bf16 or fp16 (policy and reward model)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    judge_flags.add(p, "judge (--scorer judge)")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    """The run's :class:`~asft.experiments.pairs.config.PairsConfig` (AsftError on a bad flag)."""
    from asft.experiments.pairs.config import JudgeOptions, PairsConfig

    judge = JudgeOptions(args.judge_base_url, args.judge_model, args.judge_api_key_env,
                         args.judge_parallel, args.judge_timeout, args.judge_retries,
                         args.judge_backoff)
    return PairsConfig(
        model=args.model, prompts=args.prompts, output=args.output, samples=args.samples,
        scorer=args.scorer, pairing=args.pairing, max_pairs_per_prompt=args.max_pairs_per_prompt,
        selection=args.selection, rso_beta=args.rso_beta, rso_accept=args.rso_accept,
        num_prompts=args.num_prompts, temperature=args.temperature, top_p=args.top_p,
        max_new_tokens=args.max_new_tokens, seed=args.seed, batch_size=args.batch_size,
        dtype=args.dtype, judge=judge)


def _print_summary(s, config) -> None:
    reasons = {"tie": "all scores tied", "too_few_scored": "fewer than 2 scored",
               "identical": "only identical texts differ in score"}
    skipped = ", ".join(f"{s.skipped[k]} {text}" for k, text in reasons.items() if s.skipped.get(k))
    print(f"asft pairs: {s.prompts} prompts x {config.samples} samples = {s.samples} samples, "
          f"scored by {config.scorer}")
    print(f"  sampled now        {s.sampled} prompts ({s.prompts - s.sampled} from {s.samples_file})")
    print(f"  scored now         {s.scored} prompts ({s.prompts - s.scored} from {s.scores_file})")
    how = config.pairing + (f", rso beta {config.rso_beta:g}" if config.selection == "rso" else "")
    print(f"  pairs written      {s.pairs} ({how})" + (f" -> {s.output}" if s.pairs else ""))
    print(f"  prompts skipped    {sum(s.skipped.values())}" + (f" ({skipped})" if skipped else ""))
    print(f"  scoring failures   {s.failures} of {s.samples} samples")
    if s.pairs:
        print(f"  check              asft data check {s.output}")


def run(args: argparse.Namespace) -> int:
    from asft.data.errors import DataError
    from asft.evaluate.judge import JudgeError
    from asft.experiments.pairs.run import run_pairs, side_paths

    config = config_from_args(args)
    try:
        summary = run_pairs(config, show_progress=not args.no_progress)
    except DataError as err:
        raise AsftError(str(err)) from None
    except JudgeError as err:
        text = " ".join(str(err).split())  # one line: a reply body may hold newlines
        raise AsftError(f"{text}; what was scored is saved in {side_paths(config.output)[1]}: "
                        "rerun the same command to resume") from None
    _print_summary(summary, config)
    if not summary.pairs:
        print("asft pairs: error: no pair formed, nothing written (more --samples, a higher "
              "--temperature or another --scorer may help)", file=sys.stderr)
        return 1
    return 0
