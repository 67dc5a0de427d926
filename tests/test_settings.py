"""The settings layer (training/settings.py) and the run lifecycle (training/lifecycle.py): every input is
either a valid, recorded setting or one line with exit status 2, and no input loses or misstates a run.

Property-based (Hypothesis) for the parsing and the config.json round trip; real tiny runs of the
entry points for the run-directory rules (resume, hand-edited records, extension of a run).
"""
import dataclasses
import json
import os
import shutil

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

import example_cifar
import example_continual
import minimizers
from training import lifecycle, records
from training.records import UsageError
from training.settings import (FIXED, MAX_INNER_STEPS, MAX_REAL, MAX_SEED, CifarSettings, ContinualSettings,
                               declarations)

ENTRIES = {CifarSettings: example_cifar, ContinualSettings: example_continual}
SMALL = ["--dataset", "CIFAR10_sample", "--model", "resnet8", "--train_subset", "128", "--batch_size", "64",
         "--device", "cpu", "--epochs", "1"]
FAST = hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parse(settings_class, argv):
    return lifecycle.parse_settings(settings_class, ENTRIES[settings_class].parser(), list(argv))


# --------------------------------------------------------------------------------- property-based

def flag_names(settings_class):
    return [name for name, _, meta in declarations(settings_class)]


def texts():
    """Values as a user (or a fuzzer) might type them: numbers of every size, words, empty, signs."""
    numbers = st.one_of(st.integers(-2**70, 2**70).map(str),
                        st.floats(allow_nan=True, allow_infinity=True).map(repr),
                        st.sampled_from(["1e308", "-0", "0", "1", "2", "0.5", "-1", "1e-9", "nan", "inf"]))
    words = st.one_of(st.sampled_from(["SGD", "SAM", "Lookbehind_SAM", "resnet8", "CIFAR10", "cosine", "bf16",
                                       "every", "true", "rho=0.1", "k=3", "", "--", "cpu"]),
                      st.text(min_size=0, max_size=8))
    return st.one_of(numbers, words)


def argv_for(settings_class):
    names = flag_names(settings_class) + ["resume", "nonsense"]
    token = st.tuples(st.sampled_from(names), st.lists(texts(), max_size=2))
    return st.lists(token, max_size=5).map(
        lambda pairs: [item for name, values in pairs for item in [f"--{name}", *values]])


@pytest.mark.parametrize("settings_class", [CifarSettings, ContinualSettings])
@FAST
@given(data=st.data())
def test_any_command_line_is_a_valid_setting_or_one_usage_error(settings_class, data):
    argv = data.draw(argv_for(settings_class))
    try:
        settings, ignored = parse(settings_class, argv)
    except UsageError as exc:
        assert "\n" not in str(exc).strip() or " ".join(str(exc).split())  # one line once joined
        return
    # A valid command line gives settings inside every documented bound, and they survive config.json.
    assert 0 <= settings.seed <= MAX_SEED
    assert 0 < settings.lr <= MAX_REAL and 0 <= settings.weight_decay <= MAX_REAL
    assert settings.hparam("k") is None or 1 <= settings.hparam("k") <= MAX_INNER_STEPS
    assert set(settings.minimizer_hparams) == set(minimizers.hparams(settings.minimizer))
    record = json.loads(json.dumps(settings.record()))
    assert lifecycle.settings_from_config(settings_class, record, "config.json") == settings


@pytest.mark.parametrize("settings_class", [CifarSettings, ContinualSettings])
@FAST
@given(data=st.data())
def test_a_hand_edited_config_is_valid_or_one_usage_error(settings_class, data):
    """Any value in any entry of config.json: the run's settings as checked as flags are, or one line."""
    settings, _ = parse(settings_class, ["--device", "cpu"])
    record = json.loads(json.dumps(settings.record()))
    key = data.draw(st.sampled_from(sorted(record)))
    value = data.draw(st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=6),
                                st.lists(st.integers(-3, 300), max_size=3), st.dictionaries(st.text(max_size=3),
                                                                                          st.integers(), max_size=2)))
    record[key] = value
    try:
        restored = lifecycle.settings_from_config(settings_class, record, "config.json")
    except UsageError as exc:
        assert "config.json" in str(exc)
        return
    assert dataclasses.asdict(restored)[key] is not None or value is None


@pytest.mark.parametrize("settings_class", [CifarSettings, ContinualSettings])
def test_every_fixed_setting_of_the_wrong_type_in_config_is_refused_by_name(settings_class):
    settings, _ = parse(settings_class, ["--device", "cpu"])
    record = json.loads(json.dumps(settings.record()))
    for name, _, meta in declarations(settings_class):
        if name not in record or meta.get("resume") != FIXED or record[name] is None:
            continue
        edited = dict(record, **{name: [record[name], "x"]})   # never a valid value of any kind
        with pytest.raises(UsageError, match=name):
            lifecycle.settings_from_config(settings_class, edited, "config.json")
    with pytest.raises(UsageError, match="unknown setting 'lrr'"):
        lifecycle.settings_from_config(settings_class, dict(record, lrr=0.1), "config.json")
    missing = dict(record)
    del missing["lr"]
    with pytest.raises(UsageError, match="'lr' is missing"):
        lifecycle.settings_from_config(settings_class, missing, "config.json")


@pytest.mark.parametrize("argv, fragment", [
    (["--seed", "-1"], "--seed: must be >= 0"),
    (["--seed", str(2**64)], "--seed: must be <="),
    (["--lr", "1e308"], "--lr: must be <="),
    (["--weight_decay", "1e308"], "--weight_decay: must be <="),
    (["--gamma", "1e308"], "--gamma: must be <="),
    (["--gamma", "1000", "--milestones", "1", "2", "3"], "--gamma 1000 ^ 3 milestones"),
    (["--k", "100000"], "--k: must be <= 100"),
    (["--minimizer", "Lookahead_SAM", "--k", "101"], "--k: must be <= 100"),
    (["--momentum", "1.5"], "--momentum: must be <= 1"),
    (["--sync_bn"], "--sync_bn needs --device cuda"),
    (["--minimizer", "SSAM_F", "--hparam", f"num_samples={2**40}"], "num_samples"),
    (["--minimizer", "GSAM", "--hparam", "rho_max=1e300"], "rho_max"),
])
def test_values_that_parse_but_would_overflow_later_are_refused(argv, fragment):
    with pytest.raises(UsageError, match=fragment.replace("^", r"\^")):
        parse(CifarSettings, ["--device", "cpu", *argv])


def test_continual_messages_name_the_flag_at_fault():
    with pytest.raises(UsageError, match="--task_seed: must be >= 0"):
        parse(ContinualSettings, ["--task_seed", "-3", "--num_tasks", "2", "--classes_per_task", "2"])
    with pytest.raises(UsageError, match="--lr 1 x --task_lr_decay 100"):
        parse(ContinualSettings, ["--lr", "1", "--task_lr_decay", "100", "--device", "cpu"])


# ----------------------------------------------------------------------------- the run directory

def call(capsys, entry, *argv):
    code = entry.main(list(argv))
    return code, capsys.readouterr()


def snapshot(run_dir):
    out = {}
    for name in sorted(os.listdir(run_dir)):
        if name != records.LOCK_FILE:
            with open(os.path.join(run_dir, name), "rb") as f:
                out[name] = f.read()
    return out


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("settings") / "run")
    assert example_cifar.main([*SMALL, "--minimizer", "SGD", "--out", out]) == 0
    return out


def copy_of(run_dir, tmp_path, name="copy"):
    target = str(tmp_path / name)
    shutil.copytree(run_dir, target)
    return target


@pytest.mark.parametrize("left", [[records.CONFIG_FILE, records.CHECKPOINT_FILE, records.METRICS_FILE],
                                  [records.CHECKPOINT_FILE], [records.METRICS_FILE]])
def test_a_directory_with_any_run_file_is_a_run(one_epoch_run, tmp_path, capsys, left):
    out = copy_of(one_epoch_run, tmp_path)
    for name in set(records.RUN_FILES) - set(left):
        os.unlink(os.path.join(out, name))
    before = snapshot(out)
    code, output = call(capsys, example_cifar, *SMALL, "--minimizer", "SGD", "--out", out)
    assert code == records.EXIT_USAGE and "--resume" in output.err and output.err.count("\n") == 1
    assert snapshot(out) == before          # nothing overwritten
    if records.CONFIG_FILE not in left:     # and --resume cannot continue what it cannot check
        code, output = call(capsys, example_cifar, "--out", out, "--resume")
        assert code == records.EXIT_USAGE and "no config.json" in output.err
        assert snapshot(out) == before


def test_resume_without_a_summary_keeps_the_recorded_settings(one_epoch_run, tmp_path, capsys):
    out = copy_of(one_epoch_run, tmp_path)
    os.unlink(os.path.join(out, records.SUMMARY_FILE))
    before = snapshot(out)
    code, output = call(capsys, example_cifar, "--out", out, "--resume", "--lr", "0.5", "--epochs", "2")
    assert code == records.EXIT_USAGE and "--lr 0.5 differs from the run's 0.1" in output.err
    assert snapshot(out) == before


@pytest.mark.parametrize("key, value, fragment", [
    ("lr", "0.1", "lr: expected a number"),
    ("batch_size", -64, "batch_size: must be >= 2"),
    ("model", "vgg11", "unknown model"),
    ("minimizer_hparams", {"bn_policy": "every", "rho": 0.1}, "SGD takes exactly bn_policy"),
    ("lr", 0.2, "trained with lr 0.1"),          # valid, but not what the checkpoint was trained with
])
def test_a_hand_edited_config_on_resume_is_one_line_and_changes_nothing(one_epoch_run, tmp_path, capsys,
                                                                        key, value, fragment):
    out = copy_of(one_epoch_run, tmp_path)
    path = os.path.join(out, records.CONFIG_FILE)
    config = records.read_json(path)
    config[key] = value
    records.atomic_write_json(path, config)
    before = snapshot(out)
    code, output = call(capsys, example_cifar, "--out", out, "--resume", "--epochs", "2")
    assert code == records.EXIT_USAGE and fragment in output.err, output.err
    assert output.err.startswith("error: ") and output.err.count("\n") == 1
    assert snapshot(out) == before          # the summary still says completed, config.json untouched


def test_a_cosine_run_is_not_extended_and_a_multistep_one_follows_its_milestones(tmp_path, capsys):
    cosine = str(tmp_path / "cosine")
    assert example_cifar.main([*SMALL, "--minimizer", "SGD", "--schedule", "cosine", "--out", cosine]) == 0
    before = snapshot(cosine)
    code, output = call(capsys, example_cifar, "--out", cosine, "--resume", "--epochs", "2")
    assert code == records.EXIT_USAGE and "cosine schedule" in output.err
    assert snapshot(cosine) == before
    # multistep: 1 epoch, then --epochs 3 with a milestone at 2, equals 3 epochs straight
    flags = [*SMALL[:-2], "--minimizer", "SGD", "--milestones", "2"]
    straight, extended = str(tmp_path / "straight"), str(tmp_path / "extended")
    assert example_cifar.main([*flags, "--epochs", "3", "--out", straight]) == 0
    assert example_cifar.main([*flags, "--epochs", "1", "--out", extended]) == 0
    capsys.readouterr()
    assert example_cifar.main(["--out", extended, "--resume", "--epochs", "3"]) == 0
    rows = [records.read_json(os.path.join(d, records.SUMMARY_FILE)) for d in (straight, extended)]
    assert rows[0]["final_test_acc"] == rows[1]["final_test_acc"] and rows[1]["epochs_completed"] == 3
    with open(os.path.join(extended, records.METRICS_FILE)) as f:
        lrs = [line.split(",")[1] for line in f.read().splitlines()[1:]]
    assert [float(lr) for lr in lrs] == pytest.approx([0.1, 0.1, 0.01])


def test_resume_header_labels_defaults_by_value_not_by_what_was_typed(one_epoch_run, tmp_path, capsys):
    out = str(tmp_path / "lb")
    assert example_cifar.main([*SMALL, "--minimizer", "Lookbehind_SAM", "--k", "3", "--out", out]) == 0
    code, output = call(capsys, example_cifar, "--out", out, "--resume", "--epochs", "2")
    assert code == 0
    assert "k=3," in output.out and "k=3 (default)" not in output.out and "rho=0.05 (default)" in output.out


def test_non_finite_training_from_finite_inputs_is_diverged(tmp_path, capsys):
    out = str(tmp_path / "huge")
    code, output = call(capsys, example_cifar, *SMALL, "--minimizer", "SAM", "--lr", "1e6", "--out", out)
    assert code == records.EXIT_DIVERGED and "Traceback" not in output.err
    assert records.read_json(os.path.join(out, records.SUMMARY_FILE))["status"] == records.STATUS_DIVERGED


def test_the_cli_reference_is_current():
    from training.settings import reference_markdown
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "cli.md")) as f:
        assert f.read() == reference_markdown(), "regenerate: python -m training.settings > docs/cli.md"


def test_eval_every_skips_evaluations_and_changes_no_result(tmp_path, capsys):
    import torch
    flags = [*SMALL[:-2], "--minimizer", "Lookbehind_SAM", "--alpha", "-1", "--epochs", "3"]
    every, sparse = str(tmp_path / "every"), str(tmp_path / "sparse")
    assert example_cifar.main([*flags, "--out", every]) == 0
    assert example_cifar.main([*flags, "--eval_every", "2", "--out", sparse]) == 0
    assert "not evaluated" in capsys.readouterr().out
    with open(os.path.join(sparse, records.METRICS_FILE)) as f:
        rows = [line.split(",") for line in f.read().splitlines()[1:]]
    test_acc = records.METRIC_COLUMNS.index("test_acc")
    with open(os.path.join(every, records.METRICS_FILE)) as f:
        reference = [line.split(",") for line in f.read().splitlines()[1:]]
    assert [row[test_acc] for row in rows] == ["", reference[1][test_acc], reference[2][test_acc]]  # epochs 2, 3
    a, b = (torch.load(os.path.join(d, records.CHECKPOINT_FILE), weights_only=True) for d in (every, sparse))
    assert all(torch.equal(value, b["model"][key]) for key, value in a["model"].items())
    summary = records.read_json(os.path.join(sparse, records.SUMMARY_FILE))
    assert summary["final_test_acc"] == float(reference[2][test_acc]) and summary["best_epoch"] in (2, 3)


def test_adamw_base_optimizer_trains_and_resumes_bit_for_bit(tmp_path, capsys):
    import torch
    flags = [*SMALL[:-2], "--optimizer", "adamw", "--lr", "0.001", "--weight_decay", "0.05", "--betas", "0.9", "0.99",
             "--minimizer", "Lookbehind_SAM", "--alpha", "-1"]
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    assert example_cifar.main([*flags, "--epochs", "2", "--out", straight]) == 0
    assert example_cifar.main([*flags, "--epochs", "1", "--out", resumed]) == 0
    assert example_cifar.main(["--out", resumed, "--resume", "--epochs", "2"]) == 0
    a, b = (torch.load(os.path.join(d, records.CHECKPOINT_FILE), weights_only=True) for d in (straight, resumed))
    assert all(torch.equal(value, b["model"][key]) for key, value in a["model"].items())
    assert "exp_avg_sq" in str(a["minimizer"])          # the base optimizer's state is AdamW's
    config = records.read_json(os.path.join(straight, records.CONFIG_FILE))
    assert (config["optimizer"], config["betas"], config["eps"], config["momentum"]) == ("adamw", [0.9, 0.99], 1e-8, None)
    code, output = call(capsys, example_cifar, "--out", resumed, "--resume", "--optimizer", "sgd")
    assert code == records.EXIT_USAGE and "--optimizer sgd differs" in output.err


@pytest.mark.parametrize("argv, fragment", [
    (["--optimizer", "adamw", "--momentum", "0.9"], "--momentum is an SGD setting"),
    (["--betas", "0.9", "0.99"], "--betas is an AdamW setting"),
    (["--eps", "1e-6"], "--eps is an AdamW setting"),
    (["--optimizer", "adamw", "--betas", "0.9"], "two values"),
    (["--optimizer", "adamw", "--betas", "0.9", "1"], "--betas: must be < 1"),
    (["--optimizer", "lamb"], "--optimizer"),
])
def test_a_flag_of_the_other_base_optimizer_is_refused(argv, fragment):
    for settings_class in (CifarSettings, ContinualSettings):
        with pytest.raises(UsageError, match=fragment):
            parse(settings_class, ["--device", "cpu", *argv])


def test_resume_reads_the_run_settings_before_judging_typed_flags(tmp_path, capsys):
    """--betas alone would be refused on a new run (an AdamW flag without --optimizer adamw); on an AdamW run's
    resume it is the run's own value, so it is accepted."""
    out = str(tmp_path / "adamw")
    flags = [*SMALL, "--optimizer", "adamw", "--lr", "0.001", "--minimizer", "SGD", "--out", out]
    assert example_cifar.main(flags) == 0
    code, output = call(capsys, example_cifar, "--out", out, "--resume", "--betas", "0.9", "0.999", "--epochs", "2")
    assert code == 0, output.err
    code, output = call(capsys, example_cifar, "--out", out, "--resume", "--betas", "0.8", "0.999", "--epochs", "3")
    assert code == records.EXIT_USAGE and "--betas 0.8 0.999 differs" in output.err
