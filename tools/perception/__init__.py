"""Perception: detectors and other vision models that run on onnxruntime, their ONNX files kept in
the model cache (:mod:`sleuth.tools.perception.models`, installed by ``make setup``)."""
