"""prunectl: prune a classifier, gate its release on a membership-inference audit, ship sparse ONNX.

The public Python API lives in :mod:`prunectl.api`; this module stays import-light so the CLI's
`--help` is instant.
"""

__version__ = "0.1.0"
