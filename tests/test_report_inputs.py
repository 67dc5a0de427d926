"""The report scripts and the post-training analyses refuse bad input with one clear line.

The project's convention (training/records.py): a user error is records.UsageError, printed as one line
"error: <message>" on stderr, exit status records.EXIT_USAGE (2), no traceback, nothing written.
Checked here for scripts/reports/collect.py, tables.py, figures.py, continual_table.py, analysis_table.py,
noisy_weights.py and sharpness.py (their numbers: tests/test_sweeps.py, tests/test_analyses.py).
"""
import json
import os

import pandas as pd
import pytest

from scripts import common
from training import records


def one_error_line(capsys, fragment=""):
    """The captured stderr is one line 'error: ...' holding fragment; returns that line."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err
    assert "Traceback" not in err and "usage:" not in err, err
    return lines[0]


def files_under(path):
    return sorted(os.path.relpath(os.path.join(d, f), path) for d, _, names in os.walk(path) for f in names)


def make_run(root, name, minimizer="SAM", seed=0, accs=(50.0, 60.0), status=records.STATUS_COMPLETED):
    """A fabricated example_cifar.py run directory (config.json, metrics.csv, summary.json)."""
    run_dir = os.path.join(str(root), name)
    os.makedirs(run_dir)
    config = {"dataset": "CIFAR10", "model": "resnet20", "minimizer": minimizer, "rho": 0.05, "seed": seed,
              "epochs": len(accs), "lr": 0.1, "minimizer_hparams": {"rho": 0.05}}
    with open(os.path.join(run_dir, records.CONFIG_FILE), "w") as f:
        json.dump(config, f)
    rows = [{**{column: 0.625 for column in records.METRIC_COLUMNS}, "epoch": e, "lr": 0.1, "train_loss": 1.0 / e,
             "test_acc": acc} for e, acc in enumerate(accs, 1)]
    records.write_metrics_csv(os.path.join(run_dir, records.METRICS_FILE), rows)
    with open(os.path.join(run_dir, records.SUMMARY_FILE), "w") as f:
        json.dump({"status": status, "epochs_completed": len(accs), "final_test_acc": accs[-1],
                   "best_test_acc": max(accs), "best_epoch": accs.index(max(accs)) + 1, "wall_seconds": 1.0}, f)
    return run_dir


@pytest.fixture
def results(tmp_path):
    """A collected sweep of 2 minimizers x 2 seeds: tmp_path/results/{runs,grouped,curves}.csv."""
    from scripts.reports import collect
    for minimizer in ("SAM", "Lookbehind_SAM"):
        for seed in (0, 1):
            make_run(tmp_path / "runs", f"{minimizer}_s{seed}", minimizer, seed, accs=(50.0 + seed, 60.0 + seed))
    out = tmp_path / "results"
    collect.collect([str(tmp_path / "runs")], "t", str(out), quiet=True)
    return out


# ------------------------------------------------------------------------------- one user error
def test_the_scripts_raise_the_projects_one_user_error(capsys):
    assert not hasattr(common, "UserError")
    frame = pd.DataFrame({"a": [1, 2]})
    with pytest.raises(records.UsageError, match="expected COLUMN=VALUE"):
        common.apply_where(frame, ["a"])
    with pytest.raises(records.UsageError, match="no column 'b'"):
        common.apply_where(frame, ["b=1"])

    def fails(argv):
        raise records.UsageError("bad\ninput")
    assert common.run_main(fails, []) == records.EXIT_USAGE == 2
    assert one_error_line(capsys) == "error: bad input"


# ------------------------------------------------------------------------------- status names
REPORT_SCRIPTS = ("common", "reports/collect", "reports/tables", "reports/figures", "reports/continual_table",
                  "reports/analysis_table", "analyses/noisy_weights", "analyses/sharpness", "analyses/trained",
                  "launch/sweep")


def string_constants(path):
    """Every string constant of a module but its docstrings."""
    import ast
    tree = ast.parse(open(path).read())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


@pytest.mark.parametrize("script", REPORT_SCRIPTS)
def test_status_names_come_from_the_records_module(script):
    """collect, continual_table, figures, ... compare statuses with records.STATUS_*, never a spelled string."""
    statuses = set(records.STATUSES) | {records.STATUS_CRASHED, records.STATUS_RUNNING_ELSEWHERE,
                                        records.STATUS_INCOMPLETE, records.STATUS_INVALID}
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", f"{script}.py")
    spelled = [value for value in string_constants(path) if value in statuses]
    assert not spelled, f"scripts/{script}.py spells the statuses {spelled}: use training.records.STATUS_*"


# ------------------------------------------------------------------------------- item: one-line parse errors
def script(name):
    import importlib
    group = {"noisy_weights": "analyses", "sharpness": "analyses", "trained": "analyses", "sweep": "launch"}
    return importlib.import_module(f"scripts.{group.get(name, 'reports')}.{name}")


@pytest.mark.parametrize("name, argv, fragment", [
    ("collect", [], "the following arguments are required: roots"),
    ("collect", ["runs", "--bogus"], "unrecognized arguments: --bogus"),
    ("tables", ["results", "--metric", "median"], "invalid choice: 'median'"),
    ("figures", ["heatmap", "results"], "invalid choice: 'heatmap'"),
    ("figures", ["curves"], "the following arguments are required: results"),
    ("continual_table", [], "the following arguments are required: results"),
    ("continual_table", ["results", "--paired"], "expected one argument"),
    ("analysis_table", ["--noisy"], "expected one argument"),
    ("noisy_weights", ["run", "--draws", "0"], "must be >= 1"),
    ("sharpness", ["run", "--hvp", "lanczos"], "invalid choice: 'lanczos'"),
])
def test_parse_errors_are_one_line_error_exit_2(name, argv, fragment, tmp_path, monkeypatch, capsys):
    """argparse would print the usage block and '<prog>: error: ...'; the project's line is 'error: ...'."""
    monkeypatch.chdir(tmp_path)
    assert script(name).main(argv) == records.EXIT_USAGE
    one_error_line(capsys, fragment)
    assert files_under(tmp_path) == []


def test_the_command_line_itself_prints_one_line(tmp_path):
    """python -m scripts.reports.tables (the real entry point, sys.exit(main())): exit 2, one stderr line, no usage."""
    import subprocess
    import sys
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-m", "scripts.reports.tables", str(tmp_path), "--metric", "median"], cwd=repo,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == records.EXIT_USAGE and done.stdout == ""
    assert done.stderr.startswith("error: argument --metric: invalid choice: 'median'") and done.stderr.count("\n") == 1


# ------------------------------------------------------------------------------- item: --digits, --formats
@pytest.mark.parametrize("value, fragment", [("-3", "must be an integer from 0 to 10, got -3"),
                                             ("11", "must be an integer from 0 to 10, got 11"),
                                             ("1.5", "expected an integer from 0 to 10, got '1.5'")])
def test_digits_is_checked_when_parsed(value, fragment, results, capsys):
    from scripts.reports import continual_table, tables
    before = files_under(results)
    for argv in ([str(results), "--digits", value], [str(results), f"--digits={value}"]):
        assert tables.main(argv) == records.EXIT_USAGE
        one_error_line(capsys, f"argument --digits: {fragment}")
        assert continual_table.main(argv) == records.EXIT_USAGE
        one_error_line(capsys, f"argument --digits: {fragment}")
    assert files_under(results) == before
    assert tables.main([str(results), "--digits", "0"]) == 0
    assert "| **60 ± 1** (2) |" in (results / "table_best.md").read_text()


@pytest.mark.parametrize("value, fragment", [("xyz", "matplotlib cannot save 'xyz'; choose from "),
                                             ("png,xyz", "matplotlib cannot save 'xyz'"),
                                             (",", "expected comma-separated formats such as png,pdf")])
def test_formats_are_checked_when_parsed(value, fragment, results, capsys):
    from scripts.reports import figures
    before = files_under(results)
    assert figures.main(["curves", str(results), "--formats", value]) == records.EXIT_USAGE
    assert "png" in one_error_line(capsys, f"argument --formats: {fragment}") or value == ","
    assert files_under(results) == before   # no figure, no figures/ directory


def test_a_format_matplotlib_cannot_write_here_is_refused_before_drawing(results, monkeypatch, capsys):
    import matplotlib.figure
    from scripts.reports import figures
    original = matplotlib.figure.Figure.savefig

    def savefig(self, fname, *args, format=None, **kwargs):
        if format == "svg":
            raise RuntimeError("no svg writer here")
        return original(self, fname, *args, format=format, **kwargs)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    before = files_under(results)
    assert figures.main(["curves", str(results), "--formats", "png,svg"]) == records.EXIT_USAGE
    one_error_line(capsys, "argument --formats: matplotlib cannot save 'svg' here (RuntimeError: no svg writer here)")
    assert files_under(results) == before
    monkeypatch.undo()
    assert figures.main(["curves", str(results), "--formats", "svg"]) == 0
    assert os.path.getsize(results / "figures" / "curves_CIFAR10_resnet20.svg") > 1000


# ------------------------------------------------------------------------------- item: unwritable output
def report_commands(results, out):
    """(script, argv) of every report script writing to `out` (a directory, or analysis_table's file)."""
    noisy = results / "noisy.csv"
    pd.DataFrame({"label": ["SAM"], "seed": [0], "eta": [0.0], "test_acc": [50.0]}).to_csv(noisy, index=False)
    return [("collect", [str(results.parent / "runs"), "--out", str(out)]),
            ("tables", [str(results), "--out", str(out)]),
            ("figures", ["curves", str(results), "--out", str(out)]),
            ("analysis_table", ["--noisy", str(noisy), "--out", str(out / "table.md")])]


def test_an_output_under_a_file_is_refused_before_any_work(results, capsys):
    from scripts.reports import collect
    blocker = results.parent / "a_file"
    blocker.write_text("not a directory\n")
    commands = report_commands(results, blocker / "sub")
    before = files_under(results.parent)
    for name, argv in commands:
        assert script(name).main(argv) == records.EXIT_USAGE, name
        one_error_line(capsys, f"{blocker} is not a directory")
        assert files_under(results.parent) == before, name
    with pytest.raises(records.UsageError, match="output directory .* is not a directory"):   # as scripts.launch.sweep calls it
        collect.collect([str(results.parent / "runs")], "t", str(blocker))


def test_an_output_file_that_is_a_directory_is_refused(results, capsys):
    from scripts.reports import analysis_table, tables
    (results / "table_best.md").mkdir()
    assert tables.main([str(results)]) == records.EXIT_USAGE
    one_error_line(capsys, f"{results / 'table_best.md'} is a directory, not a file")
    assert not (results / "table_best.tex").exists()
    pd.DataFrame({"label": ["SAM"], "seed": [0], "eta": [0.0], "test_acc": [50.0]}).to_csv(results / "n.csv", index=False)
    assert analysis_table.main(["--noisy", str(results / "n.csv"), "--out", str(results)]) == records.EXIT_USAGE
    assert one_error_line(capsys) == f"error: --out {results} is a directory, not a file"
    assert capsys.readouterr().out == ""   # the table is not printed either


def test_an_output_without_write_permission_is_refused(results, monkeypatch, capsys):
    """As root every directory is writable (mode bits aside): os.access is what the check asks, faked here."""
    locked = results.parent / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: os.path.abspath(path) != str(locked)
                        and real_access(path, mode, **kw))
    report_commands(results, locked)   # its input files first
    before = files_under(results.parent)
    for out in (locked, locked / "new" / "deeper"):   # in it, or directories to be created in it
        for name, argv in report_commands(results, out):
            assert script(name).main(argv) == records.EXIT_USAGE, name
            one_error_line(capsys, f"cannot write in {locked} (permission denied)")
            assert files_under(results.parent) == before, name


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_output_directory_is_refused(results, capsys):
    locked = results.parent / "locked"
    locked.mkdir(mode=0o555)
    for name, argv in report_commands(results, locked):
        assert script(name).main(argv) == records.EXIT_USAGE, name
        one_error_line(capsys, f"cannot write in {locked}")


def test_missing_output_directories_are_created_as_before(results, capsys):
    out = results.parent / "new" / "deeper"
    for name, argv in report_commands(results, out):
        assert script(name).main(argv) == 0, name
    capsys.readouterr()
    assert {"runs.csv", "table_best.md", "curves_CIFAR10_resnet20.png", "table.md"} <= set(files_under(out))


# ------------------------------------------------------------------------------- item: CSVs cut off mid-row
def cut_off(path, keep_fields=None, drop_chars=None):
    """Damage a CSV as an interrupted copy would: the last row keeps only its first keep_fields fields
    (and its line break), or the file loses its last drop_chars characters (no line break at the end)."""
    text = open(path).read()
    if drop_chars:
        text = text[:-drop_chars]
    else:
        lines = text.rstrip("\n").split("\n")
        lines[-1] = ",".join(lines[-1].split(",")[:keep_fields])
        text = "\n".join(lines) + "\n"
    with open(path, "w") as f:
        f.write(text)
    return text.count("\n") + (not text.endswith("\n"))   # the number of the damaged line


@pytest.mark.parametrize("damage", [{"keep_fields": 3}, {"drop_chars": 3}])
def test_collect_lists_a_run_with_a_cut_off_metrics_csv_as_invalid(damage, tmp_path, capsys):
    from scripts.reports import collect
    for seed in (0, 1):
        make_run(tmp_path / "runs", f"s{seed}", seed=seed, accs=(50.0, 60.0 + seed))
    line = cut_off(tmp_path / "runs" / "s1" / records.METRICS_FILE, **damage)
    assert collect.main([str(tmp_path / "runs"), "--out", str(tmp_path / "res")]) == 0
    runs = pd.read_csv(tmp_path / "res" / "runs.csv").set_index("run_name")
    assert runs.loc["s0", "status"] == records.STATUS_COMPLETED
    assert runs.loc["s1", "status"] == records.STATUS_INVALID   # summary.json says completed: not whole, not counted
    expected = (f"metrics.csv line {line} has 3 fields where the header has {len(records.METRIC_COLUMNS)}"
                if damage.get("keep_fields") else f"metrics.csv line {line} is cut off (no line break")
    assert expected in runs.loc["s1", "problem"]
    grouped = pd.read_csv(tmp_path / "res" / "grouped.csv").iloc[0]
    assert (grouped["n_completed"], grouped["n_failed"], grouped["final_test_acc_mean"]) == (1, 1, 60.0)
    printed = capsys.readouterr().out
    assert f"problem in {tmp_path / 'runs' / 's1'}: {expected}" in printed and "invalid: " in printed
    curves = pd.read_csv(tmp_path / "res" / "curves.csv")
    assert set(curves["run_name"]) == {"s0"}


@pytest.mark.parametrize("damage", [{"keep_fields": 2}, {"drop_chars": 2}])
def test_analysis_table_refuses_a_cut_off_csv(damage, tmp_path, capsys):
    from scripts.reports import analysis_table
    noisy, sharp = tmp_path / "noisy.csv", tmp_path / "sharp.csv"
    pd.DataFrame({"run_dir": ["r0", "r0", "r1"], "label": ["SAM"] * 3, "seed": [0, 0, 1], "eta": [0.0, 0.1, 0.0],
                  "draw": [0, 0, 0], "test_acc": [50.0, 40.0, 52.0], "seconds": [1.5] * 3}).to_csv(noisy, index=False)
    pd.DataFrame({"run_dir": ["r0", "r1"], "label": ["SAM"] * 2, "seed": [0, 1], "measure": ["loss"] * 2,
                  "ball": [None] * 2, "radius": [0.0] * 2, "value": [0.5, 0.7], "seconds": [2.5] * 2}).to_csv(sharp, index=False)
    for path in (noisy, sharp):
        intact = path.read_text()
        line = cut_off(path, **damage)
        out = tmp_path / "table.md"
        assert analysis_table.main(["--noisy", str(noisy), "--sharpness", str(sharp), "--out", str(out)]) == 2
        one_error_line(capsys, f"{path}: line {line} ")
        assert capsys.readouterr().out == "" and not out.exists()
        path.write_text(intact)
    assert analysis_table.main(["--noisy", str(noisy), "--sharpness", str(sharp)]) == 0
    assert "| SAM | 2 | 51.00 ± 1.41 |" in capsys.readouterr().out


@pytest.mark.parametrize("name, argv, csv_name", [("tables", [], "grouped.csv"),
                                                  ("figures", ["rho"], "grouped.csv"),
                                                  ("figures", ["curves"], "curves.csv"),
                                                  ("continual_table", [], "runs.csv")])
def test_the_report_scripts_refuse_a_cut_off_collected_csv(name, argv, csv_name, results, capsys):
    line = cut_off(results / csv_name, keep_fields=4)
    before = files_under(results)
    assert script(name).main([*argv, str(results)]) == 2
    one_error_line(capsys, f"{results / csv_name}: line {line} has 4 fields where the header has ")
    assert files_under(results) == before
