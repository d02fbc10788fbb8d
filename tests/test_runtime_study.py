"""Drop plans through the Ray cluster give the study's accuracy on the same real images.

Uses the committed drop-aware CIFAR-10 checkpoint and the CIFAR-10 test set (JPEG ImageFolder,
``ADAPTIVE_RESNET_CIFAR10`` or ``../shared/data/cifar10``); skipped where that data is absent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from adaptive_resnet.models import DropPlan
from adaptive_resnet.planning.step_plan import PlannedRequest, StepPlan

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "results" / "cifar-r50w16-kd" / "model.pt"
STUDY = ROOT / "results" / "cifar-r50w16-kd" / "study.json"
DATA = Path(os.environ.get("ADAPTIVE_RESNET_CIFAR10", ROOT.parent / "shared" / "data" / "cifar10"))
DROP_SETS = ["none", "stage3.block2:DC", "stage4.block3:DC+stage5.block2:DC"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    import ray

    from adaptive_resnet.planning import Problem
    from adaptive_resnet.runtime.cluster import RayCluster
    from adaptive_resnet.system import load_scenario

    if not (DATA / "test").is_dir():
        pytest.skip(f"CIFAR-10 test images not found at {DATA} (set ADAPTIVE_RESNET_CIFAR10)")
    problem = Problem(load_scenario(ROOT / "scenarios" / "cifar-cluster.yaml"))
    runtime = RayCluster(problem, str(CHECKPOINT), emulate_links=False)
    yield runtime
    runtime.shutdown()
    ray.shutdown()


def plan_doc(problem, drops: str) -> StepPlan:
    """The units in quarters over the four devices, ``drops``' blocks placed nowhere."""
    plan = DropPlan() if drops == "none" else DropPlan.of(drops.split("+"))
    units, devices = problem.units, problem.devices
    placement = {u: devices[min(len(devices) * i // len(units), len(devices) - 1)] for i, u in enumerate(units)}
    for block, _ in plan.drops:
        placement[block] = None
    return StepPlan.of(PlannedRequest.of(placement, plan))


def cluster_correct(runtime, images, labels, drops: str, chunk: int = 500) -> int:
    correct = 0
    for start in range(0, len(images), chunk):
        outcomes = runtime.infer(images[start : start + chunk], plan_doc(runtime.problem, drops))
        assert all(o.error is None for o in outcomes)
        predicted = torch.cat([o.logits for o in outcomes]).argmax(1)
        correct += int((predicted == labels[start : start + chunk]).sum())
    return correct


def cifar_test_images(limit: int | None):
    from adaptive_resnet.data import batches, load_images

    data = load_images(DATA, "test", cache_dir=ROOT / "runs" / "cache")
    data = data.subset(limit) if limit else data
    xs, ys = zip(*batches(data, 1000), strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_drop_plans_through_the_cluster_count_what_the_study_counts_on_the_same_images(cluster):
    from adaptive_resnet.study import count_correct
    from adaptive_resnet.train import model_from_checkpoint

    images, labels = cifar_test_images(400)
    model, _ = model_from_checkpoint(CHECKPOINT)
    with torch.no_grad():
        expected = count_correct(model, images, labels, [DropPlan() if d == "none" else DropPlan.of(d.split("+")) for d in DROP_SETS])
    assert [cluster_correct(cluster, images, labels, d) for d in DROP_SETS] == expected


@pytest.mark.slow
def test_drop_plans_through_the_cluster_reproduce_the_committed_study_on_the_whole_test_set(cluster):
    images, labels = cifar_test_images(None)
    rows = {row["drops"]: row for row in json.loads(STUDY.read_text())["rows"]}
    for drops in DROP_SETS:
        assert cluster_correct(cluster, images, labels, drops) == rows[drops]["correct"], drops
