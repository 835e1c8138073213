"""An ONNX model as a `torch.nn.Module`: the exact bytes that ship, run by onnxruntime.

A membership-inference gate audits posteriors and input-perturbation sensitivities; for the
INT8 release those must be the INT8 model's, not the fp32 torch model's. :class:`OnnxClassifier`
wraps serialized ONNX bytes and an onnxruntime session behind the `forward(x) -> logits`
interface the gate already calls, so the gate can audit what ships without knowing about
onnxruntime.

What differs from an ordinary module, on purpose:

* **No parameters, no buffers, CPU only.** The weights live in the ONNX bytes. Code that finds
  a model's device with `next(model.parameters())` must fall back to the CPU:
  `next(iter(module.parameters()), None) is None` holds. `forward` accepts a tensor on any
  device and returns float32 logits as a CPU tensor; `.to(device)` is a no-op.
* **Not differentiable.** onnxruntime computes the logits; the returned tensor has no graph.
  Sensitivities are finite differences, and for an INT8 model a perturbation below the input
  quantisation step (:attr:`OnnxClassifier.input_scale`) is mostly rounded away.
* **`.eval()`/`.train()` change nothing** but the `training` flag: an exported graph has no
  dropout or batch-norm statistics to switch.
* **Pickling and deep copies carry the bytes**, and the session is rebuilt from them on
  unpickling (an onnxruntime session itself cannot be pickled).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import onnx
import torch

from exporters.errors import ExporterInputError
from exporters.quantize import input_quantization_scale
from exporters.runtime import input_spec, open_session

DEFAULT_BATCH = 256


class OnnxClassifier(torch.nn.Module):
    """`forward(x) -> logits` by onnxruntime over serialized ONNX bytes.

    Args:
        onnx_bytes: the serialized model (e.g. the INT8 file's bytes); a single float input
            [batch, ...] and a [batch, classes] output.
        threads: onnxruntime intra-op threads (default 1, as the benchmark and the parity
            checks; the session is opened by `exporters.runtime.open_session`, under the
            graph optimisation level the model declares).
        batch_size: the largest batch one `session.run` sees; larger inputs are chunked.
    """

    def __init__(self, onnx_bytes: bytes, *, threads: int = 1, batch_size: int = DEFAULT_BATCH) -> None:
        super().__init__()
        if not isinstance(onnx_bytes, (bytes, bytearray, memoryview)) or not len(onnx_bytes):
            raise ExporterInputError("OnnxClassifier needs the serialized ONNX model as non-empty bytes")
        if batch_size < 1:
            raise ExporterInputError(f"batch_size must be >= 1 (got {batch_size})")
        self._onnx_bytes = bytes(onnx_bytes)
        self._threads = int(threads)
        self._batch_size = int(batch_size)
        self._sha256 = hashlib.sha256(self._onnx_bytes).hexdigest()
        try:
            proto = onnx.load_from_string(self._onnx_bytes)
        except Exception as error:  # noqa: BLE001 - protobuf raises several unrelated types
            raise ExporterInputError(f"OnnxClassifier: the bytes are not an ONNX model ({type(error).__name__})") from None
        self._input_scale = input_quantization_scale(proto)
        del proto
        self._open()

    def _open(self) -> None:
        self._session = open_session(self._onnx_bytes, threads=self._threads, label="the ONNX classifier")
        spec = input_spec(self._session, label="the ONNX classifier")
        self._input_name = spec.name
        self._input_dtype = spec.numpy_dtype

    @property
    def onnx_bytes(self) -> bytes:
        """The serialized model this module runs."""
        return self._onnx_bytes

    @property
    def sha256(self) -> str:
        """Hex sha256 of :attr:`onnx_bytes` (equal to the shipped file's when they are its bytes)."""
        return self._sha256

    @property
    def input_scale(self) -> float | None:
        """Scale of the QuantizeLinear that quantises the graph input (its quantisation step),
        read from the graph; None for fp32 and dynamically quantised models."""
        return self._input_scale

    @property
    def threads(self) -> int:
        return self._threads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Float32 logits [batch, classes] as a CPU tensor, for a batch of any size."""
        if not isinstance(x, torch.Tensor):
            raise ExporterInputError(f"OnnxClassifier takes a tensor, not {type(x).__name__}")
        array = np.ascontiguousarray(x.detach().to("cpu").numpy().astype(self._input_dtype, copy=False))
        if len(array) == 0:
            raise ExporterInputError("OnnxClassifier got an empty batch; give at least one sample")
        chunks = [
            self._session.run(None, {self._input_name: array[i : i + self._batch_size]})[0]
            for i in range(0, len(array), self._batch_size)
        ]
        return torch.from_numpy(np.ascontiguousarray(np.concatenate(chunks, axis=0), dtype=np.float32))

    def extra_repr(self) -> str:
        scale = "None" if self._input_scale is None else f"{self._input_scale:.4g}"
        return f"sha256={self._sha256[:12]}, bytes={len(self._onnx_bytes)}, input_scale={scale}, threads={self._threads}"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_session", None)  # onnxruntime sessions do not pickle: rebuilt from the bytes
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._open()
