"""Time training steps of the CIFAR ResNet-50 w16 on this machine's GPU; print seconds per epoch.

The device machine's time is short, so the run script sizes its epochs from this probe.
"""

import json
import sys
import time

import torch
import torch.nn.functional as F

from adaptive_resnet.train import TrainConfig, build_model

config = TrainConfig(drop_path_rate=0.2, drop_path_schedule="uniform")
device = torch.device("cuda")
torch.backends.cudnn.benchmark = True
model = build_model(config).to(device, memory_format=torch.channels_last)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
x = torch.randn(config.batch_size, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 10, (config.batch_size,), device=device)


def steps(n: int) -> float:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n


steps(15)
step_s = steps(60)
epoch_s = step_s * -(-50000 // config.batch_size)
print(json.dumps({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "step_s": step_s, "epoch_s": epoch_s}))
with open(sys.argv[1], "w") as fh:
    json.dump({"step_s": step_s, "epoch_s": epoch_s}, fh)
