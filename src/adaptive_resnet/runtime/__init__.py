"""The distributed runtime: a droppable ResNet's units on Ray workers, one per device."""
