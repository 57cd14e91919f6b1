import pytest
import torch
from torch import nn

from workloads.models import build_from_spec, build_model, count_parameters, first_layer

GRAY = (1, 32, 32)  # the assignment's inputs
# The assignment's counts for each architecture (grayscale).
PARAMS = {"mlp_1": 33130, "mlp_2": 35498, "cnn_3": 11106, "cnn_4": 13522, "cnn_5": 8346}
FIRST = {"mlp_1": (32, 1024), "mlp_2": (32, 1024), "cnn_3": (16, 1, 3, 3),
         "cnn_4": (16, 1, 3, 3), "cnn_5": (8, 1, 3, 3)}


@pytest.mark.parametrize("arch", PARAMS)
def test_parameter_count_and_output_shape(arch):
    model = build_model(arch, in_shape=GRAY)
    assert count_parameters(model) == PARAMS[arch]
    assert model(torch.zeros(7, 1, 32, 32)).shape == (7, 10)
    assert tuple(first_layer(model).weight.shape) == FIRST[arch]


def test_mlp_2_hidden_layer_has_no_bias():
    linears = [m for m in build_model("mlp_2", in_shape=GRAY) if isinstance(m, nn.Linear)]
    assert [m.bias is not None for m in linears] == [True, False, True]


def test_rgb_input_changes_only_the_first_layer():
    gray, rgb = build_model("cnn_3", in_shape=GRAY), build_model("cnn_3", in_shape=(3, 32, 32))
    assert count_parameters(rgb) - count_parameters(gray) == 2 * 3 * 3 * 16


def test_bad_spec_is_rejected():
    with pytest.raises(ValueError, match="unknown layer token"):
        build_from_spec(("Conv-3x3",))
    with pytest.raises(ValueError, match="empty feature map"):
        build_from_spec(("Conv-33x33x4",), in_shape=GRAY)


def test_later_studies_presets():
    # Reference count: the CIFAR ResNet-18 of kuangliu/pytorch-cifar.
    assert count_parameters(build_model("resnet18", in_shape=(3, 32, 32))) == 11_173_962
    bn, plain = build_model("vgg_a_bn"), build_model("vgg_a")
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules()) == 8
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())


def test_vgg_a_is_configuration_a_with_the_course_classifier():
    """Seed 002's VGG-A (the course's VGG_A): configuration A's eight 3x3 convolutions
    64-128-256-256-512-512-512-512 with five max-pools, then FC-512, ReLU, FC-512, ReLU,
    FC-10 on the 512x1x1 map; no dropout. The BN variant adds BatchNorm after each
    convolution only ("after each CNN layer")."""
    convs = 3 * 9 * 64 + 64 + 64 * 9 * 128 + 128 + 128 * 9 * 256 + 256 + 256 * 9 * 256 + 256 \
        + 256 * 9 * 512 + 512 + 3 * (512 * 9 * 512 + 512)
    classifier = 2 * (512 * 512 + 512) + 512 * 10 + 10
    assert convs + classifier == 9_750_922
    assert count_parameters(build_model("vgg_a")) == 9_750_922
    assert count_parameters(build_model("vgg_a_bn")) == 9_750_922 + 2 * (64 + 128 + 2 * 256 + 4 * 512) == 9_756_426
    for arch in ("vgg_a", "vgg_a_bn"):
        model = build_model(arch)
        assert [m.out_channels for m in model if isinstance(m, nn.Conv2d)] == [64, 128, 256, 256, 512, 512, 512, 512]
        assert sum(isinstance(m, nn.MaxPool2d) for m in model) == 5
        tail = [type(m) for m in model][-6:]
        assert tail == [nn.Flatten, nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
        assert [(m.in_features, m.out_features) for m in model if isinstance(m, nn.Linear)] == [
            (512, 512), (512, 512), (512, 10)]
        assert not any(isinstance(m, (nn.Dropout, nn.BatchNorm1d)) for m in model)
        assert model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert build_model("resnet18", in_shape=(3, 32, 32)).eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_width_scales_hidden_layers_but_not_the_prediction():
    half = build_model("cnn_3", width=0.5)
    convs = [m.out_channels for m in half.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [8, 4, 8] and half[-1].out_features == 10
    assert build_model("mlp_1", width=2, in_shape=GRAY)[1].out_features == 64


def test_spec_override_is_data():
    from workloads.config import ConfigError, ModelConfig
    cfg = ModelConfig(arch="cnn_3",
                      spec="Conv-5x5x32-p2, BN, ReLU, AvgPool-2x2, Dropout-0.25, GAP")
    model = cfg.build((3, 32, 32))
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU", "AvgPool2d", "Dropout", "AdaptiveAvgPool2d",
                     "Flatten", "Linear"]
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ConfigError, match="unknown layer token 'Conv-5x5'"):
        ModelConfig(spec="Conv-5x5, ReLU")


def test_multiply_adds_count_convolutions_and_linear_layers():
    from workloads.models import multiply_adds
    assert multiply_adds(build_model("mlp_1", in_shape=GRAY), GRAY) == 1024 * 32 + 32 * 10
    # cnn_3: 3x3x16 on 32x32 -> 30x30, 5x5x8 -> 26x26, pool 13, 7x7x16 -> 7x7, pool 3, FC 144 -> 10
    assert multiply_adds(build_model("cnn_3", in_shape=GRAY), GRAY) == 30 * 30 * 16 * 9 + 26 * 26 * 8 * 16 * 25 + 7 * 7 * 16 * 8 * 49 + 1440
    model = build_model("resnet18", in_shape=(3, 32, 32))
    assert 0.55e9 < multiply_adds(model, (3, 32, 32)) < 0.56e9  # the CIFAR ResNet-18's ~0.56 GMACs
    assert next(model.parameters()).device.type == "cpu"  # counted on a copy


@pytest.mark.parametrize("arch, params", [("tutorial", 62_006), ("fc", 30_730), ("mlp_110_74", 346_994)])
def test_hw2_presets_on_rgb(arch, params):
    model = build_model(arch)  # RGB 3x32x32 is the default input
    assert count_parameters(model) == params
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_activations_and_inits_are_registry_entries():
    from workloads.config import ConfigError, ModelConfig
    linear = build_model("mlp_110_74", activation="identity")
    assert not any(isinstance(m, nn.ReLU) for m in linear.modules())
    assert sum(isinstance(m, nn.Identity) for m in linear.modules()) == 2
    leaky = ModelConfig(arch="cnn_3", activation="leaky_relu:negative_slope=0.2").build()
    assert {m.negative_slope for m in leaky.modules() if isinstance(m, nn.LeakyReLU)} == {0.2}
    torch.manual_seed(0)
    model = build_model("tutorial", init="normal:std=0.5")
    weights = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))])
    assert 0.45 < weights.std().item() < 0.55
    assert all(m.bias.abs().sum() == 0 for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    with pytest.raises(ConfigError, match="activation 'swish' is unknown"):
        ModelConfig(activation="swish")
    with pytest.raises(ConfigError, match="init normal:std=-1: std must be > 0"):
        ModelConfig(init="normal:std=-1")


def test_lp_pooling_is_the_power_2_norm_of_each_window():
    """Seed 004's LPPool2d(2, 2): sqrt of the sum of squares over each 2x2 window."""
    model = build_from_spec(("LPPool-2x2",), in_shape=(1, 4, 4))
    (pool,) = model
    assert isinstance(pool, nn.LPPool2d) and pool.norm_type == 2 and pool.kernel_size == (2, 2)
    x = torch.arange(16, dtype=torch.float64).reshape(1, 1, 4, 4)
    windows = x.unfold(2, 2, 2).unfold(3, 2, 2).reshape(1, 1, 2, 2, 4)
    torch.testing.assert_close(model(x), windows.pow(2).sum(-1).sqrt())


def test_he_on_the_convolutions_only_leaves_the_fc_layers_as_built():
    """init=kaiming_uniform_conv (seed 004's second try): the convolutions re-drawn with He's
    uniform bound sqrt(6 / fan_in), biases 0; the FC layers exactly as PyTorch built them."""
    torch.manual_seed(0)
    plain = build_model("tutorial")
    torch.manual_seed(0)
    he = build_model("tutorial", init="kaiming_uniform_conv")
    convs = [(a, b) for a, b in zip(plain, he) if isinstance(a, nn.Conv2d)]
    fcs = [(a, b) for a, b in zip(plain, he) if isinstance(a, nn.Linear)]
    assert len(convs) == 2 and len(fcs) == 3
    for a, b in fcs:
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias) and a.bias.abs().sum() > 0
    for a, b in convs:
        fan_in = b.weight[0].numel()
        assert not torch.equal(a.weight, b.weight) and (b.bias == 0).all()
        assert 1 / fan_in ** 0.5 < b.weight.abs().max() <= (6 / fan_in) ** 0.5
    torch.manual_seed(0)
    everywhere = build_model("tutorial", init="kaiming_uniform")
    assert all((m.bias == 0).all() for m in everywhere if isinstance(m, nn.Linear))
