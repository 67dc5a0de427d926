"""The benchmark runs end to end in a tiny configuration, so it cannot rot."""
import csv

from scripts.tools import benchmark


def test_benchmark_tiny(tmp_path, capsys):
    out = tmp_path / "bench.md"
    assert benchmark.main(["--models", "resnet8", "--batch_size", "8", "--repeats", "1",
                           "--data_images", "512", "--precision", "--out", str(out)]) == 0
    text = out.read_text()
    assert "k+1 passes / 2k passes" in text and "data path" in text and "bf16 autocast" in text
    rows = {r["minimizer"]: r for r in csv.DictReader(open(tmp_path / "bench.csv"))}
    assert int(rows["Lookbehind_SAM k=5"]["gradient_evaluations"]) == 6
    assert int(rows["Lookbehind_SAM k=5 (2k passes)"]["gradient_evaluations"]) == 10
    # Persistent buffers: SAM 1, Lookbehind 3 (+1 with adaptive alpha), in units of the parameters.
    assert round(float(rows["SAM"]["buffers_x_params"]), 2) == 1.0
    assert round(float(rows["Lookbehind_ASAM k=2"]["buffers_x_params"]), 2) == 3.0
    assert round(float(rows["Lookbehind_SAM k=2"]["buffers_x_params"]), 2) == 4.0  # + the per-tensor alphas
    assert all(float(r["images_per_second"]) > 0 for r in rows.values())


def test_benchmark_fp16_tiny(tmp_path):
    """--precision fp16: every minimizer steps with its own GradScaler, weights and losses stay finite,
    the tables are produced and the CPU timings are flagged as not meaningful."""
    out = tmp_path / "bench.md"
    assert benchmark.main(["--models", "resnet8", "--batch_size", "2", "--repeats", "1",
                           "--data_images", "256", "--precision", "fp16", "--device", "cpu",
                           "--out", str(out)]) == 0
    text = out.read_text()
    assert "fp16 check: every minimizer stepped with its own GradScaler attached" in text
    assert "meaningful on a GPU only (`--device cuda`)" in text and "k+1 passes / 2k passes" in text
    rows = {r["minimizer"]: r for r in csv.DictReader(open(tmp_path / "bench.csv"))}
    assert set(rows) == {label for label, _, _ in benchmark.CONFIGS}
    for r in rows.values():
        assert r["precision"] == "fp16" and r["stepped"] == "True" and r["finite"] == "True"
        assert float(r["scale"]) > 0 and float(r["images_per_second"]) > 0


def test_benchmark_arguments():
    args = benchmark.parse_args([])
    assert (args.precision, args.precision_table, args.optimizer) == ("fp32", False, "sgd")
    assert benchmark.parse_args(["--precision"]).precision_table      # the bare flag: the precision table
    args = benchmark.parse_args(["--vit"])
    if benchmark.models.missing_package("vit_tiny_patch4"):
        assert args.models == ["resnet20", "wrn28_2"] and "skipped" in args.notes[0]
    else:
        assert args.models == ["resnet20", "wrn28_2", "vit_tiny_patch4", "vit_small_patch4"]
