import pytest
import torch

from asttag import pretrained
from asttag.errors import parameter_of
from asttag.labels import LabelSet
from asttag.model import ASTConfig
from asttag.pretrained import (
    PretrainedError,
    adapt_grid,
    adapt_pos_embed,
    audioset_init,
    imagenet_init,
)
from conftest import tiny_model


def grid(rows, cols, dim=3):
    return torch.randn(1, dim, rows, cols)


@pytest.mark.parametrize(
    "source, target",
    [((24, 24), (12, 101)), ((24, 24), (12, 50)), ((24, 24), (12, 12)), ((24, 24), (30, 30)),
     ((12, 101), (12, 50)), ((12, 101), (12, 12)), ((12, 101), (8, 64)), ((12, 101), (12, 200))],
)
def test_adapted_grids_have_the_target_shape(source, target):
    assert adapt_grid(grid(*source), target).shape == (1, 3, *target)


def test_imagenet_cut_keeps_the_centre_exactly():
    src = grid(24, 24)
    out = adapt_grid(src, (12, 12))  # Speech Commands at stride 10: both axes cut
    assert torch.equal(out, src[..., 6:18, 6:18])
    # AudioSet 10/10: rows 6:18 kept; time stretched 24 -> 101 by bilinear interpolation.
    out = adapt_grid(src, (12, 101))
    stretched = torch.nn.functional.interpolate(src, size=(24, 101), mode="bilinear",
                                                align_corners=False)
    assert torch.equal(out, stretched[..., 6:18, :])


def test_audioset_cut_keeps_the_centre_columns_exactly():
    src = grid(12, 101)
    assert torch.equal(adapt_grid(src, (12, 50)), src[..., :, 25:75])  # ESC-50: columns 25:75
    assert torch.equal(adapt_grid(src, (8, 64)), src[..., 2:10, 18:82])
    assert torch.equal(adapt_grid(src, (12, 101)), src)


def test_nearest_and_reinit_variants():
    src = grid(4, 4)
    nearest = adapt_grid(src, (4, 8), method="nearest")
    assert torch.equal(nearest[..., ::2], src) and torch.equal(nearest[..., 1::2], src)
    pos = torch.randn(1, 2 + 16, 3)
    fresh = adapt_pos_embed(pos, (4, 4), (3, 5), num_prefix=2, method="reinit")
    assert fresh.shape == (1, 17, 3)
    assert torch.equal(fresh[:, :2], pos[:, :2])  # the [CLS] and distillation positions stay
    with pytest.raises(PretrainedError, match="does not hold 2 prefix tokens and a 5x5 grid"):
        adapt_pos_embed(pos, (5, 5), (3, 3), num_prefix=2)


@pytest.fixture
def deit_file(tmp_path):
    """A randomly initialised DeiT-tiny state dict in timm's layout, saved like a download."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    deit = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False)
    state = {k: v.contiguous() for k, v in deit.state_dict().items()}
    save_file(state, str(tmp_path / "deit.safetensors"))
    return tmp_path / "deit.safetensors", state


def test_imagenet_init_transfers_deit(deit_file):
    path, state = deit_file
    config = ASTConfig.from_preset("tiny224", num_classes=5, target_length=512, depth=12)
    model = imagenet_init(config, weights=path)
    weights = model.state_dict()
    # Paper says "average", the released code sums the RGB channels; asttag follows the code.
    torch.testing.assert_close(weights["patch_proj.weight"],
                               state["patch_embed.proj.weight"].sum(dim=1, keepdim=True))
    for key in ("blocks.3.attn.qkv.weight", "blocks.11.mlp.fc2.bias", "norm.weight", "cls_token",
                "dist_token"):
        assert torch.equal(weights[key], state[key]), key
    # 14x14 ImageNet grid -> (12, 50): rows 1:13 after stretching time 14 -> 50.
    assert weights["pos_embed"].shape == (1, 2 + 600, 192)
    assert torch.equal(weights["pos_embed"][:, :2], state["pos_embed"][:, :2])
    src = state["pos_embed"][:, 2:].transpose(1, 2).reshape(1, 192, 14, 14)
    expected = adapt_grid(src, (12, 50)).flatten(2).transpose(1, 2)
    assert torch.equal(weights["pos_embed"][:, 2:], expected)
    assert model(torch.randn(1, 512, 128)).shape == (1, 5)


def test_imagenet_init_refuses_weights_of_another_size(deit_file):
    path, _ = deit_file
    with pytest.raises(PretrainedError, match="pick the matching size preset"):
        imagenet_init(ASTConfig.from_preset("small224", num_classes=5), weights=path)


def test_imagenet_init_offline_says_what_to_pass(monkeypatch):
    import timm

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(PretrainedError, match=r"deit_base_distilled_patch16_384.*ImageNet weights file") \
            as caught:
        imagenet_init(ASTConfig.from_preset("base384", num_classes=5, depth=1))
    assert "--" not in str(caught.value)  # the library names the argument; the CLI adds its flag
    assert parameter_of(caught.value) == "imagenet_weights"


def test_audioset_init_adapts_length_and_gives_a_fresh_head():
    source = tiny_model(num_classes=6, num_mel_bins=64, target_length=256, stride=(8, 8))
    labels = LabelSet.from_names(["yes", "no", "up"], multi_label=False)
    config = source.config.replace(target_length=96, num_classes=3)
    model = audioset_init(source, config, labels=labels)
    assert model.labels == labels and model.head.weight.shape == (3, 32)
    src_grid, new_grid = source.config.grid, model.config.grid
    assert src_grid == (7, 31) and new_grid == (7, 11)
    src_pos = source.pos_embed[:, 2:].reshape(1, *src_grid, 32)
    new_pos = model.pos_embed[:, 2:].reshape(1, *new_grid, 32)
    assert torch.equal(new_pos, src_pos[:, :, 10:21])  # centre columns 31 // 2 - 11 // 2 = 10
    assert torch.equal(model.blocks[1].attn.qkv.weight, source.blocks[1].attn.qkv.weight)
    assert model.features.mean == source.features.mean and model.features.target_length == 96


def test_audioset_init_refuses_another_width():
    source = tiny_model()
    with pytest.raises(PretrainedError, match="embed_dim=32, the new one 64"):
        audioset_init(source, source.config.replace(embed_dim=64), labels=source.labels)


def test_every_preset_names_a_distilled_deit():
    assert set(pretrained.IMAGENET_MODELS) == {"tiny224", "small224", "base224", "base384"}
    assert all("distilled" in name for name in pretrained.IMAGENET_MODELS.values())
