"""Sweeps, collect, tables and figures (scripts/).

1. collect / tables / figures on synthetic run directories with known numbers (incl. a diverged and a
   crashed run): exact means, stds, n, status, bold cells, figures written.
2. The bash job queue (scripts/lib_sweep.sh via the real sweep scripts) driven with a stand-in trainer
   (tests/fixtures/fake_trainer.py): skipping finished runs, diverged/crashed runs recorded and not
   stopping the sweep, several workers, DRY_RUN, any cwd.
3. The same end to end with the real example_cifar.py (CIFAR10_sample, resnet20, 1 epoch).
"""
import json
import math
import os
import subprocess
import sys
import time

import pandas as pd
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(REPO, "scripts")
FAKE = os.path.join(REPO, "tests", "fixtures", "fake_trainer.py")

from scripts import collect, figures, tables  # noqa: E402  (scripts/ is a namespace package)


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
    # running: record says running and its runner is alive; interrupted: runner gone
    live = subprocess.Popen(["bash", "-c", "sleep 30; true # sweep"])  # looks like a sweep process
    make_run(str(root), "live", minimizer="SAM", seed=1, test_accs=[50], summary=False,
             sweep_status={"status": "running", "exit_code": None, "runner_pid": live.pid})
    make_run(str(root), "other_host", minimizer="SAM", seed=3, test_accs=[50], summary=False,
             sweep_status={"status": "running", "exit_code": None, "runner_pid": 1, "host": "elsewhere-x"})
    make_run(str(root), "pid_reused", minimizer="SAM", seed=4, test_accs=[50], summary=False,
             sweep_status={"status": "running", "exit_code": None, "runner_pid": os.getpid()})
    make_run(str(root), "dead", minimizer="SAM", seed=2, test_accs=[50], summary=False,
             sweep_status={"status": "running", "exit_code": None, "runner_pid": 2 ** 22 + 12345})
    try:
        runs, grouped, _ = collect.collect([str(root)], "one", str(out), quiet=True)
    finally:
        live.kill()
        live.wait()
    st = dict(zip(runs["run_name"], runs["status"]))
    assert st == {"x": "completed", "live": "running", "dead": "interrupted", "other_host": "running",
                  "pid_reused": "interrupted"}
    g = grouped.iloc[0]
    assert (g["n_runs"], g["n_completed"], g["n_running"], g["n_failed"]) == (5, 1, 2, 2)
    assert tables.main([str(out), "--metric", "final"]) == 0
    assert "**60.00 ± –** (1) [2 failed, 2 running]" in (out / "table_final.md").read_text()


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
    for sweep in ("kalpha", "rho"):
        collect.main([str(root / sweep), "--out", str(res / sweep), "--quiet"])
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


# ------------------------------------------------------------------------------------ bash job queue
def sweep(script, tmp_path, env_extra, args=(), cwd=None, timeout=120):
    # The thread split the queue applies depends on OMP_NUM_THREADS: start from the same place everywhere.
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.update({"RUNS_ROOT": str(tmp_path / "runs"), "RESULTS_ROOT": str(tmp_path / "results"),
                "PYTHON": sys.executable})
    env.update(env_extra)
    return subprocess.run(["bash", os.path.join(SCRIPTS, script), *args], cwd=cwd or str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_queue_with_stand_in_trainer(tmp_path):
    env = {"TRAIN_SCRIPT": FAKE, "SWEEP_NAME": "ka", "DATASETS": "CIFAR10_sample", "MODELS": "resnet20",
           "MINIMIZERS": "Lookbehind_SAM", "K_VALUES": "1 2", "ALPHAS": "0.5 -1", "SEEDS": "0",
           "EPOCHS": "2", "DEVICES": "cpu cpu", "BASELINES": ""}
    # DRY_RUN prints the commands, writes nothing
    p = sweep("sweep_kalpha.sh", tmp_path, {**env, "DRY_RUN": "1"}, ["--", "--train_subset", "64"])
    assert p.returncode == 0, p.stderr
    cmds = [ln for ln in p.stdout.splitlines() if "fake_trainer.py" in ln]
    assert len(cmds) == 4 and all("--train_subset 64" in c and "--device cpu" in c for c in cmds)
    assert "--k 1 --alpha 0.5" in cmds[0] and "OMP_NUM_THREADS=" in cmds[0]
    assert not (tmp_path / "runs").exists()

    p = sweep("sweep_kalpha.sh", tmp_path, env, ["--", "--train_subset", "64"])
    assert p.returncode == 0, p.stdout + p.stderr
    sweep_dir = tmp_path / "runs" / "ka"
    names = sorted(d.name for d in sweep_dir.iterdir() if d.is_dir())
    assert names == ["CIFAR10_sample_resnet20_Lookbehind_SAM_k1_a-1_rho0.05_s0",
                     "CIFAR10_sample_resnet20_Lookbehind_SAM_k1_a0.5_rho0.05_s0",
                     "CIFAR10_sample_resnet20_Lookbehind_SAM_k2_a-1_rho0.05_s0",
                     "CIFAR10_sample_resnet20_Lookbehind_SAM_k2_a0.5_rho0.05_s0"]
    log = (sweep_dir / names[0] / "train.log").read_text()
    assert "training Lookbehind_SAM on cpu" in log and "OMP=1" in log and "--train_subset 64" in log
    status = json.loads((sweep_dir / names[0] / "sweep_status.json").read_text())
    assert status["status"] == "completed" and status["exit_code"] == 0
    runs = pd.read_csv(tmp_path / "results" / "ka" / "runs.csv")  # collected at the end of the sweep
    assert list(runs["status"]) == ["completed"] * 4 and set(runs["train_subset"]) == {64}
    mtimes = {n: os.path.getmtime(sweep_dir / n / "summary.json") for n in names}

    # a second invocation adds a diverging and a crashing run; finished ones are skipped
    time.sleep(1.1)
    p = sweep("sweep_kalpha.sh", tmp_path, {**env, "SEEDS": "0 1"}, ["--", "--train_subset", "64"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("SKIP ") == 4 and p.stdout.count("START ") == 4
    assert {n: os.path.getmtime(sweep_dir / n / "summary.json") for n in names} == mtimes
    gen_env = {**env, "SWEEP_NAME": "gen", "MINIMIZERS": "SAM Lookbehind_SAM", "SEEDS": "0", "DEVICES": "cpu"}
    p = sweep("sweep_generalization.sh", tmp_path, gen_env, ["--", "--lr", "1e6"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("status=diverged exit=3") == 2
    p2 = sweep("sweep_generalization.sh", tmp_path, {**gen_env, "SWEEP_NAME": "gen2", "MINIMIZERS": "SAM ASAM"},
               ["--", "--crash"])
    assert p2.returncode == 1  # crashes are reported in the exit status, after the whole sweep ran
    assert p2.stdout.count("status=crashed exit=1") == 2 and "simulated crash" in p2.stdout
    runs = pd.read_csv(tmp_path / "results" / "gen2" / "runs.csv")
    assert list(runs["status"]) == ["crashed", "crashed"] and list(runs["exit_code"]) == [1, 1]
    runs = pd.read_csv(tmp_path / "results" / "gen" / "runs.csv")
    assert list(runs["status"]) == ["diverged", "diverged"]
    tsv = pd.read_csv(tmp_path / "runs" / "gen" / "status.tsv", sep="\t")
    assert list(tsv["exit_code"]) == [3, 3]
    # rerunning skips the diverged runs unless RETRY_DIVERGED=1 (old attempt kept in .retired/)
    p = sweep("sweep_generalization.sh", tmp_path, gen_env, ["--", "--lr", "1e6"])
    assert p.stdout.count("SKIP ") == 2 and "START" not in p.stdout
    p = sweep("sweep_generalization.sh", tmp_path, {**gen_env, "RETRY_DIVERGED": "1", "MINIMIZERS": "SAM"})
    assert p.returncode == 0 and "RETIRE" in p.stdout
    assert len(os.listdir(tmp_path / "runs" / "gen" / ".retired")) == 1
    runs = pd.read_csv(tmp_path / "results" / "gen" / "runs.csv")
    assert sorted(runs["status"]) == ["completed", "diverged"]  # .retired is not collected

    # from another cwd, relative RUNS_ROOT is taken relative to the caller's cwd; bad input -> exit 2
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    p = sweep("sweep_rho.sh", tmp_path, {**env, "RUNS_ROOT": "rel_runs", "MINIMIZERS": "SAM", "RHOS_SAM": "0.1",
                                         "SWEEP_NAME": "r", "COLLECT": "0"}, cwd=str(elsewhere))
    assert p.returncode == 0, p.stdout + p.stderr
    assert (elsewhere / "rel_runs" / "r" / "CIFAR10_sample_resnet20_SAM_rho0.1_s0" / "summary.json").exists()
    p = sweep("sweep_rho.sh", tmp_path, {**env, "MINIMIZERS": "SGD"})
    assert p.returncode == 2 and "has no rho" in p.stderr
    p = sweep("sweep_rho.sh", tmp_path, env, ["bogus"])
    assert p.returncode == 2 and "unexpected argument" in p.stderr
    # minimizers outside the paper's SAM/ASAM family keep their own rho unless told; per-minimizer flags
    p = sweep("sweep_generalization.sh", tmp_path, {**env, "DRY_RUN": "1", "MINIMIZERS": "GSAM SAMPa SSAM_F",
                                                    "HPARAMS_GSAM": "--hparam rho_max=0.1", "RHO_SSAM_F": "0.2"})
    cmds = {ln.split("--minimizer ")[1].split()[0]: ln for ln in p.stdout.splitlines() if "--minimizer" in ln}
    assert "--rho" not in cmds["GSAM"] and "--hparam rho_max=0.1" in cmds["GSAM"] and "_GSAM_s0 " in cmds["GSAM"]
    assert "--rho" not in cmds["SAMPa"] and "--hparam" not in cmds["SAMPa"]
    assert "--rho 0.2" in cmds["SSAM_F"] and "_SSAM_F_rho0.2_s0" in cmds["SSAM_F"]
    p = sweep("sweep_rho.sh", tmp_path, {}, ["--help"])
    assert p.returncode == 0 and "RHOS_SAM" in p.stdout


def test_queue_spreads_over_devices(tmp_path):
    """Two workers (cuda:0, cuda:1) each run one run at a time, and they run at the same time."""
    env = {"TRAIN_SCRIPT": FAKE, "SWEEP_NAME": "par", "DATASETS": "CIFAR10", "MODELS": "resnet20",
           "MINIMIZERS": "SAM", "SEEDS": "0 1 2 3", "EPOCHS": "1", "DEVICES": "cuda:0 cuda:1", "COLLECT": "0"}
    p = sweep("sweep_generalization.sh", tmp_path, env, ["--", "--sleep", "1"])
    assert p.returncode == 0, p.stdout + p.stderr
    intervals = {}
    for s in range(4):
        log = open(os.path.join(tmp_path, "runs", "par", f"CIFAR10_resnet20_SAM_rho0.05_s{s}", "train.log")).read()
        dev = "0" if "CUDA_VISIBLE_DEVICES=0" in log else "1" if "CUDA_VISIBLE_DEVICES=1" in log else None
        assert dev is not None and "--device cuda" in log
        t0 = float(log.split("t_start=")[1].split()[0])
        t1 = float(log.split("t_end=")[1].split()[0])
        intervals.setdefault(dev, []).append((t0, t1))
    assert sorted(intervals) == ["0", "1"]  # both devices got work
    for runs in intervals.values():  # one run per device at a time
        runs.sort()
        assert all(a[1] <= b[0] for a, b in zip(runs, runs[1:]))
    overlap = any(a[0] < b[1] and b[0] < a[1] for a in intervals["0"] for b in intervals["1"])
    assert overlap  # the devices ran in parallel
    tsv = pd.read_csv(tmp_path / "runs" / "par" / "status.tsv", sep="\t")
    assert sorted(tsv["device"].unique()) == ["cuda:0", "cuda:1"]


# ------------------------------------------------------------------------------------ real end to end
EXAMPLE = os.path.join(REPO, "example_cifar.py")


@pytest.mark.skipif(not os.path.isfile(EXAMPLE), reason="example_cifar.py is not in the repository yet")
def test_end_to_end_real_training(tmp_path):
    """2 minimizers x 2 seeds, 1 epoch of resnet20 on 256 images of the offline CIFAR-10 sample, on CPU,
    plus one run with lr 1e6 (diverges) started at the same time in the same sweep directory; then
    collect, the table and a figure; then the sweep again: everything is skipped."""
    fast = ["--", "--train_subset", "256", "--batch_size", "64"]
    grid = {"SWEEP_NAME": "e2e", "DATASETS": "CIFAR10_sample", "MODELS": "resnet20",
            "MINIMIZERS": "SAM Lookbehind_SAM", "SEEDS": "0 1", "EPOCHS": "1", "DEVICES": "cpu cpu",
            "COLLECT": "0"}
    env = dict(os.environ, RUNS_ROOT=str(tmp_path / "runs"), RESULTS_ROOT=str(tmp_path / "results"),
               PYTHON=sys.executable, **{**grid, "MINIMIZERS": "SAM", "SEEDS": "7", "DEVICES": "cpu",
                                          "OMP_NUM_THREADS": "1"})
    diverging = subprocess.Popen(["bash", os.path.join(SCRIPTS, "sweep_generalization.sh"), *fast, "--lr", "1e6"],
                                 env=env, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True)
    p = sweep("sweep_generalization.sh", tmp_path, grid, fast, timeout=300)
    div_out = diverging.communicate(timeout=300)[0]
    assert p.returncode == 0, p.stdout + p.stderr
    assert diverging.returncode == 0, div_out  # a diverged run is not a failure of the sweep
    assert "status=diverged exit=3" in div_out
    assert p.stdout.count("status=completed exit=0") == 4

    out = tmp_path / "results" / "e2e"
    assert collect.main([str(tmp_path / "runs" / "e2e"), "--out", str(out)]) == 0
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 5
    div = runs[runs["status"] == "diverged"]
    assert len(div) == 1 and div.iloc[0]["lr"] == 1e6 and div.iloc[0]["exit_code"] == 3
    assert div.iloc[0]["minimizer"] == "SAM" and div.iloc[0]["seed"] == 7
    done = runs[runs["status"] == "completed"]
    assert len(done) == 4 and set(done["seed"]) == {0, 1} and set(done["train_subset"]) == {256}
    assert set(done["batch_size"]) == {64} and set(done["epochs"]) == {1} and set(done["dataset"]) == {"CIFAR10_sample"}
    assert done["final_test_acc"].between(0, 100).all() and (done["wall_seconds"] > 0).all()
    lb = done[done["minimizer"] == "Lookbehind_SAM"]
    assert set(lb["k"]) == {2} and set(lb["alpha"]) == {-1}
    g = pd.read_csv(out / "grouped.csv")
    g_lb = g[g["minimizer"] == "Lookbehind_SAM"].iloc[0]
    assert g_lb["final_test_acc_n"] == 2
    assert g_lb["final_test_acc_mean"] == pytest.approx(lb["final_test_acc"].mean())
    assert g_lb["final_test_acc_std"] == pytest.approx(lb["final_test_acc"].std(ddof=1), abs=1e-9)
    assert g[(g["minimizer"] == "SAM") & (g["lr"] == 1e6)].iloc[0]["n_diverged"] == 1
    curves = pd.read_csv(out / "curves.csv")
    assert len(curves[curves["status"] == "completed"]) == 4

    assert tables.main([str(out), "--metric", "final"]) == 2  # two SAM settings (lr 0.1 and 1e6)
    assert tables.main([str(out), "--metric", "final", "--where", "lr=0.1"]) == 0
    md = (out / "table_final.md").read_text()
    row = [ln for ln in md.splitlines() if ln.startswith("| CIFAR-10 sample | ResNet-20 |")]
    assert len(row) == 1 and row[0].count("(2)") == 2 and row[0].count("**") in (2, 4)
    assert figures.main(["curves", str(out), "--where", "config_lr=0.1", "--formats", "png"]) == 0
    _check_png(out / "figures" / "curves_CIFAR10_sample_resnet20.png", min_bytes=10000)

    # Rerun: finished runs are skipped (no training started, summaries untouched).
    summaries = sorted((tmp_path / "runs" / "e2e").glob("*/summary.json"))
    mtimes = [os.path.getmtime(s) for s in summaries]
    p = sweep("sweep_generalization.sh", tmp_path, grid, fast)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("SKIP ") == 4 and "START" not in p.stdout
    assert [os.path.getmtime(s) for s in summaries] == mtimes
    logs = list((tmp_path / "runs" / "e2e").glob("*/train.log"))
    assert len(logs) == 5 and all(log.read_text().count("attempt started") == 1 for log in logs)
