"""A DeepSeek-V3 checkpoint keeps its MTP layer at model.layers.{num_hidden_layers}."""

import pytest
from mlx_lm.utils import load_model as stock_load_model

from engine.compat import weight_names
from engine.model_loader import load_model
from tests.mtp_models import make_target


def test_deepseek_v3_with_its_mtp_layer_at_depth_two_loads(tmp_path):
    built = make_target(tmp_path / "ds", "deepseek_v3")
    assert built["config"]["num_hidden_layers"] == 2
    assert any(n.startswith("model.layers.2.") for n in weight_names(built["path"]))
    with pytest.raises(ValueError, match="parameters not in model"):
        stock_load_model(built["path"])  # mlx-lm drops only model.layers.61
    loaded = load_model(str(built["path"]))
    assert len(loaded.model.model.layers) == 2
