"""The command-line flags of the stack's policies (`stack`, `stack-argmax`, ...), which the composition
root (`stack.cli`) adds to `drivestack sim`: the simulator's command knows no policy's options."""

from __future__ import annotations

from pathlib import Path

from sim.cli import PolicyFlag

STACK_POLICY_FLAGS = (
    PolicyFlag(
        "--backend",
        "backend",
        "for the stack policies: torch (the checkpoint, default), onnxruntime or tensorrt (an exported artifact)",
    ),
    PolicyFlag("--artifact", "artifact", "exported artifact folder (`drivestack export`) for --backend", Path),
    PolicyFlag("--runtime-device", "device", "the backend's device: cpu, cuda[:N], or tensorrt[:N] for onnxruntime"),
    PolicyFlag("--runtime-threads", "threads", "the backend's CPU threads (onnxruntime)", int, changes_results=False),
    PolicyFlag("--plan-every", "plan_every", "stack policies: plan every N frames, perceive every frame", int),
)
