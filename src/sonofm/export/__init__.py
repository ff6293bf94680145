"""Deployable exports of finished runs (ONNX, TorchScript), an onnxruntime backend for ``sonofm predict``, and
shareable model folders with a model card."""
