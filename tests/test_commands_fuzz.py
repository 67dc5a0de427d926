"""Property-based (Hypothesis): every command of scripts/ meets any command line with exit 0 or 2, and exit 2
is one line "error: ..." on stderr, never a traceback. Runs in an empty working directory, on inputs that
do not exist (so no command gets to long work); the sweep only with --dry-run."""
import importlib

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from training import records

COMMANDS = {  # module: its flags (a fuzzer picks among them and the nonsense ones)
    "scripts.reports.collect": ["--sweep", "--out", "--quiet"],
    "scripts.reports.tables": ["--metric", "--paper", "--digits", "--out", "--where"],
    "scripts.reports.figures": ["--formats", "--out", "--where", "--metric", "--minimizers"],
    "scripts.reports.continual_table": ["--paired", "--digits", "--no-figure"],
    "scripts.reports.analysis_table": ["--noisy", "--sharpness", "--out"],
    "scripts.reports.paired": ["--pair", "--metric", "--lower-is-better", "--out"],
    "scripts.analyses.noisy_weights": ["--eta", "--draws", "--noise", "--out", "--device", "--seed", "--precision"],
    "scripts.analyses.sharpness": ["--out", "--device", "--radius", "--steps", "--trace_samples", "--images"],
    "scripts.launch.sweep": ["--seeds", "--epochs", "--minimizers", "--rho-sam", "--set", "--workers", "--name"],
}
POSITIONALS = {"scripts.reports.figures": ["curves", "kalpha", "rho", "alpha", "nope"],
               "scripts.launch.sweep": ["generalization", "kalpha", "rho", "continual", "nope"]}

values = st.one_of(st.sampled_from(["0", "-1", "2", "1e308", "nan", "inf", "x", "", "SAM:rho=0.1", "SAM", "png",
                                    "best", "missing_dir", "a=b", "--"]),
                   st.text(alphabet="abc01.-=:*", max_size=6))


@pytest.mark.parametrize("module", sorted(COMMANDS))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_command_line_exits_0_or_2_with_one_line(module, data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    flags = COMMANDS[module] + ["--nonsense"]
    argv = data.draw(st.lists(st.tuples(st.sampled_from(flags), st.lists(values, max_size=2)), max_size=4).map(
        lambda pairs: [item for flag, vals in pairs for item in [flag, *vals]]))
    head = [data.draw(st.sampled_from(POSITIONALS[module]))] if module in POSITIONALS else []
    head += ["missing_dir"] if module != "scripts.launch.sweep" else []
    tail = ["--dry-run", "--runs-root", str(tmp_path / "runs")] if module == "scripts.launch.sweep" else []
    main = importlib.import_module(module).main
    try:
        code = main(head + argv + tail)
    except SystemExit as exc:   # only --help may end this way (argparse prints and exits 0)
        code = exc.code
        assert code == 0
    err = capsys.readouterr().err
    assert code in (0, records.EXIT_USAGE), (argv, code, err)
    assert "Traceback" not in err
    if code == records.EXIT_USAGE:
        assert err.startswith("error: ") and err.count("\n") == 1, err
