"""Fresh-process memory probe: `python -m exporters._probe MODEL --threads T --shape JSON
[--graph-optimization LEVEL]`.

Run by :mod:`exporters.bench` in a subprocess. It imports only numpy, onnxruntime and
psutil, records its RSS, creates the session (under the graph optimisation level the model
declares, which the benchmark reads from the file and passes as `--graph-optimization`),
runs it a few times and prints one JSON line with the RSS before the session and the
process's peak RSS (high-water mark).
The session is created from the path, as a deployment would, so the file is not also
parsed into a Python-side protobuf that would inflate the figure.
"""

from __future__ import annotations

import argparse
import json
import sys

PROBE_RUNS = 5


def peak_rss_bytes() -> int:
    """This process's peak RSS.

    Linux: VmHWM from /proc/self/status, the high-water mark of this address space. Not
    getrusage's ru_maxrss: Linux carries it over fork and exec, so a probe started by a
    parent that holds torch (~700 MB) would report the parent's peak, not its own.
    """
    try:
        for line in open("/proc/self/status", encoding="ascii"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows: psutil knows the peak working set
        import psutil

        info = psutil.Process().memory_info()
        return int(getattr(info, "peak_wset", info.rss))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m exporters._probe", description="peak RSS of a fresh onnxruntime session")
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shape", required=True, help="input shape as a JSON list, batch first")
    parser.add_argument(
        "--graph-optimization", default=None, help="disabled, basic, extended or all (default: all), as the model declares"
    )
    args = parser.parse_args(argv)

    import numpy as np
    import onnxruntime as ort
    import psutil

    from exporters._ort import PROVIDER, session_options

    before = psutil.Process().memory_info().rss
    session = ort.InferenceSession(args.model, sess_options=session_options(args.threads, args.graph_optimization), providers=[PROVIDER])
    (first,) = session.get_inputs()
    dtype = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}[first.type]
    feed = {first.name: np.zeros(json.loads(args.shape), dtype=dtype)}
    for _ in range(PROBE_RUNS):
        session.run(None, feed)
    print(json.dumps({"rss_before": int(before), "peak_rss": peak_rss_bytes()}))


if __name__ == "__main__":
    main()
