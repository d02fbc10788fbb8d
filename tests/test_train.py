"""Training: a tiny run, resumption without recomputation, refusals of mismatched runs."""

from __future__ import annotations

import json

import pytest
import torch

from adaptive_resnet.errors import UserInputError
from adaptive_resnet.train import TrainConfig, load_checkpoint, model_from_checkpoint, train
from test_data import make_image_folder


@pytest.fixture()
def tiny_config(tmp_path):
    make_image_folder(tmp_path / "ds", classes=("a", "b"), per_class=8, size=16)
    return TrainConfig(
        data=str(tmp_path / "ds"), arch="resnet18", base_channels=4, num_classes=2, epochs=2,
        batch_size=8, lr=0.05, cache_dir=str(tmp_path / "cache"),
    )


def test_tiny_run_writes_config_checkpoint_history(tiny_config, tmp_path):
    out = tmp_path / "run"
    result = train(tiny_config, out, progress=False)
    assert [h["epoch"] for h in result["history"]] == [1, 2]
    assert json.loads((out / "config.json").read_text()) == tiny_config.model_dump()
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == 2 and set(ckpt["model"]) >= {"conv1.weight", "fc.bias"}
    model, config = model_from_checkpoint(out / "last.pt")
    assert config == tiny_config and not model.training


def interrupted_after(checkpoints: int, config, out, monkeypatch) -> None:
    """Run ``config`` in ``out`` as a process that dies right after its ``checkpoints``-th
    checkpoint, then let checkpoints be written normally again."""
    import adaptive_resnet.train as train_module

    real_save, saved = train_module._atomic_save, []

    def save_then_interrupt(obj, path):
        real_save(obj, path)
        saved.append(path)
        if len(saved) == checkpoints:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_atomic_save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(config, out, progress=False)
    monkeypatch.setattr(train_module, "_atomic_save", real_save)


def test_resume_continues_without_recomputing(tiny_config, tmp_path, monkeypatch):
    out = tmp_path / "run"
    interrupted_after(1, tiny_config, out, monkeypatch)  # dies right after epoch 1's checkpoint
    epoch1 = load_checkpoint(out / "last.pt")["history"]
    assert [h["epoch"] for h in epoch1] == [1]
    resumed = train(tiny_config, out, progress=False)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert resumed["history"][0] == epoch1[0]  # same timing and loss: epoch 1 was not run again


def test_other_configuration_in_the_same_folder_is_refused(tiny_config, tmp_path):
    train(tiny_config.model_copy(update={"epochs": 1}), tmp_path / "run", progress=False)
    with pytest.raises(UserInputError, match="another configuration .*epochs"):
        train(tiny_config, tmp_path / "run", progress=False)


def test_corrupt_or_foreign_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 10)
    with pytest.raises(UserInputError, match="cannot read checkpoint"):
        load_checkpoint(bad)
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(UserInputError, match="not an adaptive-resnet checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_class_count_mismatch(tiny_config, tmp_path):
    with pytest.raises(UserInputError, match="data has 2 classes but num_classes is 5"):
        train(tiny_config.model_copy(update={"num_classes": 5}), tmp_path / "run", progress=False)


def test_exported_checkpoint_is_smaller_and_loads(tiny_config, tmp_path):
    from adaptive_resnet.train import export_checkpoint

    train(tiny_config.model_copy(update={"epochs": 1}), tmp_path / "run", progress=False)
    slim = export_checkpoint(tmp_path / "run" / "last.pt", tmp_path / "model.pt")
    assert slim.stat().st_size < (tmp_path / "run" / "last.pt").stat().st_size
    model, config = model_from_checkpoint(slim)
    full, _ = model_from_checkpoint(tmp_path / "run" / "last.pt")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), full.state_dict().values()))
    assert "optimizer" not in load_checkpoint(slim)


def test_warm_restart_starts_from_the_checkpoint_weights(tiny_config, tmp_path):
    from adaptive_resnet.train import build_model

    first = train(tiny_config, tmp_path / "first", progress=False)
    restart = tiny_config.model_copy(update={"init_from": first["checkpoint"], "epochs": 1, "lr": 0.01})
    start = build_model(restart).state_dict()
    trained = load_checkpoint(first["checkpoint"])["model"]
    assert all(torch.equal(start[k], trained[k]) for k in trained)
    train(restart, tmp_path / "second", progress=False)
    (tmp_path / "first" / "last.pt").unlink()  # a checkpoint is used where its start file is not
    assert [h["epoch"] for h in train(restart, tmp_path / "second", progress=False)["history"]] == [1]  # resumes
    model, config = model_from_checkpoint(tmp_path / "second" / "last.pt")
    assert config.init_from == first["checkpoint"]
    from adaptive_resnet.runtime.worker import DeviceWorker, from_wire

    worker = DeviceWorker("d", tmp_path / "second" / "last.pt")
    x = torch.randn(2, 3, 16, 16)
    worker.load(model.unit_names)
    with torch.no_grad():
        assert torch.allclose(from_wire(worker.run(x, model.unit_names, [])), model(x), atol=1e-6)


def test_warm_restart_from_another_model_is_refused(tiny_config, tmp_path):
    first = train(tiny_config.model_copy(update={"epochs": 1}), tmp_path / "first", progress=False)
    wider = tiny_config.model_copy(update={"init_from": first["checkpoint"], "base_channels": 8})
    with pytest.raises(UserInputError, match="shape mismatches"):
        train(wider, tmp_path / "second", progress=False)


def test_device_that_is_not_there_is_refused(tiny_config, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(UserInputError, match="no CUDA GPU"):
        train(tiny_config.model_copy(update={"device": "cuda"}), tmp_path / "run", progress=False)


def _epoch_end_weights(monkeypatch):
    """Record the parameters of every checkpoint written by train()."""
    import adaptive_resnet.train as train_module

    real_save, saved = train_module._atomic_save, []

    def save_and_record(obj, path):
        saved.append({k: v.clone() for k, v in obj["model"].items()})
        real_save(obj, path)

    monkeypatch.setattr(train_module, "_atomic_save", save_and_record)
    return saved


def test_swa_final_model_is_the_mean_of_the_epoch_end_weights(tiny_config, tmp_path, monkeypatch):
    config = tiny_config.model_copy(update={"epochs": 3, "swa_start": 2, "schedule": "constant"})
    saved = _epoch_end_weights(monkeypatch)
    result = train(config, tmp_path / "run", progress=False)
    assert len(saved) == 4  # three epochs, then the averaged model
    final, (_, second, third, _) = saved[-1], saved
    model, _ = model_from_checkpoint(tmp_path / "run" / "last.pt")
    for name, _ in model.named_parameters():
        torch.testing.assert_close(final[name], (second[name] + third[name]) / 2, rtol=0, atol=1e-6)
    # batch-norm statistics were measured again for the average, not copied from epoch 3
    assert not torch.equal(final["bn1.running_mean"], third["bn1.running_mean"])
    history = result["history"]
    assert "swa_test_accuracy" not in history[0] and [h["swa_models"] for h in history[1:]] == [1, 2]
    assert 0 <= history[-1]["final_test_accuracy"] <= 1
    assert load_checkpoint(tmp_path / "run" / "last.pt")["swa"]["done"]
    assert train(config, tmp_path / "run", progress=False)["history"] == history  # finished: nothing re-run


def test_swa_resumes_with_its_running_average(tiny_config, tmp_path, monkeypatch):
    config = tiny_config.model_copy(update={"epochs": 3, "swa_start": 1, "schedule": "constant"})
    whole = train(config, tmp_path / "whole", progress=False)
    interrupted_after(2, config, tmp_path / "cut", monkeypatch)  # dies after epoch 2, holding an average of two
    resumed = train(config, tmp_path / "cut", progress=False)
    assert resumed["history"][-1]["swa_models"] == 3
    a = load_checkpoint(tmp_path / "whole" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "last.pt")["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6)
    assert resumed["history"][-1]["final_test_accuracy"] == whole["history"][-1]["final_test_accuracy"]


def test_recompute_batchnorm_measures_the_mean_of_its_inputs(tiny_config, tmp_path):
    from adaptive_resnet.data import load_images
    from adaptive_resnet.train import build_model, recompute_batchnorm

    model = build_model(tiny_config)
    data = load_images(tiny_config.data, "train", cache_dir=tiny_config.cache_dir)
    inputs = []
    hook = model.bn1.register_forward_hook(lambda _m, args, _out: inputs.append(args[0].detach().clone()))
    recompute_batchnorm(model, data, batch_size=5, image_size=None, seed=3)
    hook.remove()
    assert len(inputs) == -(-len(data) // 5)  # every image once, in batches of 5
    # torch's cumulative averaging (momentum None) weights every batch alike: the mean of batch means
    expected = torch.stack([x.mean(dim=(0, 2, 3)) for x in inputs]).mean(0)
    torch.testing.assert_close(model.bn1.running_mean, expected, rtol=1e-5, atol=1e-6)
    assert model.bn1.momentum is not None and not model.training
