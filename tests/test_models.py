"""The five segmentation models: shapes, gradients, structure, pretrained loading, errors.

Shape tests use the paper's resnet50 (built once per model and channel count); structural and
gradient tests use resnet18 on small inputs, where the backbone does not change the property.
Nothing here downloads: pretrained loading is tested with randomly initialised torchvision state
dicts saved to tmp_path, and the offline ImageNet message with a download that is made to fail.
"""

from __future__ import annotations

import functools
import urllib.error

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from lsmap.checkpoint import Checkpoint, InputSpec, load_checkpoint, save_checkpoint
from lsmap.cli import main as lsmap_main
from lsmap.errors import LsmapError
from lsmap.models import MODEL_NAMES, build_model, count_parameters
from lsmap.models.common import pad_to_multiple
from lsmap.models.deeplabv3plus import GatedAttentionFusion, SEFusion
from lsmap.models.encoders import ResNetEncoder, adapt_first_conv_weight

@functools.cache
def shared_model(name: str, in_channels: int, backbone: str) -> nn.Module:
    """Model in eval mode, built once per test session (segnet: VGG16-BN whatever the backbone)."""
    torch.manual_seed(0)
    return build_model(name, in_channels=in_channels, backbone=backbone).eval()


def paper_model(name: str, in_channels: int) -> nn.Module:
    return shared_model(name, in_channels, "resnet50")


def small_model(name: str, in_channels: int = 3, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return build_model(name, in_channels=in_channels, backbone="resnet18", **kwargs)


# resnet50 (the paper's) at the training input (3 x 256^2) and a 4-band mapping tile (4 x 512^2);
# resnet18 for the other combinations, where the backbone cannot change the output size.
SHAPE_CASES = [
    ("resnet50", 3, 256, 256),
    ("resnet50", 4, 512, 512),
    ("resnet18", 4, 256, 256),
    ("resnet18", 3, 512, 512),
    ("resnet18", 4, 300, 257),
]


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize(("backbone", "in_channels", "height", "width"), SHAPE_CASES)
def test_logits_have_the_input_height_and_width(name, backbone, in_channels, height, width):
    model = shared_model(name, in_channels, backbone)
    with torch.no_grad():
        logits = model(torch.randn(1, in_channels, height, width))
    assert logits.shape == (1, 1, height, width)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_num_classes_sets_the_logit_channels(name):
    with torch.no_grad():
        logits = small_model(name, num_classes=3).eval()(torch.randn(2, 3, 40, 72))
    assert logits.shape == (2, 3, 40, 72)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_gradients_reach_the_first_layer_and_every_parameter(name):
    model = small_model(name, in_channels=4).train()
    logits = model(torch.randn(2, 4, 72, 64))
    F.binary_cross_entropy_with_logits(logits, (torch.rand_like(logits) > 0.8).float()).backward()
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == 4
    assert first_conv.weight.grad is not None
    assert torch.isfinite(first_conv.weight.grad).all()
    assert first_conv.weight.grad.abs().sum() > 0
    # every channel of the input, NIR included, receives gradient
    assert (first_conv.weight.grad.abs().sum(dim=(0, 2, 3)) > 0).all()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert unused == []


def test_parameter_counts_match_the_architectures():
    counts = {name: count_parameters(paper_model(name, 3)) for name in MODEL_NAMES}
    print("parameters (resnet50, 3 channels):", {k: f"{v / 1e6:.2f} M" for k, v in counts.items()})
    # "about 40 M" for the ResNet50 DeepLabV3+ variants (23.5 M encoder + 15.2 M ASPP + decoder)
    assert 38e6 < counts["deeplabv3plus"] < 43e6
    assert 38e6 < counts["improved_deeplabv3plus"] < 43e6
    # the improved decoder swaps bilinear upsampling and concatenation for ~0.1 M more weights
    assert abs(counts["improved_deeplabv3plus"] - counts["deeplabv3plus"]) < 1e6
    assert 28e6 < counts["fcn"] < 38e6  # 23.5 M encoder + 9.4 M FCN head
    assert 28e6 < counts["unet"] < 38e6
    assert 29e6 < counts["segnet"] < 30e6  # VGG16-BN convs (14.7 M) mirrored
    resnet50_weights = count_parameters(torchvision.models.resnet50()) - (2048 * 1000 + 1000)  # without fc
    assert count_parameters(paper_model("deeplabv3plus", 3).encoder) == resnet50_weights


def _hook_calls(modules: list[nn.Module]) -> list[str]:
    calls: list[str] = []
    for module in modules:
        module.register_forward_hook(lambda m, i, o, name=type(module).__name__: calls.append(name))
    return calls


def test_improved_decoder_uses_transposed_convolutions_and_shared_attention_fusion(monkeypatch):
    model = small_model("improved_deeplabv3plus").eval()
    transposed = {n: m for n, m in model.named_modules() if isinstance(m, nn.ConvTranspose2d)}
    # learned x2 upsampling of the ASPP output and in both decoder stages, none in the encoder
    assert sorted(n.split(".")[0] for n in transposed) == ["decoder1", "decoder2", "high_upsample"]
    assert all(m.stride == (2, 2) for m in transposed.values())
    assert isinstance(model.fusion, GatedAttentionFusion)
    transposed_calls = _hook_calls(list(transposed.values()))
    fusion_calls = _hook_calls([model.fusion])
    gate_calls = _hook_calls([model.fusion.attention])  # one gating net, applied to both inputs
    interpolations = []
    real_interpolate = F.interpolate
    monkeypatch.setattr(F, "interpolate", lambda *a, **k: interpolations.append(1) or real_interpolate(*a, **k))
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 64, 64))
    assert logits.shape == (1, 1, 64, 64)
    assert len(transposed_calls) == 3
    assert len(fusion_calls) == 1
    assert len(gate_calls) == 2
    assert interpolations == []  # no bilinear upsampling anywhere in the improved model


def test_baseline_deeplabv3plus_upsamples_bilinearly_without_transposed_convs(monkeypatch):
    model = small_model("deeplabv3plus").eval()
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in model.modules())
    assert model.low_project[0].out_channels == 48  # the standard DeepLabV3+ low-level projection
    interpolations = []
    real_interpolate = F.interpolate
    monkeypatch.setattr(
        F, "interpolate", lambda *a, **k: interpolations.append(k.get("mode")) or real_interpolate(*a, **k)
    )
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert interpolations == ["bilinear", "bilinear"]


def test_fusion_options_change_the_attention():
    se_model = small_model("improved_deeplabv3plus", fusion="se").eval()
    assert isinstance(se_model.fusion, SEFusion)
    sigmoid_gate = GatedAttentionFusion(8, gate="sigmoid").eval()
    attention = sigmoid_gate.attention(torch.randn(2, 8, 5, 5) * 10)
    assert attention.min() > 0 and attention.max() < 1
    relu_gate = GatedAttentionFusion(8, gate="relu").eval()
    assert relu_gate.attention(torch.randn(2, 8, 5, 5) * 10).min() == 0  # the authors' ReLU gate
    with torch.no_grad():
        assert se_model(torch.randn(1, 3, 48, 48)).shape == (1, 1, 48, 48)


def test_dilated_resnet50_equals_torchvision_replace_stride_with_dilation():
    output_stride = 8
    torch.manual_seed(0)
    reference = torchvision.models.resnet50(
        replace_stride_with_dilation=[False, True, True]
    ).eval()
    encoder = ResNetEncoder("resnet50", 3, output_stride).eval()
    encoder.load_state_dict({k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")})
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        features = encoder(x)
        expected = reference.layer4(reference.layer3(reference.layer2(reference.layer1(
            reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))))))
    assert features[4].shape == (1, 2048, 64 // output_stride, 64 // output_stride)
    torch.testing.assert_close(features[4], expected, rtol=1e-4, atol=1e-5)


def test_resnet18_encoder_at_output_stride_8_keeps_spatial_size():
    encoder = ResNetEncoder("resnet18", 3, 8).eval()
    with torch.no_grad():
        features = encoder(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in features] == [64, 64, 128, 256, 512]
    assert [f.shape[-1] for f in features] == [32, 16, 8, 8, 8]


@pytest.fixture
def resnet18_state_dict_file(tmp_path):
    torch.manual_seed(1)
    state = torchvision.models.resnet18().state_dict()
    path = tmp_path / "resnet18-random.pth"
    torch.save(state, path)
    return path, state


def test_first_conv_adaptation_puts_rgb_weights_on_the_named_channels(resnet18_state_dict_file):
    path, state = resnet18_state_dict_file
    rgb = state["conv1.weight"]  # (64, 3, 7, 7), ImageNet order R, G, B
    # GF-6 analysis-ready band order: blue, green, red, NIR
    encoder = ResNetEncoder("resnet18", in_channels=4, pretrained=str(path), rgb_channels=(2, 1, 0))
    weight = encoder.conv1.weight.detach()
    assert weight.shape == (64, 4, 7, 7)
    scale = 3 / 4
    torch.testing.assert_close(weight[:, 2], rgb[:, 0] * scale)  # red
    torch.testing.assert_close(weight[:, 1], rgb[:, 1] * scale)  # green
    torch.testing.assert_close(weight[:, 0], rgb[:, 2] * scale)  # blue
    torch.testing.assert_close(weight[:, 3], rgb.mean(dim=1) * scale)  # NIR: mean RGB kernel


@pytest.mark.parametrize("in_channels", [1, 3, 5])
def test_adapted_first_conv_keeps_the_response_to_a_grey_input(in_channels):
    torch.manual_seed(2)
    weight = torch.randn(16, 3, 7, 7)
    adapted = adapt_first_conv_weight(weight, in_channels, (2, 0, 1) if in_channels >= 3 else (0, 1, 2))
    grey = torch.randn(1, 1, 32, 32)
    expected = F.conv2d(grey.expand(-1, 3, -1, -1), weight, padding=3)
    actual = F.conv2d(grey.expand(-1, in_channels, -1, -1), adapted, padding=3)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


def test_first_conv_adaptation_rejects_impossible_band_layouts():
    weight = torch.randn(8, 3, 3, 3)
    with pytest.raises(LsmapError, match="in_channels == 1 or >= 3"):
        adapt_first_conv_weight(weight, 2)
    with pytest.raises(LsmapError, match="rgb_channels"):
        adapt_first_conv_weight(weight, 4, (0, 1, 4))
    with pytest.raises(LsmapError, match="rgb_channels"):
        adapt_first_conv_weight(weight, 4, (0, 0, 1))


def test_pretrained_local_file_loads_every_encoder_weight(resnet18_state_dict_file):
    path, state = resnet18_state_dict_file
    model = build_model("improved_deeplabv3plus", 3, backbone="resnet18", pretrained=str(path))
    loaded = model.encoder.state_dict()
    assert set(loaded) == {k for k in state if not k.startswith("fc.")}
    for key in ("conv1.weight", "layer4.1.conv2.weight", "layer3.0.bn1.running_var"):
        torch.testing.assert_close(loaded[key], state[key], rtol=0, atol=0)


def test_segnet_loads_a_local_vgg16_bn_state_dict(tmp_path):
    torch.manual_seed(3)
    features = torchvision.models.vgg16_bn().features.state_dict()
    state = {f"features.{k}": v for k, v in features.items()}  # a headless vgg16_bn file
    path = tmp_path / "vgg16_bn-random.pth"
    torch.save(state, path)
    model = build_model("segnet", 4, pretrained=str(path), rgb_channels=(2, 1, 0))
    loaded = model.encoder.state_dict()
    torch.testing.assert_close(loaded["features.40.weight"], state["features.40.weight"], rtol=0, atol=0)
    torch.testing.assert_close(loaded["features.0.weight"][:, 2], state["features.0.weight"][:, 0] * 0.75)


def test_bad_pretrained_files_fail_with_one_line_naming_the_file(tmp_path, resnet18_state_dict_file):
    path, _ = resnet18_state_dict_file
    missing = tmp_path / "nope.pth"
    with pytest.raises(LsmapError, match=f"{missing}: pretrained weights file not found") as err:
        build_model("fcn", backbone="resnet18", pretrained=str(missing))
    assert "\n" not in str(err.value)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file at all")
    with pytest.raises(LsmapError, match=f"{garbage}: not a state dict readable") as err:
        build_model("fcn", backbone="resnet18", pretrained=str(garbage))
    assert "\n" not in str(err.value)
    with pytest.raises(LsmapError, match=f"{path}: not a torchvision-format resnet50 state dict") as err:
        build_model("unet", backbone="resnet50", pretrained=str(path))  # resnet18 weights
    assert "\n" not in str(err.value)
    pickled_module = tmp_path / "module.pth"
    torch.save(nn.Linear(2, 2), pickled_module)
    with pytest.raises(LsmapError, match=f"{pickled_module}: not a state dict readable"):
        build_model("fcn", backbone="resnet18", pretrained=str(pickled_module))


def test_offline_imagenet_fails_naming_the_local_file_alternative(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache, in case the patch below missed

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(LsmapError) as err:
        build_model("deeplabv3plus", backbone="resnet18", pretrained="imagenet")
    message = str(err.value)
    assert "resnet18-f37072fd.pth" in message  # the file to fetch elsewhere
    assert "local path as pretrained" in message
    assert "name resolution" in message
    assert "\n" not in message


def test_unknown_model_backbone_or_option_names_the_valid_choices():
    with pytest.raises(LsmapError, match="unknown model 'deeplab'.*improved_deeplabv3plus"):
        build_model("deeplab")
    with pytest.raises(LsmapError, match="unknown backbone 'resnet152'.*resnet18, resnet34, resnet50, resnet101"):
        build_model("fcn", backbone="resnet152")
    with pytest.raises(LsmapError, match="unknown option 'fusion' for model unet: valid options are rgb_channels"):
        build_model("unet", fusion="se")
    with pytest.raises(LsmapError, match="unknown fusion 'concat': choose one of gated, se"):
        build_model("improved_deeplabv3plus", backbone="resnet18", fusion="concat")
    with pytest.raises(LsmapError, match="in_channels must be a positive integer"):
        build_model("fcn", in_channels=0)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_rebuilt_from_its_kwargs_loads_its_state_dict(name):
    kwargs = {"in_channels": 4, "backbone": "resnet18", "rgb_channels": (2, 1, 0)}
    if name == "improved_deeplabv3plus":
        kwargs.update(fusion="se")
    torch.manual_seed(4)
    state = build_model(name, **kwargs).state_dict()
    torch.manual_seed(5)  # a different random init: only the state dict may make them equal
    rebuilt = build_model(name, **kwargs)
    rebuilt.load_state_dict(state)  # strict: same structure, same keys, same shapes
    assert all(torch.equal(rebuilt.state_dict()[k], v) for k, v in state.items())


def test_checkpoint_round_trip_rebuilds_without_the_pretrained_file(tmp_path, resnet18_state_dict_file):
    path, _ = resnet18_state_dict_file
    kwargs = {"in_channels": 4, "num_classes": 1, "backbone": "resnet18", "pretrained": str(path),
              "rgb_channels": (2, 1, 0), "fusion": "gated"}
    model = build_model("improved_deeplabv3plus", **kwargs).eval()
    spec = InputSpec(["blue", "green", "red", "nir"], [0.0] * 4, [1.0] * 4, 256)
    saved = save_checkpoint(Checkpoint("improved_deeplabv3plus", kwargs, model.state_dict(), spec), tmp_path / "m.pt")
    path.unlink()  # the rebuild must not need the pretrained file
    rebuilt = load_checkpoint(saved).build_model()
    x = torch.randn(1, 4, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))


def test_odd_sizes_are_reflect_padded_not_resized():
    x = torch.arange(2 * 5 * 7, dtype=torch.float32).reshape(1, 2, 5, 7)
    padded = pad_to_multiple(x, 8)
    assert padded.shape == (1, 2, 8, 8)
    torch.testing.assert_close(padded[..., :5, :7], x)  # original pixels untouched, top-left aligned
    torch.testing.assert_close(padded[..., 5, :7], x[..., 3, :])  # reflection about the last row
    assert pad_to_multiple(x, 1) is x
    tiny = pad_to_multiple(torch.ones(1, 1, 3, 3), 32)  # too small to reflect: replicate
    assert tiny.shape == (1, 1, 32, 32) and torch.all(tiny == 1)
    # the model's logits on an odd size are those of the reflect-padded input, cropped back
    model = small_model("improved_deeplabv3plus").eval()
    image = torch.randn(1, 3, 45, 37)
    with torch.no_grad():
        torch.testing.assert_close(model(image), model(pad_to_multiple(image, 8))[..., :45, :37])
        assert model(torch.randn(1, 3, 5, 3)).shape == (1, 1, 5, 3)


def test_models_verb_lists_every_model_with_its_parameter_count(capsys):
    assert lsmap_main(["models", "--backbone", "resnet18", "--in-channels", "4"]) == 0
    out = capsys.readouterr().out
    for name in MODEL_NAMES:
        assert name in out
    assert "vgg16_bn" in out  # segnet's fixed encoder is reported, not the requested backbone
    expected = count_parameters(build_model("deeplabv3plus", 4, backbone="resnet18")) / 1e6
    assert f"{expected:.2f} M" in out
