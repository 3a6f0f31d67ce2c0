"""Test-time augmentation: exact inverses, the mean of probabilities, and the same path as lsmap map."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from lsmap.checkpoint import Checkpoint, InputSpec, save_checkpoint
from lsmap.errors import LsmapError
from lsmap.predict import InferenceOptions, predict_array
from lsmap.tta import PRESETS, TRANSFORMS, DihedralTTA, forward_transform, inverse_transform, parse_tta, with_tta


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_every_transform_is_undone_by_its_inverse_and_all_eight_differ(name):
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)
    assert torch.equal(inverse_transform(forward_transform(x, name), name), x)
    views = {tuple(forward_transform(x, n).flatten().tolist()) for n in TRANSFORMS}
    assert len(views) == 8  # the eight elements of D4 are distinct on an asymmetric input


def _ramp_model() -> torch.nn.Module:
    """Not rotation-equivariant: a 3x3 convolution with an asymmetric kernel."""
    conv = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[0.0, 0.0, 0.0], [-1.0, 0.5, 2.0], [0.0, 0.0, 0.3]]]]))
    return conv.eval()


def test_tta_is_the_mean_probability_of_the_views_mapped_back():
    model = _ramp_model()
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = torch.stack([torch.sigmoid(inverse_transform(model(forward_transform(x, n)), n))
                                for n in TRANSFORMS]).mean(0)
        got = torch.sigmoid(DihedralTTA(model)(x))
        plain = torch.sigmoid(model(x))
    assert torch.allclose(got, expected, atol=1e-5)
    assert (got - plain).abs().max() > 0.05  # the augmentation changes something for this model


def test_an_equivariant_model_is_unchanged_by_tta_and_none_returns_the_model_itself():
    pointwise = torch.nn.Conv2d(3, 1, 1).eval()  # a 1x1 convolution commutes with flips and rotations
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(torch.sigmoid(with_tta(pointwise, "8")(x)), torch.sigmoid(pointwise(x)), atol=1e-5)
    assert with_tta(pointwise, None) is pointwise and with_tta(pointwise, "none") is pointwise


def test_presets_and_lists_parse_and_unknown_names_are_one_line_errors():
    assert len(parse_tta("8")) == 8 and parse_tta("flip") == ("identity", "hflip")
    assert parse_tta("identity,rot90") == ("identity", "rot90") and len(PRESETS["flips"]) == 4
    with pytest.raises(LsmapError, match="unknown test-time augmentation 'spin'"):
        parse_tta("spin")
    with pytest.raises(LsmapError, match="square tiles"):
        DihedralTTA(_ramp_model(), ("rot90",))(torch.zeros(1, 1, 4, 6))


def test_mapping_with_flip_tta_equals_the_mean_of_the_scene_and_its_mirror(tmp_path):
    """One-tile scene: the blended map with --tta flip is the mean of the map and the mirrored map of the mirror."""
    from lsmap.models import build_model

    torch.manual_seed(0)
    kwargs = dict(in_channels=3, num_classes=1, backbone="resnet18")
    checkpoint = save_checkpoint(Checkpoint("fcn", kwargs, build_model("fcn", **kwargs).state_dict(),
                                            InputSpec(["red", "green", "blue"], [100.0] * 3, [50.0] * 3, 64)),
                                 tmp_path / "fcn.pt")
    pixels = np.random.default_rng(0).integers(0, 255, (3, 64, 64), dtype=np.uint8)

    def scene(path, array):
        with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8",
                           crs="EPSG:32648", transform=from_origin(0, 64, 1, 1)) as dst:
            dst.write(array)
        return path

    options = dict(tile_size=64, overlap_px=0, chunk_px=64, batch_size=2, device="cpu", precision="fp32", progress=False)
    plain = predict_array(scene(tmp_path / "a.tif", pixels), checkpoint, InferenceOptions(**options))
    mirrored = predict_array(scene(tmp_path / "b.tif", np.ascontiguousarray(pixels[:, :, ::-1])), checkpoint,
                             InferenceOptions(**options))[:, ::-1]
    tta = predict_array(tmp_path / "a.tif", checkpoint, InferenceOptions(**options, tta="flip"))
    assert np.allclose(tta, (plain + mirrored) / 2, atol=1e-4)
    assert np.abs(plain - mirrored).max() > 1e-3  # the random model is not mirror-symmetric
