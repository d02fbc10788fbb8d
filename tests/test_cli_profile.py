"""``adaptive-resnet profile`` end to end, and its error handling."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from adaptive_resnet.cli import app

runner = CliRunner()


def test_profile_json_fields_and_order():
    result = runner.invoke(app, ["profile", "--arch", "resnet50", "--input-size", "224", "--format", "json"])
    assert result.exit_code == 0, result.output
    units = json.loads(result.output)["units"]
    assert [u["name"] for u in units][:3] == ["stage1", "stage2.block1", "stage2.block2"]
    assert units[-1]["name"] == "head" and len(units) == 18
    assert set(units[0]) == {"name", "params", "weight_bytes", "macs", "memory_bytes", "output_bytes", "shortcut_macs",
                             "shortcut_memory_bytes"}
    assert units[1]["shortcut_macs"] > 0 and units[2]["shortcut_macs"] == 0  # the projection shortcut of a first block
    assert units[2]["macs"] == 218_365_952 and units[2]["memory_bytes"] == 4_816_896


def test_profile_csv_and_table():
    csv_out = runner.invoke(app, ["profile", "--arch", "resnet18", "--input-size", "64", "--format", "csv"])
    assert csv_out.exit_code == 0
    lines = csv_out.output.strip().splitlines()
    assert lines[0] == "name,params,weight_bytes,macs,memory_bytes,output_bytes" and len(lines) == 1 + 10
    table = runner.invoke(app, ["profile", "--arch", "resnet18", "--input-size", "64"])
    assert table.exit_code == 0 and "stage5.block2" in table.output


def test_bad_arch_and_size_exit_2_with_one_line():
    for args, needle in [
        (["--arch", "resnet51"], "unknown architecture 'resnet51'"),
        (["--input-size", "0"], "input size must be positive"),
    ]:
        proc = subprocess.run(
            [sys.executable, "-m", "adaptive_resnet.cli", "profile", *args], capture_output=True, text=True
        )
        assert proc.returncode == 2, proc.stderr
        assert needle in proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
