import pytest
import torch

from asttag.features import FeatureConfig
from asttag.labels import LabelSet
from asttag.model import AST, PRESETS, ASTConfig, ShapeError
from conftest import tiny_config, tiny_model


@pytest.mark.parametrize(
    "stride, length, grid, patches",
    [
        (10, 1024, (12, 101), 1212),
        (12, 1024, (10, 85), 850),
        (14, 1024, (9, 73), 657),
        (16, 1024, (8, 64), 512),
        (10, 512, (12, 50), 600),
        (10, 128, (12, 12), 144),
    ],
)
def test_patch_counts_match_the_paper(stride, length, grid, patches):
    config = ASTConfig(stride=(stride, stride), target_length=length)
    assert config.grid == grid
    assert config.num_patches == patches


def test_presets_have_deit_sizes():
    assert {n: (p["embed_dim"], p["num_heads"]) for n, p in PRESETS.items()} == {
        "tiny224": (192, 3), "small224": (384, 6), "base224": (768, 12), "base384": (768, 12)}
    config = ASTConfig.from_preset("small224", num_classes=10)
    assert (config.embed_dim, config.num_heads, config.num_classes) == (384, 6, 10)
    with pytest.raises(ValueError, match="unknown size preset"):
        ASTConfig.from_preset("huge")


def test_config_round_trips_through_dict():
    config = tiny_config(stride=(8, 6), patch_size=(8, 12), norm_eps=1e-12)
    assert ASTConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown model config fields: bogus"):
        ASTConfig.from_dict({**config.to_dict(), "bogus": 1})


def test_config_rejects_impossible_shapes():
    with pytest.raises(ValueError, match="not divisible"):
        tiny_config(embed_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="smaller than the patch size"):
        tiny_config(target_length=8)


def test_forward_embed_and_tokens_shapes():
    model = tiny_model(stride=(8, 8))
    config = model.config
    x = torch.randn(3, config.target_length, config.num_mel_bins)
    assert model(x).shape == (3, config.num_classes)
    pooled, tokens = model.embed(x, return_tokens=True)
    assert pooled.shape == (3, config.embed_dim)
    assert tokens.shape == (3, config.num_patches, config.embed_dim)
    full = model.tokens(x)
    # The pooled vector is the mean of the [CLS] and distillation tokens.
    torch.testing.assert_close(pooled, (full[:, 0] + full[:, 1]) / 2)


def test_non_square_patches_and_strides():
    model = tiny_model(patch_size=(8, 16), stride=(4, 10))
    assert model.config.grid == ((32 - 8) // 4 + 1, (64 - 16) // 10 + 1)
    assert model(torch.randn(1, 64, 32)).shape == (1, 4)


def test_tokens_are_frequency_major():
    # With a single-patch time axis, changing one frequency band moves exactly one token.
    model = tiny_model(depth=0, patch_size=(8, 64), stride=(8, 64))
    x = torch.randn(1, 64, 32)
    y = x.clone()
    y[:, :, 8:16] += 1.0
    with torch.no_grad():
        a, b = model.tokens(x), model.tokens(y)
    changed = (a - b).abs().sum(-1)[0, 2:] > 1e-6
    assert changed.tolist() == [False, True, False, False]


def test_without_distillation_token_pools_cls_only():
    model = tiny_model(distilled=False)
    assert model.dist_token is None and model.pos_embed.shape[1] == model.config.num_patches + 1
    x = torch.randn(2, 64, 32)
    torch.testing.assert_close(model.embed(x), model.tokens(x)[:, 0])


def test_wrong_input_shape_is_named():
    model = tiny_model()
    with pytest.raises(ShapeError, match=r"\(batch, 64, 32\), got \(2, 50, 32\)"):
        model(torch.randn(2, 50, 32))


def test_predict_uses_sigmoid_or_softmax_by_label_set():
    x = torch.randn(2, 64, 32)
    multi = tiny_model()
    torch.testing.assert_close(multi.predict(x), multi(x).sigmoid())
    single = AST(tiny_config(), labels=LabelSet.from_names(list("abcd"), multi_label=False)).eval()
    torch.testing.assert_close(single.predict(x).sum(-1), torch.ones(2))


def test_model_refuses_inconsistent_features_and_labels():
    with pytest.raises(ValueError, match="do not match the model"):
        AST(tiny_config(), features=FeatureConfig(num_mel_bins=64, target_length=64))
    with pytest.raises(ValueError, match="3 labels for a model with 4 outputs"):
        AST(tiny_config(), labels=LabelSet.from_names(list("abc")))


def _count_calls(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls


def test_attention_runs_through_sdpa_except_bf16_inference_on_cpu(monkeypatch):
    import torch.nn.functional as F

    import asttag.model

    fused = _count_calls(monkeypatch, F, "scaled_dot_product_attention")
    blocked = _count_calls(monkeypatch, asttag.model, "cpu_bf16_attention")
    model = tiny_model(depth=2)
    x = torch.randn(1, 64, 32)
    model(x)
    assert (len(fused), len(blocked)) == (2, 0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(x)  # training in bf16: gradients need the fused kernel's backward
        assert (len(fused), len(blocked)) == (4, 0)
        with torch.inference_mode():
            model(x)
    assert (len(fused), len(blocked)) == (4, 2)


@pytest.mark.parametrize("block_bytes", [1, 10**9])  # one head per step, all heads in one
def test_cpu_bf16_attention_equals_the_fused_kernel_to_bf16_rounding(monkeypatch, block_bytes):
    import torch.nn.functional as F

    import asttag.model
    from asttag.model import cpu_bf16_attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 4, 50, 16) for _ in range(3))
    expected = F.scaled_dot_product_attention(q, k, v)
    monkeypatch.setattr(asttag.model, "ATTENTION_BLOCK_BYTES", block_bytes)
    got = cpu_bf16_attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert got.dtype == torch.bfloat16 and got.shape == expected.shape
    torch.testing.assert_close(got.float(), expected, atol=3e-2, rtol=0)
    # Each head's result depends on that head only, however many share a step.
    monkeypatch.setattr(asttag.model, "ATTENTION_BLOCK_BYTES", 50 * 50 * 2 * 5)
    assert torch.equal(cpu_bf16_attention(q.bfloat16(), k.bfloat16(), v.bfloat16()), got)


def test_flops_per_window_counts_the_base_model():
    # 12 blocks x (12 n d^2 + 2 n^2 d) multiply-adds with n = 1214 tokens, d = 768: ~260 GFLOPs.
    assert 2.55e11 < ASTConfig().flops_per_window < 2.65e11


def test_encoder_block_equals_timms_vit_block():
    # asttag writes its own block (importing timm costs every start ~2.5 s); it must stay a
    # drop-in for timm's, parameter names included, so that DeiT weights load unchanged.
    from functools import partial

    from timm.models.vision_transformer import Block as TimmBlock

    from asttag.model import Block

    torch.manual_seed(0)
    ours = Block(48, 4, mlp_ratio=4.0, eps=1e-6).eval()
    theirs = TimmBlock(48, 4, mlp_ratio=4.0, qkv_bias=True,
                       norm_layer=partial(torch.nn.LayerNorm, eps=1e-6)).eval()
    assert theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 17, 48)
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_window_scores_the_same_in_a_batch_of_any_size(dtype):
    """The tagger runs a run's last batch with the windows it has (on a CPU) and fills batches
    across files: that is only right if no window's logits depend on how many others share its
    batch or where it sits in it (the head's tiles included: 70 windows span two)."""
    from asttag.model import HEAD_TILE

    model = tiny_model(num_classes=527).eval().to(dtype)
    torch.manual_seed(1)
    count = HEAD_TILE + 6
    x = torch.randn(count, model.config.target_length, model.config.num_mel_bins, dtype=dtype)
    order = torch.randperm(count)
    with torch.inference_mode():
        full = model(x)
        for size in (1, 3, 5):
            assert torch.equal(model(x[:size]), full[:size]), f"batch of {size}"
        assert torch.equal(model(x[3:8]), full[3:8]), "a batch starting elsewhere"
        assert torch.equal(model(x[order]), full[order]), "the same windows in another order"
