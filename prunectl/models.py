"""Model sources in one registry: builtin nets, torchvision architectures, TorchScript, state dicts.

A model source builds an untrained network for the data's input shape and classes. A base
checkpoint (`model.checkpoint`, or the file of `state-dict:FILE`) is only loaded for the victim;
shadows call the same builder with `load_weights=False` and train from a fresh initialisation,
so they repeat the victim's whole recipe. Everything is loaded with `weights_only=True`:
nothing untrusted is unpickled.
"""

from __future__ import annotations

import importlib
import inspect
import io
import math
import re
import sys
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gates.seeds import derive_seed
from prunectl.data import Dataset
from prunectl.errors import ModelError
from prunectl.recipe import ModelSpec, Recipe
from prunectl.registry import Registry
from prunectl.registry import split_source as parse_source


@dataclass(frozen=True)
class DataShape:
    """What a model source needs to know about the data."""

    input_shape: tuple[int, ...]
    num_classes: int

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3


class SourceWeights(Enum):
    """Where a model source's trained weights come from."""

    CHECKPOINT_ONLY = "only from model.checkpoint, if given"
    ARCHIVE = "the archive holds code and weights; a fresh model is re-initialised"
    STATE_DICT_ARG = "the :FILE is a state dict, loaded into the factory's network"


@dataclass(frozen=True)
class ModelKind:
    """How one kind of model source is built.

    `build(arg, spec, shape)` returns the network. `example` is what a complete source looks
    like (for the message when the `:ARG` part is missing). `check(arg, spec)` refuses a bad
    argument before any work. `weights` says where trained weights come from.
    """

    build: Callable[[str | None, ModelSpec, DataShape], nn.Module]
    example: str
    arg_is_path: bool
    weights: SourceWeights = SourceWeights.CHECKPOINT_ONLY
    check: Callable[[str, ModelSpec], None] | None = None

    @property
    def holds_weights(self) -> bool:
        """Whether the source itself supplies trained weights (then `model.checkpoint` has no use)."""
        return self.weights is not SourceWeights.CHECKPOINT_ONLY


MODEL_SOURCES: Registry[ModelKind] = Registry("model source", ModelError)


class SmallCNN(nn.Module):
    """Two conv blocks and two linear layers: small enough for CPU, big enough to overfit."""

    def __init__(self, in_channels: int, height: int, width: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * (height // 4) * (width // 4), 128),
            nn.ReLU(),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MLP(nn.Module):
    """Flatten, then `widths` hidden ReLU layers."""

    def __init__(self, in_features: int, widths: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        previous = in_features
        for width in widths:
            layers += [nn.Linear(previous, width), nn.ReLU()]
            previous = width
        layers.append(nn.Linear(previous, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _build_cnn(arg: str | None, spec: ModelSpec, shape: DataShape) -> nn.Module:
    if not shape.is_image:
        raise ModelError(f"builtin:cnn needs image data (C, H, W) but the data has shape {shape.input_shape}; use builtin:mlp")
    channels, height, width = shape.input_shape
    if height < 4 or width < 4:
        raise ModelError(f"builtin:cnn needs images of at least 4x4, got {height}x{width}")
    return SmallCNN(channels, height, width, shape.num_classes)


CHANNELS_LAST_SOURCES = frozenset({"builtin:cnn"})
"""Model sources built with channels-last conv weights (:func:`to_channels_last`): only builtin
ones, because a user's model may `.view()` a conv activation, which a channels-last tensor refuses."""


def weight_layout(spec: ModelSpec) -> str:
    """How a model of `spec` stores its conv weights. It is part of what a trained model depends on
    (the content cache's key): the layout picks oneDNN's kernels, so the last bits of every float."""
    return "channels_last" if spec.source in CHANNELS_LAST_SOURCES else "as built"


def to_channels_last(model: nn.Module) -> nn.Module:
    """Store the conv weights channels-last (NHWC), in place; returns `model`.

    On the CPU oneDNN's convolutions run much faster in this layout: for the builtin CNN at one
    thread, ~1.4x in training and ~2x in inference (`benchmarks/layout.py`). The values are the
    model's own, only their order in memory changes: the ONNX graph, the state dict's keys and
    shapes and what a forward pass computes (up to float rounding) are those of the usual layout.
    """
    return model.to(memory_format=torch.channels_last)


def is_channels_last(model: nn.Module) -> bool:
    """Whether some conv weight is stored channels-last (and not also plainly contiguous)."""
    return any(
        module.weight.is_contiguous(memory_format=torch.channels_last) and not module.weight.is_contiguous()
        for module in model.modules()
        if isinstance(module, nn.Conv2d)
    )


def _build_mlp(arg: str | None, spec: ModelSpec, shape: DataShape) -> nn.Module:
    return MLP(math.prod(shape.input_shape), tuple(spec.widths), shape.num_classes)


def torchvision_architectures() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _build_torchvision(arg: str | None, spec: ModelSpec, shape: DataShape) -> nn.Module:
    """Random init (never downloaded weights), `num_classes` set, first conv adapted to the channels."""
    import torchvision

    architectures = torchvision_architectures()
    if arg not in architectures:
        raise ModelError(f"unknown torchvision architecture {arg!r}; choose one of: {', '.join(architectures)}")
    if not shape.is_image:
        raise ModelError(f"torchvision:{arg} needs image data (C, H, W) but the data has shape {shape.input_shape}")
    try:
        model = torchvision.models.get_model(arg, weights=None, num_classes=shape.num_classes)
    except (TypeError, ValueError) as error:
        raise ModelError(f"torchvision:{arg} cannot be built for {shape.num_classes} classes: {error}") from None
    _adapt_first_conv(model, shape.input_shape[0])
    return model


def _adapt_first_conv(model: nn.Module, channels: int) -> None:
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                if child.in_channels != channels:
                    setattr(
                        parent,
                        name,
                        nn.Conv2d(
                            channels,
                            child.out_channels,
                            child.kernel_size,
                            child.stride,
                            child.padding,
                            child.dilation,
                            child.groups if child.groups == 1 else channels,
                            bias=child.bias is not None,
                        ),
                    )
                return


def _build_torchscript(arg: str | None, spec: ModelSpec, shape: DataShape) -> nn.Module:
    """A TorchScript archive is code plus weights; it is loaded only from an explicit source."""
    path = Path(str(arg))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, still supported
            return torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError, OSError) as error:
        if not _is_torchscript_archive(path.read_bytes()) and zipfile.is_zipfile(path):
            raise ModelError(
                f"{path} is a torch.save checkpoint, not a TorchScript archive; pass it as --model-checkpoint {path} "
                "(or --model state-dict:FILE with --model-factory module:function)"
            ) from None
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"{path} is not a loadable TorchScript archive ({first.split('. ')[0][:200]}); save it with torch.jit.save") from None


def load_factory(factory: str | None) -> Callable[..., nn.Module]:
    """Import `module:function` (the current directory is importable, like `python -m`)."""
    if not factory or ":" not in factory:
        raise ModelError("state-dict:FILE needs --model-factory module:function that builds the architecture")
    module_name, _, function_name = factory.partition(":")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ModelError(f"cannot import model factory module {module_name!r} ({error}); check --model-factory") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ModelError(f"model factory {factory!r}: {module_name} has no function {function_name!r}")
    return function


def _build_from_factory(arg: str | None, spec: ModelSpec, shape: DataShape) -> nn.Module:
    """Call the factory with `input_shape` and `num_classes` when it accepts them."""
    function = load_factory(spec.factory)
    accepted = inspect.signature(function).parameters
    kwargs = {k: v for k, v in (("input_shape", shape.input_shape), ("num_classes", shape.num_classes)) if k in accepted}
    model = function(**kwargs)
    if not isinstance(model, nn.Module):
        raise ModelError(f"model factory {spec.factory!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


BUILTIN_MODELS: Registry[Callable[[str | None, ModelSpec, DataShape], nn.Module]] = Registry("builtin model", ModelError)
BUILTIN_MODELS.register(_build_cnn, "cnn")
BUILTIN_MODELS.register(_build_mlp, "mlp")


def _build_builtin(arg: str | None, spec: ModelSpec, shape: DataShape) -> nn.Module:
    return BUILTIN_MODELS.get(str(arg))(arg, spec, shape)


def _check_builtin(arg: str, spec: ModelSpec) -> None:
    BUILTIN_MODELS.get(arg)


def _check_factory(arg: str, spec: ModelSpec) -> None:
    load_factory(spec.factory)


# The registry entries: kept together so the set of sources reads as one table.
MODEL_SOURCES.register(ModelKind(_build_builtin, "builtin:cnn or builtin:mlp", arg_is_path=False, check=_check_builtin), "builtin")
MODEL_SOURCES.register(ModelKind(_build_torchvision, "torchvision:resnet18", arg_is_path=False), "torchvision")
MODEL_SOURCES.register(ModelKind(_build_torchscript, "torchscript:FILE", arg_is_path=True, weights=SourceWeights.ARCHIVE), "torchscript")
MODEL_SOURCES.register(
    ModelKind(_build_from_factory, "state-dict:FILE", arg_is_path=True, weights=SourceWeights.STATE_DICT_ARG, check=_check_factory),
    "state-dict",
)


def check_source(spec: ModelSpec) -> None:
    """Validate the source name, its argument and paths before any work starts."""
    kind_name, arg = parse_source(spec.source)
    kind = MODEL_SOURCES.get(kind_name)
    if not arg:
        raise ModelError(f"model.source {spec.source!r} is incomplete; use e.g. {kind.example}")
    if kind.arg_is_path and not Path(arg).is_file():
        raise ModelError(f"model.source {spec.source!r}: {arg} is not a file; pass an existing path")
    if kind.check is not None:
        kind.check(arg, spec)
    if spec.checkpoint is not None:
        if kind.holds_weights:
            raise ModelError(f"model.checkpoint is not used with {kind_name}: sources, whose file already holds the weights")
        if not Path(spec.checkpoint).is_file():
            raise ModelError(f"model.checkpoint {spec.checkpoint} is not a file; pass an existing state-dict checkpoint")


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Load a checkpoint without executing code: `weights_only=True` refuses pickled objects."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ModelError(f"checkpoint {path} does not exist") from None
    except OSError as error:
        raise ModelError(f"cannot read checkpoint {path} ({error.strerror or error}); check the path and its permissions") from None
    return load_state_dict_bytes(raw, path)


def load_state_dict_bytes(raw: bytes, path: Path | str) -> dict[str, torch.Tensor]:
    """`load_state_dict_file` on bytes already read (and hashed) by the caller: the bytes that are
    hashed are exactly the bytes that are loaded, with no second read of a file that may have changed."""
    state = load_tensors_only(raw, path)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} is not a state dict (a mapping of names to tensors); save model.state_dict()")
    return state


def load_tensors_only(raw: bytes, path: Path | str) -> Any:
    """The one way prunectl unpickles anything: `torch.load(weights_only=True)` on bytes that are
    not a TorchScript archive (which holds code). Tensors and plain containers come back; a file
    that would run code, or is corrupt, is a one-line `ModelError`."""
    if _is_torchscript_archive(raw):
        raise ModelError(
            f"refusing to load {path} as a state dict: it is a TorchScript archive, which holds code and is loaded only "
            f"from an explicit source; pass --model torchscript:{path} if you trust it, or save model.state_dict()"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol warnings would print a second line
            return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for hostile or corrupt files
        raise ModelError(_refusal(path, raw, error)) from None


_SAVE_HINT = "save the weights alone with torch.save(model.state_dict(), PATH)"
_FORBIDDEN_GLOBAL = re.compile(r"GLOBAL (\S+) was not an allowed global")
_SIZE_MISMATCH = re.compile(
    r"size mismatch for (\S+): copying a param with shape torch\.Size\(\[([\d, ]*)\]\) from checkpoint, "
    r"the shape in current model is torch\.Size\(\[([\d, ]*)\]\)"
)


def _describe_mismatch(text: str) -> str:
    """torch's load_state_dict error, shortened to the first mismatch and a count of the rest."""
    sizes = _SIZE_MISMATCH.findall(text)
    if sizes:
        name, theirs, ours = sizes[0]
        others = len(sizes) - 1
        more = f" (and {others} more tensor{'s' if others > 1 else ''})" if others else ""
        return f"{name} has shape ({theirs}) in the checkpoint but ({ours}) in the model{more}"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " ".join(lines[1:3] or lines[:1])[:300]


def _is_torchscript_archive(raw: bytes) -> bool:
    """torch.save and torch.jit.save both write zip files; only TorchScript's holds `constants.pkl`
    (the test torch.load itself applies before it refuses such a file under weights_only=True)."""
    if not raw.startswith(b"PK"):
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            return any(name.split("/", 1)[-1] == "constants.pkl" for name in archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def _refusal(path: Path | str, raw: bytes, error: Exception) -> str:
    """One line for a checkpoint torch.load(weights_only=True) refused; never torch's own advice
    to retry with weights_only=False, which is exactly what must not happen with an untrusted file."""
    text = str(error)
    forbidden = _FORBIDDEN_GLOBAL.search(text)
    if forbidden:
        return (
            f"refusing to load {path}: unpickling it would call {forbidden.group(1)}, and checkpoints are loaded only with "
            f"weights_only=True, which never runs pickled code; {_SAVE_HINT}"
        )
    if not raw:
        detail = "the file is empty"
    elif "WeightsUnpickler error:" in text:
        detail = "WeightsUnpickler: " + text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0]
    else:
        first = text.strip().splitlines()[0] if text.strip() else ""
        detail = f"{type(error).__name__}: {first}" if first else type(error).__name__
    detail = "".join(c for c in detail if c.isprintable())[:160]
    return f"refusing to load {path}: it is not a PyTorch checkpoint of plain tensors readable with weights_only=True ({detail}); {_SAVE_HINT}"


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ModelError(
            f"{where} does not fit the model architecture: {_describe_mismatch(str(error))}; "
            "pass a checkpoint of this model.source (and model.widths) trained on data of this shape and class count"
        ) from None
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ModelError(f"{where}: tensor {name!r} holds NaN or infinite values; the checkpoint is broken")


def reinitialise(model: nn.Module) -> None:
    """Fresh weights for a model whose code cannot re-initialise itself (TorchScript)."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() >= 2:
                nn.init.kaiming_uniform_(parameter, a=math.sqrt(5))
            elif name.endswith("weight"):
                nn.init.ones_(parameter)
            else:
                nn.init.zeros_(parameter)


def build_model(spec: ModelSpec, shape: DataShape, *, load_weights_from_spec: bool) -> nn.Module:
    """Build the architecture; load the base weights only when asked (the victim, not shadows).

    The caller seeds torch before calling so the initialisation is reproducible.
    """
    check_source(spec)
    kind_name, arg = parse_source(spec.source)
    kind = MODEL_SOURCES.get(kind_name)
    model = kind.build(arg, spec, shape)
    if weight_layout(spec) == "channels_last":
        to_channels_last(model)
    if kind.weights is SourceWeights.ARCHIVE and not load_weights_from_spec:
        reinitialise(model)
    if load_weights_from_spec:
        if kind.weights is SourceWeights.STATE_DICT_ARG:
            load_weights(model, load_state_dict_file(Path(str(arg))), str(arg))
        elif spec.checkpoint is not None:
            load_weights(model, load_state_dict_file(Path(spec.checkpoint)), spec.checkpoint)
    check_output_shape(model, shape)
    return model


def data_shape(data: Dataset) -> DataShape:
    return DataShape(data.input_shape, data.num_classes)


def fresh_model(recipe: Recipe, data: Dataset, seed: int) -> nn.Module:
    """A freshly initialised model of the recipe's architecture, seeded: the one way every model
    of a run (base, pruned, shadows, helpers, and models rebuilt from a run directory) is built."""
    torch.manual_seed(derive_seed(seed, "init"))
    return build_model(recipe.model, data_shape(data), load_weights_from_spec=False)


def has_base_weights(spec: ModelSpec) -> bool:
    """True when the recipe supplies a trained base model, so base training is skipped."""
    kind_name, _ = parse_source(spec.source)
    return spec.checkpoint is not None or MODEL_SOURCES.get(kind_name).holds_weights


def check_output_shape(model: nn.Module, shape: DataShape) -> None:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *shape.input_shape))
    except Exception as error:  # noqa: BLE001 - any failure here means the model does not fit the data
        raise ModelError(
            f"the model cannot take inputs of shape {shape.input_shape}: {str(error).splitlines()[0][:200]}"
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.shape != (2, shape.num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(
            f"the model outputs {got} for a batch of 2 but the data has {shape.num_classes} classes; "
            "its last layer must output one logit per class"
        )
