"""Deployable exports of finished runs (ONNX, TorchScript) and an onnxruntime backend for ``sonofm predict``."""
