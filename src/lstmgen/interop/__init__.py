"""Models in and out of other tools' formats: the Keras tutorial's checkpoints in, ONNX out."""
