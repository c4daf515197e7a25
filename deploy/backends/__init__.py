"""Runtime backends: torch, onnxruntime, TensorRT."""
