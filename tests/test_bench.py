"""evonas bench on the CPU: small, but every part runs and the numbers hang together."""

import json

from click.testing import CliRunner

from evo_nas.cli import cli


def test_bench_runs_small_on_a_cpu(tmp_path):
    out = tmp_path / "bench"
    result = CliRunner().invoke(cli, ["bench", "--device", "cpu", "--random-cells", "1", "--train-limit", "128",
                                      "--epochs", "0.5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "bench.json").read_text())
    assert data["device"] == "cpu" and "CPU" in data["hardware"]
    assert [c["name"] for c in data["candidates"]] == ["NASNet-A", "DARTS-V2", "random-0"]
    for c in data["candidates"]:
        assert c["status"] == "ok" and c["evaluator_images_per_s"] > 0 and c["reference_images_per_s"] > 0
        assert c["ratio"] == round(c["evaluator_images_per_s"] / c["reference_images_per_s"], 2)
    assert [r["k"] for r in data["in_flight"]] == [1, 2] and data["in_flight"][0]["speedup"] == 1.0
    assert all(r["failed"] == 0 and r["candidates"] == 3 for r in data["in_flight"])
    assert data["proxy"]["evaluations_per_hour"] > 0 and data["proxy"]["darts_v2_val_accuracy"] is not None
    assert "evaluations per hour at this proxy" in result.output
