"""The bad-input battery (issue 7): every way a user can hand prunectl something it cannot use.

Each case drives the real CLI and must:

- exit with code 2 (DESIGN.md: bad input or usage);
- print exactly one non-empty line, naming the problem (the case's fragment) and no traceback;
- write nothing: the workspace is byte-for-byte what the case built (so no `manifest.json`,
  `model.onnx` or `bench.json`, and a `--out` that did not exist still does not), apart from
  prunectl's cache and Python's bytecode. A finished run handed back without `--overwrite` is
  therefore proven untouched, file by file.

Most cases fail in validation before any training, so the battery runs in seconds. The cases
are built by :class:`Workspace` in `tmp_path`; each reads as "command, what is wrong, what
the message says".
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
import struct
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from conftest import make_tiny_recipe, without_file_capabilities
from prunectl.cli import app
from prunectl.config import to_toml
from prunectl.models import MLP

runner = CliRunner()

FINISHED_MARKERS = ("manifest.json", "model.onnx", "bench.json")
FACTORY_MODULE = "battery_nets"
FACTORY_SOURCE = """\
import math
from torch import nn

def mlp(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))

def four_logits():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
"""
# Split sizes unset (4:1:4:12 of whatever the data holds), so a custom data set of 90 samples
# gets past the splits and fails where its case says it does.
BATTERY_RECIPE = make_tiny_recipe(data__members=None, data__dev=None, data__holdout=None, data__shadow_pool=None)
# A small recipe whose run `compress` can also gate: at least 100 members and 100 holdout
# samples per side once balanced by class and the auditor's 20% set aside, and a pool that
# holds the 100-sample calibration slice.
FINISHED_RECIPE = make_tiny_recipe(
    name="finished",
    data__members=150,
    data__dev=20,
    data__holdout=150,
    data__shadow_pool=200,
    prune__rounds=1,
    gate__shadows=1,
    gate__bootstrap=100,
    gate__attacks=("confidence", "loss"),
    gate__sensitivity_samples=1,
    gate__max_advantage=1.0,  # this recipe is about the run directory, not about leakage
    gate__max_shadow_accuracy_drop=1.0,
)


class _Exploit:
    """Unpickling this calls `open(target, "w")`, creating a file: what weights_only=True must stop."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.target, "w"))


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except PermissionError:  # a case's chmod 000 file: its size and mtime stand in for its bytes
        stat = path.stat()
        return f"unreadable {stat.st_size} {stat.st_mtime_ns}"


def snapshot(root: Path) -> dict[str, str]:
    """Every path under `root` → its SHA-256 ("dir" for directories), but the cache and bytecode:
    a refused command may warm prunectl's cache, never write anything else."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if relative.parts[0] == "cache" or "__pycache__" in relative.parts:
            continue
        found[str(relative)] = "dir" if path.is_dir() and not path.is_symlink() else _digest(path)
    return found


class Workspace:
    """Builds one case's inputs in `tmp_path`; its methods return CLI arguments or paths."""

    def __init__(self, root: Path, finished_run: Callable[[], Path]) -> None:
        self.root = root
        self.out = root / "out"
        self.env: dict[str, str] = {}
        self.marker = root / "pwned"  # what a malicious checkpoint would create
        self._finished_run = finished_run  # built once per module, only when a case asks

    # -- commands ------------------------------------------------------------------------

    def given(self, *_done: object) -> Workspace:
        """Reads as "given these files, run ...": its arguments are setup steps already taken."""
        return self

    def with_env(self, **variables: str) -> Workspace:
        self.env.update(variables)
        return self

    def cli(self, *argv: str | Path) -> list[str]:
        return [str(a) for a in argv]

    def config(self, recipe: Any = BATTERY_RECIPE, name: str = "battery.toml") -> str:
        path = self.root / name
        path.write_text(to_toml(recipe))
        return str(path)

    def prune(self, *args: str) -> list[str]:
        return ["prune", "--config", self.config(), "--out", str(self.out), *args]

    def compress(self, *args: str) -> list[str]:
        return ["compress", "--config", self.config(), "--out", str(self.out), *args]

    # -- files ---------------------------------------------------------------------------

    def file(self, name: str, content: str | bytes = b"") -> str:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
        return str(path)

    def unreadable(self, path: str) -> str:
        os.chmod(path, 0)
        return path

    def directory(self, name: str) -> str:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    def npz(self, name: str = "data.npz", **arrays: Any) -> str:
        path = self.root / name
        np.savez(path, **arrays)
        return str(path)

    def images(self, n: int = 90, classes: int = 3, value: float | None = None) -> dict[str, np.ndarray]:
        """`n` 8x8 grey images of `classes` classes; `value` poisons one pixel."""
        x = np.random.default_rng(0).integers(0, 256, (n, 8, 8)).astype(np.float64)
        if value is not None:
            x[3, 2, 2] = value
        return {"x": x, "y": np.arange(n) % classes}

    def table(self, n: int = 90, classes: int = 3) -> str:
        """A CSV of `n` rows, two numeric features and a label column: valid data."""
        rows = ["a,b,label"] + [f"{i},{(i * 7) % 11},{i % classes}" for i in range(n)]
        return self.file("table.csv", "\n".join(rows) + "\n")

    def csv(self, *bad_rows: str) -> str:
        """A valid CSV with `bad_rows` appended after its 40 good ones."""
        rows = ["a,b,label"] + [f"{i},{i % 5},{i % 2}" for i in range(40)] + list(bad_rows)
        return self.file("bad.csv", "\n".join(rows) + "\n")

    def fashion(
        self, corrupt: Callable[[Path], None] | None = None, labels: np.ndarray | None = None, missing: str | None = None
    ) -> str:
        """A Fashion-MNIST directory of the four gzip'd IDX files (20 samples each split);
        `corrupt` spoils the train images, `labels` replaces both label files, `missing` deletes one file."""
        directory = self.root / "fashion"
        directory.mkdir(exist_ok=True)
        rng = np.random.default_rng(0)
        for prefix in ("train", "t10k"):
            _write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (20, 28, 28)))
            _write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", np.arange(20) % 10 if labels is None else labels)
        if corrupt is not None:
            corrupt(directory / "train-images-idx3-ubyte.gz")
        if missing is not None:
            (directory / missing).unlink()
        return str(directory)

    def imagefolder(self, extra: Callable[[Path], None] | None = None) -> str:
        """DIR/<class>/<image>.png with classes a and b, three 8x8 images each."""
        from PIL import Image

        root = self.root / "images"
        for label in ("a", "b"):
            (root / label).mkdir(parents=True, exist_ok=True)
            for i in range(3):
                Image.new("L", (8, 8), i * 60).save(root / label / f"{i}.png")
        if extra is not None:
            extra(root)
        return str(root)

    def torch_file(self, name: str, payload: Any) -> str:
        torch.save(payload, self.root / name)
        return str(self.root / name)

    def checkpoint(self, model: nn.Module, name: str = "base.pt", poison: bool = False) -> str:
        state = model.state_dict()
        if poison:
            next(iter(state.values())).view(-1)[0] = float("nan")
        path = self.root / name
        torch.save(state, path)
        return str(path)

    def malicious_checkpoint(self, *, raw_pickle: bool = False) -> str:
        """A checkpoint that, if prunectl ever unpickled it, would create `self.marker`: written
        by torch.save (a zip, as real checkpoints are) or as a bare pickle."""
        path = self.root / "evil.pt"
        payload = {"net.1.weight": _Exploit(self.marker)}
        if raw_pickle:
            with path.open("wb") as handle:
                pickle.dump(payload, handle)
        else:
            torch.save(payload, path)
        return str(path)

    def torchscript(self) -> str:
        path = self.root / "scripted.pt"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, still loadable
            torch.jit.save(torch.jit.script(nn.Sequential(nn.Flatten(), nn.Linear(64, 10))), str(path))
        return str(path)

    def factory(self, function: str) -> str:
        """A model-factory module in the working directory; returns `module:function`."""
        self.file(f"{FACTORY_MODULE}.py", FACTORY_SOURCE)
        return f"{FACTORY_MODULE}:{function}"

    def finished_run(self) -> str:
        """A copy of a finished `prune` run as `--out` (its files are hashed by the test)."""
        shutil.copytree(self._finished_run(), self.out)
        return str(self.out / "recipe.toml")

    def unfinished_run(self) -> str:
        config = self.finished_run()
        (self.out / "manifest.json").unlink()
        return config

    def onnx(self, name: str = "model.onnx") -> str:
        """A valid one-node ONNX classifier (Identity on 4 floats), built without torch."""
        import onnx
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])],
            "identity",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        )
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
        return str(path)


def _cut_gzip(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def _cut_idx_body(path: Path) -> None:
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-100]))


def _not_gzip(path: Path) -> None:
    path.write_text("these are not the images you are looking for\n")


def _corrupt_png(root: Path) -> None:
    (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but then nothing an image needs")


def _truncated_png(root: Path) -> None:
    from PIL import Image

    path = root / "b" / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def _class_without_images(root: Path) -> None:
    (root / "c").mkdir()
    (root / "c" / "README.txt").write_text("the images of class c are still on my laptop\n")


def _npy_not_npz(w: Workspace) -> str:
    path = w.root / "plain.npz"
    with path.open("wb") as handle:
        np.save(handle, np.zeros((90, 4)))
    return str(path)


Build = Callable[[Workspace], list[str]]


def case(case_id: str, build: Build, fragment: str, marks: Any = ()) -> Any:
    return pytest.param(build, fragment, id=case_id, marks=marks)


CASES = [
    # -- recipe values -----------------------------------------------------------------------
    case("prune-target-sparsity-above-1", lambda w: w.prune("--target-sparsity", "1.5"),
         "prune.target_sparsity = 1.5 is invalid; allowed: a number in [0, 1)"),
    case("prune-target-sparsity-exactly-1", lambda w: w.prune("--target-sparsity", "1"),
         "prune.target_sparsity = 1.0 is invalid; allowed: a number in [0, 1)"),
    case("prune-target-sparsity-negative", lambda w: w.prune("--target-sparsity=-0.1"),
         "prune.target_sparsity = -0.1 is invalid"),
    case("prune-target-sparsity-nan", lambda w: w.prune("--target-sparsity", "nan"),
         "prune.target_sparsity = nan is invalid; expected a number"),
    case("prune-rounds-0", lambda w: w.prune("--rounds", "0"), "prune.rounds = 0 is invalid; allowed: an integer >= 1"),
    case("prune-target-sparsity-not-a-number", lambda w: w.prune("--target-sparsity", "abc"), "see 'prunectl prune --help'"),
    case("prune-unknown-flag", lambda w: w.prune("--sparsity", "0.9"), "No such option: --sparsity"),
    case("prune-name-with-a-newline", lambda w: w.prune("--name", "release\nv2"),
         "name = 'release\\nv2' is invalid"),
    case("prune-wrong-type-in-the-environment", lambda w: w.with_env(PRUNECTL_PRUNE_ROUNDS="many").prune(),
         "PRUNECTL_PRUNE_ROUNDS = 'many' is invalid; expected an integer"),
    # -- unknown sources ---------------------------------------------------------------------
    case("prune-unknown-data-source", lambda w: w.prune("--data", "cifar"),
         "unknown data source 'cifar'; choose one of: digits, fashion-mnist, imagefolder, npz, csv"),
    case("prune-unknown-model-source", lambda w: w.prune("--model", "keras:model.h5"),
         "unknown model source 'keras'; choose one of: builtin, torchvision, torchscript, state-dict"),
    case("prune-unknown-builtin-model", lambda w: w.prune("--model", "builtin:vit"), "unknown builtin model 'vit'"),
    case("prune-data-source-without-its-path", lambda w: w.prune("--data", "npz"), "needs a path: use npz:PATH"),
    # -- missing and unreadable paths ----------------------------------------------------------
    case("prune-missing-npz", lambda w: w.prune("--data", f"npz:{w.root / 'nowhere.npz'}"), "does not exist"),
    case("prune-missing-csv", lambda w: w.prune("--data", f"csv:{w.root / 'nowhere.csv'}"), "does not exist"),
    case("prune-missing-imagefolder", lambda w: w.prune("--data", f"imagefolder:{w.root / 'nowhere'}"), "does not exist"),
    case("prune-missing-fashion-mnist-directory", lambda w: w.prune("--data", f"fashion-mnist:{w.root / 'nowhere'}"),
         "apt-get install dataset-fashion-mnist"),
    case("prune-missing-config-file", lambda w: ["prune", "--config", str(w.root / "nowhere.toml"), "--out", str(w.out)],
         "does not exist; pass an existing --config file"),
    case("prune-missing-model-checkpoint", lambda w: w.prune("--model-checkpoint", str(w.root / "nowhere.pt")),
         "is not a file; pass an existing state-dict checkpoint"),
    case("prune-missing-torchscript-file", lambda w: w.prune("--model", f"torchscript:{w.root / 'nowhere.pt'}"),
         "is not a file; pass an existing path"),
    case("prune-missing-memscores-file", lambda w: w.prune("--defense", "wemem", "--memscores", str(w.root / "nowhere.csv")),
         "nowhere.csv"),
    case("prune-directory-as-npz", lambda w: w.prune("--data", f"npz:{w.directory('adir')}"),
         "is a directory; pass a file"),
    case("prune-directory-as-csv", lambda w: w.prune("--data", f"csv:{w.directory('adir')}"),
         "is a directory; pass a file"),
    case("prune-file-as-imagefolder", lambda w: w.prune("--data", f"imagefolder:{w.table()}"),
         "is not a directory"),
    case("prune-file-as-fashion-mnist-directory", lambda w: w.prune("--data", f"fashion-mnist:{w.table()}"),
         "is not a directory"),
    case("prune-directory-as-config-file", lambda w: ["prune", "--config", w.directory("adir"), "--out", str(w.out)],
         "is a directory; pass a TOML file"),
    case("prune-directory-as-model-checkpoint", lambda w: w.prune("--model-checkpoint", w.directory("adir")),
         "is not a file; pass an existing state-dict checkpoint"),
    # -- corrupt IDX (Fashion-MNIST) -------------------------------------------------------------
    case("prune-idx-gzip-stream-cut-in-half", lambda w: w.prune("--data", f"fashion-mnist:{w.fashion(_cut_gzip)}"),
         "is not a readable gzip IDX file"),
    case("prune-idx-body-shorter-than-its-header-says", lambda w: w.prune("--data", f"fashion-mnist:{w.fashion(_cut_idx_body)}"),
         "is truncated or corrupt"),
    case("prune-idx-file-that-is-not-gzip", lambda w: w.prune("--data", f"fashion-mnist:{w.fashion(_not_gzip)}"),
         "is not a readable gzip IDX file"),
    case("prune-idx-labels-outside-0-9",
         lambda w: w.prune("--data", f"fashion-mnist:{w.fashion(labels=np.arange(20) % 13)}"),
         "labels outside 0..9"),
    case("prune-idx-more-labels-than-images",
         lambda w: w.prune("--data", f"fashion-mnist:{w.fashion(labels=np.arange(25) % 10)}"),
         "has 20 images but"),
    case("prune-idx-file-missing",
         lambda w: w.prune("--data", f"fashion-mnist:{w.fashion(missing='t10k-labels-idx1-ubyte.gz')}"),
         "t10k-labels-idx1-ubyte.gz is missing"),
    # -- corrupt npz ---------------------------------------------------------------------------
    case("prune-npz-cut-in-half",
         lambda w: w.prune("--data", "npz:" + w.file("cut.npz", Path(w.npz(**w.images())).read_bytes()[:500])),
         "is not a readable .npz archive"),
    case("prune-npz-that-is-text", lambda w: w.prune("--data", "npz:" + w.file("text.npz", "x,y\n1,2\n")),
         "is not a readable .npz archive (neither a zip archive of arrays nor a .npy file)"),
    case("prune-npz-that-is-a-plain-npy", lambda w: w.prune("--data", f"npz:{_npy_not_npz(w)}"),
         "is not a readable .npz archive"),
    case("prune-npz-with-a-pickled-object-array",
         lambda w: w.prune("--data", "npz:" + w.npz(x=np.array([object()] * 90), y=np.arange(90) % 3)),
         "is not a readable .npz archive (it holds object arrays"),
    case("prune-npz-without-labels", lambda w: w.prune("--data", "npz:" + w.npz(x=np.zeros((90, 4)))),
         "lacks array(s) y"),
    case("prune-npz-with-nan-inputs", lambda w: w.prune("--data", "npz:" + w.npz(**w.images(value=float("nan")))),
         "inputs contain NaN or infinite values"),
    case("prune-npz-with-inf-inputs", lambda w: w.prune("--data", "npz:" + w.npz(**w.images(value=float("inf")))),
         "inputs contain NaN or infinite values"),
    case("prune-npz-with-a-single-class", lambda w: w.prune("--data", "npz:" + w.npz(**w.images(classes=1))),
         "has a single class"),
    case("prune-npz-with-negative-labels",
         lambda w: w.prune("--data", "npz:" + w.npz(x=np.zeros((90, 4)), y=np.arange(90) % 3 - 1)),
         "labels must be >= 0"),
    case("prune-npz-with-fractional-labels",
         lambda w: w.prune("--data", "npz:" + w.npz(x=np.zeros((90, 4)), y=(np.arange(90) % 3) / 2)),
         "labels must be integers"),
    case("prune-npz-inputs-and-labels-of-different-lengths",
         lambda w: w.prune("--data", "npz:" + w.npz(x=np.zeros((90, 4)), y=np.arange(80) % 3)),
         "90 inputs but 80 labels"),
    # -- corrupt CSV ---------------------------------------------------------------------------
    case("prune-csv-ragged-row", lambda w: w.prune("--data", "csv:" + w.csv("7,1,0,9")), "has 4 fields, the header has 3"),
    case("prune-csv-non-numeric-feature", lambda w: w.prune("--data", "csv:" + w.csv("7,seven,0")), "has a non-numeric feature"),
    case("prune-csv-inf-feature", lambda w: w.prune("--data", "csv:" + w.csv("7,inf,0")), "NaN or infinite"),
    case("prune-csv-nan-feature", lambda w: w.prune("--data", "csv:" + w.csv("7,nan,0")), "NaN or infinite"),
    case("prune-csv-inf-label", lambda w: w.prune("--data", "csv:" + w.csv("7,1,inf")), "labels must be integers >= 0"),
    case("prune-csv-nan-label", lambda w: w.prune("--data", "csv:" + w.csv("7,1,nan")), "labels must be integers >= 0"),
    case("prune-csv-negative-label", lambda w: w.prune("--data", "csv:" + w.csv("7,1,-1")), "labels must be integers >= 0"),
    case("prune-csv-without-the-label-column", lambda w: w.prune("--data", "csv:" + w.file("nolabel.csv", "a,b\n1,2\n3,4\n")),
         "has no label column 'label'"),
    case("prune-csv-with-a-single-class",
         lambda w: w.prune("--data", "csv:" + w.file("one.csv", "a,label\n" + "".join(f"{i},0\n" for i in range(90)))),
         "has a single class"),
    case("prune-csv-that-is-not-utf8", lambda w: w.prune("--data", "csv:" + w.file("binary.csv", b"a,label\n\xff\xfe\x00\x81,1\n")),
         "is not a readable CSV file"),
    case("prune-csv-header-only", lambda w: w.prune("--data", "csv:" + w.file("empty.csv", "a,label\n")), "has no data rows"),
    # -- corrupt images ------------------------------------------------------------------------
    case("prune-imagefolder-corrupt-png", lambda w: w.prune("--data", f"imagefolder:{w.imagefolder(_corrupt_png)}"),
         "broken.png is not a readable image"),
    case("prune-imagefolder-truncated-png", lambda w: w.prune("--data", f"imagefolder:{w.imagefolder(_truncated_png)}"),
         "cut.png is not a readable image"),
    case("prune-imagefolder-class-directory-without-images",
         lambda w: w.prune("--data", f"imagefolder:{w.imagefolder(_class_without_images)}"),
         "class directory 'c' holds no images"),
    case("prune-imagefolder-with-one-class",
         lambda w: w.prune("--data", f"imagefolder:{w.imagefolder(lambda root: shutil.rmtree(root / 'b'))}"),
         "has 1 class sub-directories; a classifier needs at least 2"),
    # -- splits --------------------------------------------------------------------------------
    case("prune-data-too-small-for-a-dev-split", lambda w: w.prune("--data", "npz:" + w.npz(**w.images(n=6, classes=2))),
         "data.dev would be empty with 6 samples"),
    case("prune-split-sizes-larger-than-the-data",
         lambda w: ["prune", "--config", w.config(make_tiny_recipe(data__members=2000)), "--out", str(w.out)],
         "but the data has 1797 samples"),
    # -- model and data do not fit -----------------------------------------------------------------
    case("prune-builtin-cnn-on-tabular-data", lambda w: w.prune("--model", "builtin:cnn", "--data", f"csv:{w.table()}"),
         "builtin:cnn needs image data"),
    case("prune-checkpoint-for-another-input-size",
         lambda w: w.prune("--model-checkpoint", w.checkpoint(MLP(100, (32,), 10))),
         "does not fit the model architecture: net.1.weight has shape (32, 100) in the checkpoint but (32, 64) in the model"),
    case("prune-checkpoint-for-10-classes-on-3-class-data",
         lambda w: w.prune("--model-checkpoint", w.checkpoint(MLP(64, (32,), 10)), "--data", "npz:" + w.npz(**w.images())),
         "does not fit the model architecture: net.3.weight has shape (10, 32) in the checkpoint but (3, 32) in the model"),
    case("prune-factory-whose-model-outputs-4-logits-for-10-classes",
         lambda w: w.prune("--model", "state-dict:" + w.checkpoint(nn.Sequential(nn.Flatten(), nn.Linear(64, 4))),
                           "--model-factory", w.factory("four_logits")),
         "the model outputs (2, 4) for a batch of 2 but the data has 10 classes"),
    case("prune-checkpoint-with-nan-weights", lambda w: w.prune("--model-checkpoint", w.checkpoint(MLP(64, (32,), 10), poison=True)),
         "holds NaN or infinite values"),
    case("prune-state-dict-without-a-factory", lambda w: w.prune("--model", "state-dict:" + w.checkpoint(MLP(64, (32,), 10))),
         "needs --model-factory module:function"),
    case("prune-factory-module-that-does-not-exist",
         lambda w: w.prune("--model", "state-dict:" + w.checkpoint(MLP(64, (32,), 10)), "--model-factory", "no_such_module:make"),
         "cannot import model factory module 'no_such_module'"),
    # -- untrusted checkpoints (scope item 1): refused, never executed ---------------------------------
    case("prune-malicious-pickle-as-model-checkpoint", lambda w: w.prune("--model-checkpoint", w.malicious_checkpoint()),
         "evil.pt: unpickling it would call io.open, and checkpoints are loaded only with weights_only=True"),
    case("prune-malicious-bare-pickle-as-model-checkpoint",
         lambda w: w.prune("--model-checkpoint", w.malicious_checkpoint(raw_pickle=True)),
         "evil.pt: it is not a PyTorch checkpoint of plain tensors readable with weights_only=True"),
    case("prune-malicious-pickle-as-state-dict-source",
         lambda w: w.prune("--model", "state-dict:" + w.malicious_checkpoint(), "--model-factory", w.factory("mlp")),
         "evil.pt: unpickling it would call io.open"),
    case("prune-malicious-bare-pickle-as-state-dict-source",
         lambda w: w.prune("--model", "state-dict:" + w.malicious_checkpoint(raw_pickle=True), "--model-factory", w.factory("mlp")),
         "refusing to load"),
    case("prune-torchscript-archive-as-model-checkpoint", lambda w: w.prune("--model-checkpoint", w.torchscript()),
         "is a TorchScript archive"),
    case("prune-torchscript-archive-as-state-dict-source",
         lambda w: w.prune("--model", "state-dict:" + w.torchscript(), "--model-factory", w.factory("mlp")),
         "is a TorchScript archive"),
    case("prune-text-file-as-model-checkpoint", lambda w: w.prune("--model-checkpoint", w.file("notes.pt", "my best weights\n")),
         "is not a PyTorch checkpoint"),
    case("prune-empty-file-as-model-checkpoint", lambda w: w.prune("--model-checkpoint", w.file("empty.pt")),
         "is not a PyTorch checkpoint"),
    case("prune-checkpoint-that-is-not-a-state-dict",
         lambda w: w.prune("--model-checkpoint", w.torch_file("meta.pt", {"epoch": 3, "note": "no tensors"})),
         "is not a state dict"),
    case("prune-state-dict-file-as-torchscript-source", lambda w: w.prune("--model", "torchscript:" + w.checkpoint(MLP(64, (32,), 10))),
         "is a torch.save checkpoint, not a TorchScript archive; pass it as --model-checkpoint"),
    case("prune-text-file-as-torchscript-source", lambda w: w.prune("--model", "torchscript:" + w.file("notes.pt", "hello")),
         "is not a loadable TorchScript archive"),
    # -- config files ------------------------------------------------------------------------------
    case("prune-config-unknown-top-level-key",
         lambda w: ["prune", "--config", w.file("c.toml", "sparsity = 0.9\n"), "--out", str(w.out)],
         "unknown key 'sparsity'; top-level keys are: name, seed, device"),
    case("prune-config-unknown-key-in-a-section",
         lambda w: ["prune", "--config", w.file("c.toml", "[prune]\ntarget = 0.9\n"), "--out", str(w.out)],
         "unknown key 'prune.target'; [prune] accepts: target_sparsity"),
    case("prune-config-wrong-type",
         lambda w: ["prune", "--config", w.file("c.toml", "[prune]\nrounds = 'five'\n"), "--out", str(w.out)],
         "prune.rounds = 'five' is invalid; expected an integer"),
    case("prune-config-boolean-for-an-integer",
         lambda w: ["prune", "--config", w.file("c.toml", "[prune]\nrounds = true\n"), "--out", str(w.out)],
         "prune.rounds = True is invalid; expected an integer"),
    case("prune-config-section-that-is-not-a-table",
         lambda w: ["prune", "--config", w.file("c.toml", "prune = 3\n"), "--out", str(w.out)],
         "[prune] must be a table"),
    case("prune-config-invalid-toml",
         lambda w: ["prune", "--config", w.file("c.toml", "[prune\nrounds = 2\n"), "--out", str(w.out)],
         "is not valid TOML"),
    case("prune-config-that-is-not-utf8",
         lambda w: ["prune", "--config", w.file("c.toml", b"name = '\xff\xfe'\n"), "--out", str(w.out)],
         "is not UTF-8 text"),
    # -- run directories -----------------------------------------------------------------------------
    case("prune-out-holds-a-finished-run", lambda w: ["prune", "--config", w.finished_run(), "--out", str(w.out)],
         "already holds a finished run; pass --overwrite to replace it or choose another --out"),
    case("prune-out-holds-an-unfinished-run", lambda w: ["prune", "--config", w.unfinished_run(), "--out", str(w.out)],
         "holds an unfinished run; continue it with --resume"),
    case("prune-out-is-a-file", lambda w: w.given(w.file("out", "not a directory")).prune(), "is a file; choose a directory path"),
    case("prune-out-is-a-directory-that-is-not-a-run", lambda w: w.given(w.file("out/notes.txt", "mine")).prune(),
         "is a non-empty directory that is not a prunectl run"),
    case("prune-resume-a-directory-without-a-run", lambda w: ["prune", "--resume", w.directory("out")],
         "is not a prunectl run directory"),
    case("prune-resume-a-finished-run", lambda w: w.given(w.finished_run()).cli("prune", "--resume", w.out),
         "holds a finished run; nothing to resume"),
    # -- compress shares the recipe path ---------------------------------------------------------------
    case("compress-target-sparsity-nan", lambda w: w.compress("--target-sparsity", "nan"), "prune.target_sparsity = nan is invalid"),
    case("compress-rounds-0", lambda w: w.compress("--rounds", "0"), "prune.rounds = 0 is invalid"),
    case("compress-unknown-data-source", lambda w: w.compress("--data", "cifar"), "unknown data source 'cifar'"),
    case("compress-npz-with-inf-inputs", lambda w: w.compress("--data", "npz:" + w.npz(**w.images(value=float("inf")))),
         "inputs contain NaN or infinite values"),
    case("compress-idx-labels-outside-0-9",
         lambda w: w.compress("--data", f"fashion-mnist:{w.fashion(labels=np.arange(20) % 13)}"), "labels outside 0..9"),
    case("compress-builtin-cnn-on-tabular-data", lambda w: w.compress("--model", "builtin:cnn", "--data", f"csv:{w.table()}"),
         "builtin:cnn needs image data"),
    case("compress-checkpoint-with-nan-weights",
         lambda w: w.compress("--model-checkpoint", w.checkpoint(MLP(64, (32,), 10), poison=True)), "holds NaN or infinite values"),
    case("compress-malicious-pickle-as-model-checkpoint", lambda w: w.compress("--model-checkpoint", w.malicious_checkpoint()),
         "unpickling it would call io.open"),
    case("compress-torchscript-archive-as-model-checkpoint", lambda w: w.compress("--model-checkpoint", w.torchscript()),
         "is a TorchScript archive"),
    case("compress-config-unknown-key",
         lambda w: ["compress", "--config", w.file("c.toml", "[gate]\nmax_adv = 0.1\n"), "--out", str(w.out)],
         "unknown key 'gate.max_adv'"),
    case("compress-data-too-small-for-a-meaningful-gate",
         lambda w: w.compress("--data", "npz:" + w.npz(**w.images())), "a meaningful gate needs at least 100 per side"),
    case("compress-shadow-pool-too-small-for-a-calibration-set",
         lambda w: ["compress", "--config", w.config(make_tiny_recipe(data__shadow_pool=150)), "--out", str(w.out)],
         "the calibration set needs 100 known non-members from a shadow pool of 150"),
    case("compress-out-holds-a-finished-run", lambda w: ["compress", "--config", w.finished_run(), "--out", str(w.out)],
         "already holds a finished run; pass --overwrite to replace it or choose another --out"),
    # -- ONNX files that are not ONNX ---------------------------------------------------------------------
    case("bench-text-file-named-onnx", lambda w: ["bench", w.file("not-onnx.onnx", "I am a README, not a model\n")],
         "is not an ONNX model"),
    case("bench-empty-file", lambda w: ["bench", w.file("empty.onnx")], "is not an ONNX model"),
    case("bench-zero-runs", lambda w: ["bench", w.file("empty.onnx"), "--runs", "0"], "Invalid value for '--runs'"),
    case("bench-random-bytes", lambda w: ["bench", w.file("noise.onnx", np.random.default_rng(0).bytes(4096))],
         "is not an ONNX model"),
    case("bench-missing-file", lambda w: ["bench", str(w.root / "nowhere.onnx")], "no such file"),
    case("bench-directory", lambda w: ["bench", w.directory("export")], "is not a file"),
    case("bench-against-a-file-that-is-not-onnx",
         lambda w: ["bench", w.onnx(), "--against", w.file("dense.onnx", "not a model"), "--no-memory", "--runs", "2"],
         "is not an ONNX model"),
    # -- export and gate on what is not a finished run --------------------------------------------------------
    case("export-a-directory-that-is-not-a-run", lambda w: ["export", w.directory("somewhere")], "is not a prunectl run directory"),
    case("export-a-missing-directory", lambda w: ["export", str(w.root / "nowhere")], "is not a prunectl run directory"),
    case("export-an-unfinished-run", lambda w: w.given(w.unfinished_run()).cli("export", w.out), "holds an unfinished run"),
    case("export-a-run-whose-recipe-is-not-toml",
         lambda w: w.given(w.finished_run(), w.file("out/recipe.toml", "[prune\n")).cli("export", w.out),
         "is not valid TOML"),
    case("gate-a-directory-that-is-not-a-run", lambda w: ["gate", w.directory("somewhere")], "is not a prunectl run directory"),
    case("gate-a-file", lambda w: ["gate", w.file("run.txt", "hello")], "is not a prunectl run directory"),
    case("gate-an-unfinished-run", lambda w: w.given(w.unfinished_run()).cli("gate", w.out), "holds an unfinished run"),
]  # fmt: skip


def finished_markers(files: dict[str, str]) -> set[str]:
    return {path for path in files if Path(path).name in FINISHED_MARKERS}


def under_out(files: dict[str, str]) -> dict[str, str]:
    """The part of a snapshot that is the cases' `--out` (and `--resume`) directory."""
    return {path: digest for path, digest in files.items() if Path(path).parts[0] == "out"}


def assert_one_line_error(result: Any, fragment: str) -> None:
    """DESIGN.md's exit code 2: one line that names the problem, never a traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert fragment in lines[0], result.output


@pytest.fixture(scope="module")
def finished_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cache that holds the finished run's base model, so redoing the run does not retrain it."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, finished_cache: Path) -> Path:
    """One finished `prune` run of FINISHED_RECIPE, copied (never modified) by the cases that need one."""
    from prunectl.api import prune

    out = tmp_path_factory.mktemp("finished") / "run"
    prune(FINISHED_RECIPE, out=out, cache_dir=finished_cache)
    return out


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Workspace:
    """The case's working directory (a default `runs/` would land here) with its factory importable."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, FACTORY_MODULE, raising=False)
    return Workspace(tmp_path, lambda: request.getfixturevalue("finished_run"))


@pytest.mark.parametrize(("build", "fragment"), CASES)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(workspace: Workspace, build: Build, fragment: str) -> None:
    argv = build(workspace)
    before = snapshot(workspace.root)
    result = runner.invoke(app, argv, env=workspace.env or None)
    assert_one_line_error(result, fragment)
    after = snapshot(workspace.root)
    assert finished_markers(after) == finished_markers(before), "a refused command wrote something that looks finished"
    assert under_out(after) == under_out(before), "--out was created or changed"
    assert after == before, "a refused command wrote or changed files"
    assert not workspace.marker.exists(), "the malicious checkpoint was unpickled"


def test_a_malicious_checkpoint_is_refused_by_a_real_process_in_one_line(tmp_path: Path) -> None:
    """The same refusal outside CliRunner, where torch's warnings would reach the terminal."""
    workspace = Workspace(tmp_path, lambda: tmp_path)
    # A bare pickle (protocol 4) is what makes torch warn on stderr before it refuses.
    argv = workspace.prune("--model-checkpoint", workspace.malicious_checkpoint(raw_pickle=True))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRUNECTL_")}
    completed = subprocess.run(
        [sys.executable, "-m", "prunectl.cli", *argv], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 2, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and "refusing to load" in lines[0], output
    assert not workspace.marker.exists()
    assert not workspace.out.exists()


@pytest.mark.parametrize("command", ["prune", "compress"])
def test_overwrite_replaces_a_finished_run(workspace: Workspace, command: str, finished_cache: Path) -> None:
    """The other half of "a finished run is never overwritten without --overwrite": with it, the run is redone."""
    config = workspace.root / "finished.toml"
    shutil.copy(workspace.finished_run(), config)
    (workspace.out / "stale.txt").write_text("from the previous run")
    old_manifest = (workspace.out / "manifest.json").read_bytes()
    argv = [command, "--config", str(config), "--out", str(workspace.out), "--overwrite", "--cache-dir", str(finished_cache)]
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert not (workspace.out / "stale.txt").exists()
    assert (workspace.out / "manifest.json").read_bytes() != old_manifest
    if command == "compress":
        assert (workspace.out / "export" / "model.onnx").is_file()


def test_torch_itself_refuses_a_torchscript_archive_with_weights_only(tmp_path: Path) -> None:
    """prunectl names TorchScript archives before torch sees them; should that check ever miss,
    torch.load(weights_only=True) still refuses to run the archive's code (the defence beneath)."""
    path = Workspace(tmp_path, lambda: tmp_path).torchscript()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match="weights_only"):
            torch.load(path, weights_only=True)


def test_a_multi_line_message_is_printed_as_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A message that quotes a library's multi-line error (or a value with a newline) still
    prints as one line: PrunectlError joins the lines itself, whoever raises it."""
    import prunectl.api
    from prunectl.errors import DataError

    def multi_line(*args: object, **kwargs: object) -> None:
        raise DataError("cannot read x.csv:\n  line 3: bad value\n\nfix the file")

    monkeypatch.setattr(prunectl.api, "prune", multi_line)
    result = runner.invoke(app, Workspace(tmp_path, lambda: tmp_path).prune())
    assert_one_line_error(result, "cannot read x.csv: line 3: bad value fix the file")


# -- unreadable files, as root too ---------------------------------------------------------------------
#
# Root reads a chmod 000 file, and CI runs as root, so these cases run the CLI in a child that
# keeps uid 0 but drops the file capabilities (`conftest.without_file_capabilities`), the way an
# ordinary user meets the file. Each has a control: the same file left
# readable, under the same child, gets past the read and fails later for a reason that proves
# the file was read. So a case cannot pass because everything became unreadable.

TOO_MANY_MEMBERS = {"PRUNECTL_DATA_MEMBERS": "1000"}  # refused only once the data is loaded


@dataclass(frozen=True)
class UnreadableCase:
    """`build(workspace, readable)` → (argv, the file, extra environment)."""

    build: Callable[[Workspace, bool], tuple[list[str], str, dict[str, str]]]
    refused: str
    control: str


def _npz(w: Workspace, readable: bool) -> tuple[list[str], str, dict[str, str]]:
    path = w.npz(**w.images())
    return w.prune("--data", "npz:" + (path if readable else w.unreadable(path))), path, TOO_MANY_MEMBERS


def _csv(w: Workspace, readable: bool) -> tuple[list[str], str, dict[str, str]]:
    path = w.table()
    return w.prune("--data", "csv:" + (path if readable else w.unreadable(path))), path, TOO_MANY_MEMBERS


def _checkpoint(w: Workspace, readable: bool) -> tuple[list[str], str, dict[str, str]]:
    path = w.checkpoint(MLP(64, (16,), 10))  # the recipe's widths are (32,): a readable file does not fit
    return w.prune("--model-checkpoint", path if readable else w.unreadable(path)), path, {}


def _config(w: Workspace, readable: bool) -> tuple[list[str], str, dict[str, str]]:
    path = w.file("recipe.toml", "[prune]\nrounds = 0\n")
    return ["prune", "--config", path if readable else w.unreadable(path), "--out", str(w.out)], path, {}


UNREADABLE = {
    "npz data": UnreadableCase(_npz, "is not readable (permission denied); check its permissions", "but the data has 90 samples"),
    "csv data": UnreadableCase(_csv, "is not readable (permission denied); check its permissions", "but the data has 90 samples"),
    "a model checkpoint": UnreadableCase(_checkpoint, "check the path and its permissions", "does not fit the model architecture"),
    "a config file": UnreadableCase(_config, "is not readable", "prune.rounds = 0 is invalid"),
}


def _run_without_file_capabilities(workspace: Workspace, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PRUNECTL_")}
    environment.update(env, PRUNECTL_CACHE_DIR=str(workspace.root / "cache"))
    command = [*without_file_capabilities(), sys.executable, "-m", "prunectl.cli", *argv]
    return subprocess.run(command, capture_output=True, text=True, env=environment, cwd=workspace.root, timeout=300)


@pytest.mark.parametrize("what", UNREADABLE)
def test_an_unreadable_file_is_refused_in_one_line_naming_it_even_as_root(workspace: Workspace, what: str) -> None:
    case_ = UNREADABLE[what]
    argv, path, env = case_.build(workspace, False)
    before = snapshot(workspace.root)
    done = _run_without_file_capabilities(workspace, argv, env)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "Traceback" not in lines[0], done.stderr
    assert path in lines[0] and case_.refused in lines[0], lines[0]
    assert snapshot(workspace.root) == before, "a refused command wrote or changed files"


@pytest.mark.parametrize("what", UNREADABLE)
def test_the_same_file_left_readable_is_read_by_the_same_child(workspace: Workspace, what: str) -> None:
    case_ = UNREADABLE[what]
    argv, path, env = case_.build(workspace, True)
    done = _run_without_file_capabilities(workspace, argv, env)
    assert done.returncode == 2, done.stderr
    assert case_.control in done.stderr and "permission" not in done.stderr, done.stderr
