"""Bad input to every command: one table per command, each case a one-line error and exit 2.

Every case asserts the exit code, a message naming the problem, no traceback, and that the
command left its output folder as it was (nothing written before the inputs were checked).
The commands run in-process (typer's runner); none of these cases gets as far as starting Ray.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from adaptive_resnet.cli import app
from test_data import make_image_folder

runner = CliRunner()
SMALL = Path("scenarios/small.yaml").read_text()
# The model of ``tiny_checkpoint``: a CIFAR-stem ResNet-50 at width 4 for 10 classes, 16x16 inputs.
TINY = {
    "model": {"arch": "resnet50", "input_size": 16, "num_classes": 10, "stem": "cifar", "base_channels": 4},
    "accuracy": "paper", "accuracy_threshold": 0.5, "requests": 2, "rates_mbps": {"default": 50},
    "devices": [{"name": name, "memory_mb": 5, "speed_gmacs": 1000, "compute_limit_gmac": 1000, "energy_j": 1000} for name in "ab"],
}


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with its bytes (an absent folder is {})."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}


def expect_refused(args: list[str], needle: str, watched: Path | None = None) -> None:
    before = snapshot(watched) if watched else None
    existed = watched.exists() if watched else None
    result = runner.invoke(app, args)
    said = result.output
    assert result.exit_code == 2, f"{args}: exit {result.exit_code}, said:\n{said}\n{result.exception!r}"
    assert isinstance(result.exception, SystemExit), f"{args}: raised {result.exception!r}"
    assert "Traceback" not in said, said
    errors = [line for line in said.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1, f"{args}: expected one error line, got:\n{said}"
    assert needle.lower() in errors[0].lower(), f"{args}: {needle!r} not in {errors[0]!r}"
    if watched is not None:
        assert watched.exists() == existed and snapshot(watched) == before, f"{args}: {watched} changed"


@pytest.fixture()
def files(tmp_path):
    """A folder of good and bad input files the cases name."""
    def scenario(name: str, text: str) -> str:
        (tmp_path / name).write_text(text)
        return str(tmp_path / name)

    f = {"dir": tmp_path}
    f["inf"] = scenario("inf.yaml", SMALL.replace("speed_gmacs: 1.0", "speed_gmacs: .inf"))
    f["nan"] = scenario("nan.yaml", SMALL.replace("memory_mb: 60", "memory_mb: .nan"))
    f["threshold"] = scenario("threshold.yaml", SMALL.replace("accuracy_threshold: 0.85", "accuracy_threshold: 1.5"))
    f["unreachable"] = scenario("unreachable.yaml", SMALL.replace("accuracy_threshold: 0.85", "accuracy_threshold: 0.99"))
    f["unknown_key"] = scenario("key.yaml", SMALL + "colour: blue\n")
    f["list"] = scenario("list.yaml", "- a\n- b\n")
    f["dupe"] = scenario("dupe.yaml", SMALL.replace("name: phone", "name: camera"))
    f["matrix"] = scenario("matrix.yaml", SMALL.replace('  default: 50\n  pairs: {"camera,hub": 10}', "  matrix: [[0, 1], [1, 0]]"))
    f["negative_rate"] = scenario("neg.yaml", SMALL.replace("default: 50", "default: -5"))
    f["alpha"] = scenario("alpha.yaml", SMALL.replace("alpha: 0.7", "alpha: 0.9"))
    f["requests0"] = scenario("requests.yaml", SMALL.replace("requests: 2", "requests: 0"))
    f["no_devices"] = scenario("nodev.yaml", SMALL.split("devices:")[0] + "devices: []\nrates_mbps: {default: 5}\n")
    (tmp_path / "latin1.yaml").write_bytes(SMALL.replace("small", "sm\xe4ll").encode("latin-1"))
    f["latin1"] = str(tmp_path / "latin1.yaml")
    f["bad_yaml"] = scenario("bad.yaml", "name: [unclosed\n")
    for name, doc in {"acc17": {"arch": "resnet50", "rows": [{"drops": "none", "accuracy": 0.9},
                                                              {"drops": "stage3.block2:DC", "accuracy": 1.7}]},
                      "rowsnull": {"rows": None},
                      "accnan": {"rows": [{"drops": "none", "accuracy": float("nan")}]},
                      "badblock": {"rows": [{"drops": "none", "accuracy": 0.9}, {"drops": "stage9.block1:DC", "accuracy": 0.8}]}}.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
        f[name] = scenario(f"{name}.yaml", SMALL.replace("accuracy: paper", f"accuracy: {name}.json").replace("accuracy_threshold: 0.85", "accuracy_threshold: 0.5"))
    profile = runner.invoke(app, ["profile", "--format", "json"]).output
    doc = json.loads(profile)
    for u in doc["units"]:
        del u["shortcut_macs"]
    (tmp_path / "old-profile.json").write_text(json.dumps(doc))
    f["old_profile"] = scenario("oldprof.yaml", SMALL.replace("model: {arch: resnet50, input_size: 224}", "model: {profile: old-profile.json}"))
    f["missing_profile"] = scenario("noprof.yaml", SMALL.replace("model: {arch: resnet50, input_size: 224}", "model: {profile: none.json}"))
    f["tiny"] = scenario("tiny.yaml", yaml.safe_dump(TINY))
    plan = runner.invoke(app, ["plan", "scenarios/small.yaml", "--solver", "fast", "--json"])
    assert plan.exit_code == 0, plan.output
    good = json.loads(plan.output)
    f["plan"] = good

    def plan_file(name: str, doc) -> str:
        (tmp_path / name).write_text(doc if isinstance(doc, str) else json.dumps(doc))
        return str(tmp_path / name)

    f["plan_not_json"] = plan_file("notjson.json", "{requests: [")
    f["plan_no_requests"] = plan_file("noreq.json", {"solver": "fast"})
    f["plan_requests_dict"] = plan_file("reqdict.json", {"requests": {"a": 1}})
    wrong = json.loads(json.dumps(good))
    wrong["requests"][0]["placement"]["stage1"] = 5
    f["plan_wrong_type"] = plan_file("wrongtype.json", wrong)
    drops = json.loads(json.dumps(good))
    drops["requests"][0]["drops"] = "stage3.block2"
    f["plan_drops_str"] = plan_file("dropsstr.json", drops)
    unit = json.loads(json.dumps(good))
    unit["requests"][0]["placement"]["stage9.block1"] = "hub"
    f["plan_unit"] = plan_file("unit.json", unit)
    f["plan_request_list"] = plan_file("reqlist.json", {"requests": [[1, 2]]})
    f["not_a_file"] = str(tmp_path / "a-file")
    Path(f["not_a_file"]).write_text("x")
    return f


PLAN_CASES = [
    (lambda f: ["plan", "nope.yaml"], "scenario file not found"),
    (lambda f: ["plan", f["inf"]], "finite"),
    (lambda f: ["plan", f["nan"]], "finite"),
    (lambda f: ["plan", f["threshold"]], "accuracy_threshold"),
    (lambda f: ["plan", f["unreachable"]], "above every drop set"),
    (lambda f: ["plan", f["unknown_key"]], "unknown key"),
    (lambda f: ["plan", f["list"]], "mapping"),
    (lambda f: ["plan", f["dupe"]], "named twice"),
    (lambda f: ["plan", f["matrix"]], "3x3"),
    (lambda f: ["plan", f["negative_rate"]], "greater than 0"),
    (lambda f: ["plan", f["alpha"]], "alpha + beta"),
    (lambda f: ["plan", f["requests0"]], "requests"),
    (lambda f: ["plan", f["no_devices"]], "devices"),
    (lambda f: ["plan", f["latin1"]], "not UTF-8"),
    (lambda f: ["plan", f["bad_yaml"]], "not valid YAML"),
    (lambda f: ["plan", f["acc17"]], "fraction in [0, 1]"),
    (lambda f: ["plan", f["rowsnull"]], "'rows' list"),
    (lambda f: ["plan", f["accnan"]], "fraction in [0, 1]"),
    (lambda f: ["plan", f["badblock"]], "unknown block 'stage9.block1'"),
    (lambda f: ["plan", f["old_profile"]], "shortcut_macs"),
    (lambda f: ["plan", f["missing_profile"]], "cannot read profile"),
    (lambda f: ["plan", "scenarios/small.yaml", "--time-limit", "0"], "greater than 0"),
    (lambda f: ["plan", "scenarios/small.yaml", "--time-limit", "-1"], "greater than 0"),
    (lambda f: ["plan", "scenarios/small.yaml", "--time-limit", "inf"], "finite"),
    (lambda f: ["plan", "scenarios/small.yaml", "--time-limit", "abc"], "time-limit"),
    (lambda f: ["plan", "scenarios/small.yaml", "--solver", "exactt"], "unknown solver"),
    (lambda f: ["plan", "scenarios/small.yaml", "--out", str(f["dir"] / "missing" / "dir" / "x.json")], "does not exist"),
    (lambda f: ["plan", "scenarios/small.yaml", "--out", str(f["dir"])], "is a folder"),
]

EVALUATE_CASES = [
    (lambda f: ["evaluate", "scenarios/small.yaml", str(f["dir"] / "none.json")], "does not exist"),
    (lambda f: ["evaluate", "scenarios/small.yaml", f["plan_not_json"]], "cannot read plan"),
    (lambda f: ["evaluate", "scenarios/small.yaml", f["plan_no_requests"]], "'requests' list"),
    (lambda f: ["evaluate", "scenarios/small.yaml", f["plan_requests_dict"]], "'requests' list"),
    (lambda f: ["evaluate", "scenarios/small.yaml", f["plan_wrong_type"]], "expected a device name or null"),
    (lambda f: ["evaluate", "scenarios/small.yaml", f["plan_drops_str"]], "drops: expected a list"),
    (lambda f: ["evaluate", "scenarios/small.yaml", f["plan_unit"]], "unknown unit"),
    (lambda f: ["evaluate", "scenarios/small.yaml", f["plan_request_list"]], "expected an object"),
    (lambda f: ["evaluate", f["inf"], f["plan_wrong_type"]], "finite"),
]


@pytest.mark.parametrize("case", range(len(PLAN_CASES)))
def test_plan_refuses(files, case):
    args, needle = PLAN_CASES[case]
    expect_refused(args(files), needle)


@pytest.mark.parametrize("case", range(len(EVALUATE_CASES)))
def test_evaluate_refuses(files, case):
    args, needle = EVALUATE_CASES[case]
    expect_refused(args(files), needle)


def test_evaluate_reports_a_drop_set_below_the_threshold_as_a_violation(files, tmp_path):
    """Eq. 16 is a constraint like the others: reported, not refused."""
    doc = json.loads(json.dumps(files["plan"]))
    doc["requests"][0]["drops"] = ["stage4.block2:DC", "stage5.block3:DC"]  # the paper's 83.96%
    placement = doc["requests"][0]["placement"]
    placement.update({unit: "hub" for unit, device in placement.items() if device is None})
    for unit in ("stage4.block2", "stage5.block3"):
        doc["requests"][0]["placement"][unit] = None
    (tmp_path / "low.json").write_text(json.dumps(doc))
    result = runner.invoke(app, ["evaluate", "scenarios/small.yaml", str(tmp_path / "low.json"), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert not out["feasible"]
    assert any(v.startswith("accuracy[request 0]") and "< threshold 0.85" in v for v in out["violations"])


SIMULATE_CASES = [
    (lambda f, out: ["simulate", "scenarios/small.yaml", "--out", out, "--rounds", "0"], "rounds"),
    (lambda f, out: ["simulate", "scenarios/small.yaml", "--out", out, "--rounds", "-1"], "rounds"),
    (lambda f, out: ["simulate", "scenarios/small.yaml", "--out", out, "--rounds", "200000"], "at most 100000"),
    (lambda f, out: ["simulate", "scenarios/small.yaml", "--out", out, "--request-rate", "0"], "greater than 0"),
    (lambda f, out: ["simulate", "scenarios/small.yaml", "--out", out, "--request-rate", "nan"], "finite"),
    (lambda f, out: ["simulate", "scenarios/small.yaml", "--out", out, "--request-rate", "5000"], "at most 1000"),
    (lambda f, out: ["simulate", "scenarios/small.yaml", "--out", out, "--time-limit", "0"], "greater than 0"),
    (lambda f, out: ["simulate", "scenarios/small.yaml", "--out", out, "--seed", "-1"], "at least 0"),
    (lambda f, out: ["simulate", "scenarios/small.yaml", "--out", out, "--fail", "x"], "ROUND:DEVICE"),
    (lambda f, out: ["simulate", "scenarios/small.yaml", "--out", out, "--fail", "99:hub", "--rounds", "3"], "outside 1..3"),
    (lambda f, out: ["simulate", "scenarios/small.yaml", "--out", out, "--fail", "1:toaster"], "unknown device 'toaster'"),
    (lambda f, out: ["simulate", "scenarios/small.yaml", "--out", out, "--solver", "nope"], "unknown solver"),
    (lambda f, out: ["simulate", "scenarios/small.yaml", "--out", out, "--rate-trace", "none.csv"], "does not exist"),
    (lambda f, out: ["simulate", f["inf"], "--out", out], "finite"),
    (lambda f, out: ["simulate", "scenarios/small.yaml", "--out", f["not_a_file"]], "is a file"),
    (lambda f, out: ["experiment", "fig10", "--out", out], "unknown experiment"),
    (lambda f, out: ["experiment", "fig8", "--out", out, "--rounds", "200000"], "at most 100000"),
    (lambda f, out: ["experiment", "fig8", "--out", out, "--solver", "nope"], "unknown solver"),
    (lambda f, out: ["experiment", "fig8", "--out", out, "--seed", "-2"], "at least 0"),
    (lambda f, out: ["experiment", "fig8", "--out", out, "--seeds", "0"], "at least 1"),
    (lambda f, out: ["experiment", "fig8", "--out", out, "--reading", "mine"], "unknown reading"),
    (lambda f, out: ["experiment", "fig8", "--out", out, "--reading", "downsize", "--reading", "downsize"], "given twice"),
    (lambda f, out: ["experiment", "fig8", "--out", out, "--address", "127.0.0.1:1"], "cannot reach Ray at 127.0.0.1:1"),
    (lambda f, out: ["experiment", "fig8", "--out", out, "--address", "nowhere"], "is not host:port"),
    (lambda f, out: ["experiment", "fig8", "--out", out, "--scenario", f["unreachable"]], "above every drop set"),
    (lambda f, out: ["demo", "--out", out, "--rounds", "0"], "rounds"),
    (lambda f, out: ["demo", "--out", out, "--scenario", f["nan"]], "finite"),
]


@pytest.mark.parametrize("case", range(len(SIMULATE_CASES)))
def test_simulate_experiment_demo_refuse(files, tmp_path, case):
    args, needle = SIMULATE_CASES[case]
    out = tmp_path / "out"
    expect_refused(args(files, str(out)), needle, watched=out)


def test_simulate_refuses_a_folder_holding_another_scenarios_run_and_leaves_it(tmp_path):
    out = tmp_path / "run"
    first = runner.invoke(app, ["simulate", "scenarios/small.yaml", "--out", str(out), "--rounds", "2"])
    assert first.exit_code == 0, first.output
    other = tmp_path / "other.yaml"
    other.write_text(SMALL.replace("name: small", "name: other").replace("requests: 2", "requests: 3"))
    expect_refused(["simulate", str(other), "--out", str(out), "--rounds", "2"], "another configuration", watched=out)
    expect_refused(["simulate", "scenarios/small.yaml", "--out", str(out), "--rounds", "3"], "config.rounds", watched=out)
    (tmp_path / "stranger").mkdir()
    (tmp_path / "stranger" / "notes.txt").write_text("mine")
    expect_refused(["simulate", "scenarios/small.yaml", "--out", str(tmp_path / "stranger")], "not empty", watched=tmp_path / "stranger")


@pytest.fixture()
def image_data(tmp_path):
    make_image_folder(tmp_path / "ds", classes=tuple("abcdefghij"), per_class=2, size=16)
    return tmp_path / "ds"


def test_study_and_train_refuse(tmp_path, tiny_checkpoint, image_data):
    out = tmp_path / "out"
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00" * 64)
    ckpt = torch.load(tiny_checkpoint, weights_only=False)
    odd = tmp_path / "odd.pt"
    torch.save({**ckpt, "config": {**ckpt["config"], "colour": "blue"}}, odd)
    (tmp_path / "a-file").write_text("x")
    missing_class = tmp_path / "ds2"
    make_image_folder(missing_class, classes=("a", "b", "c"), per_class=2, size=16)
    import shutil

    shutil.rmtree(missing_class / "test" / "b")
    study = ["study", "--checkpoint", str(tiny_checkpoint), "--data", str(image_data), "--out", str(out)]
    train = ["train", "--data", str(image_data), "--out", str(out), "--base-channels", "4", "--epochs", "1"]
    cases = [
        (study + ["--limit", "0"], "at least 1"),
        (study + ["--random-count", "0"], "at least 1"),
        (study + ["--batch-size", "0"], "at least 1"),
        (study + ["--random-k", "0"], "at least 1"),
        (study + ["--random-k", "99"], "random k must be between"),
        (study + ["--seed", "-1"], "at least 0"),
        (["study", "--checkpoint", str(tmp_path / "none.pt"), "--data", str(image_data), "--out", str(out)], "does not exist"),
        (["study", "--checkpoint", str(corrupt), "--data", str(image_data), "--out", str(out)], "cannot read checkpoint"),
        (["study", "--checkpoint", str(odd), "--data", str(image_data), "--out", str(out)], "colour"),
        (["study", "--checkpoint", str(tiny_checkpoint), "--data", str(tmp_path / "nodata"), "--out", str(out)], "not found"),
        (study[:-1] + [str(tmp_path / "a-file")], "is a file"),
        (train + ["--lr", "inf"], "finite"),
        (train + ["--lr", "0"], "greater than 0"),
        (train + ["--epochs", "0"], "epochs"),
        (train + ["--momentum", "1.5"], "momentum"),
        (train + ["--distill-alpha", "0.5"], "needs a teacher"),
        (train + ["--val", "1000"], "validation split"),
        (train + ["--teacher", str(tmp_path / "none.pt"), "--distill-alpha", "0.5"], "not found"),
        (["train", "--data", str(tmp_path / "typo"), "--out", str(out)], "not found"),
        (["train", "--data", str(missing_class), "--out", str(out), "--num-classes", "3", "--base-channels", "4"], "classes"),
        (["train", "--data", str(image_data), "--out", str(tmp_path / "a-file")], "is a file"),
    ]
    for args, needle in cases:
        expect_refused(args, needle, watched=out)


def test_profile_refuses():
    for args, needle in [(["--arch", "resnet51"], "unknown architecture"), (["--input-size", "0"], "input size"),
                         (["--input-size", "100000"], "at most 8192"), (["--stem", "foo"], "unknown stem"),
                         (["--num-classes", "0"], "at least 1"), (["--base-channels", "0"], "at least 1"),
                         (["--format", "xml"], "format")]:
        expect_refused(["profile", *args], needle)


def test_run_and_serve_refuse_before_any_worker_starts(files, tmp_path, tiny_checkpoint, image_data):
    import ray

    wide = tmp_path / "wide.pt"
    from adaptive_resnet.train import TrainConfig, build_model

    config = TrainConfig(data=".", arch="resnet50", stem="cifar", base_channels=8, num_classes=10)
    torch.save({"model": build_model(config).state_dict(), "config": {**config.model_dump(), "base_channels": 4}}, wide)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    busy_port = str(busy.getsockname()[1])
    run = ["run", files["tiny"], "--checkpoint", str(tiny_checkpoint), "--images", str(image_data)]
    serve = ["serve", files["tiny"], "--checkpoint", str(tiny_checkpoint)]
    cases = [
        (run + ["--limit", "0"], "at least 1"),
        (run + ["--limit", "-1"], "at least 1"),
        (run + ["--per-step", "0"], "at least 1"),
        (run + ["--time-dilation", "0.5"], "time-dilation"),
        (run + ["--time-dilation", "fast"], "time-dilation"),
        (run + ["--solver", "nope"], "unknown solver"),
        (run + ["--rate-trace", "none.csv"], "does not exist"),
        (["run", files["tiny"], "--checkpoint", str(tmp_path / "none.pt"), "--images", str(image_data)], "does not exist"),
        (["run", files["tiny"], "--checkpoint", str(wide), "--images", str(image_data)], "does not match"),
        (["run", "scenarios/small.yaml", "--checkpoint", str(tiny_checkpoint), "--images", str(image_data)], "scenario's model"),
        (serve + ["--port", "-1"], "TCP port"),
        (serve + ["--port", "70000"], "TCP port"),
        (serve + ["--step-s", "0"], "greater than 0"),
        (serve + ["--step-s", "-1"], "greater than 0"),
        (serve + ["--step-s", "nan"], "finite"),
        (serve + ["--classes", "a,b"], "--classes needs 10"),
        (serve + ["--port", busy_port], "cannot listen"),
        (serve + ["--solver", "nope"], "unknown solver"),
        (serve + ["--deadline", "0"], "greater than 0"),
        (serve + ["--deadline", "inf"], "finite"),
        (serve + ["--address", "127.0.0.1:1"], "cannot reach Ray at 127.0.0.1:1"),
        (run + ["--address", "nowhere"], "is not host:port"),
        (run + ["--deadline", "-2"], "greater than 0"),
        (["serve", files["tiny"], "--checkpoint", str(wide)], "does not match"),
    ]
    try:
        for args, needle in cases:
            expect_refused(args, needle)
    finally:
        busy.close()
    assert not ray.is_initialized()
