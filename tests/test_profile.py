"""The cost profile against the paper's Table II and torchvision's published totals."""

from __future__ import annotations

import json

import pytest
from torchvision.models import get_model_weights

from adaptive_resnet.errors import UserInputError
from adaptive_resnet.profile import ModelProfile, profile_model


@pytest.fixture(scope="module")
def r50() -> ModelProfile:
    return profile_model("resnet50", 224)


def test_identity_blocks_match_table_ii(r50):
    identity = [u for u in r50.units if u.name.split(".block")[-1] not in ("1",) and ".block" in u.name]
    assert len(identity) == 12
    assert all(u.macs == 218_365_952 for u in identity)
    expected_mb = {"stage2": 4.82, "stage3": 2.41, "stage4": 1.20, "stage5": 0.60}
    for u in identity:
        assert round(u.memory_bytes / 1e6, 2) == expected_mb[u.name.split(".")[0]], u.name


def test_stage2_identity_memory_worked_by_hand(r50):
    # conv1 sees 56x56x256, conv2 and conv3 see 56x56x64: (802816 + 2 * 200704) * 4 bytes.
    assert r50["stage2.block2"].memory_bytes == (56 * 56 * 256 + 2 * 56 * 56 * 64) * 4
    assert r50["stage2.block2"].output_bytes == 56 * 56 * 256 * 4


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
                                  "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2"])
def test_totals_match_torchvision_published(arch):
    meta = get_model_weights(arch).IMAGENET1K_V1.meta
    profile = profile_model(arch, 224)
    assert profile.total("params") == meta["num_params"]
    assert round(profile.total("macs") / 1e9, 3) == pytest.approx(meta["_ops"], abs=0.001)


def test_resnet50_totals_as_the_issue_states(r50):
    assert r50.total("params") == 25_557_032
    assert round(r50.total("macs") / 1e9, 2) == 4.09


def test_projection_share_of_first_blocks(r50):
    # stage3.block1 projection: 1x1 conv, 256 -> 512 channels, stride 2, output 28x28.
    assert r50["stage3.block1"].shortcut_macs == 28 * 28 * 512 * 256
    assert r50["stage3.block2"].shortcut_macs == 0


def test_round_trip_through_json(r50, tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(r50.to_dict()))
    assert ModelProfile.load(path) == r50


@pytest.mark.parametrize("size", [0, -3, 16])
def test_bad_input_size(size):
    with pytest.raises(UserInputError, match="input size"):
        profile_model("resnet50", size)


def test_savings_match_table_ii_gains(r50):
    from adaptive_resnet.models import DropPlan

    macs, memory = r50.savings(DropPlan.dc(["stage5.block2", "stage4.block6"]))
    assert macs == 436_731_904 and round(memory / 1e6, 2) == 1.81
    macs, memory = r50.savings(DropPlan.dc(["stage2.block2", "stage4.block3"]))
    assert round(memory / 1e6, 2) == 6.02
    # A first block's DC drop keeps its projection; its SC drop saves only the projection.
    unit = r50["stage3.block1"]
    assert r50.savings(DropPlan.dc(["stage3.block1"]))[0] == unit.macs - unit.shortcut_macs
    assert r50.savings(DropPlan.of(["stage3.block1:SC"])) == (unit.shortcut_macs, unit.shortcut_memory_bytes)
    assert r50.savings(DropPlan.of(["stage3.block2:SC"])) == (0, 0)


def test_cached_profile_equals_a_measured_one_and_a_damaged_cache_is_measured_again():
    from adaptive_resnet.profile import profile_cache_dir

    measured = profile_model("resnet18", 40, 7, "cifar", 8, cache=False)
    assert profile_model("resnet18", 40, 7, "cifar", 8) == measured  # measured, then written
    files = sorted(profile_cache_dir().glob("resnet18-40-*.json"))
    assert len(files) == 1
    assert profile_model("resnet18", 40, 7, "cifar", 8) == measured  # read back
    files[0].write_text('{"arch": "resnet18", "units": [')
    assert profile_model("resnet18", 40, 7, "cifar", 8) == measured
