"""Drive logs: one MCAP file per simulated (or driven) episode, the recorded format every job reads.

`format` (the files: tensor channels of safetensors messages, `messages`; writing and whole-drive reading),
`chunks` and `index` (random access for training: the folder's index, span reads through the chunk index),
`recorder` (a `sim.runner.rollout` observer writing them) and `foxglove` (the same drive in Foxglove's
schemas, for watching). They live in `sim`, the lowest layer that knows episodes, so every package above
can read what the simulator recorded; docs/fleet.md describes the format.
"""
