"""``asft compare --lrs ... --seeds N``: the t quantile and intervals against known values,
the learning-rate choice on hand-made numbers, the validation split's disjointness from the
training and test pairs, and the sweep on tiny-llama in one process (selection jobs, seeds,
intervals worked out by hand, results.json fields, the report, resuming one job)."""

from __future__ import annotations

import json
import math

import pytest

from asft.cli import main
from asft.evaluate.methods import MethodSpec, parse_lrs, parse_methods
from asft.experiments.intervals import disjoint, mean_interval, t_central_probability, t_quantile
from asft.experiments.report import MethodResult, render_report
from asft.experiments.sweep import (
    DIVERGED,
    UNTRAINED,
    Job,
    mean_metrics,
    method_row,
    run_folder,
    select_lr,
    selection_failure,
)

# Two-sided 95% (and one 90%) Student t quantiles from published tables.
T_TABLE = [(1, 0.95, 12.7062), (2, 0.95, 4.3027), (3, 0.95, 3.1824), (4, 0.95, 2.7764),
           (9, 0.95, 2.2622), (29, 0.95, 2.0452), (30, 0.95, 2.0423), (120, 0.95, 1.9799),
           (4, 0.90, 2.1318)]


@pytest.mark.parametrize("dof, level, expected", T_TABLE)
def test_t_quantile_matches_the_tables(dof, level, expected):
    assert t_quantile(dof, level) == pytest.approx(expected, abs=1e-4)


def test_t_distribution_closed_form():
    # one degree of freedom is the Cauchy distribution: P(|T| <= t) = 2 atan(t) / pi
    assert t_central_probability(1.0, 1) == pytest.approx(0.5)
    # two: P(|T| <= t) = t / sqrt(2 + t^2)
    assert t_central_probability(3.0, 2) == pytest.approx(3 / math.sqrt(11))
    assert t_quantile(10_000) == pytest.approx(1.96020, abs=1e-5)  # near the normal's 1.95996
    with pytest.raises(ValueError):
        t_quantile(0)


def test_mean_interval_by_hand():
    # mean 2.5; sd = sqrt(((1.5^2 + 0.5^2) * 2) / 3) = sqrt(5/3); half = 3.1824 * sd / 2
    mean, half = mean_interval([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and half == pytest.approx(3.182446 * math.sqrt(5 / 3) / 2, rel=1e-6)
    assert mean_interval([7.0]) == (7.0, None)
    assert disjoint([0, 1], [1.5, 2]) and not disjoint([0, 1], [1, 2])


def _res(metrics=None, error="", train_s=1.0, peak=None):
    return MethodResult("dpo", dict(metrics or {}), train_s=train_s, eval_s=2.0,
                        peak_memory_bytes=peak, error=error)


def test_select_lr_takes_the_best_validation_value_ties_to_the_smaller_rate():
    key = "pref_acc_mean"
    selection = {1e-5: _res({key: 70.0}), 1e-6: _res({key: 80.0}), 1e-4: _res({key: 80.0}),
                 1e-3: _res(error=DIVERGED + "non-finite loss at step 2"),
                 1e-2: _res({key: None})}
    assert select_lr(selection, key) == 1e-6
    assert selection_failure(MethodSpec("dpo"), list(selection), [0], selection, key) is None
    # a selection run that failed (not diverged) may change the choice on a rerun: no choice
    selection[1e-1] = _res(error="RuntimeError: out of memory")
    failed = selection_failure(MethodSpec("dpo"), list(selection), [0], selection, key)
    assert "lr 0.1 failed: RuntimeError" in failed.error and failed.validation["1e-06"] == 80.0
    assert select_lr({1e-3: _res(error=DIVERGED + "x")}, key) is None


def test_seed_means_intervals_and_rows_by_hand():
    per_seed = [{"bleu4": 10.0, "pairs": 4, "exact_match": None},
                {"bleu4": 14.0, "pairs": 4, "exact_match": None}]
    means, ci = mean_metrics(per_seed)
    half = 12.7062047 * math.sqrt(8.0) / math.sqrt(2)  # t(1) x sd (sqrt(8)) / sqrt(2)
    assert means == {"bleu4": 12.0, "pairs": 4, "exact_match": None}
    assert isinstance(means["pairs"], int) and ci["pairs"] == [4, 4]
    assert ci["bleu4"] == pytest.approx([12.0 - half, 12.0 + half]) and "exact_match" not in ci
    assert mean_metrics(per_seed[:1]) == (per_seed[0], {})

    method = MethodSpec("dpo")
    tests = [_res(m, train_s=t, peak=p) for m, t, p in zip(per_seed, (3.0, 5.0), (10, 30))]
    selection = {1e-5: _res({"pref_acc_mean": 50.0}, peak=40), 1e-4: _res({"pref_acc_mean": 60.0})}
    row = method_row(method, 1e-4, [1e-5, 1e-4], [42, 43], tests, selection, "pref_acc_mean",
                     run_folder(method, 1e-4, 42, True))
    assert (row.lr, row.lr_grid, row.seeds, row.train_s) == (1e-4, [1e-5, 1e-4], [42, 43], 4.0)
    assert row.peak_memory_bytes == 40 and row.per_seed == per_seed
    assert row.validation == {"1e-05": 50.0, "0.0001": 60.0}
    assert row.run_dir == "runs/dpo/lr-0.0001/seed-42"
    tests[1].error = "RuntimeError: boom"
    assert method_row(method, 1e-4, [1e-4], [42, 43], tests, {}, "bleu4", "").error == "seed 43: RuntimeError: boom"


def test_method_specs_carry_their_own_learning_rates():
    dpo, asft = parse_methods("dpo:beta=0.2,lr=5e-7|5e-6; asft", lr=True)
    assert dpo.lrs == (5e-7, 5e-6) and dpo.hparams == {"beta": 0.2} and asft.lrs == ()
    assert dpo.label == "dpo:beta=0.2,lr=5e-07|5e-06" and dpo.slug == "dpo-beta0.2-lr5e-07-5e-06"
    assert parse_methods(dpo.label, lr=True) == [dpo]  # the label reads back
    assert parse_methods("sft:lr=1e-5", lr=True)[0].label == "sft:lr=1e-05"
    kto, tpo = parse_methods("kto:desirable_weight=1.33,lr=1e-6|1e-5; tpo:alpha=1", lr=True)
    assert kto.hparams == {"desirable_weight": 1.33} and kto.lrs == (1e-6, 1e-5) and tpo.hparams == {"alpha": 1.0}
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        parse_methods("dpo:lr=1e-5")  # asft gradients has no learning rate
    with pytest.raises(ValueError, match="must be in"):
        parse_methods("dpo:lr=2", lr=True)
    with pytest.raises(ValueError, match="listed twice"):
        parse_lrs("1e-5,1e-5", sep=",")
    assert parse_lrs(" 5e-7, 5e-6 ", sep=",") == (5e-7, 5e-6)
    assert Job(dpo, "validation", 5e-7, 42).label == "dpo:beta=0.2,lr=5e-07|5e-06 lr=5e-07 seed=42 (validation)"


def test_report_shows_intervals_marks_and_the_selection():
    base = MethodResult("base", {"bleu4": 1.0, "logps_chosen": -2.0, "logps_rejected": -2.5},
                        validation={UNTRAINED: 55.0})
    a = MethodResult("asft", {"bleu4": 60.0, "logps_chosen": -1.0, "logps_rejected": -3.0},
                     lr=1e-5, lr_grid=[1e-6, 1e-5], seeds=[1, 2, 3],
                     ci95={"bleu4": [58.0, 62.0], "logps_chosen": [-1.25, -0.75]},
                     validation={"1e-06": 70.0, "1e-05": 75.5})
    d = MethodResult("dpo", {"bleu4": 40.0, "logps_chosen": -3.0}, lr=1e-6, lr_grid=[1e-6, 1e-4],
                     seeds=[1, 2, 3], ci95={"bleu4": [30.0, 50.0]},
                     validation={"1e-06": 65.0, "0.0001": None})
    s = MethodResult("sft", {"bleu4": 55.0}, lr=1e-5, lr_grid=[1e-5], seeds=[1, 2, 3],
                     ci95={"bleu4": [50.0, 60.0]})
    text = render_report([base, a, d, s], "T", {})
    assert "| asft | 60.00 ± 2.00 | - |" in text and "| +1.0000 ± 0.2500 | -0.5000 |" in text
    assert "| dpo | 40.00 ± 10.00 † |" in text  # [30, 50] lies below asft's [58, 62]
    assert "| sft | 55.00 ± 5.00 |" in text  # [50, 60] overlaps it
    assert "| base | 1.00 | - |" in text and "n = 3 seeds" in text
    assert "| method | lr 1e-06 | lr 1e-05 | lr 0.0001 |" in text
    assert "| asft | 70.00 | **75.50** | - |" in text and "| dpo | **65.00** | - | - |" in text
    assert "Untrained base model: 55.00." in text and "\n| sft | " not in text.split("selection")[-1]


def test_validation_pairs_are_disjoint_from_training_and_test(tmp_path):
    from asft.data.spec import read
    from asft.experiments.compare import CompareSettings, training_config
    from asft.experiments.splits import prompt_key, read_test_pairs, training_and_validation_pairs

    settings = CompareSettings([MethodSpec("sft")], tmp_path, eval_samples=20, val_samples=30,
                               seeds=2, overrides=["data.limit=40", "data.source=builtin:mixed"])
    train, validation = training_and_validation_pairs(settings, training_config(settings, None), 42)
    assert len(train) == 40 and len(validation) == 30
    for seed in (42, 43):  # what each seed's run trains on: the first data.limit pairs
        cfg = training_config(settings, MethodSpec("sft"), seed=seed)
        trained = {prompt_key(p) for p in read(cfg.data, seed=cfg.seed).pairs}
        held = {prompt_key(p) for p in validation}
        tested = {prompt_key(p) for p in read_test_pairs(settings, cfg, 42)}
        assert len(trained) == 40 and len(held) == 30 and len(tested) == 20
        assert not trained & held and not trained & tested and not held & tested
    # the pairs after the training prefix, in source order
    all_pairs = read(training_config(settings, None).data, limit=70).pairs
    assert [p.prompt for p in validation] == [p.prompt for p in all_pairs[40:]]


def test_compare_refuses_bad_sweep_flags(tmp_path, capsys):
    out = str(tmp_path / "c")
    assert main(["compare", "--methods", "sft", "--lrs", "1e-5,x", "--output", out]) == 1
    assert "--lrs: 'x' is not a number" in capsys.readouterr().err
    assert main(["compare", "--methods", "sft", "--seeds", "0", "--output", out]) == 1
    assert "--seeds must be >= 1" in capsys.readouterr().err
    assert main(["compare", "--methods", "sft", "--lrs", "1e-5,1e-4", "--output", out,
                 "--set", "training.max_steps=null"]) == 1
    assert "set training.max_steps or data.limit" in capsys.readouterr().err
    assert not (tmp_path / "c" / "runs").exists()


def test_a_diverged_selection_run_is_final(tmp_path, monkeypatch):
    """It is saved (a rerun does not train that learning rate again) and never chosen."""
    from asft.experiments import jobs
    from asft.experiments.compare import CompareSettings
    from asft.train import NonFiniteLossError

    def diverge(cfg, job, folder):
        raise NonFiniteLossError("non-finite loss at step 1")

    monkeypatch.setattr(jobs, "_model", diverge)
    settings = CompareSettings([MethodSpec("sft")], tmp_path, isolate=False)
    selection = Job(MethodSpec("sft"), "validation", 0.5, 42, "runs/sft/lr-0.5/seed-42")
    result = jobs.run_job(settings, selection)
    assert result.error == DIVERGED + "non-finite loss at step 1" and result.lr == 0.5
    with pytest.raises(NonFiniteLossError):  # at the chosen rate it is a failure to report
        jobs.run_job(settings, Job(MethodSpec("sft"), "test", 0.5, 43, "runs/sft/lr-0.5/seed-43"))

    calls = []

    def fake(settings, job):
        calls.append(job)
        return MethodResult("sft", error=DIVERGED + "non-finite loss at step 1")

    monkeypatch.setattr(jobs, "run_job", fake)
    logs = []
    assert jobs.run_one(settings, selection, logs.append).error.startswith(DIVERGED)
    assert jobs.run_one(settings, selection, logs.append).error.startswith(DIVERGED)
    assert len(calls) == 1 and "done before" in logs[-1]
    assert (tmp_path / "runs/sft/lr-0.5/seed-42/validation.json").is_file()


# validation preference accuracy the sweep test makes each learning rate reach
FAKE_ACCURACY = {1e-4: 10.0, 1e-3: 90.0}


def _fixed_validation(monkeypatch, key):
    """Run the real jobs, but give each learning rate's selection run a known validation
    value, so that the choice is certain."""
    from asft.experiments import jobs

    real = jobs.run_job

    def run_job(settings, job):
        result = real(settings, job)
        if job.split == "validation" and job.method is not None and not result.error:
            result.metrics[key] = FAKE_ACCURACY[job.lr]
        return result

    monkeypatch.setattr(jobs, "run_job", run_job)


TINY = ["--model", "tiny-llama", "--max-steps", "2", "--set", "data.limit=24",
        "--set", "data.probe_size=4", "--set", "logging.probe_every=1",
        "--set", "logging.tensorboard=false", "--set", "logging.progress=false",
        "--eval-samples", "4", "--val-samples", "4", "--max-new-tokens", "2", "--no-isolate"]


@pytest.mark.slow
def test_compare_grid_and_seeds_end_to_end_and_resume(tmp_path, monkeypatch, capsys):
    _fixed_validation(monkeypatch, "pref_acc_mean")
    out = tmp_path / "cmp"
    argv = ["compare", "--methods", "sft", "--lrs", "1e-4,1e-3", "--seeds", "2",
            "--output", str(out), *TINY]
    assert main(argv) == 0
    err = capsys.readouterr().err
    # 2 selection runs + the second seed; the first seed's test reuses the 1e-3 selection run
    assert err.count("] training") == 3 and "evaluating the model its selection run trained" in err
    assert "[sft] chose lr 0.001" in err
    runs = out / "runs" / "sft"
    assert (runs / "lr-0.0001/seed-42/validation.json").is_file()
    assert not (runs / "lr-0.0001/seed-42/result.json").exists() and not (runs / "lr-0.0001/seed-43").exists()
    assert not (runs / "lr-0.0001/seed-42/generations.jsonl").exists()  # accuracy: no generation
    for seed in (42, 43):
        config = (runs / f"lr-0.001/seed-{seed}/config.yaml").read_text()
        assert f"seed: {seed}" in config and "lr: 0.001" in config
        assert (runs / f"lr-0.001/seed-{seed}/result.json").is_file()
    assert (out / "runs/base/validation.json").is_file() and (out / "runs/base/result.json").is_file()

    base, row = json.loads((out / "results.json").read_text())
    assert (base["lr"], base["lr_grid"], base["seeds"], base["ci95"]) == (None, [], [], {})
    assert set(base["validation"]) == {UNTRAINED}
    assert (row["lr"], row["lr_grid"], row["seeds"]) == (1e-3, [1e-4, 1e-3], [42, 43])
    assert row["validation"] == {"0.0001": 10.0, "0.001": 90.0}
    assert row["run_dir"] == "runs/sft/lr-0.001/seed-42" and row["train_s"] > 0
    first, second = row["per_seed"]
    assert first["logps_chosen"] != second["logps_chosen"]  # the seeds made different runs
    for key in ("logps_chosen", "bleu4"):
        values = [first[key], second[key]]
        mean = sum(values) / 2
        half = 12.7062047 * abs(values[0] - values[1]) / math.sqrt(2) / math.sqrt(2)
        assert row["metrics"][key] == pytest.approx(mean)
        assert row["ci95"][key] == pytest.approx([mean - half, mean + half])
    report = (out / "report.md").read_text()
    assert "## Learning-rate selection" in report and "| sft | 10.00 | **90.00** |" in report
    assert " ± " in report and "n = 2 seeds" in report and "--lrs 0.0001,0.001 --seeds 2" in report

    # An interrupted sweep: only the job without its result runs again.
    (runs / "lr-0.001/seed-43/result.json").unlink()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("] training") == 1 and "[sft lr=0.001 seed=43] training" in err
    assert err.count("done before") == 5
    again = json.loads((out / "results.json").read_text())[1]
    assert again["per_seed"][0] == first and again["lr"] == 1e-3


@pytest.mark.slow
def test_compare_per_method_grid_by_bleu4_one_seed(tmp_path, monkeypatch, capsys):
    _fixed_validation(monkeypatch, "bleu4")
    out = tmp_path / "cmp"
    argv = ["compare", "--methods", "sft:lr=1e-4|1e-3", "--select-by", "bleu4",
            "--output", str(out), *TINY]
    assert main(argv) == 0
    runs = out / "runs" / "sft-lr0.0001-0.001"
    assert (runs / "lr-0.0001/seed-42/validation_generations.jsonl").is_file()
    base, row = json.loads((out / "results.json").read_text())
    assert base["validation"][UNTRAINED] is not None
    assert (row["lr"], row["seeds"], row["ci95"]) == (1e-3, [42], {})
    assert row["metrics"] == row["per_seed"][0]
    report = (out / "report.md").read_text()
    assert "none (n=1: one seed per method)" in report and "BLEU-4 of greedy answers" in report
    assert " ± " not in report
    capsys.readouterr()
    # a criterion changed under a finished sweep would mix results: refused
    assert main([*argv[:3], *argv[5:]]) == 1
    assert "other settings (select_by)" in capsys.readouterr().err
