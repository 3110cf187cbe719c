import numpy as np
import pytest
import torch

from core.backbones import BackboneWeightsError, convert_packaged_weights, create_backbone, get_spec, sha256_file


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHCORECL_CACHE", str(tmp_path))
    return tmp_path


def _classify(model, img_u8):
    import cv2

    x = cv2.resize(img_u8, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    x = torch.from_numpy(((x - 0.5) / 0.5).transpose(2, 0, 1))[None]
    with torch.inference_mode():
        return int(model(x).argmax())


def test_lite0_conversion_from_wheel_classifies_imagenet_photos(fresh_cache):
    from skimage import data

    spec = get_spec("efficientnet_lite0")
    path = convert_packaged_weights(spec)
    assert path.parent == fresh_cache / "weights" and path.suffix == ".safetensors"
    model, digest = create_backbone(spec, features_only=False)
    assert digest == sha256_file(path)
    # ImageNet classes: 281-285 are domestic cats, 967 is espresso
    assert _classify(model, data.chelsea()) in range(281, 286)
    assert _classify(model, data.coffee()) == 967


def test_conversion_is_cached_and_stable(fresh_cache):
    spec = get_spec("efficientnet_lite0")
    first = sha256_file(convert_packaged_weights(spec))
    assert sha256_file(convert_packaged_weights(spec)) == first


def test_default_stages_are_stride_8_and_16():
    model, _ = create_backbone(get_spec("efficientnet_lite0"))
    assert model.feature_info.reduction() == [8, 16]
    assert model.feature_info.channels() == [40, 112]


def test_missing_weights_error_names_both_options():
    with pytest.raises(BackboneWeightsError) as err:
        create_backbone(get_spec("wide_resnet50_2"), allow_download=False)
    msg = str(err.value)
    assert "internet" in msg and "weights file" in msg


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(BackboneWeightsError, match="not found"):
        create_backbone(get_spec("resnet18"), weights=tmp_path / "nope.safetensors")


def test_user_weights_file_loads(tmp_path):
    import timm
    from safetensors.torch import save_file

    sd = timm.create_model("resnet18", pretrained=False).state_dict()
    path = tmp_path / "r18.safetensors"
    save_file(sd, str(path))
    model, digest = create_backbone(get_spec("resnet18"), weights=path)
    assert digest == sha256_file(path)
    assert model.feature_info.channels() == [128, 256]


def test_unknown_backbone_name():
    with pytest.raises(ValueError, match="unknown backbone"):
        get_spec("not_a_network")
