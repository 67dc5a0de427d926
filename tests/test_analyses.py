"""scripts.analyses.noisy_weights and scripts.analyses.sharpness: estimators against closed forms, CLI end to end, bad input.

Sharpness: a linear model with the loss (x.w - y)^2 / 2 has the Hessian X^T X / n exactly, so the power
iteration, Hutchinson's trace and the worst-case loss increase (a trust-region problem, solved here by a
dense search over the ball's boundary in 2-D) have exact answers to compare with.
"""
import json
import math
import os
import shutil
from contextlib import nullcontext

import pytest
import torch

import example_cifar
from scripts.analyses import noisy_weights
from scripts.analyses import sharpness
from scripts.analyses.trained import load_run, load_data
from training import records
from training.loop import evaluate

SMALL = ["--dataset", "CIFAR10_sample", "--model", "resnet8", "--train_subset", "128", "--batch_size", "32",
         "--device", "cpu", "--seed", "0", "--epochs", "1"]


# ------------------------------------------------------------------------------- closed forms
def half_squared_error(outputs, targets):
    return 0.5 * ((outputs.squeeze(1) - targets) ** 2).mean()


def linear_problem(dimension=6, samples=40, seed=0, diagonal=False):
    generator = torch.Generator().manual_seed(seed)
    if diagonal:   # orthogonal columns: a diagonal Hessian
        inputs = torch.zeros(samples, dimension)
        for i in range(dimension):
            inputs[i, i] = math.sqrt(samples * (i + 1.0))
    else:
        inputs = torch.randn(samples, dimension, generator=generator) * torch.linspace(0.5, 3.0, dimension)
    targets = torch.randn(samples, generator=generator)
    model = torch.nn.Linear(dimension, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, dimension, generator=generator))
    batches = [(inputs[:25], targets[:25]), (inputs[25:], targets[25:])]   # uneven: weighting matters
    hessian = inputs.T @ inputs / samples
    return model, [model.weight], batches, hessian


@pytest.mark.parametrize("hvp", ["autograd", "finite_difference"])
def test_top_eigenvalue_and_trace_match_the_exact_hessian(hvp):
    model, params, batches, hessian = linear_problem()
    generator = torch.Generator().manual_seed(0)
    eigenvalue, change = sharpness.top_eigenvalue(model, params, batches, half_squared_error, 200, generator,
                                                  sharpness.HVP[hvp])
    assert eigenvalue.item() == pytest.approx(torch.linalg.eigvalsh(hessian).max().item(), rel=1e-4)
    assert change.item() < 1e-5
    model, params, batches, hessian = linear_problem(diagonal=True)
    trace = sharpness.hutchinson_trace(model, params, batches, half_squared_error, 3, generator, sharpness.HVP[hvp])
    assert trace.item() == pytest.approx(torch.trace(hessian).item(), rel=1e-4)   # exact for a diagonal H


def exact_worst_case(model, batches, scales, radius, points=200_000):
    """max over the boundary ||delta|| = r (eps = T delta) of L(w + eps) - L(w), by dense search in 2-D."""
    inputs = torch.cat([x for x, _ in batches]).double()
    targets = torch.cat([y for _, y in batches]).double()
    w = model.weight.detach().double().reshape(-1)
    angles = torch.linspace(0, 2 * math.pi, points, dtype=torch.float64)
    delta = radius * torch.stack([angles.cos(), angles.sin()], dim=1)
    eps = delta * (scales[0].double().reshape(-1) if scales is not None else 1.0)
    loss = lambda weights: 0.5 * ((inputs @ weights.T - targets[:, None]) ** 2).mean(0)
    return (loss(w[None] + eps).max() - loss(w[None])[0]).item()


@pytest.mark.parametrize("ball", ["l2", "asam"])
def test_worst_case_increase_matches_the_trust_region_maximum(ball):
    model, params, batches, _ = linear_problem(dimension=2)
    scales = sharpness.ball_scales(["weight"], params, ball, asam_eta=0.01)
    before = model.weight.detach().clone()
    for radius in (0.05, 0.5):
        estimate = sharpness.worst_case_increase(model, params, batches, half_squared_error, radius, scales,
                                                 steps=60, step_size=0.2, autocast=nullcontext)
        exact = exact_worst_case(model, batches, scales, radius)
        assert estimate.item() == pytest.approx(exact, rel=2e-3)
        one_step = sharpness.worst_case_increase(model, params, batches, half_squared_error, radius, scales,
                                                 steps=1, step_size=0.2, autocast=nullcontext)
        assert 0 < one_step.item() <= estimate.item() + 1e-6   # SAM's single step is a lower bound
    assert torch.equal(model.weight, before)                    # the weights are restored
    assert sharpness.worst_case_increase(model, params, batches, half_squared_error, 0.0, scales, 5, 0.5,
                                         nullcontext).item() == 0.0
    if ball == "asam":
        assert torch.allclose(scales[0], before.abs() + 0.01)


# ------------------------------------------------------------------------------- noise models
@pytest.mark.parametrize("noise", ["additive", "multiplicative"])
def test_noise_models_have_the_stated_scale(noise):
    clean = [torch.linspace(-1.0, 3.0, 200_000).reshape(400, 500)]
    noisy = [torch.empty_like(clean[0])]
    noisy_weights.add_noise(noisy, clean, 0.05, noise, torch.Generator().manual_seed(0))
    relative = (noisy[0] - clean[0]) / (4.0 if noise == "additive" else clean[0])
    assert relative.std().item() == pytest.approx(0.05, rel=0.02)
    noisy_weights.add_noise(noisy, clean, 0.0, noise, torch.Generator().manual_seed(0))
    assert torch.equal(noisy[0], clean[0])


def test_perturbed_tensor_selection():
    import models
    model = models.create_model("resnet8")
    default = noisy_weights.perturbed_tensors(model)
    with_bn = noisy_weights.perturbed_tensors(model, include_batchnorm=True)
    convs_linear = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(default) == sum(len(list(m.parameters(recurse=False))) for m in convs_linear)
    assert len(with_bn) == len(list(model.parameters()))


# ------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    runs = []
    for name, flags in (("sgd", ["--minimizer", "SGD"]),
                        ("lb", ["--minimizer", "Lookbehind_SAM", "--alpha", "-1", "--minibatch_switching"])):
        out = str(root / name)
        assert example_cifar.main([*SMALL, *flags, "--out", out]) == 0
        runs.append(out)
    return runs


def count_host_reads(monkeypatch):
    reads = []
    for name in ["item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__"]:
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _n=name, _o=original, **k: (reads.append(_n), _o(self, *a, **k))[1])
    return reads


def test_noisy_weights_clean_accuracy_and_one_read_per_checkpoint(trained_runs, tmp_path, monkeypatch, capsys):
    for run_dir in trained_runs:
        run = load_run(run_dir, torch.device("cpu"))
        dataset = load_data(run.config, torch.device("cpu"))
        _, clean = evaluate(run.model, run.model, dataset, True, nullcontext)   # channels_last, as training on a CPU
        summary = records.read_json(os.path.join(run_dir, records.SUMMARY_FILE))
        assert clean == summary["final_test_acc"]   # evaluation weights = what training evaluated
        reads = count_host_reads(monkeypatch)
        accuracies = noisy_weights.noisy_accuracies(run.model, dataset, [0.0, 0.05, 0.5], 3, "additive", False, 0,
                                                    True, nullcontext)
        monkeypatch.undo()
        assert reads == ["tolist"]
        assert accuracies[0] == [clean] and len(accuracies[1]) == 3
        assert sum(accuracies[2]) / 3 < clean   # heavy noise hurts

    out = str(tmp_path / "nw.csv")
    assert noisy_weights.main([*trained_runs, "--eta", "0", "0.1", "--draws", "2", "--device", "cpu", "--out", out]) == 0
    import pandas as pd
    frame = pd.read_csv(out)
    assert len(frame) == 2 * (1 + 2) and set(frame["label"]) == {"SGD", "Lookbehind-SAM + switching"}
    assert os.path.getsize(str(tmp_path / "nw.png")) > 10_000


def test_sharpness_end_to_end_and_no_reads_inside(trained_runs, tmp_path, monkeypatch):
    run = load_run(trained_runs[0], torch.device("cpu"))
    dataset = load_data(run.config, torch.device("cpu"))
    args = sharpness.build_parser().parse_args([trained_runs[0], "--radius", "0.05", "--asam_radius", "0.5",
                                                "--steps", "2", "--images", "64", "--power_iterations", "2",
                                                "--trace_samples", "1"])
    batches = sharpness.training_subset(dataset, 64, 0, 32, False)
    reads = count_host_reads(monkeypatch)
    results = sharpness.measure(run.model, batches, args, nullcontext)
    monkeypatch.undo()
    assert reads == [] and {r[0] for r in results} >= {"loss", "worst_case_increase", "top_eigenvalue", "hessian_trace"}
    out = str(tmp_path / "sharp.csv")
    assert sharpness.main([*trained_runs, "--radius", "0.02", "0.05", "--asam_radius", "0.5", "--steps", "2",
                           "--images", "64", "--power_iterations", "2", "--hvp", "finite_difference",
                           "--device", "cpu", "--out", out]) == 0
    import pandas as pd
    frame = pd.read_csv(out)
    increases = frame[frame["measure"] == "worst_case_increase"]
    assert len(increases) == 2 * 3 and (increases["value"] >= 0).all()
    assert os.path.getsize(str(tmp_path / "sharp.png")) > 10_000


@pytest.mark.parametrize("script", ["noisy_weights", "sharpness"])
def test_bad_input_one_line_exit_2_no_output(script, trained_runs, tmp_path, capsys):
    module = {"noisy_weights": noisy_weights, "sharpness": sharpness}[script]
    grid = "--eta" if script == "noisy_weights" else "--radius"
    empty = tmp_path / "empty"
    empty.mkdir()
    other = tmp_path / "other_model"
    shutil.copytree(trained_runs[0], other)
    config = json.loads((other / "config.json").read_text())
    config["model"] = "resnet20"
    (other / "config.json").write_text(json.dumps(config))
    out = str(tmp_path / "out.csv")
    for argv, fragment in (([str(empty)], "no checkpoint.pt"),
                           ([str(tmp_path / "missing")], "no such run directory"),
                           ([str(other)], "does not hold a resnet20"),
                           ([trained_runs[0], grid, "-0.1"], ">= 0"),
                           ([trained_runs[0], grid, "nan"], ">= 0"),
                           ([trained_runs[0], grid], "expected at least one argument"),
                           ([trained_runs[0], str(empty)], "no checkpoint.pt")):   # a good run first: still no CSV
        assert module.main([*argv, "--device", "cpu", "--out", out]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err
        assert not os.path.exists(out) and not os.path.exists(str(tmp_path / "out.png"))


@pytest.mark.parametrize("script", ["noisy_weights", "sharpness"])
def test_an_unwritable_out_is_refused_before_any_evaluation(script, trained_runs, tmp_path, monkeypatch, capsys):
    module = {"noisy_weights": noisy_weights, "sharpness": sharpness}[script]
    monkeypatch.setattr(module, "load_runs", lambda *args, **kwargs: pytest.fail("work started before --out was checked"))
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory\n")
    (tmp_path / "taken.png").mkdir()
    for out, fragment in ((blocker / "new" / "out.csv", f"--out {blocker / 'new' / 'out.csv'}: {blocker} is not a directory"),
                          (tmp_path, f"--out {tmp_path} is a directory, not a file"),
                          (tmp_path / "taken.csv", f"figure (next to --out) {tmp_path / 'taken.png'} is a directory")):
        assert module.main([*trained_runs, "--device", "cpu", "--out", str(out)]) == records.EXIT_USAGE
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err
    assert sorted(os.listdir(tmp_path)) == ["a_file", "taken.png"]


def copy_with_status(run_dir, dest, status=None):
    """A copy of a trained run whose summary.json says `status` (None: no summary.json at all)."""
    shutil.copytree(run_dir, dest)
    path = dest / records.SUMMARY_FILE
    if status is None:
        path.unlink()
    else:
        path.write_text(json.dumps({**json.loads(path.read_text()), "status": status}))
    return dest


QUICK = {"noisy_weights": ["--eta", "0", "0.1", "--draws", "1"],
         "sharpness": ["--radius", "0.05", "--asam_radius", "0.5", "--steps", "1", "--images", "32",
                       "--power_iterations", "0"]}


@pytest.mark.parametrize("script", ["noisy_weights", "sharpness"])
def test_runs_that_did_not_complete_are_refused_unless_included(script, trained_runs, tmp_path, capsys):
    import pandas as pd
    module = {"noisy_weights": noisy_weights, "sharpness": sharpness}[script]
    diverged = copy_with_status(trained_runs[0], tmp_path / "diverged", records.STATUS_DIVERGED)
    killed = copy_with_status(trained_runs[0], tmp_path / "killed", records.STATUS_RUNNING)   # nobody holds its lock
    unknown = copy_with_status(trained_runs[0], tmp_path / "unknown", None)
    out = tmp_path / "out.csv"
    for run_dir, status in ((diverged, records.STATUS_DIVERGED), (killed, records.STATUS_CRASHED),
                            (unknown, records.STATUS_INCOMPLETE)):
        assert module.main([trained_runs[1], str(run_dir), *QUICK[script], "--device", "cpu", "--out", str(out)]) == 2
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {run_dir}: the run is {status}, not "
                                                   f"{records.STATUS_COMPLETED}") and "--include-incomplete" in err[0], err
        assert captured.out == "" and not out.exists()   # refused before any work
    assert module.main([trained_runs[1], str(diverged), *QUICK[script], "--include-incomplete", "--device", "cpu",
                        "--out", str(out)]) == 0
    assert f"{diverged} ({records.STATUS_DIVERGED}, 1 epoch): " in capsys.readouterr().out
    frame = pd.read_csv(out)
    assert list(frame.columns[:5]) == ["run_dir", "label", "seed", "status", "epoch"]
    assert dict(zip(frame["run_dir"], frame["status"])) == {trained_runs[1]: records.STATUS_COMPLETED,
                                                            str(diverged): records.STATUS_DIVERGED}
    assert set(frame["epoch"]) == {1}


def test_sharpness_shows_a_progress_bar_over_runs_and_measures_on_a_terminal(trained_runs, tmp_path, monkeypatch,
                                                                               capsys):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    argv = [*trained_runs, *QUICK["sharpness"], "--trace_samples", "1", "--device", "cpu", "--out", str(tmp_path / "s.csv")]
    assert sharpness.main(argv) == 0
    units = len(trained_runs) * (1 + 1 + 1 + 1)   # per run: loss, one l2 radius, one ASAM radius, the trace
    bar = terminal.getvalue()
    assert f"{units}/{units}" in bar and "sharpness: 100%" in bar and "measure" in bar, bar
    printed = capsys.readouterr().out   # the per-run lines still go to stdout
    assert all(f"{run_dir}: loss " in printed for run_dir in trained_runs)
    monkeypatch.undo()
    assert sharpness.main(argv) == 0    # stderr not a terminal (a log file, CI): no bar
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------------------- table and alpha figure
def test_analysis_table_means_over_seeds(tmp_path, capsys):
    import pandas as pd
    from scripts.reports import analysis_table
    noisy = pd.DataFrame({"label": ["SGD", "SGD", "SGD", "SGD", "SAM"], "seed": [0, 1, 0, 0, 0],
                          "eta": [0.0, 0.0, 0.1, 0.1, 0.0], "test_acc": [40.0, 42.0, 30.0, 34.0, 45.0]})
    sharp = pd.DataFrame({"label": ["SGD", "SGD", "SAM"], "seed": [0, 1, 0], "measure": ["worst_case_increase"] * 3,
                          "ball": ["l2"] * 3, "radius": [0.05] * 3, "value": [0.1, 0.3, 0.05]})
    noisy.to_csv(tmp_path / "n.csv", index=False)
    sharp.to_csv(tmp_path / "s.csv", index=False)
    out = tmp_path / "t.md"
    assert analysis_table.main(["--noisy", str(tmp_path / "n.csv"), "--sharpness", str(tmp_path / "s.csv"),
                                "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("| minimizer | seeds | clean test acc (%) | acc, noise η=0.1 | worst-case Δloss l2 r=0.05")
    assert lines[2] == "| SGD | 2 | 41.00 ± 1.41 | 32.00 ± 2.83 | 0.2 ± 0.14 |"
    assert lines[3] == "| SAM | 1 | 45.00 |  | 0.05 |"
    # the drop table: each seed against its own clean accuracy, the mean over draws (seed 0: 40 - (30 + 34) / 2)
    assert lines[5:8] == ["| minimizer | seeds | accuracy lost, η=0.1 (points) |", "|---|---|---|", "| SGD | 2 | 8.00 |"]
    assert lines[8] == "| SAM | 1 |  |"
    assert analysis_table.main(["--noisy", str(tmp_path / "missing.csv")]) == 2
    capsys.readouterr()


def test_alpha_figure(trained_runs, tmp_path, capsys):
    from scripts.reports import collect, figures
    assert collect.main([os.path.dirname(trained_runs[0]), "--sweep", "t", "--out", str(tmp_path / "res")]) == 0
    assert figures.main(["alpha", str(tmp_path / "res"), "--formats", "png"]) == 0
    assert os.path.getsize(tmp_path / "res" / "figures" / "alpha_CIFAR10_sample_resnet8.png") > 10_000
    assert figures.main(["alpha", str(tmp_path / "res"), "--formats", "png", "--where", "minimizer=SGD"]) == 2
    capsys.readouterr()


def test_run_labels_keep_lookbehind_settings_apart():
    from scripts.analyses.trained import run_label
    lookbehind = {"minimizer": "Lookbehind_SAM", "minimizer_hparams": {"rho": 0.05, "k": 2, "alpha": -1}}
    assert run_label(lookbehind) == "Lookbehind-SAM"
    assert run_label({**lookbehind, "minimizer_hparams": {"k": 2, "alpha": 0.5}}) == "Lookbehind-SAM alpha=0.5"
    assert run_label({"minimizer": "Lookbehind_ASAM", "minimizer_hparams": {"k": 5, "alpha": -1,
                                                                            "minibatch_switching": True}}) == \
        "Lookbehind-ASAM k=5 + switching"
    assert run_label({"minimizer": "SAM", "minimizer_hparams": {"rho": 0.05}}) == "SAM"


def test_sharpness_figure_panels():
    """A ball measured at several radii is a line over them; at one radius, a strip of seeds per minimizer
    (a line through one point would show nothing); no eigenvalue, no eigenvalue panel; nothing, no figure."""
    import pandas as pd
    rows = []
    for label, base in (("SGD", 1.0), ("SAM", 0.5)):
        for seed in (0, 1, 2):
            rows += [(label, seed, "worst_case_increase", "l2", 0.05, base + seed),
                     (label, seed, "worst_case_increase", "l2", 0.1, 2 * base + seed),
                     (label, seed, "worst_case_increase", "asam", 0.5, 3 * base + seed),
                     (label, seed, "top_eigenvalue", "", 0.0, 100 * base + seed)]
    frame = pd.DataFrame(rows, columns=["label", "seed", "measure", "ball", "radius", "value"])
    fig = sharpness.draw(frame)
    l2, asam, eig = fig.axes
    assert "ℓ2" in l2.get_title() and len(l2.get_lines()) == 2                     # one line per minimizer
    assert list(l2.get_lines()[0].get_xdata()) == [0.05, 0.1]
    assert "r = 0.5" in asam.get_title() and [t.get_text() for t in asam.get_xticklabels()] == ["SGD", "SAM"]
    sam_dots = asam.collections[1].get_offsets()[:, 1]
    assert sorted(sam_dots) == [1.5, 2.5, 3.5] and asam.get_lines()[1].get_ydata()[0] == pytest.approx(2.5)
    assert "eigenvalue" in eig.get_title()
    assert len(sharpness.draw(frame[frame["measure"] != "top_eigenvalue"]).axes) == 2
    assert sharpness.draw(frame[frame["measure"] == "loss"]) is None
