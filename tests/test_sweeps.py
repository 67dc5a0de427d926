"""Sweeps, collect, tables and figures (scripts/).

1. collect / tables / figures on synthetic run directories with known numbers (incl. a diverged and a
   crashed run): exact means, stds, n, status, bold cells, figures written.
2. The sweep runner (scripts.launch.sweep, local executor) with the real example_cifar.py on tiny settings
   (resnet8, 64 images, 1 epoch): dry run, records, skipping finished runs, a run held by another
   process, failed and diverged runs, collect, bad input; the grids' hyperparameter dropping; the
   bash wrappers. The Slurm executor: tests/test_slurm.py (a real single-node Slurm).
"""
import json
import math
import os
import subprocess
import sys

import pandas as pd
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(REPO, "scripts", "launch")

from scripts.reports import collect, figures, tables  # noqa: E402  (scripts/ is a namespace package)

from scripts.launch import sweep
from training import records  # noqa: E402


# ------------------------------------------------------------------------------------ synthetic runs
def make_run(root, name, *, minimizer, seed, model="resnet20", dataset="CIFAR10", rho=0.05, k=2,
             alpha=-1.0, epochs=3, test_accs=None, status="completed", sweep_status=None, summary=True):
    """A fabricated run directory following example_cifar.py's contract."""
    d = os.path.join(root, name)
    os.makedirs(d)
    config = {"dataset": dataset, "model": model, "minimizer": minimizer, "lr": 0.1, "momentum": 0.9,
              "weight_decay": 5e-4, "batch_size": 128, "epochs": epochs, "rho": rho, "eta": 0.0, "k": k,
              "alpha": alpha, "seed": seed, "schedule": "step", "train_subset": 0, "device": f"cuda:{seed}",
              "out": d, "minimizer_hparams": {"rho": rho}, "versions": {"torch": "x"}, "git_commit": "abc",
              "command": "python example_cifar.py ..."}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f)
    accs = test_accs or []
    with open(os.path.join(d, "metrics.csv"), "w") as f:
        f.write("epoch,lr,train_loss,train_acc,test_loss,test_acc,epoch_seconds,images_per_second\n")
        for e, acc in enumerate(accs, 1):
            loss = "nan" if (status == "diverged" and e == len(accs)) else f"{2.0 / e}"
            f.write(f"{e},0.1,{loss},{acc - 5},{loss},{acc},1.5,1000\n")
    if summary:
        summ = {"status": status, "epochs_completed": len(accs), "wall_seconds": 10.0 + seed,
                "dataset": dataset, "model": model, "minimizer": minimizer, "rho": rho, "k": k,
                "alpha": alpha, "seed": seed, "final_train_loss": 2.0 / max(1, len(accs))}
        if status == "completed":
            summ.update(final_test_acc=accs[-1], best_test_acc=max(accs),
                        best_epoch=accs.index(max(accs)) + 1)
        with open(os.path.join(d, "summary.json"), "w") as f:
            json.dump(summ, f)
    if sweep_status is not None:
        with open(os.path.join(d, "sweep_status.json"), "w") as f:
            json.dump(sweep_status, f)
    return d


@pytest.fixture
def synthetic(tmp_path):
    """Generalization-style sweep: 2 models x 2 minimizers x 2 seeds completed, + 1 diverged, 1 crashed."""
    root = tmp_path / "runs" / "gen"
    root.mkdir(parents=True)
    r = str(root)
    # resnet20: SAM final 90, 92 (best 91, 93); Lookbehind 93, 95 (best 94, 96)  -> Lookbehind best
    make_run(r, "a_sam_s0", minimizer="SAM", seed=0, test_accs=[80, 91, 90])
    make_run(r, "a_sam_s1", minimizer="SAM", seed=1, test_accs=[80, 93, 92])
    make_run(r, "a_lb_s0", minimizer="Lookbehind_SAM", seed=0, test_accs=[80, 94, 93])
    make_run(r, "a_lb_s1", minimizer="Lookbehind_SAM", seed=1, test_accs=[80, 96, 95])
    # wrn28_2: SAM 80, 84 (best = final); Lookbehind 81, 81 -> SAM best
    make_run(r, "b_sam_s0", model="wrn28_2", minimizer="SAM", seed=0, test_accs=[70, 80])
    make_run(r, "b_sam_s1", model="wrn28_2", minimizer="SAM", seed=1, test_accs=[70, 84])
    make_run(r, "b_lb_s0", model="wrn28_2", minimizer="Lookbehind_SAM", seed=0, test_accs=[70, 81])
    make_run(r, "b_lb_s1", model="wrn28_2", minimizer="Lookbehind_SAM", seed=1, test_accs=[70, 81])
    # diverged (seed 2 of resnet20 Lookbehind) and crashed (seed 2 of resnet20 SAM: no summary)
    make_run(r, "a_lb_s2", minimizer="Lookbehind_SAM", seed=2, test_accs=[10, 10], status="diverged")
    make_run(r, "a_sam_s2", minimizer="SAM", seed=2, test_accs=[85], summary=False,
             sweep_status={"status": "crashed", "exit_code": 1, "wall_seconds": 3.0})
    # a directory that is garbage must be reported, not crash collect
    bad = root / "garbage"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    return root


def test_collect_values(synthetic, tmp_path, capsys):
    out = tmp_path / "results" / "gen"
    assert collect.main([str(synthetic), "--out", str(out)]) == 0
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 11
    st = dict(zip(runs["run_name"], runs["status"]))
    assert st["a_lb_s2"] == "diverged" and st["a_sam_s2"] == "crashed" and st["garbage"] == "invalid"
    assert sum(s == "completed" for s in st.values()) == 8
    crashed = runs[runs["run_name"] == "a_sam_s2"].iloc[0]
    assert crashed["exit_code"] == 1 and crashed["final_test_acc"] == 85  # from metrics.csv
    assert "unreadable config.json" in runs[runs["run_name"] == "garbage"].iloc[0]["problem"]
    row = runs[runs["run_name"] == "a_lb_s1"].iloc[0]
    assert (row["final_test_acc"], row["best_test_acc"], row["best_epoch"]) == (95, 96, 2)
    assert row["sweep"] == "gen" and row["wall_seconds"] == 11.0
    assert row["final_train_acc"] == 90  # summaries without it: the last epoch of metrics.csv
    assert "device" in runs.columns  # settings are kept in runs.csv ...

    g = pd.read_csv(out / "grouped.csv")
    assert "device" not in g.columns and "seed" not in g.columns  # ... but do not split groups
    g = g[g["dataset"].notna()]
    assert len(g) == 4

    def grp(model, minimizer):
        rows = g[(g["model"] == model) & (g["minimizer"] == minimizer)]
        assert len(rows) == 1
        return rows.iloc[0]

    a_sam, a_lb, b_sam, b_lb = (grp("resnet20", "SAM"), grp("resnet20", "Lookbehind_SAM"),
                                grp("wrn28_2", "SAM"), grp("wrn28_2", "Lookbehind_SAM"))
    assert a_sam["final_test_acc_mean"] == 91 and a_sam["final_test_acc_std"] == pytest.approx(math.sqrt(2))
    assert a_sam["best_test_acc_mean"] == 92 and a_sam["final_test_acc_n"] == 2
    assert (a_sam["n_runs"], a_sam["n_completed"], a_sam["n_diverged"], a_sam["n_failed"]) == (3, 2, 0, 1)
    assert a_sam["seeds"] == "0 1 2"
    assert a_lb["final_test_acc_mean"] == 94 and a_lb["best_test_acc_mean"] == 95
    assert (a_lb["n_runs"], a_lb["n_diverged"], a_lb["final_test_acc_n"]) == (3, 1, 2)
    assert b_sam["final_test_acc_mean"] == 82 and b_sam["final_test_acc_std"] == pytest.approx(math.sqrt(8))
    assert b_lb["final_test_acc_std"] == 0 and b_lb["wall_seconds_mean"] == 10.5

    curves = pd.read_csv(out / "curves.csv")
    assert len(curves) == 3 * 4 + 2 * 4 + 2 + 1
    assert set(curves.columns) >= {"run_name", "minimizer", "seed", "epoch", "test_acc", "train_loss", "status"}
    printed = capsys.readouterr().out
    assert "11 runs" in printed and "crashed:" in printed and "garbage" in printed
    # run directories outside the working directory are recorded absolute ...
    assert row["run_dir"] == str(synthetic / "a_lb_s1")


def test_collect_records_run_dirs_below_the_working_directory_relative(synthetic, tmp_path, monkeypatch, capsys):
    """... and below it, relative: committed results name no machine's paths."""
    monkeypatch.chdir(synthetic.parent)
    assert collect.main([synthetic.name, "--out", "res", "--quiet"]) == 0
    runs = pd.read_csv(os.path.join("res", "runs.csv"))
    assert sorted(runs["run_dir"])[0] == os.path.join(synthetic.name, "a_lb_s0")
    assert not any(os.path.isabs(path) for path in runs["run_dir"])
    assert sorted(runs["out"].dropna())[0] == os.path.join(synthetic.name, "a_lb_s0")  # path settings too


def test_collect_single_seed_std_empty_and_errors(tmp_path, capsys):
    root = tmp_path / "one"
    make_run(str(root), "x", minimizer="SAM", seed=0, test_accs=[50, 60])
    out = tmp_path / "res"
    assert collect.main([str(root), "--out", str(out), "--quiet"]) == 0
    g = pd.read_csv(out / "grouped.csv")
    assert g["final_test_acc_n"].iloc[0] == 1 and math.isnan(g["final_test_acc_std"].iloc[0])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert collect.main([str(empty), "--out", str(out)]) == 2
    assert "no run directories" in capsys.readouterr().err
    # running: a process holds the run directory's lock; the records say running but nobody holds the
    # lock: the process died without recording it (crashed); stopped by a signal: interrupted.
    make_run(str(root), "live", minimizer="SAM", seed=1, test_accs=[50], summary=False,
             sweep_status={"status": "running", "exit_code": None})
    make_run(str(root), "dead", minimizer="SAM", seed=2, test_accs=[50], summary=False,
             sweep_status={"status": "running", "exit_code": None})
    make_run(str(root), "stopped", minimizer="SAM", seed=3, test_accs=[50], summary=False,
             sweep_status={"status": "interrupted", "exit_code": 143})
    make_run(str(root), "failed", minimizer="SAM", seed=4, test_accs=[50], status="failed")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from training import records; "
                               "claim = records.RunDirClaim().take(sys.argv[1]); print('locked', flush=True); "
                               "time.sleep(300)", str(root / "live")], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        runs, grouped, _ = collect.collect([str(root)], "one", str(out), quiet=True)
    finally:
        holder.kill()
        holder.wait()
    st = dict(zip(runs["run_name"], runs["status"]))
    assert st == {"x": "completed", "live": "running", "dead": "crashed", "stopped": "interrupted",
                  "failed": "failed"}
    g = grouped.iloc[0]
    assert (g["n_runs"], g["n_completed"], g["n_running"], g["n_failed"]) == (5, 1, 1, 3)
    assert tables.main([str(out), "--metric", "final"]) == 0
    assert "**60.00 ± –** (1) [3 failed, 1 running]" in (out / "table_final.md").read_text()


def test_tables(synthetic, tmp_path, capsys):
    out = tmp_path / "results" / "gen"
    collect.main([str(synthetic), "--out", str(out), "--quiet"])
    paper = tmp_path / "paper.csv"
    paper.write_text("dataset,model,minimizer,acc,std\nCIFAR-10,ResNet-20,SAM,90.5,0.1\n"
                     "CIFAR-100,ResNet-20,SAM,70.0,0.2\n")  # the second matches nothing here
    assert tables.main([str(out), "--metric", "final", "--paper", str(paper)]) == 0
    assert "1 paper row(s) match no result here: cifar100/resnet20/sam" in capsys.readouterr().err
    md = (out / "table_final.md").read_text()
    lines = {ln.split("|")[2].strip(): ln for ln in md.splitlines() if ln.startswith("| CIFAR-10")}
    assert set(lines) == {"ResNet-20", "WRN-28-2"}
    header = [ln for ln in md.splitlines() if ln.startswith("| Dataset")][0]
    assert header.index("SAM") < header.index("Lookbehind-SAM")
    a = [c.strip() for c in lines["ResNet-20"].split("|")[3:5]]
    assert a[0].startswith("91.00 ± 1.41 (2) [1 failed] · paper 90.50 ± 0.10, Δ +0.50")
    assert a[1] == "**94.00 ± 1.41** (2) [1 div.]"
    b = [c.strip() for c in lines["WRN-28-2"].split("|")[3:5]]
    assert b == ["**82.00 ± 2.83** (2)", "81.00 ± 0.00 (2)"]
    tex = (out / "table_final.tex").read_text()
    assert r"\textbf{94.00} $\pm$ 1.41 {\tiny (2)}" in tex and r"\textbf{82.00}" in tex
    assert "Lookbehind-SAM" in tex and r"\begin{tabular}{llcc}" in tex
    assert tables.main([str(out)]) == 0  # default metric: best
    md_best = (out / "table_best.md").read_text()
    assert "**95.00 ± 1.41** (2)" in md_best and "best test accuracy" in md_best
    capsys.readouterr()
    assert tables.main([str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err


def test_tables_ambiguous_needs_where(tmp_path, capsys):
    root = tmp_path / "rho"
    for rho in (0.05, 0.1):
        for seed in (0, 1):
            make_run(str(root), f"sam_{rho}_{seed}", minimizer="SAM", seed=seed, rho=rho, test_accs=[50 + seed])
    out = tmp_path / "res"
    collect.main([str(root), "--out", str(out), "--quiet"])
    assert tables.main([str(out)]) == 2
    assert "rho" in capsys.readouterr().err
    assert tables.main([str(out), "--where", "rho=0.1"]) == 0
    assert "50.50 ± 0.71" in (out / "table_best.md").read_text()


def _check_png(path, min_bytes=15000):
    assert os.path.getsize(path) > min_bytes, path
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_figures(tmp_path):
    root = tmp_path / "runs"
    # k x alpha grid (2 x 2) + SAM baseline, 2 seeds; one cell all diverged
    for k in (1, 2):
        for alpha in (0.5, -1.0):
            for seed in (0, 1):
                diverge = (k == 2 and alpha == 0.5)
                make_run(str(root / "kalpha"), f"lb_k{k}_a{alpha}_s{seed}", minimizer="Lookbehind_SAM", seed=seed,
                         k=k, alpha=alpha, test_accs=[60, 70 + k + alpha + seed],
                         status="diverged" if diverge else "completed")
    for seed in (0, 1):
        make_run(str(root / "kalpha"), f"sam_s{seed}", minimizer="SAM", seed=seed, test_accs=[60, 70 + seed])
    # rho grid: SAM / Lookbehind_SAM x 3 rhos, ASAM family x 2 rhos
    for m, rhos in (("SAM", (0.01, 0.05, 0.1)), ("Lookbehind_SAM", (0.01, 0.05, 0.1)),
                    ("ASAM", (0.5, 1.0)), ("Lookbehind_ASAM", (0.5, 1.0))):
        for rho in rhos:
            for seed in (0, 1):
                make_run(str(root / "rho"), f"{m}_{rho}_{seed}", minimizer=m, seed=seed, rho=rho,
                         test_accs=[50, 60 + 10 * rho + seed + (m.startswith("Lookbehind"))])
    res = tmp_path / "results"
    for grid_name in ("kalpha", "rho"):
        collect.main([str(root / grid_name), "--out", str(res / grid_name), "--quiet"])
    assert figures.main(["kalpha", str(res / "kalpha")]) == 0
    assert figures.main(["rho", str(res / "rho")]) == 0
    assert figures.main(["curves", str(res / "rho"), "--where", "rho=0.05"]) == 0
    assert figures.main(["curves", str(res / "rho"), "--where", "rho=0.5"]) == 0
    _check_png(res / "kalpha" / "figures" / "kalpha_CIFAR10_resnet20_best.png")
    _check_png(res / "rho" / "figures" / "rho_CIFAR10_resnet20_best.png")
    _check_png(res / "rho" / "figures" / "curves_CIFAR10_resnet20.png")
    assert os.path.getsize(res / "kalpha" / "figures" / "kalpha_CIFAR10_resnet20_best.pdf") > 5000
    # the curves figure across different rho needs --where... or it labels each setting; both work
    assert figures.main(["curves", str(res / "rho")]) == 0
    assert figures.main(["rho", str(res / "nothing")]) == 2


def test_written_files_are_not_owner_only(synthetic, tmp_path):
    """CSVs, tables and figures get 0666 & ~umask like any new file (mkstemp alone gives 0600), and
    no temporary file is left behind."""
    old_umask = os.umask(0o022)
    try:
        out = tmp_path / "results" / "gen"
        assert collect.main([str(synthetic), "--out", str(out), "--quiet"]) == 0
        assert tables.main([str(out)]) == 0
        assert figures.main(["curves", str(out), "--formats", "png"]) == 0
    finally:
        os.umask(old_umask)
    written = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {"runs.csv", "grouped.csv", "curves.csv", "table_best.md",
                                         "table_best.tex", "curves_CIFAR10_resnet20.png", "curves_CIFAR10_wrn28_2.png"}
    for p in written:
        assert os.stat(p).st_mode & 0o044, f"{p} is owner-only"
        assert os.stat(p).st_mode & 0o777 == 0o644, oct(os.stat(p).st_mode)
    assert not [p for p in out.rglob(".*.tmp")]


# ------------------------------------------------------------------------------------ the sweep runner
TINY = ["--", "--train_subset", "64", "--batch_size", "32", "--device", "cpu"]


def run_sweep(capsys, *argv):
    code = sweep.main(list(argv))
    return code, capsys.readouterr()


def test_sweep_end_to_end_with_the_real_trainer(tmp_path, capsys, monkeypatch):
    """A 2 minimizers x 2 seeds generalization sweep (resnet8, 64 images, 1 epoch, 2 runs at a time) with
    the real example_cifar.py: dry run, records, collect (every minimizer hyperparameter a column),
    a second invocation that skips everything, a run another process holds, a failed run, a
    diverged one, and bad input that changes nothing."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    roots = ["--runs-root", str(tmp_path / "runs"), "--results-root", str(tmp_path / "results")]
    grid = ["generalization", "--datasets", "CIFAR10_sample", "--models", "resnet8", "--minimizers", "SAM",
            "Lookbehind_SAM", "--seeds", "0", "1", "--epochs", "1", *roots]
    code, out = run_sweep(capsys, *grid, "--dry-run", *TINY)
    lines = out.out.splitlines()
    assert code == 0 and len(lines) == 4 and all(line.startswith("RUN  ") for line in lines)
    assert "--minimizer Lookbehind_SAM --seed 0 --epochs 1 --rho 0.05 --k 2 --alpha -1 --train_subset 64" in lines[2]
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing

    sweep_dir = tmp_path / "runs" / "generalization"
    busy = sweep_dir / "CIFAR10_sample_resnet8_SAM_rho0.05_s1"
    holder = records.RunDirClaim().take(str(busy))  # another process trains this one (here: this test)
    try:
        code, out = run_sweep(capsys, *grid, "--workers", "2", *TINY)
    finally:
        holder.release()
    assert code == 0, out.out + out.err
    assert "2 worker(s)" in out.out and "SKIP CIFAR10_sample_resnet8_SAM_rho0.05_s1 (running elsewhere)" in out.out
    assert out.out.count("status=completed exit=0") == 3
    done = sweep_dir / "CIFAR10_sample_resnet8_Lookbehind_SAM_rho0.05_k2_alpha-1_s0"
    record = json.loads((done / records.SWEEP_RECORD_FILE).read_text())
    assert record["status"] == "completed" and record["exit_code"] == 0 and "--resume" in record["command"]
    assert "attempt started" in (done / records.RUN_LOG_FILE).read_text()
    runs = pd.read_csv(tmp_path / "results" / "generalization" / "runs.csv")
    assert list(runs["status"]) == ["completed"] * 3  # the busy directory holds no records yet
    lb = runs[runs["minimizer"] == "Lookbehind_SAM"]
    assert set(lb["passes"]) == {"shared"} and set(lb["bn_policy"]) == {"every"} and set(lb["alpha"]) == {-1}

    # Again: the finished runs are skipped, the one that was busy is trained now.
    mtimes = {p: os.path.getmtime(p) for p in sweep_dir.glob("*/summary.json")}
    code, out = run_sweep(capsys, *grid, *TINY)
    assert code == 0 and out.out.count("SKIP ") == 3 and out.out.count("START ") == 1
    assert all(os.path.getmtime(p) == t for p, t in mtimes.items())

    # A run that fails (the trainer finds no data: exit 2) is recorded as failed: sweep exit 1.
    code, out = run_sweep(capsys, "rho", "--name", "bad", "--datasets", "CIFAR10", "--models", "resnet8",
                          "--minimizers", "SAM", "--rhos-sam", "0.1", "--seeds", "0", "--epochs", "1", *roots,
                          "--data-dir", str(tmp_path / "no_data"), "--", "--no-download")
    assert code == 1 and "status=failed exit=2" in out.out and "not found" in out.out
    # A diverging run is a result, not a failure; it is skipped next time unless --retry-diverged.
    div = ["generalization", "--name", "div", "--datasets", "CIFAR10_sample", "--models", "resnet8",
           "--minimizers", "SGD", "--seeds", "0", "--epochs", "1", *roots, *TINY, "--lr", "1e6"]
    code, out = run_sweep(capsys, *div)
    assert code == 0 and "status=diverged exit=3" in out.out
    code, out = run_sweep(capsys, *div)
    assert code == 0 and "SKIP CIFAR10_sample_resnet8_SGD_s0 (diverged)" in out.out
    code, out = run_sweep(capsys, *div[:div.index("--")], "--dry-run", *div[div.index("--"):])
    assert "SKIP CIFAR10_sample_resnet8_SGD_s0 (diverged)" in out.out

    # Bad input: one line, exit 2, nothing touched.
    before = {p: os.path.getmtime(p) for p in (tmp_path / "runs").rglob("*")}
    for argv, fragment in [
        (["nope"], "invalid choice: 'nope'"),
        ([*grid, "--executor", "pbs"], "invalid choice: 'pbs'"),
        (["rho", "--name", "generalization", *roots], "holds the runs of the 'generalization' sweep"),
        ([*grid, "--executor", "slurm", "--time", "25:99x"], "--time"),
        ([*grid, "--executor", "slurm", "--mem", "12X"], "--mem"),
        ([*grid, "--executor", "slurm", "--sbatch-arg", "not a key"], "--sbatch-arg"),
        ([*grid, "--minimizers", "FOO"], "unknown minimizer"),
        (["rho", "--minimizers", "SGD", *roots], "SGD has no rho"),
        ([*grid, "--set", "SAM:rho_max=1"], "SAM has no hyperparameter 'rho_max'"),
        # flags every run's script would refuse: checked for every run before any starts
        ([*grid, "--", "--train_subset", "1"], "--train_subset: must be >= 2"),
        ([*grid, "--epochs", "0"], "--epochs: must be >= 1"),
        (["kalpha", "--alphas", "nan", *roots], "--alpha: expected a finite number"),
        ([*grid, "--", "--lr", "nan"], "--lr: expected a finite number"),
    ]:
        code, out = run_sweep(capsys, *argv)
        assert code == 2, (argv, out)
        assert out.err.count("\n") == 1 and out.err.startswith("error: ") and fragment in out.err, out.err
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    code, out = run_sweep(capsys, *grid, "--executor", "slurm")
    assert code == 2 and "sbatch is not on PATH" in out.err
    assert {p: os.path.getmtime(p) for p in (tmp_path / "runs").rglob("*")} == before


def test_grids_drop_what_a_minimizer_does_not_take(capsys):
    """Hyperparameters come from minimizers.hparams(): k/alpha/rho only where the minimizer has them;
    --set adds one minimizer's own; the paper's rho only for its SAM/ASAM family."""
    code, out = run_sweep(capsys, "generalization", "--dry-run", "--datasets", "CIFAR10", "--models", "resnet20",
                          "--seeds", "0", "--minimizers", "SGD", "GSAM", "SAMPa", "SSAM_F", "Lookahead_SGD",
                          "--set", "GSAM:rho_max=0.1", "SSAM_F:rho=0.2", "--runs-root", "/nonexistent")
    assert code == 0
    cmds = {line.split("--minimizer ")[1].split()[0]: line for line in out.out.splitlines()}
    assert "--rho" not in cmds["SGD"] and "--k" not in cmds["SGD"]
    assert "--rho" not in cmds["GSAM"] and "--hparam rho_max=0.1" in cmds["GSAM"] and " CIFAR10_resnet20_GSAM_s0 " in cmds["GSAM"]
    assert "--rho" not in cmds["SAMPa"] and "--hparam" not in cmds["SAMPa"]
    assert "--rho 0.2" in cmds["SSAM_F"] and "CIFAR10_resnet20_SSAM_F_rho0.2_s0" in cmds["SSAM_F"]
    assert "--k 5 --alpha 0.5" in cmds["Lookahead_SGD"] and "--rho" not in cmds["Lookahead_SGD"]
    code, out = run_sweep(capsys, "kalpha", "--dry-run", "--datasets", "CIFAR10", "--seeds", "0", "--runs-root", "/x")
    assert code == 0 and len(out.out.splitlines()) == 2 * 3 * 4 + 2  # 2 Lookbehinds x 3 k x 4 alpha + SAM, ASAM


def test_bash_wrappers_still_work(tmp_path):
    result = subprocess.run(["bash", os.path.join(SCRIPTS, "sweep_kalpha.sh"), "--dry-run", "--datasets", "CIFAR10",
                             "--seeds", "0", "--k-values", "2", "--alphas", "-1", "--minimizers", "Lookbehind_SAM",
                             "--runs-root", str(tmp_path)], cwd=str(tmp_path), capture_output=True, text=True,
                            env=dict(os.environ, PYTHON=sys.executable), timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2 and "--k 2 --alpha -1" in result.stdout


def test_set_given_twice_keeps_both_values(capsys):
    code = sweep.main(["generalization", "--pairs", "CIFAR10_sample:resnet8", "--minimizers", "GSAM", "SAM",
                       "--seeds", "0", "--runs-root", "unused", "--set", "GSAM:rho_max=0.05", "--set", "SAM:rho=0.1",
                       "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0 and "rho_max=0.05" in out and "SAM_rho0.1_s0" in out


def test_vit_grid_dry_run(capsys):
    """The vit grid: 2 datasets x 2 ViTs x (AdamW, SAM, Lookbehind-SAM) x 3 seeds, every command with the
    AdamW recipe, and every command accepted by example_cifar.py's settings (the dry run checks them)."""
    import models
    if models.missing_package("vit_tiny_patch4"):
        pytest.skip("timm is not installed")
    code, out = run_sweep(capsys, "vit", "--dry-run", "--runs-root", "/nonexistent")
    assert code == 0, out.err
    lines = out.out.splitlines()
    assert len(lines) == 2 * 2 * 3 * 3 and all(line.startswith("RUN ") for line in lines)
    line = next(line for line in lines if " CIFAR100_vit_small_patch4_Lookbehind_SAM_rho0.05_k2_alpha-1_s2 " in line)
    assert ("--dataset CIFAR100 --model vit_small_patch4 --minimizer Lookbehind_SAM --seed 2 --epochs 200 --rho 0.05 "
            "--k 2 --alpha -1 --optimizer adamw --lr 1e-3 --weight_decay 0.05 --schedule cosine --warmup_epochs 5 "
            "--label_smoothing 0.1 ") in line
    plain = next(line for line in lines if "--minimizer SGD" in line)
    assert "--rho" not in plain and "--optimizer adamw" in plain
    code, out = run_sweep(capsys, "vit", "--dry-run", "--datasets", "CIFAR10", "--models", "vit_tiny_patch4",
                          "--seeds", "0", "--epochs", "50", "--rho-sam", "0.1", "--runs-root", "/nonexistent")
    assert code == 0 and len(out.out.splitlines()) == 3 and "--epochs 50 --rho 0.1" in out.out


def test_imagenet_grid_dry_run(capsys):
    """The imagenet grid: ResNet-50 x (SGD, SAM, Lookbehind-SAM) x 1 seed from scratch with the standard recipe,
    every command accepted by example_cifar.py's settings (the dry run checks them)."""
    code, out = run_sweep(capsys, "imagenet", "--dry-run", "--runs-root", "/nonexistent", "--data-dir", "/imagenet")
    assert code == 0, out.err
    lines = out.out.splitlines()
    assert len(lines) == 3 and all(line.startswith("RUN ") for line in lines)
    line = next(line for line in lines if " ImageNet_imagenet_resnet50_Lookbehind_SAM_rho0.05_k2_alpha-1_s0 " in line)
    assert ("--dataset ImageNet --model imagenet_resnet50 --minimizer Lookbehind_SAM --seed 0 --epochs 90 --rho 0.05 "
            "--k 2 --alpha -1 --batch_size 256 --lr 0.1 --weight_decay 1e-4 --schedule multistep --milestones 30 60 "
            "--data_dir /imagenet ") in line
    code, out = run_sweep(capsys, "imagenet", "--dry-run", "--runs-root", "/nonexistent", "--models",
                          "imagenet_resnet18", "--seeds", "0", "1", "--minimizers", "SAM", "--epochs", "2")
    assert code == 0 and len(out.out.splitlines()) == 2 and "--model imagenet_resnet18" in out.out
    code, out = run_sweep(capsys, "imagenet", "--dry-run", "--runs-root", "/nonexistent", "--models", "vit_tiny_patch4")
    assert code == 2 and ("takes 32 x 32 images" in out.err or "timm" in out.err)


def test_finetune_grid_needs_the_weights_and_passes_them(capsys, tmp_path):
    import models
    if models.missing_package("vit_small_patch16_224"):
        pytest.skip("timm is not installed")
    code, out = run_sweep(capsys, "finetune", "--dry-run", "--runs-root", "/nonexistent")
    assert code == 2 and "needs --pretrained PATH" in out.err
    weights = tmp_path / "vit.pth"
    code, out = run_sweep(capsys, "finetune", "--dry-run", "--runs-root", "/nonexistent", "--pretrained", str(weights),
                          "--datasets", "CIFAR10", "--seeds", "0")
    assert code == 0, out.err
    lines = out.out.splitlines()
    assert len(lines) == 3
    assert all(f"--pretrained {weights}" in line and "--optimizer adamw --lr 1e-4" in line for line in lines)
