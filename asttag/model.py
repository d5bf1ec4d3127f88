"""The Audio Spectrogram Transformer: its configuration and its module.

An `AST` carries everything needed to use it: the architecture (`ASTConfig`), the feature
settings it was trained with (`FeatureConfig`) and its label set, so a checkpoint is one
self-describing file (see checkpoint.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .features import FeatureConfig
from .labels import LabelSet, label_problems

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11 on

__all__ = ["ASTConfig", "AST", "TaggingModel", "PRESETS", "ShapeError", "compatibility_problems"]


class ShapeError(ValueError):
    """An input or parameter whose shape does not fit the model."""


class TaggingModel(Protocol):
    """What taggers, evaluators and teachers use of a model: an `AST`, an `Ensemble` or any
    module offering the same. `predict` maps normalised log-mel input (B, T, F), shaped by
    `features`, to class probabilities (B, classes) in the order of `labels`."""

    features: FeatureConfig
    labels: LabelSet

    def predict(self, fbank: torch.Tensor) -> torch.Tensor: ...

    def to(self, device: torch.device | str) -> Self: ...

    def eval(self) -> Self: ...


# DeiT sizes; heads keep DeiT's head width of 64.
PRESETS: dict[str, dict] = {
    "tiny224": {"embed_dim": 192, "num_heads": 3},
    "small224": {"embed_dim": 384, "num_heads": 6},
    "base224": {"embed_dim": 768, "num_heads": 12},
    "base384": {"embed_dim": 768, "num_heads": 12},
}


@dataclass(frozen=True)
class ASTConfig:
    """Architecture of an AST. Axes are always (frequency, time)."""

    num_classes: int = 527
    num_mel_bins: int = 128
    target_length: int = 1024
    patch_size: tuple[int, int] = (16, 16)
    stride: tuple[int, int] = (10, 10)
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    distilled: bool = True
    # The published implementations differ here (original: 1e-6 encoder, 1e-5 head;
    # transformers: 1e-12 everywhere), so the values travel with the model.
    norm_eps: float = 1e-6
    head_eps: float = 1e-5
    preset: str | None = field(default="base384", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "patch_size", tuple(int(v) for v in self.patch_size))
        object.__setattr__(self, "stride", tuple(int(v) for v in self.stride))
        for name in ("embed_dim", "num_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        for axis, size, patch, step in zip(
            ("frequency", "time"), (self.num_mel_bins, self.target_length), self.patch_size, self.stride
        ):
            if step < 1 or patch < 1:
                raise ValueError(f"{axis} patch size and stride must be positive")
            if size < patch:
                raise ValueError(f"{axis} input size {size} is smaller than the patch size {patch}")
        if self.num_classes < 1:
            raise ValueError("num_classes must be at least 1")

    @classmethod
    def from_preset(cls, name: str, **overrides) -> ASTConfig:
        """A configuration from a size preset (tiny224, small224, base224, base384)."""
        if name not in PRESETS:
            raise ValueError(f"unknown size preset {name!r}; choose from {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], "preset": name, **overrides})

    @property
    def grid(self) -> tuple[int, int]:
        """Patches along (frequency, time)."""
        f = (self.num_mel_bins - self.patch_size[0]) // self.stride[0] + 1
        t = (self.target_length - self.patch_size[1]) // self.stride[1] + 1
        return f, t

    @property
    def num_patches(self) -> int:
        f, t = self.grid
        return f * t

    @property
    def num_prefix_tokens(self) -> int:
        return 2 if self.distilled else 1

    @property
    def flops_per_window(self) -> int:
        """2 x the multiply-adds of one forward pass (matmuls only), for efficiency figures."""
        n = self.num_patches + self.num_prefix_tokens
        d = self.embed_dim
        hidden = int(d * self.mlp_ratio)
        patch = self.num_patches * d * math.prod(self.patch_size)
        # qkv, attention scores and weighted sum, output projection, MLP
        per_block = 3 * n * d * d + 2 * n * n * d + n * d * d + 2 * n * d * hidden
        return 2 * (patch + self.depth * per_block + d * self.num_classes)

    def replace(self, **changes) -> ASTConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["patch_size"] = list(self.patch_size)
        data["stride"] = list(self.stride)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ASTConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config fields: {', '.join(sorted(unknown))}")
        return cls(**data)


# Rows of the classifier head's multiplies at inference (see AST.classify): the CPU's default
# batch for the default model, so one multiply per batch.
HEAD_TILE = 64

# Scores of the CPU bf16 attention are computed this many bytes at a time (see cpu_bf16_attention).
ATTENTION_BLOCK_BYTES = 4 << 20


class Attention(nn.Module):
    """Multi-head self-attention through torch's fused kernel (scaled_dot_product_attention), or
    for bf16 inference on a CPU through cpu_bf16_attention."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        if q.dtype == torch.bfloat16 and q.device.type == "cpu" and not torch.is_grad_enabled():
            x = cpu_bf16_attention(q, k, v)
        else:
            x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


def cpu_bf16_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v for (batch, heads, tokens, head_dim) bf16 tensors on a CPU.

    torch's fused CPU kernel is no faster in bf16 than in fp32, while plain bf16 matrix multiplies
    run at about twice the fp32 rate. Taking a few heads at a time, so that their score matrices
    stay within ATTENTION_BLOCK_BYTES (in cache), makes attention in an AST base 1.5x faster than
    the fused kernel on a Zen 4 CPU (8 x 12 heads x 1214 tokens: 0.153 s against 0.238 s; README,
    Performance, B2). The results differ from it by bf16 rounding only: the scores are rounded to
    bf16 before the softmax, where the fused kernel keeps them in fp32.
    """
    b, h, n, d = q.shape
    q, k, v = (q * d**-0.5).reshape(b * h, n, d), k.reshape(b * h, n, d), v.reshape(b * h, n, d)
    out = torch.empty_like(q)
    step = max(1, ATTENTION_BLOCK_BYTES // (n * n * q.element_size()))
    for i in range(0, b * h, step):
        scores = torch.bmm(q[i : i + step], k[i : i + step].transpose(1, 2))
        torch.bmm(scores.softmax(-1), v[i : i + step], out=out[i : i + step])
    return out.view(b, h, n, d)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """A pre-norm ViT encoder block with timm's parameter names (DeiT weights load as they are).

    Written here rather than imported: any import from timm runs timm's package start-up, which
    imports torchvision, and that cost every `asttag tag` about 2.5 s and 200 MB.
    """

    def __init__(self, dim: int, num_heads: int, *, mlp_ratio: float, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class AST(nn.Module):
    """Audio Spectrogram Transformer: log-mel (B, T, F) -> logits (B, classes)."""

    def __init__(
        self,
        config: ASTConfig,
        *,
        features: FeatureConfig | None = None,
        labels: LabelSet | None = None,
    ) -> None:
        super().__init__()
        features = features or FeatureConfig(
            num_mel_bins=config.num_mel_bins, target_length=config.target_length
        )
        labels = labels or LabelSet.generic(config.num_classes)
        if (features.num_mel_bins, features.target_length) != (config.num_mel_bins, config.target_length):
            raise ValueError(
                f"feature settings ({features.num_mel_bins} mel bins, {features.target_length} frames) "
                f"do not match the model ({config.num_mel_bins} mel bins, {config.target_length} frames)"
            )
        if len(labels) != config.num_classes:
            raise ValueError(f"{len(labels)} labels for a model with {config.num_classes} outputs")
        self.config = config
        self.features = features
        self.labels = labels
        self.extra: dict = {}  # training facts stored with a checkpoint (metric, epoch, ...)

        dim = config.embed_dim
        self.patch_proj = nn.Conv2d(1, dim, kernel_size=config.patch_size, stride=config.stride)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim)) if config.distilled else None
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_patches + config.num_prefix_tokens, dim))
        self.blocks = nn.ModuleList(
            Block(dim, config.num_heads, mlp_ratio=config.mlp_ratio, eps=config.norm_eps)
            for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(dim, eps=config.norm_eps)
        self.head_norm = nn.LayerNorm(dim, eps=config.head_eps)
        self.head = nn.Linear(dim, config.num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise as ViT does: truncated normal (std 0.02) for tokens and linear layers."""
        for tensor in (self.cls_token, self.dist_token, self.pos_embed):
            if tensor is not None:
                nn.init.trunc_normal_(tensor, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # Conv patch projection: PyTorch's default (kaiming uniform), as timm leaves it.

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _check_input(self, fbank: torch.Tensor) -> None:
        expected = (self.config.target_length, self.config.num_mel_bins)
        if fbank.dim() != 3 or tuple(fbank.shape[1:]) != expected:
            raise ShapeError(
                f"expected log-mel input of shape (batch, {expected[0]}, {expected[1]}), "
                f"got {tuple(fbank.shape)}"
            )

    def tokens(self, fbank: torch.Tensor) -> torch.Tensor:
        """The encoder's output sequence (B, prefix + patches, D), after the final norm."""
        self._check_input(fbank)
        # (B, T, F) -> (B, 1, F, T): frequency is the image's height, time its width.
        x = self.patch_proj(fbank.transpose(1, 2).unsqueeze(1))
        x = x.flatten(2).transpose(1, 2)  # frequency-major order: index = f * t_dim + t
        prefix = [self.cls_token.expand(x.shape[0], -1, -1)]
        if self.dist_token is not None:
            prefix.append(self.dist_token.expand(x.shape[0], -1, -1))
        x = torch.cat([*prefix, x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """The clip embedding: the mean of the [CLS] and distillation tokens."""
        return tokens[:, : self.config.num_prefix_tokens].mean(dim=1)

    def embed(self, fbank: torch.Tensor, *, return_tokens: bool = False):
        """Pooled embedding (B, D); with return_tokens, also the patch tokens (B, N, D)."""
        tokens = self.tokens(fbank)
        pooled = self.pool(tokens)
        if return_tokens:
            return pooled, tokens[:, self.config.num_prefix_tokens :]
        return pooled

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """Logits of pooled embeddings; without gradients, HEAD_TILE rows at a time.

        A matrix multiply picks its kernel by the row count, so with as many rows as a batch has
        a window's logits would change with the batch's size. Padded with zero rows to whole
        tiles of a fixed shape, each row's logits are the same wherever it sits in a batch of
        any size (tested), in one multiply per 64 windows rather than the one per window this
        took before (the encoder's multiplies have thousands of rows and are batch-independent
        already).
        """
        normed = self.head_norm(pooled)
        if torch.is_grad_enabled():
            # Training keeps one multiply: with the head split into tiles, a resumed run no
            # longer reproduced an uninterrupted one to the bit (tests/test_training_engine.py), and
            # training has no use for batch-independence.
            return self.head(normed)
        rows = normed.shape[0]
        padded = torch.cat([normed, normed.new_zeros(-rows % HEAD_TILE, normed.shape[1])])
        return torch.cat([self.head(tile) for tile in padded.split(HEAD_TILE)])[:rows]

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        return self.classify(self.pool(self.tokens(fbank)))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Sigmoid for multi-label models, softmax for single-label ones."""
        return logits.sigmoid() if self.labels.multi_label else logits.softmax(dim=-1)

    def predict(self, fbank: torch.Tensor) -> torch.Tensor:
        """Class probabilities (B, classes) of normalised log-mel input (B, T, F).

        The interface taggers and evaluators use, shared with ensembles.
        """
        return self.probabilities(self(fbank))


def compatibility_problems(reference: AST, other: AST) -> list[str]:
    """What keeps two models from being averaged or ensembled: architecture, labels, features."""
    # The preset is only a name: two configs built differently but equal in every size are one.
    pairs = (
        ("architecture", reference.config.to_dict(), other.config.to_dict()),
        ("features", reference.features.to_dict(), other.features.to_dict()),
    )
    problems = [
        f"{what} {key}: {mine[key]} vs {theirs[key]}"
        for what, mine, theirs in pairs
        for key in mine
        if key != "preset" and mine[key] != theirs[key]
    ]
    return problems + label_problems(reference.labels, other.labels)
