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
    from adaptive_resnet.models import DropPlan
    from adaptive_resnet.runtime.worker import DeviceWorker, from_wire

    worker = DeviceWorker("d", tmp_path / "second" / "last.pt")
    x = torch.randn(2, 3, 16, 16)
    worker.load(model.unit_names)
    with torch.no_grad():
        assert torch.allclose(from_wire(worker.run(x, model.unit_names, DropPlan())), model(x), atol=1e-6)


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


# -- validation split, distillation, EMA ----------------------------------------------------------


def test_validation_split_is_deterministic_stratified_and_disjoint():
    import numpy as np

    from adaptive_resnet.data import ImageSet, validation_split

    labels = np.repeat(np.arange(10), [500] * 9 + [1000])  # one class twice the size of the others
    data = ImageSet(np.zeros((len(labels), 2, 2, 3), np.uint8), labels, [str(c) for c in range(10)])
    train_idx, val_idx = validation_split(data, 550, seed=3)
    again_train, again_val = validation_split(data, 550, seed=3)
    assert np.array_equal(train_idx, again_train) and np.array_equal(val_idx, again_val)
    assert not np.array_equal(val_idx, validation_split(data, 550, seed=4)[1])
    assert len(val_idx) == 550 and len(train_idx) == len(labels) - 550
    assert not set(train_idx) & set(val_idx) and set(train_idx) | set(val_idx) == set(range(len(labels)))
    assert np.bincount(labels[val_idx]).tolist() == [50] * 9 + [100]  # each class its share
    with pytest.raises(UserInputError, match="validation split"):
        validation_split(data, len(labels), seed=0)


def test_training_with_a_validation_split_never_reads_its_images_or_the_test_set(tiny_config, tmp_path, monkeypatch):
    import numpy as np

    import adaptive_resnet.data as data_module
    from adaptive_resnet.train import training_data

    config = tiny_config.model_copy(update={"val": 4})
    train_set, val_set, split = training_data(config)
    assert split == "val" and len(val_set) == 4 and len(train_set) == 12
    every = data_module.load_images(config.data, "train", cache_dir=config.cache_dir)
    _, val_idx = data_module.validation_split(every, 4, 0)
    assert np.array_equal(val_set.images, every.images[val_idx])
    held_out = {im.tobytes() for im in val_set.images}
    assert not held_out & {im.tobytes() for im in train_set.images}

    seen: list[bytes] = []
    real_batches, real_load = data_module.batches, data_module.load_images

    def recording_batches(data, *args, **kwargs):
        if kwargs.get("train"):
            seen.extend(im.tobytes() for im in data.images)
        return real_batches(data, *args, **kwargs)

    def no_test_split(path, split="train", *args, **kwargs):
        assert split != "test", "training with a validation split read the test split"
        return real_load(path, split, *args, **kwargs)

    monkeypatch.setattr(data_module, "batches", recording_batches)
    monkeypatch.setattr(data_module, "load_images", no_test_split)
    history = train(config, tmp_path / "run", progress=False)["history"]
    assert seen and not held_out & set(seen)
    assert all("val_accuracy" in h and "test_accuracy" not in h for h in history)


def test_distillation_uses_the_teachers_cached_logits_and_resumes(tiny_config, tmp_path, monkeypatch):
    import numpy as np

    import adaptive_resnet.distill as distill
    import adaptive_resnet.train as train_module

    teacher = train(tiny_config.model_copy(update={"epochs": 1}), tmp_path / "teacher", progress=False)["checkpoint"]
    student = tiny_config.model_copy(update={"teacher": teacher, "distill_alpha": 0.7, "ema_decay": 0.9, "val": 4})
    train_set, _, _ = train_module.training_data(student)
    logits = distill.teacher_logits(teacher, train_set, student.cache_dir)
    assert logits.shape == (12, 2) and np.isfinite(logits).all()

    # Cached: a second call reads the file and builds no model.
    monkeypatch.setattr(train_module, "model_from_checkpoint", lambda *_: pytest.fail("teacher evaluated again"))
    assert np.array_equal(distill.teacher_logits(teacher, train_set, student.cache_dir), logits)
    monkeypatch.undo()

    looked_up = []
    real_loss = distill.distillation_loss

    def recording_loss(student_logits, teacher_logits, temperature):
        looked_up.append(teacher_logits.detach().clone())
        return real_loss(student_logits, teacher_logits, temperature)

    monkeypatch.setattr(distill, "distillation_loss", recording_loss)
    whole = train(student, tmp_path / "whole", progress=False)
    cached = {tuple(np.round(row, 5)) for row in logits}
    assert looked_up and all(tuple(np.round(row, 5)) in cached for batch in looked_up for row in batch.numpy())

    interrupted_after(1, student, tmp_path / "resumed", monkeypatch)
    resumed = train(student, tmp_path / "resumed", progress=False)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2] and resumed["history"][-1]["kept"] in ("last", "ema")
    a, b = load_checkpoint(whole["checkpoint"])["model"], load_checkpoint(resumed["checkpoint"])["model"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)  # the same run, interrupted or not


def test_distillation_loss_is_zero_for_the_teachers_own_logits_and_scaled_by_t_squared():
    from adaptive_resnet.distill import distillation_loss

    t = torch.randn(8, 10)
    assert float(distillation_loss(t, t, 4.0)) == pytest.approx(0.0, abs=1e-6)
    s = torch.randn(8, 10)
    # KL of the T-softened distributions, times T^2.
    p, q = torch.softmax(t / 2, 1), torch.log_softmax(s / 2, 1)
    expected = float((p * (p.log() - q)).sum(1).mean() * 4)
    assert float(distillation_loss(s, t, 2.0)) == pytest.approx(expected, rel=1e-5)


def test_inconsistent_distillation_or_keep_options_are_refused(tiny_config):
    from pydantic import ValidationError

    for update, message in [({"distill_alpha": 0.5}, "needs a teacher"), ({"teacher": "t.pt"}, "distill_alpha is 0"),
                            ({"keep": "ema"}, "needs ema_decay"), ({"swa_start": 5}, "after the last epoch")]:
        with pytest.raises(ValidationError, match=message):
            TrainConfig(**{**tiny_config.model_dump(), **update})
