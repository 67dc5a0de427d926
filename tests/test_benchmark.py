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
