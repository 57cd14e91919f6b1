import pytest
import torch
from torch import nn

from workloads.models import ARCHS, build_from_spec, build_model, count_parameters, first_layer

# The assignment's counts for each architecture.
PARAMS = {"mlp_1": 33130, "mlp_2": 35498, "cnn_3": 11106, "cnn_4": 13522, "cnn_5": 8346}
FIRST = {"mlp_1": (32, 1024), "mlp_2": (32, 1024), "cnn_3": (16, 1, 3, 3),
         "cnn_4": (16, 1, 3, 3), "cnn_5": (8, 1, 3, 3)}


@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_count_and_output_shape(arch):
    model = build_model(arch)
    assert count_parameters(model) == PARAMS[arch]
    assert model(torch.zeros(7, 1, 32, 32)).shape == (7, 10)
    assert tuple(first_layer(model).weight.shape) == FIRST[arch]


def test_mlp_2_hidden_layer_has_no_bias():
    linears = [m for m in build_model("mlp_2") if isinstance(m, nn.Linear)]
    assert [m.bias is not None for m in linears] == [True, False, True]


def test_rgb_input_changes_only_the_first_layer():
    gray, rgb = build_model("cnn_3"), build_model("cnn_3", in_shape=(3, 32, 32))
    assert count_parameters(rgb) - count_parameters(gray) == 2 * 3 * 3 * 16


def test_bad_spec_is_rejected():
    with pytest.raises(ValueError, match="unknown layer token"):
        build_from_spec(("Conv-3x3",))
    with pytest.raises(ValueError, match="empty feature map"):
        build_from_spec(("Conv-33x33x4",))
