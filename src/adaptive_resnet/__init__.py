"""adaptive-resnet: distributed inference with a ResNet that drops residual blocks when an IoT
cluster runs short of memory, compute, energy or bandwidth (Khan et al., "Adaptive ResNet
Architecture for Distributed Inference in Resource-Constrained IoT Systems").

Heavy dependencies (torch, ray, matplotlib) are imported by the modules that need them, never
here, so that ``adaptive-resnet --help`` stays fast.
"""

__version__ = "0.1.0"
