"""Export trained models (ONNX, TorchScript) and check them against PyTorch.

This package's ``__init__`` stays free of torch so that services and the CLI can read the
constants without loading it; :mod:`vistudio.ml.export.models` does the work.
"""

FORMATS = {"onnx": "onnx", "torchscript": "pt"}  # format → file extension
MIN_OPSET, MAX_OPSET, DEFAULT_OPSET = 13, 21, 17
