"""Model sources build networks that fit the data and load weights without executing code."""

import copy
import pickle

import pytest
import torch
from torch import nn

from conftest import make_tiny_recipe
from prunectl.cache import training_inputs
from prunectl.errors import ModelError
from prunectl.models import (
    MODEL_SOURCES,
    DataShape,
    build_model,
    check_source,
    has_base_weights,
    is_channels_last,
    load_state_dict_file,
)
from prunectl.recipe import ModelSpec

IMAGES = DataShape((1, 8, 8), 10)
TABLE = DataShape((6,), 3)


def _build(source: str, shape: DataShape = IMAGES, **fields) -> nn.Module:
    return build_model(ModelSpec(source=source, **fields), shape, load_weights_from_spec=True)


def test_registry_lists_every_source_kind():
    assert MODEL_SOURCES.names() == ("builtin", "torchvision", "torchscript", "state-dict")


def test_builtin_cnn_and_mlp_fit_the_data():
    assert _build("builtin:cnn")(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    mlp = _build("builtin:mlp", TABLE, widths=(16, 8))
    assert mlp(torch.zeros(3, 6)).shape == (3, 3)
    assert [m.out_features for m in mlp.modules() if isinstance(m, nn.Linear)] == [16, 8, 3]


def test_the_builtin_cnn_keeps_its_conv_weights_channels_last_and_computes_the_same_function():
    torch.manual_seed(0)
    cnn = _build("builtin:cnn", DataShape((1, 28, 28), 10))
    assert is_channels_last(cnn), "oneDNN's fast CPU layout (benchmarks/layout.py)"
    contiguous = copy.deepcopy(cnn).to(memory_format=torch.contiguous_format)
    assert not is_channels_last(contiguous)
    assert cnn.state_dict().keys() == contiguous.state_dict().keys()
    x = torch.randn(16, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(cnn(x), contiguous(x), rtol=1e-5, atol=1e-6)


def test_the_content_cache_tells_a_channels_last_model_from_a_plain_one():
    # a base model trained before the layout changed is not what training gives now: a miss, not a reuse
    x, y = torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)
    keys = {
        source: training_inputs(make_tiny_recipe(model__source=source), x, y, [0, 1], seed=0, device="cpu")["weight_layout"]
        for source in ("builtin:cnn", "builtin:mlp", "torchvision:resnet18")
    }
    assert keys == {"builtin:cnn": "channels_last", "builtin:mlp": "as built", "torchvision:resnet18": "as built"}


def test_models_the_user_brings_keep_the_layout_they_were_built_with():
    # a user's forward may `.view()` a conv activation, which a channels-last tensor refuses
    assert not is_channels_last(_build("torchvision:resnet18", DataShape((3, 32, 32), 10)))


def test_builtin_cnn_refuses_tabular_data():
    with pytest.raises(ModelError, match="use builtin:mlp"):
        _build("builtin:cnn", TABLE)


def test_unknown_builtin_and_unknown_kind_list_the_choices():
    with pytest.raises(ModelError, match="cnn, mlp"):
        check_source(ModelSpec(source="builtin:vit"))
    with pytest.raises(ModelError, match="builtin, torchvision, torchscript, state-dict"):
        check_source(ModelSpec(source="keras:model.h5"))


def test_torchvision_models_get_the_data_channels_and_classes_with_random_init():
    model = _build("torchvision:resnet18", DataShape((1, 32, 32), 7))
    assert model.conv1.in_channels == 1
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 7)


def test_unknown_torchvision_architecture_is_named():
    with pytest.raises(ModelError, match="unknown torchvision architecture 'resnet9000'"):
        _build("torchvision:resnet9000")


def test_torchscript_source_loads_the_archive_and_its_weights(tmp_path):
    original = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    torch.jit.save(torch.jit.script(original), tmp_path / "m.pt")
    loaded = _build(f"torchscript:{tmp_path / 'm.pt'}")
    x = torch.randn(2, 1, 8, 8)
    assert torch.allclose(loaded(x), original(x))
    assert has_base_weights(ModelSpec(source=f"torchscript:{tmp_path / 'm.pt'}"))


def test_state_dict_source_uses_the_factory_and_the_file(tmp_path, monkeypatch):
    (tmp_path / "mynets.py").write_text(
        "from torch import nn\n"
        "def make(input_shape, num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[-1] * input_shape[-2], num_classes))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    reference = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    torch.save(reference.state_dict(), tmp_path / "w.pt")
    model = _build(f"state-dict:{tmp_path / 'w.pt'}", factory="mynets:make")
    assert torch.equal(model[1].weight, reference[1].weight)


def test_state_dict_source_without_factory_says_what_to_pass(tmp_path):
    torch.save({}, tmp_path / "w.pt")
    with pytest.raises(ModelError, match="--model-factory module:function"):
        check_source(ModelSpec(source=f"state-dict:{tmp_path / 'w.pt'}"))


def test_a_checkpoint_that_does_not_fit_names_the_mismatch(tmp_path):
    torch.save(nn.Linear(3, 3).state_dict(), tmp_path / "other.pt")
    with pytest.raises(ModelError, match="does not fit the model architecture"):
        _build("builtin:cnn", checkpoint=str(tmp_path / "other.pt"))


def test_a_checkpoint_with_nan_weights_is_refused(tmp_path):
    model = _build("builtin:mlp", TABLE)
    state = model.state_dict()
    state["net.1.weight"][0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(ModelError, match="NaN or infinite"):
        _build("builtin:mlp", TABLE, checkpoint=str(tmp_path / "nan.pt"))


class _Exploit:
    """Unpickling this would create a file: the attack weights_only=True must stop."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_malicious_pickle_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pt", "wb") as handle:
        pickle.dump({"weight": _Exploit(str(marker))}, handle)
    with pytest.raises(ModelError, match="weights_only=True"):
        load_state_dict_file(tmp_path / "evil.pt")
    assert not marker.exists()


def test_a_model_whose_output_does_not_match_the_classes_is_refused(tmp_path, monkeypatch):
    (tmp_path / "wrongnets.py").write_text(
        "from torch import nn\ndef make():\n    return nn.Sequential(nn.Flatten(), nn.Linear(64, 4))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(64, 4)).state_dict(), tmp_path / "w.pt")
    with pytest.raises(ModelError, match="outputs \\(2, 4\\).*10 classes"):
        _build(f"state-dict:{tmp_path / 'w.pt'}", factory="wrongnets:make")


def test_shadows_get_a_fresh_torchscript_model_not_the_victims_weights(tmp_path):
    original = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    torch.jit.save(torch.jit.script(original), tmp_path / "m.pt")
    spec = ModelSpec(source=f"torchscript:{tmp_path / 'm.pt'}")
    fresh = build_model(spec, IMAGES, load_weights_from_spec=False)
    assert not torch.equal(fresh.state_dict()["1.weight"], original.state_dict()["1.weight"])
