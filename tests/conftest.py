"""Shared fixtures: a tiny recipe and one finished run per session, reused by every test module.

Keep these small: the whole suite must stay well under 10 minutes on 2 cores.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from prunectl.recipe import DataSpec, DefenseSpec, ModelSpec, PruneSpec, Recipe, TrainSpec

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_fashion_mnist = pytest.mark.skipif(
    not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST is not installed: apt-get install dataset-fashion-mnist",
)


class BatchRecorder(nn.Module):
    """Wraps a model and records the batch size of every forward pass (to prove chunking)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(int(x.shape[0]))
        return self.model(x)


class NaNOutputs(nn.Module):
    """A model whose logits are NaN: what a diverged training run produces."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * float("nan")


DROP_FILE_CAPABILITIES = ["setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]


def without_file_capabilities() -> list[str]:
    """A command prefix under which file permissions bind this process's children, root or not.

    Root ignores file modes (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), and CI runs as root, so a
    test about an unreadable or unwritable file runs its command through setpriv (util-linux),
    which keeps uid 0 but drops both capabilities: the way an ordinary user meets the file."""
    import os
    import shutil

    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.fail("running as root, this test needs setpriv (util-linux) to drop CAP_DAC_OVERRIDE: apt-get install util-linux")
    return list(DROP_FILE_CAPABILITIES)


def make_tiny_recipe(**changes: object) -> Recipe:
    """Digits, small splits, an MLP, 2 rounds of 1 epoch, no defense: a full run in about a second.

    The gate reserves a quarter of the shadow pool for calibration and the shadows train on
    halves of the rest, so a 700-sample pool gives each shadow 262 samples, as many as the
    victim's members + dev; with fewer, a shadow of this noisy recipe can land more than the
    gate's 10 points below the victim and the gate refuses it.

    Every layer is pruned, no weight decay and no defense run, unlike the defaults, so that tests of the
    pipeline stay fast and their layer counts simple; the defenses have their own tests."""
    recipe = Recipe(
        name="tiny",
        seed=0,
        data=DataSpec(source="digits", members=200, dev=60, holdout=200, shadow_pool=700),
        model=ModelSpec(source="builtin:mlp", widths=(32,)),
        train=TrainSpec(epochs=15, batch_size=32, lr=3e-3, weight_decay=0.0),
        prune=PruneSpec(target_sparsity=0.8, rounds=2, epochs_per_round=1, keep_last_dense=False),
        defense=DefenseSpec(name="none"),
    )
    sections = {}
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            sections.setdefault(section, {})[field] = value
        else:
            recipe = dataclasses.replace(recipe, **{key: value})
    for section, fields in sections.items():
        recipe = dataclasses.replace(recipe, **{section: dataclasses.replace(getattr(recipe, section), **fields)})
    return recipe


def pytest_configure(config: pytest.Config) -> None:
    """The test process runs torch at one intra-op thread, as the gate's units do.

    The suite's models are tiny, so a second thread buys little, and on a 2-core machine that
    anything else also uses (CI runners are shared) two OpenMP threads that spin-wait for each
    other cost far more than they save: SAMIA's relational tests took 40-100 s each at 2 threads
    beside one busy core, and 5 s at 1. Commands the tests start as subprocesses keep torch's
    default, as users get it."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_recipe() -> Recipe:
    return make_tiny_recipe()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_recipe: Recipe):
    """A finished `prune` run of the tiny recipe: (result, run directory)."""
    from prunectl.api import prune

    out = tmp_path_factory.mktemp("runs") / "tiny"
    result = prune(tiny_recipe, out=out)
    return result, out


RELEASE_GATE = {"gate__shadows": 2, "gate__bootstrap": 200, "gate__max_advantage": 0.5}
"""A gate cheap enough for tests, and loose enough that the tiny recipe passes it at seed 0."""


def make_release_recipe(**changes: object) -> Recipe:
    """The tiny recipe with `RELEASE_GATE`: `compress` passes it and exports in under a minute."""
    return make_tiny_recipe(**{**RELEASE_GATE, **changes})


def compress_release(root: Path, **changes: object):
    """`compress` of `make_release_recipe(**changes)` into `root/run` (cold cache in `root/cache`),
    which must pass and release: (RunResult, run directory)."""
    from prunectl.api import compress

    result = compress(make_release_recipe(**changes), out=root / "run", cache_dir=root / "cache", bench_runs=20)
    assert result.released, result.gate.reason
    return result, root / "run"


@pytest.fixture(scope="session")
def released_run(tmp_path_factory: pytest.TempPathFactory):
    """A finished, passing `compress` of `make_release_recipe()` (API, cold cache): (RunResult, run directory).

    Read-only: tests that change it work on a copy."""
    from prunectl.api import compress

    root = tmp_path_factory.mktemp("released")
    result = compress(make_release_recipe(), out=root / "release", cache_dir=root / "cache", bench_runs=20)
    assert result.released, result.gate.reason
    return result, root / "release"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No PRUNECTL_* variable from the developer's shell leaks into a test; crash logs stay local."""
    import os

    for key in list(os.environ):
        if key.startswith("PRUNECTL_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    # Every gate runs its units in the test's own process unless the executor is the test's subject
    # (tests/test_executors.py): spawning workers per gate would multiply the suite's time.
    monkeypatch.setenv("PRUNECTL_WORKERS", "1")
