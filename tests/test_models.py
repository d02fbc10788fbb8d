"""The droppable ResNet: exact equality with torchvision, drop semantics, naming, weights."""

from __future__ import annotations

import itertools

import pytest
import torch
import torchvision
from torch import nn

from adaptive_resnet.errors import UserInputError
from adaptive_resnet.models import ARCHS, Connection, DroppableResNet, DropPlan, load_weights
from adaptive_resnet.profile import profile_model


def count_macs(model: nn.Module, x: torch.Tensor, plan: DropPlan) -> int:
    """Multiply-accumulates actually executed, counted by hooks on every conv and linear."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            total += output.numel() * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        else:
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(x, plan)
    for h in handles:
        h.remove()
    return total


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50", "resnext50_32x4d", "wide_resnet50_2"])
def test_empty_plan_equals_torchvision_exactly(arch):
    torch.manual_seed(1)
    reference = getattr(torchvision.models, arch)(weights=None).eval()
    model = DroppableResNet(arch).eval()
    model.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_state_dict_keys_are_torchvision_keys(arch):
    with torch.device("meta"):
        ours = DroppableResNet(arch).state_dict()
        theirs = getattr(torchvision.models, arch)(weights=None).state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == theirs[k].shape for k in ours)


def test_block_names_follow_the_paper(tiny_model):
    names = tiny_model.block_names
    assert len(names) == 16
    assert names[0] == "stage2.block1" and names[-1] == "stage5.block3"
    assert [n for n in names if n.startswith("stage4")][-1] == "stage4.block6"
    assert tiny_model.block("stage2.block1") is tiny_model.layer1[0]
    assert tiny_model.block("stage5.block3") is tiny_model.layer4[2]
    assert tiny_model.unit_names[0] == "stage1" and tiny_model.unit_names[-1] == "head"


def test_every_single_drop_keeps_shapes_and_changes_output(tiny_model):
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        full = tiny_model(x)
        for name, conn in itertools.product(tiny_model.block_names, Connection):
            out = tiny_model(x, DropPlan.of({name: conn}))
            assert out.shape == (2, 10)
            assert torch.isfinite(out).all()
            assert not torch.equal(out, full), f"{name}:{conn.value} changed nothing"


def test_every_pair_drop_keeps_shapes(tiny_model):
    x = torch.randn(1, 3, 16, 16)
    drops = list(itertools.product(tiny_model.block_names, Connection))
    with torch.no_grad():
        for (a, ca), (b, cb) in itertools.combinations(drops, 2):
            if a == b:
                continue
            assert tiny_model(x, DropPlan.of({a: ca, b: cb})).shape == (1, 10)


def test_dc_drop_of_identity_block_passes_input_through(tiny_model):
    x = torch.randn(2, 3, 16, 16)
    plan = DropPlan.dc(["stage3.block2"])
    with torch.no_grad():
        before = tiny_model.run_units(tiny_model.unit_names[:6], x, plan)  # up to stage3.block1
        after = tiny_model.run_unit("stage3.block2", before, plan)
    assert torch.equal(before, after)


@pytest.mark.parametrize("name", ["stage2.block1", "stage2.block2", "stage4.block1", "stage5.block3"])
def test_a_drop_really_removes_its_computation(tiny_model, name):
    x = torch.randn(1, 3, 16, 16)
    profile = profile_model("resnet50", 16, num_classes=10, stem="cifar", base_channels=4)
    full = count_macs(tiny_model, x, DropPlan())
    assert full == profile.total("macs")
    unit = profile[name]
    # DC dropped: only the projection shortcut (if any) still runs.
    assert count_macs(tiny_model, x, DropPlan.of({name: "DC"})) == full - unit.macs + unit.shortcut_macs
    # SC dropped: the projection, if any, is skipped; an identity shortcut costs nothing.
    assert count_macs(tiny_model, x, DropPlan.of({name: "SC"})) == full - unit.shortcut_macs


def test_plan_changes_between_batches_without_touching_weights(tiny_model):
    x = torch.randn(2, 3, 16, 16)
    weights = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    with torch.no_grad():
        full = tiny_model(x)
        dropped = tiny_model(x, DropPlan.dc(["stage2.block2", "stage4.block3"]))
        tiny_model.plan = DropPlan.of(["stage3.block3:SC"])
        via_attribute = tiny_model(x)
        tiny_model.plan = DropPlan()
        again = tiny_model(x)
    assert not torch.equal(full, dropped) and not torch.equal(full, via_attribute)
    assert torch.equal(full, again)
    assert all(torch.equal(weights[k], v) for k, v in tiny_model.state_dict().items())


def test_cifar_variant_keeps_topology_at_any_width():
    model = DroppableResNet("resnet50", num_classes=10, stem="cifar", base_channels=16)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    assert [len(layer) for layer in model._layers()] == [3, 4, 6, 3]
    assert model.fc.in_features == 16 * 8 * 4
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_stochastic_depth_rates_grow_linearly_and_only_act_in_training():
    model = DroppableResNet("resnet18", num_classes=10, stem="cifar", base_channels=4, drop_path_rate=0.4)
    probs = list(model.drop_path_probs.values())
    assert probs[0] == 0.0 and probs[-1] == pytest.approx(0.4)
    assert all(b > a for a, b in itertools.pairwise(probs))
    x = torch.randn(4, 3, 16, 16)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    model.train()
    torch.manual_seed(0)
    outs = [model(x) for _ in range(3)]
    assert not torch.equal(outs[0], outs[1]) or not torch.equal(outs[1], outs[2])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (["stage2.blok2"], "malformed block name"),
        (["stage1"], "stem"),
        (["stage2.block2:XX"], "unknown connection 'XX'"),
        ({"stage2.block2": "DC", " stage2.block2": "SC"}, "cannot drop both DC and SC"),
    ],
)
def test_bad_plans_are_one_line_errors(spec, message):
    with pytest.raises(UserInputError, match=message):
        DropPlan.of(spec)


def test_unknown_block_is_named_with_suggestion(tiny_model):
    with pytest.raises(UserInputError, match=r"unknown block 'stage4.block7' \(did you mean 'stage4.block\d'\?\)"):
        tiny_model(torch.randn(1, 3, 16, 16), DropPlan.dc(["stage4.block7"]))


def test_wrong_image_shape_is_a_clear_error(tiny_model):
    with pytest.raises(UserInputError, match=r"expected images of shape \(batch, 3, H, W\)"):
        tiny_model(torch.randn(1, 1, 16, 16))


def test_unknown_architecture_lists_choices():
    with pytest.raises(UserInputError, match="unknown architecture 'resnet51'.*resnet50"):
        DroppableResNet("resnet51")


@pytest.mark.parametrize("arch", ["resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2"])
def test_resnext_and_wide_resnet_load_torchvision_weights_unchanged_and_drop_blocks(arch, tmp_path):
    """The paper's "more ResNet structures": torchvision's weights (a state dict made here, as
    its published files are) load unchanged, and a dropped identity block removes its work."""
    torch.manual_seed(3)
    reference = getattr(torchvision.models, arch)(weights=None).eval()
    path = tmp_path / f"{arch}.pth"
    torch.save(reference.state_dict(), path)
    model = load_weights(DroppableResNet(arch).eval(), path)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
        dropped = model(x, DropPlan.dc(["stage4.block2"]))
    assert dropped.shape == (1, 1000) and not torch.equal(dropped, reference(x))
    assert model.block_names[:3] == ["stage2.block1", "stage2.block2", "stage2.block3"]


def test_cifar_variant_of_resnext_keeps_its_groups():
    model = DroppableResNet("resnext50_32x4d", num_classes=10, stem="cifar", base_channels=16)
    conv2 = model.block("stage3.block2").conv2
    assert conv2.groups == 32 and model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_load_weights_from_torchvision_file_and_checkpoint(tmp_path):
    torch.manual_seed(2)
    reference = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = load_weights(DroppableResNet("resnet18").eval(), path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"model": reference.state_dict(), "epoch": 3}, ckpt)
    assert torch.equal(load_weights(DroppableResNet("resnet18"), ckpt).fc.weight, reference.fc.weight)


def test_load_weights_rejects_mismatch_and_corruption(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(UserInputError, match=r"does not match resnet34.*missing keys"):
        load_weights(DroppableResNet("resnet34"), path)
    with pytest.raises(UserInputError, match=r"shape mismatches \(e.g. fc.weight"):
        load_weights(DroppableResNet("resnet18", num_classes=10), path)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserInputError, match="cannot read weights file"):
        load_weights(DroppableResNet("resnet18"), bad)
    with pytest.raises(UserInputError, match="not found"):
        load_weights(DroppableResNet("resnet18"), tmp_path / "missing.pth")


def test_drop_plan_text_round_trips():
    for plan in (DropPlan(), DropPlan.dc(["stage3.block2", "stage2.block3"]), DropPlan.of(["stage4.block1:SC", "stage5.block2"])):
        assert DropPlan.parse(str(plan)) == plan
    assert DropPlan.parse("none") == DropPlan() and str(DropPlan.parse("stage5.block2:SC+stage2.block2:DC")) == "stage2.block2:DC+stage5.block2:SC"
