"""``python -m adaptive_resnet.cli``: the same as the ``adaptive-resnet`` command."""

from adaptive_resnet.cli import main

main()
