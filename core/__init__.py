"""The foundation every drivestack package may use, and which uses none of them.

`core.contracts` (the tensor-contract base), `core.config` (config errors and checks, the shared `Timing`),
`core.checkpoint` (safetensors checkpoints), `core.training` and `core.train_logging` (the training loop and
its logs), `core.io` (atomic file writes), `core.mat2` (batched 2x2 algebra), `core.benchmark` (timing calls).
"""
