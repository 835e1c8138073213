"""Deployment artifacts: ONNX export with sparse storage, parity checks, onnxruntime benchmarks.

Depends on torch, onnx, onnxruntime and the standard library only; never imports `prunectl`.
"""
