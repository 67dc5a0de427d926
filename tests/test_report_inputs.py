"""The report scripts and the post-training analyses refuse bad input with one clear line.

The project's convention (training/records.py): a user error is records.UsageError, printed as one line
"error: <message>" on stderr, exit status records.EXIT_USAGE (2), no traceback, nothing written.
Checked here for scripts/collect.py, tables.py, figures.py, continual_table.py, analysis_table.py,
noisy_weights.py and sharpness.py (their numbers: tests/test_sweeps.py, tests/test_analyses.py).
"""
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
REPORT_SCRIPTS = ("common", "collect", "tables", "figures", "continual_table", "analysis_table", "noisy_weights",
                  "sharpness", "trained")


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
    return importlib.import_module(f"scripts.{name}")


@pytest.mark.parametrize("name, argv, fragment", [
    ("collect", [], "the following arguments are required: roots"),
    ("collect", ["runs", "--bogus"], "unrecognized arguments: --bogus"),
    ("tables", ["results", "--metric", "median"], "invalid choice: 'median'"),
    ("figures", ["heatmap", "results"], "invalid choice: 'heatmap'"),
    ("figures", ["curves"], "the following arguments are required: results"),
    ("continual_table", [], "the following arguments are required: results"),
    ("continual_table", ["results", "--digits", "two"], "invalid int value: 'two'"),
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
    """python -m scripts.tables (the real entry point, sys.exit(main())): exit 2, one stderr line, no usage."""
    import subprocess
    import sys
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-m", "scripts.tables", str(tmp_path), "--metric", "median"], cwd=repo,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == records.EXIT_USAGE and done.stdout == ""
    assert done.stderr.startswith("error: argument --metric: invalid choice: 'median'") and done.stderr.count("\n") == 1
