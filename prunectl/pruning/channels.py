"""Channel pruning: whole output channels removed, coupled channels found by Torch-Pruning.

Unstructured sparsity is a size format in onnxruntime (sparse initializers are densified at
load), so it makes the download smaller, not the inference. Removing whole channels makes
every layer physically narrower: fewer weights, fewer MACs, a faster dense model.

Torch-Pruning's dependency graph finds what must shrink together when a channel goes (the
batch norm behind a convolution, the next layer's input channels, every convolution feeding
one residual addition, a depthwise convolution and its neighbours, the columns of a linear
layer after a flatten). This module decides *how many* channels each group keeps and *which*:

- counts are multiples of `round_to` (default 8; odd counts defeat the CPU kernels), at least
  `round_to` per group, never more than the group has;
- the classifier's outputs and the data's input channels are never pruned;
- which channels: the lowest group magnitude (L1 or L2 over every tensor of the group);
- how many: the rounded configuration whose share of removed weights (`target_sparsity`, the
  fraction of the model's conv and linear weights removed, measured against the dense model) is
  closest to the round's target. `layerwise` keeps the same fraction of every group's channels;
  `global` removes blocks of `round_to` channels one at a time from the group whose next block
  has the lowest importance (normalised by the group's mean), which reaches targets more finely.

What was removed is recorded as data, a :class:`ChannelPlan` (module names and channel
indices per step), never as pickled modules. Any pruned model is rebuilt by building the
recipe's architecture and replaying the plan (:func:`replay`), after checking each step's
module name against `named_modules()` and its indices against the channels that module has.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from prunectl.errors import PrunectlError
from prunectl.models import is_channels_last, to_channels_last
from prunectl.pruning.masks import LayerSparsity, SparsityReport, is_prunable, prunable_weight_names

PLAN_FORMAT = "prunectl-channel-plan/1"
CHANNEL_TOLERANCE = 0.02
"""How far the achieved sparsity of a channel-pruned model may lie from the target, at most.

Channel counts move in blocks of `round_to`, so only a grid of sparsities is reachable: on the
builtin CNN for 8x8 digits one block of 8 channels in its narrowest layers is 1 to 4% of the
model's weights near 90%. The search picks the grid point closest to the target; 2 points is
wide enough for that grid on the models prunectl ships and tests (builtin CNN, torchvision
resnet18 and mobilenet_v2). Near 100% two points would be many times the weights kept, so the
tolerance also never exceeds a quarter of the kept share (:func:`channel_tolerance`). A target
no grid point reaches within it is refused before training; the report gives the exact figure."""


def channel_tolerance(target: float) -> float:
    """±2 points, and at most a quarter of the weights the target keeps (0.25 points at 0.99)."""
    return min(CHANNEL_TOLERANCE, 0.25 * (1.0 - target))


CHANNEL_IMPORTANCE = {"l1": 1, "l2": 2}


class ChannelPruningError(PrunectlError):
    """A model, target or plan that channel pruning cannot serve (exit 2)."""


class PlanError(PrunectlError):
    """A channel plan that is malformed or does not fit the model it is replayed on (exit 2)."""


@dataclass(frozen=True)
class PlanStep:
    """One group pruned: the output channels `indices` of `module` (and everything coupled to them)."""

    round: int
    module: str
    indices: tuple[int, ...]


@dataclass(frozen=True)
class ChannelPlan:
    """Every channel removed from the recipe's architecture, in order, plus the dense reference."""

    round_to: int
    dense_weights: int
    steps: tuple[PlanStep, ...] = ()

    def extended(self, steps: Sequence[PlanStep]) -> ChannelPlan:
        return ChannelPlan(self.round_to, self.dense_weights, (*self.steps, *steps))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "round_to": self.round_to,
            "dense_weights": self.dense_weights,
            "steps": [{"round": s.round, "module": s.module, "indices": list(s.indices)} for s in self.steps],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, raw: Any, where: str = "the channel plan") -> ChannelPlan:
        """Parse a plan read from a file, refusing anything that is not exactly a plan's shape."""
        if not isinstance(raw, dict) or raw.get("format") != PLAN_FORMAT:
            raise PlanError(f"{where} is not a prunectl channel plan (format {PLAN_FORMAT!r}); prune the run again")
        round_to, dense = raw.get("round_to"), raw.get("dense_weights")
        if not _is_int(round_to) or round_to < 1 or not _is_int(dense) or dense < 1:
            raise PlanError(f"{where} has a malformed round_to or dense_weights; prune the run again")
        steps = raw.get("steps")
        if not isinstance(steps, list):
            raise PlanError(f"{where} has no list of steps; prune the run again")
        parsed = []
        for number, step in enumerate(steps, 1):
            if (
                not isinstance(step, dict)
                or set(step) != {"round", "module", "indices"}
                or not _is_int(step["round"])
                or not isinstance(step["module"], str)
                or not isinstance(step["indices"], list)
                or not all(_is_int(i) for i in step["indices"])
            ):
                raise PlanError(f"{where}: step {number} is malformed (round, module, indices); prune the run again")
            parsed.append(PlanStep(step["round"], step["module"], tuple(step["indices"])))
        return cls(round_to, dense, tuple(parsed))

    @classmethod
    def from_json(cls, text: str | bytes, where: str = "the channel plan") -> ChannelPlan:
        try:
            raw = json.loads(text)
        except (ValueError, UnicodeDecodeError) as error:
            raise PlanError(f"{where} is not valid JSON ({error}); prune the run again") from None
        return cls.from_dict(raw, where)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- the dependency graph --------------------------------------------------------------------


def check_channel_prunable(model: nn.Module) -> None:
    """Refuse a model whose graph Torch-Pruning cannot rewrite (a compiled TorchScript archive)."""
    if any(isinstance(m, torch.jit.ScriptModule) for m in model.modules()):
        raise ChannelPruningError(
            "a TorchScript archive cannot be channel-pruned (its graph is compiled code, not modules to rewrite); "
            "set prune.structure = unstructured, or give the architecture as torchvision:, builtin: or state-dict: with --model-factory"
        )


@contextmanager
def _traced(model: nn.Module) -> Iterator[None]:
    """Eval mode and no RNG use while the graph is traced: batch-norm statistics and the random
    streams a resumed run must replay are left exactly as they were. (Gradients stay on:
    Torch-Pruning traces through autograd.)"""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        for module, training in flags:
            module.training = training


def dependency_graph(model: nn.Module, example: torch.Tensor) -> Any:
    import torch_pruning as tp

    check_channel_prunable(model)
    with _traced(model):
        try:
            return tp.DependencyGraph().build_dependency(model, example_inputs=example)
        except Exception as error:  # noqa: BLE001 - tracing fails in many ways on unusual models
            first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
            raise ChannelPruningError(
                f"Torch-Pruning cannot trace this model's channel dependencies ({first}); set prune.structure = unstructured"
            ) from None


@dataclass
class _Group:
    """A prunable group: its root layer's name, channels now, and the weights it shapes."""

    root: str
    channels: int
    out_of: list[tuple[str, int]] = field(default_factory=list)
    """(layer, weight rows per channel) whose outputs this group sets."""
    in_of: list[tuple[str, int]] = field(default_factory=list)
    """(layer, input columns per channel) whose inputs this group sets."""
    importance: torch.Tensor | None = None


@dataclass(frozen=True)
class _Layer:
    out: int
    inp: int
    groups: int
    kernel: int
    depthwise: bool

    def weights(self, out: int, inp: int) -> int:
        if self.depthwise:
            return out * self.kernel
        return out * (inp // self.groups) * self.kernel


def _layers(model: nn.Module) -> dict[str, _Layer]:
    layers = {}
    for name, module in model.named_modules():
        if not is_prunable(module) or not isinstance(getattr(module, "weight", None), torch.Tensor):
            continue
        weight = module.weight
        groups = getattr(module, "groups", 1)
        out, per_group_in = weight.shape[0], weight.shape[1]
        kernel = math.prod(weight.shape[2:]) if weight.dim() > 2 else 1
        depthwise = groups > 1 and groups == out and per_group_in == 1
        layers[name] = _Layer(out, per_group_in * groups, groups, kernel, depthwise)
    return layers


class ChannelPruner:
    """One round's view of a model: its prunable groups, their importance, and the search."""

    def __init__(self, model: nn.Module, example: torch.Tensor, *, round_to: int, importance: str, keep_first: bool) -> None:
        self.model = model
        self.round_to = round_to
        self.graph = dependency_graph(model, example)
        self.layers = _layers(model)
        modules = dict(model.named_modules())
        names = {module: name for name, module in modules.items()}
        ordered = list(self.layers)
        ignored = [modules[ordered[-1]]]  # the classifier: its outputs are the classes
        if keep_first:
            ignored.append(modules[ordered[0]])
        scorer = _importance(importance)
        self.groups: list[_Group] = []
        for group in self.graph.get_all_groups(ignored_layers=ignored, root_module_types=(nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            root_module = group[0].dep.target.module
            channels = len(group[0].idxs)
            entry = _Group(names[root_module], channels)
            for dep, idxs in group:
                layer = names.get(dep.target.module)
                if layer not in self.layers:
                    continue
                per_channel = len(idxs) // channels
                if self.graph.is_out_channel_pruning_fn(dep.handler):
                    entry.out_of.append((layer, per_channel))
                elif self.graph.is_in_channel_pruning_fn(dep.handler):
                    entry.in_of.append((layer, per_channel))
            with torch.no_grad():
                entry.importance = scorer(group).detach().float().cpu()
            self.groups.append(entry)

    # -- counting ---------------------------------------------------------------------------

    def weights(self, keep: dict[str, int] | None = None) -> int:
        """The conv and linear weights the model would hold with `keep[root]` channels per group."""
        keep = keep or {}
        out = {name: layer.out for name, layer in self.layers.items()}
        inp = {name: layer.inp for name, layer in self.layers.items()}
        for group in self.groups:
            kept = keep.get(group.root, group.channels)
            for layer, per in group.out_of:
                out[layer] = kept * per
            for layer, per in group.in_of:
                inp[layer] = kept * per
        return sum(layer.weights(out[name], inp[name]) for name, layer in self.layers.items())

    def minimum(self, group: _Group) -> int:
        return min(group.channels, self.round_to)

    def _rounded(self, group: _Group, fraction_kept: float, dense_channels: int) -> int:
        wanted = self.round_to * round(dense_channels * fraction_kept / self.round_to)
        return max(self.minimum(group), min(group.channels, wanted))

    # -- the search -------------------------------------------------------------------------

    def plan_round(self, target: float, dense_weights: int, dense_channels: dict[str, int], scope: str) -> dict[str, int]:
        """Channels to keep per group so the removed share of `dense_weights` is closest to `target`."""
        goal = (1.0 - target) * dense_weights
        if scope == "layerwise":
            candidates = [
                {g.root: self._rounded(g, 1.0 - r / 1000, dense_channels.get(g.root, g.channels)) for g in self.groups}
                for r in range(0, 1000)
            ]
            return min(candidates, key=lambda keep: (abs(self.weights(keep) - goal), -sum(keep.values())))
        return self._global_blocks(goal)

    def _global_blocks(self, goal: float) -> dict[str, int]:
        """Remove blocks of `round_to` least important channels, one block at a time, from the group
        whose next block matters least (importance / the group's mean), until the goal is reached."""
        keep = {g.root: g.channels for g in self.groups}
        order = {g.root: torch.argsort(g.importance, stable=True) for g in self.groups}
        normalised = {g.root: g.importance / g.importance.mean().clamp_min(1e-12) for g in self.groups}
        best, best_gap = dict(keep), abs(self.weights(keep) - goal)
        while True:
            current = self.weights(keep)
            if current <= goal:
                break
            options = []
            for g in self.groups:
                kept = keep[g.root]
                step = kept % self.round_to or self.round_to
                if kept - step < self.minimum(g):
                    continue
                removed = order[g.root][g.channels - kept : g.channels - kept + step]
                options.append((float(normalised[g.root][removed].mean()), g.root, kept - step))
            if not options:
                break
            _, root, kept = min(options)
            keep[root] = kept
            gap = abs(self.weights(keep) - goal)
            if gap < best_gap:
                best, best_gap = dict(keep), gap
        return self._closer(best, goal)

    def _closer(self, keep: dict[str, int], goal: float) -> dict[str, int]:
        """Move single blocks (one group one block narrower or wider, or a block from one group to
        another) while that brings the weight count closer to the goal: one block of a wide layer
        can be several points of the model, so the greedy order alone may stop a step away."""
        limits = {g.root: (self.minimum(g), g.channels) for g in self.groups}
        gap = abs(self.weights(keep) - goal)
        while True:
            moves = []
            for root, (low, high) in limits.items():
                for delta in (-self.round_to, self.round_to):
                    moves.append({root: delta})
                    for other in limits:
                        if other != root:
                            moves.append({root: delta, other: -delta})
            best_move, best_gap = None, gap
            for move in moves:
                trial = {r: keep[r] + move.get(r, 0) for r in keep}
                if any(not limits[r][0] <= trial[r] <= limits[r][1] or trial[r] % self.round_to and trial[r] != limits[r][1] for r in move):
                    continue
                trial_gap = abs(self.weights(trial) - goal)
                if trial_gap < best_gap - 0.5:
                    best_move, best_gap = trial, trial_gap
            if best_move is None:
                return keep
            keep, gap = best_move, best_gap

    def prune(self, keep: dict[str, int], round_k: int) -> list[PlanStep]:
        """Remove the least important channels of each group down to `keep[root]`; returns the steps."""
        steps = []
        for group in self.groups:
            drop = group.channels - keep.get(group.root, group.channels)
            if drop <= 0:
                continue
            order = torch.argsort(group.importance, stable=True)
            indices = tuple(sorted(int(i) for i in order[:drop]))
            steps.append(PlanStep(round_k, group.root, indices))
        apply_steps(self.model, self.graph, steps)
        return steps


def _importance(name: str) -> Any:
    import torch_pruning as tp

    return tp.importance.GroupMagnitudeImportance(p=CHANNEL_IMPORTANCE[name], group_reduction="mean", normalizer=None)


def apply_steps(model: nn.Module, graph: Any, steps: Sequence[PlanStep]) -> None:
    """Prune each step's group through the dependency graph. Steps are checked first: the module
    must be one of the model's conv or linear layers, the indices distinct, in range, and must
    leave at least one channel."""
    modules = dict(model.named_modules())
    channels_last = is_channels_last(model)
    for step in steps:
        module = modules.get(step.module)
        if module is None or not is_prunable(module):
            raise PlanError(f"the channel plan names {step.module!r}, which is not a conv or linear layer of this model; prune the run again")
        pruner = graph.get_pruner_of_module(module)
        channels = pruner.get_out_channels(module) if pruner is not None else None
        if channels is None:
            raise PlanError(f"the channel plan prunes {step.module!r}, whose channels cannot be pruned; prune the run again")
        if len(set(step.indices)) != len(step.indices) or not all(0 <= i < channels for i in step.indices):
            raise PlanError(f"the channel plan's indices for {step.module!r} are repeated or outside its {channels} channels; prune the run again")
        if len(step.indices) >= channels:
            raise PlanError(f"the channel plan removes every channel of {step.module!r}; prune the run again")
        with torch.no_grad():
            group = graph.get_pruning_group(module, pruner.prune_out_channels, list(step.indices))
            group.prune(record_history=False)
    if channels_last:  # Torch-Pruning's sliced weights come back contiguous
        to_channels_last(model)


def replay(model: nn.Module, plan: ChannelPlan, example: torch.Tensor) -> nn.Module:
    """Prune a freshly built model of the recipe's architecture exactly as `plan` says (in place)."""
    rounds = sorted({step.round for step in plan.steps})
    for round_k in rounds:
        # A new graph per round, as the pruning built one per round: the indices of a later round
        # refer to the channels left after the earlier rounds.
        graph = dependency_graph(model, example)
        apply_steps(model, graph, [s for s in plan.steps if s.round == round_k])
    return model


def conv_linear_weights(model: nn.Module) -> int:
    """What `target_sparsity` counts for channel pruning: every conv and linear weight (no biases,
    no norms), the classifier's and the first layer's included (their columns and rows shrink too)."""
    parameters = dict(model.named_parameters())
    return sum(parameters[name].numel() for name in prunable_weight_names(model))


def channel_counts(model: nn.Module) -> dict[str, int]:
    """Output channels (or features) of every conv and linear layer, by name."""
    return {name: layer.out for name, layer in _layers(model).items()}


def macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass of one sample (Torch-Pruning's counter)."""
    import torch_pruning as tp

    device = next(iter(model.parameters())).device
    example = torch.zeros(1, *input_shape, device=device)
    with _traced(model):
        count, _ = tp.utils.count_ops_and_params(model, example)
    return int(count)


CHANNEL_DENOMINATOR = (
    "every conv and linear weight of the dense model (no biases, no normalisation; the classifier's input columns "
    "and the first layer's output rows included); removed = dense minus kept"
)


def measure_channel_sparsity(pruned: nn.Module, dense: nn.Module) -> SparsityReport:
    """Weights removed per layer, measured on the pruned model against the dense one."""
    kept, dense_weights = dict(pruned.named_parameters()), dict(dense.named_parameters())
    layers = (
        LayerSparsity(name, dense_weights[name].numel() - kept[name].numel(), dense_weights[name].numel())
        for name in prunable_weight_names(dense)
    )
    return SparsityReport(tuple(layers), CHANNEL_DENOMINATOR)


def structure_report(pruned: nn.Module, dense: nn.Module, input_shape: Sequence[int]) -> dict[str, Any]:
    """What channel pruning changed: channels kept per layer, parameters and MACs (one sample) against the dense model."""
    before, after = channel_counts(dense), channel_counts(pruned)
    dense_macs, pruned_macs = macs(dense, input_shape), macs(pruned, input_shape)
    return {
        "channels": {name: {"dense": before[name], "kept": after[name]} for name in before},
        "parameters": {"dense": sum(p.numel() for p in dense.parameters()), "pruned": sum(p.numel() for p in pruned.parameters())},
        "macs": {"dense": dense_macs, "pruned": pruned_macs, "ratio": pruned_macs / dense_macs if dense_macs else None},
    }


def check_reachable(model: nn.Module, example: torch.Tensor, *, target: float, scope: str, round_to: int, keep_first: bool) -> float:
    """The sparsity the search reaches for `target` on this architecture, before any training;
    a `ChannelPruningError` when no rounded configuration lies within the tolerance."""
    pruner = ChannelPruner(model, example, round_to=round_to, importance="l1", keep_first=keep_first)
    if not pruner.groups:
        raise ChannelPruningError("this model has no channels that can be pruned (only its classifier); set prune.structure = unstructured")
    dense = pruner.weights()
    keep = pruner.plan_round(target, dense, {g.root: g.channels for g in pruner.groups}, scope)
    reached = 1.0 - pruner.weights(keep) / dense
    tolerance = channel_tolerance(target)
    if abs(reached - target) > tolerance:
        floor = 1.0 - pruner.weights({g.root: pruner.minimum(g) for g in pruner.groups}) / dense
        raise ChannelPruningError(
            f"prune.target_sparsity {target:g} is out of reach of channel pruning for this model with channel counts rounded "
            f"to {round_to} (closest: {reached:.3f}, at most {floor:.3f}; tolerance ±{tolerance:.4g}): lower the target, "
            "lower prune.round_to, or set prune.structure = unstructured"
        )
    return reached
