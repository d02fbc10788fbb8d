"""Knowledge distillation from a trained teacher whose logits are computed once and cached.

Hinton et al. (2015): the student matches the teacher's softened class distribution as well as
the labels. The teacher here is a network of ours (the committed plain CIFAR ResNet-50), and a
forward pass of it per training step would cost a third of the step again on two cores; its
logits on the (un-augmented) training images instead take about two minutes once and are kept
in the cache folder, keyed by the teacher file's bytes and the images' digest. Each image's
target is the mean of the teacher's logits on the image and on its mirror image, so that the
student's random flips see one target (and a slightly better teacher: flip averaging is the
usual test-time augmentation).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from adaptive_resnet.data import ImageSet


def teacher_logits(
    teacher: str | Path,
    data: ImageSet,
    cache_dir: str | Path,
    *,
    image_size: int | None = None,
    batch_size: int = 500,
    device: str = "cpu",
) -> np.ndarray:
    """The teacher checkpoint's flip-averaged logits (N, classes) on ``data``, float32, cached."""
    import torch

    from adaptive_resnet.data import batches
    from adaptive_resnet.errors import UserInputError
    from adaptive_resnet.train import model_from_checkpoint

    teacher = Path(teacher)
    if not teacher.is_file():
        raise UserInputError(f"teacher checkpoint not found: {teacher}")
    key = hashlib.sha1(teacher.read_bytes()).hexdigest()[:16]
    cache = Path(cache_dir) / f"teacher-{key}-{data.digest()}-{image_size}.npy"
    if cache.is_file():
        try:
            logits = np.load(cache)
            if logits.shape == (len(data), len(data.classes)):
                return logits
        except Exception:
            pass
        cache.unlink()  # damaged or of another shape: rebuilt, never trusted
    model, config = model_from_checkpoint(teacher)
    if config.num_classes != len(data.classes):
        raise UserInputError(f"teacher {teacher} has {config.num_classes} classes but the data has {len(data.classes)}")
    model.to(device)
    parts = []
    with torch.no_grad():
        for x, _ in batches(data, batch_size, image_size=image_size, device=device):
            parts.append(((model(x) + model(x.flip(-1))) / 2).float().cpu().numpy())
    logits = np.concatenate(parts)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npy")
    np.save(tmp, logits)
    tmp.replace(cache)
    return logits


def distillation_loss(student_logits, teacher_logits, temperature: float):
    """KL(teacher || student) of the distributions softened by ``temperature``, times its square
    (so that its gradients keep their scale as the temperature changes; Hinton et al., Sec. 2)."""
    import torch.nn.functional as F

    t = temperature
    log_p = F.log_softmax(student_logits / t, dim=1)
    q = F.log_softmax(teacher_logits / t, dim=1)
    return F.kl_div(log_p, q, log_target=True, reduction="batchmean") * t * t
