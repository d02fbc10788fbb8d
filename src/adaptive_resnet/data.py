"""Image data sets: CIFAR-10 in torchvision's on-disk format, and ImageFolder trees.

Both decode once into a uint8 array (N, H, W, 3) plus labels, cached as ``.npz`` beside nothing
the user owns (``cache_dir``), so that an epoch costs tensor work, not JPEG decoding: the 60,000
CIFAR-10 JPEGs take about a minute to decode on two cores and milliseconds to reload.

Augmentation (random crop with padding, horizontal flip) and normalisation run on whole batches
as tensor operations, which on two CPU cores is far cheaper than per-image PIL transforms in
loader workers.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adaptive_resnet.errors import UserInputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp")
# Per-channel statistics of the CIFAR-10 training set (the usual constants).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
PARALLEL_DECODE_MIN = 4000  # below this, starting worker processes costs more than it saves
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass
class ImageSet:
    """Decoded images: ``images`` uint8 (N, H, W, 3), ``labels`` int64 (N,), class names."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, n: int, seed: int = 0) -> ImageSet:
        """A class-stratified-by-chance random subset of ``n`` images (for quick runs and tests)."""
        if n >= len(self):
            return self
        idx = np.random.default_rng(seed).permutation(len(self))[:n]
        idx.sort()
        return self.take(idx)

    def take(self, idx: np.ndarray) -> ImageSet:
        """The images at ``idx``, in that order."""
        return ImageSet(self.images[idx], self.labels[idx], self.classes)

    def digest(self) -> str:
        """A short hash of the pixels, labels and class names: what a cache of per-image results keys on."""
        h = hashlib.sha1(np.ascontiguousarray(self.images).data)
        h.update(np.ascontiguousarray(self.labels).data)
        h.update("|".join(self.classes).encode())
        return h.hexdigest()[:16]


def validation_split(data: ImageSet, n_val: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation) of a seeded, class-stratified hold-out of ``n_val`` images.

    Each class gives its share of ``n_val`` in proportion to its size (largest remainders get
    the rounding), drawn at random with ``seed``; both index arrays are sorted. The same data,
    size and seed always give the same split, so a study can score exactly the images that
    training held out.
    """
    n = len(data)
    if not 0 < n_val < n:
        raise UserInputError(f"validation split of {n_val} images needs 0 < n < {n} (the training images)")
    classes, counts = np.unique(data.labels, return_counts=True)
    exact = counts * n_val / n
    share = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - share), kind="stable")[: n_val - share.sum()]:
        share[i] += 1
    rng = np.random.default_rng(seed)
    val = np.concatenate([rng.permutation(np.flatnonzero(data.labels == c))[:k] for c, k in zip(classes, share)])
    val.sort()
    train = np.setdiff1d(np.arange(n), val, assume_unique=True)
    return train, val


# -- readers --------------------------------------------------------------------------------------


def read_cifar10_batches(root: str | Path, split: str) -> ImageSet:
    """CIFAR-10 as torchvision stores it: ``root/cifar-10-batches-py/{data_batch_1..5,test_batch}``.

    The pickled batches hold ``data`` (N, 3072) uint8 in CHW order and ``labels``. Nothing is
    downloaded; ``root`` may also be the ``cifar-10-batches-py`` folder itself.
    """
    root = Path(root)
    folder = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    images, labels = [], []
    for name in names:
        path = folder / name
        if not path.is_file():
            raise UserInputError(f"CIFAR-10 batch file missing: {path} (expected torchvision's cifar-10-batches-py layout)")
        try:
            with path.open("rb") as fh:
                batch = pickle.load(fh, encoding="latin1")
            data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            lab = np.asarray(batch.get("labels", batch.get("fine_labels")), dtype=np.int64)
        except Exception as exc:
            raise UserInputError(f"malformed CIFAR-10 batch {path}: {type(exc).__name__}: {exc}") from None
        if len(lab) != len(data):
            raise UserInputError(f"malformed CIFAR-10 batch {path}: {len(data)} images but {len(lab)} labels")
        images.append(data)
        labels.append(lab)
    classes = list(CIFAR10_CLASSES)
    meta = folder / "batches.meta"
    if meta.is_file():
        with meta.open("rb") as fh:
            classes = list(pickle.load(fh, encoding="latin1")["label_names"])
    return ImageSet(np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels), classes)


def read_image_folder(root: str | Path, image_size: int | None = None) -> ImageSet:
    """An ImageFolder tree ``root/<class>/<image>``; labels follow sorted class names.

    Images are converted to RGB; ``image_size`` resizes them (needed when sizes differ).
    """
    root = Path(root)
    if not root.is_dir():
        raise UserInputError(f"data folder not found: {root}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise UserInputError(f"no class folders in {root} (expected {root}/<class>/<image>.jpg)")
    files: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        files += [(p, label) for p in sorted((root / name).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise UserInputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {root}")
    paths = [path for path, _ in files]
    workers = min(os.cpu_count() or 1, 16)
    if workers > 1 and len(paths) >= PARALLEL_DECODE_MIN:
        # JPEG decoding is per-image Python work; processes scale it with the cores
        # (60,000 CIFAR-10 images: ~60 s on one core, seconds on 16).
        chunks = [paths[i : i + 1000] for i in range(0, len(paths), 1000)]
        with ProcessPoolExecutor(workers) as pool:
            images = [im for part in pool.map(_decode_all, chunks, [image_size] * len(chunks)) for im in part]
    else:
        images = _decode_all(paths, image_size)
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise UserInputError(f"images in {root} have different sizes {sorted(shapes)[:3]}...; pass an image size")
    return ImageSet(np.stack(images), np.array([lab for _, lab in files], dtype=np.int64), classes)


def _decode_all(paths: list[Path], image_size: int | None) -> list[np.ndarray]:
    """Decode ``paths`` as RGB uint8 arrays, resized to ``image_size`` when given."""
    from PIL import Image

    images = []
    for path in paths:
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                if image_size is not None and im.size != (image_size, image_size):
                    im = im.resize((image_size, image_size), Image.BILINEAR)
                images.append(np.asarray(im, dtype=np.uint8))
        except OSError as exc:
            raise UserInputError(f"cannot decode image {path}: {exc}") from None
    return images


def load_images(
    path: str | Path,
    split: str = "train",
    fmt: str = "auto",
    image_size: int | None = None,
    cache_dir: str | Path | None = None,
) -> ImageSet:
    """Load ``split`` of a data set in ``fmt`` (``auto``, ``imagefolder`` or ``cifar10``), cached.

    ``auto`` picks ``cifar10`` when torchvision's batch files are there and ImageFolder
    (``path/<split>/<class>/...``) otherwise. The cache key covers the path, the split, the size
    and the folder's file listing, so an edited folder is decoded again.
    """
    path = Path(path)
    if split not in ("train", "test"):
        raise UserInputError(f"unknown split {split!r}; valid: train, test")
    if not path.exists():
        raise UserInputError(f"data folder not found: {path}")
    if fmt == "auto":
        has_batches = (path / "cifar-10-batches-py").is_dir() or (path / "test_batch").is_file()
        fmt = "cifar10" if has_batches else "imagefolder"
    if fmt not in ("cifar10", "imagefolder"):
        raise UserInputError(f"unknown data format {fmt!r}; valid: auto, cifar10, imagefolder")
    if fmt == "cifar10":
        return read_cifar10_batches(path, split)
    folder = path / split
    if not folder.is_dir():
        raise UserInputError(f"{path} has no {split}/ folder (expected {path}/{split}/<class>/<image>)")
    if cache_dir is None:
        return read_image_folder(folder, image_size)
    listing = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    key = hashlib.sha1(f"{folder.resolve()}|{image_size}|{'|'.join(listing)}".encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"{split}-{key}.npz"
    if cache.is_file():
        try:
            with np.load(cache) as z:
                return ImageSet(z["images"], z["labels"], [str(c) for c in z["classes"]])
        except Exception:
            cache.unlink()  # a damaged cache is rebuilt, never trusted
    data = read_image_folder(folder, image_size)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, images=data.images, labels=data.labels, classes=np.array(data.classes))
    tmp.replace(cache)
    return data


# -- batches --------------------------------------------------------------------------------------


def batches(
    data: ImageSet,
    batch_size: int,
    *,
    train: bool = False,
    seed: int = 0,
    image_size: int | None = None,
    device: str | torch.device = "cpu",  # noqa: F821
    mean: tuple[float, float, float] = CIFAR10_MEAN,
    std: tuple[float, float, float] = CIFAR10_STD,
    with_index: bool = False,
) -> Iterator[tuple[torch.Tensor, ...]]:  # noqa: F821
    """Normalised float batches (B, 3, H, W) and labels; shuffled and augmented when ``train``.

    ``with_index``: each batch also carries the positions of its images in ``data`` (a
    ``numpy`` array), for looking up per-image data such as a teacher's cached logits.

    ``image_size`` upsamples (bilinear) after augmentation, as the paper fed 224x224 to ResNet-50.
    Batches travel to ``device`` as uint8 (a quarter of the bytes) and are augmented there; the
    random draws stay on the CPU generator, so a seed gives the same batches on every device.
    """
    import torch
    import torch.nn.functional as F

    n = len(data)
    order = np.random.default_rng(seed).permutation(n) if train else np.arange(n)
    gen = torch.Generator().manual_seed(seed)
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        x = torch.from_numpy(data.images[idx]).to(device).permute(0, 3, 1, 2).float().div_(255)
        y = torch.from_numpy(data.labels[idx]).to(device)
        if train:
            x = random_crop_flip(x, gen)
        if image_size is not None and x.shape[-1] != image_size:
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
        yield ((x - mean_t) / std_t, y, idx) if with_index else ((x - mean_t) / std_t, y)


def random_crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:  # noqa: F821
    """Random crop after ``pad`` pixels of reflection padding, and a random horizontal flip."""
    import torch
    import torch.nn.functional as F

    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dev = x.device
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(dev)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(dev)
    # Two gathers: first pick rows from the padded image, then columns.
    rows = (dy.view(b, 1, 1, 1) + torch.arange(h, device=dev).view(1, 1, h, 1)).expand(b, 3, h, w + 2 * pad)
    cols = (dx.view(b, 1, 1, 1) + torch.arange(w, device=dev).view(1, 1, 1, w)).expand(b, 3, h, w)
    out = padded.gather(2, rows).gather(3, cols)
    flip = (torch.rand(b, generator=gen) < 0.5).to(dev)
    out[flip] = out[flip].flip(-1)
    return out
