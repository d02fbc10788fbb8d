"""Pack an ImageFolder tree's files into one .npz, and unpack it again, byte for byte.

The device machine takes at most 64 MiB of working tree and cannot reach ../shared: the
CIFAR-10 JPEGs (53 MiB of bytes in 60,000 files) travel as one array of their raw bytes, which
is smaller than any decoded or archived form (tar pads each ~900-byte file to 1.5 KiB).

    python results/gpu/pack_imagefolder.py pack ../shared/data/cifar10 .devdata/cifar10.npz
    python results/gpu/pack_imagefolder.py unpack .devdata/cifar10.npz /tmp/cifar10
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def pack(root: Path, dst: Path, test_every: str = "1") -> None:
    """``test_every=N`` keeps every N-th file of test/ (a monitoring subset, when space is short)."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    test = [p for p in files if p.relative_to(root).parts[0] == "test"]
    files = [p for p in files if p not in set(test)] + test[:: int(test_every)]
    blobs = [p.read_bytes() for p in files]
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    dst.parent.mkdir(parents=True, exist_ok=True)
    np.savez(dst, data=np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets=offsets,
             names=np.frombuffer("\n".join(str(p.relative_to(root)) for p in files).encode(), dtype=np.uint8))
    print(f"packed {len(files)} files, {offsets[-1] / 2**20:.1f} MiB of bytes, into {dst}")


def unpack(src: Path, root: Path) -> None:
    with np.load(src) as z:
        data, offsets = z["data"], z["offsets"]
        names = z["names"].tobytes().decode().split("\n")
    for i, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data[offsets[i] : offsets[i + 1]].tobytes())
    print(f"unpacked {len(names)} files into {root}")


if __name__ == "__main__":
    verb, a, b, *rest = sys.argv[1:]
    {"pack": pack, "unpack": unpack}[verb](Path(a), Path(b), *rest)
