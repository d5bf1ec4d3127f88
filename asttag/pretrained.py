"""Initialise an AST from ImageNet (DeiT, AST-S) or from an AudioSet model (AST-P).

The only non-trivial step is fitting a learned position grid to a new patch grid: per axis, a
smaller target keeps the centre of the source unchanged and a larger one is interpolated
(time first, then frequency), as the paper does.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from .checkpoint import CheckpointError, load_state, read_tensors
from .errors import about
from .features import FeatureConfig
from .labels import LabelSet
from .model import AST, ASTConfig

__all__ = [
    "PretrainedError",
    "IMAGENET_MODELS",
    "adapt_grid",
    "adapt_pos_embed",
    "imagenet_init",
    "audioset_init",
]

log = logging.getLogger(__name__)

PosMethod = Literal["bilinear", "nearest", "reinit"]

# timm's distilled DeiT for each size preset; base384 is the paper's.
IMAGENET_MODELS = {
    "tiny224": "deit_tiny_distilled_patch16_224",
    "small224": "deit_small_distilled_patch16_224",
    "base224": "deit_base_distilled_patch16_224",
    "base384": "deit_base_distilled_patch16_384",
}


class PretrainedError(RuntimeError):
    """Pretrained weights that cannot be had or do not fit: the message says what to pass."""


def adapt_grid(
    grid: torch.Tensor, size: tuple[int, int], *, method: Literal["bilinear", "nearest"] = "bilinear"
) -> torch.Tensor:
    """Fit a (1, D, rows=frequency, cols=time) position grid to `size` (rows, cols).

    Time first, then frequency: along each axis a target no larger than the source keeps the
    centre slice unchanged; a larger one is interpolated (align_corners=False).
    """
    rows, cols = size
    src_rows, src_cols = grid.shape[-2:]
    if cols <= src_cols:
        start = src_cols // 2 - cols // 2
        grid = grid[..., start : start + cols]
    else:
        grid = _interpolate(grid, (src_rows, cols), method)
    if rows <= src_rows:
        start = src_rows // 2 - rows // 2
        grid = grid[..., start : start + rows, :]
    else:
        grid = _interpolate(grid, (rows, cols), method)
    return grid


def _interpolate(grid: torch.Tensor, size: tuple[int, int], method: str) -> torch.Tensor:
    if method == "nearest":
        return F.interpolate(grid, size=size, mode="nearest")
    return F.interpolate(grid, size=size, mode="bilinear", align_corners=False)


def adapt_pos_embed(
    pos_embed: torch.Tensor,
    source_grid: tuple[int, int],
    target_grid: tuple[int, int],
    *,
    num_prefix: int,
    method: PosMethod = "bilinear",
) -> torch.Tensor:
    """(1, prefix + rows*cols, D) -> (1, prefix + new rows*cols, D); prefix positions kept.

    method "reinit" draws a fresh grid (truncated normal, std 0.02), the paper's ablation.
    """
    dim = pos_embed.shape[-1]
    rows, cols = source_grid
    if pos_embed.shape[1] != num_prefix + rows * cols:
        raise PretrainedError(
            f"pos_embed {tuple(pos_embed.shape)} does not hold {num_prefix} prefix tokens and a "
            f"{rows}x{cols} grid"
        )
    prefix = pos_embed[:, :num_prefix]
    if method == "reinit":
        grid = torch.empty(1, target_grid[0] * target_grid[1], dim)
        torch.nn.init.trunc_normal_(grid, std=0.02)
        return torch.cat([prefix, grid.to(pos_embed)], dim=1)
    grid = pos_embed[:, num_prefix:].transpose(1, 2).reshape(1, dim, rows, cols)
    grid = adapt_grid(grid, target_grid, method=method)
    return torch.cat([prefix, grid.flatten(2).transpose(1, 2)], dim=1)


# --------------------------------------------------------------------------- ImageNet (AST-S)


def _deit_state(config: ASTConfig, weights: str | Path | None) -> dict[str, torch.Tensor]:
    name = IMAGENET_MODELS.get(config.preset or "")
    if weights is not None:
        return read_tensors(weights)
    if name is None:
        raise PretrainedError(
            "ImageNet initialisation needs a size preset (tiny224, small224, base224, base384) "
            "or a local DeiT weights file"
        )
    import timm

    try:
        return timm.create_model(name, pretrained=True).state_dict()
    except Exception as e:  # noqa: BLE001 (no network, no cache, hub error: all mean "pass a file")
        raise about(PretrainedError(
            f"cannot download the ImageNet weights of {name} ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else 'no detail'}). Offline, download "
            f"timm/{name}.fb_in1k elsewhere and pass its model.safetensors (or a .pth state dict) "
            "as the ImageNet weights file"
        ), "imagenet_weights") from None


def imagenet_init(
    config: ASTConfig,
    *,
    weights: str | Path | None = None,
    pos_method: PosMethod = "bilinear",
    features: FeatureConfig | None = None,
    labels: LabelSet | None = None,
) -> AST:
    """An AST whose encoder comes from a distilled DeiT (timm), its head fresh.

    `weights`: a local file of the DeiT state dict; without one, timm downloads it (online).
    The patch projection's 3 RGB input channels are summed into one, as the official code does.
    """
    state = _deit_state(config, weights)
    model = AST(config, features=features, labels=labels)
    for key in ("cls_token", "pos_embed", "patch_embed.proj.weight"):
        if key not in state:
            raise PretrainedError(f"the ImageNet weights have no {key}: not a ViT/DeiT state dict")
    conv = state["patch_embed.proj.weight"]
    if tuple(conv.shape[2:]) != config.patch_size or conv.shape[0] != config.embed_dim:
        raise PretrainedError(
            f"the ImageNet patch projection {tuple(conv.shape)} does not fit this model "
            f"(embed_dim {config.embed_dim}, patch {config.patch_size}): pick the matching size preset"
        )
    distilled = "dist_token" in state
    if distilled != config.distilled:
        raise PretrainedError("the ImageNet model and this AST disagree on the distillation token")
    num_prefix = config.num_prefix_tokens
    side = round((state["pos_embed"].shape[1] - num_prefix) ** 0.5)
    new_state = {
        "patch_proj.weight": conv.sum(dim=1, keepdim=True),
        "patch_proj.bias": state["patch_embed.proj.bias"],
        "pos_embed": adapt_pos_embed(state["pos_embed"], (side, side), config.grid,
                                     num_prefix=num_prefix, method=pos_method),
    }
    for key, value in state.items():
        if key.startswith(("blocks.", "norm.", "cls_token", "dist_token")):
            new_state[key] = value
    fresh = model.state_dict()
    for key in ("head_norm.weight", "head_norm.bias", "head.weight", "head.bias"):
        new_state[key] = fresh[key]
    try:
        load_state(model, new_state, source="ImageNet weights")
    except CheckpointError as e:
        raise PretrainedError(str(e)) from None
    return model


# --------------------------------------------------------------------------- AudioSet (AST-P)


def audioset_init(
    source: AST,
    config: ASTConfig,
    *,
    labels: LabelSet,
    features: FeatureConfig | None = None,
    pos_method: PosMethod = "bilinear",
) -> AST:
    """A new AST whose encoder comes from `source` (an AudioSet model), with a fresh head.

    The new model may differ in input length, mel bins, strides and label set; width, depth and
    patch shape must match the source's. Features keep the source's normalisation unless given.
    """
    src = source.config
    for name in ("embed_dim", "depth", "num_heads", "patch_size", "distilled", "mlp_ratio"):
        if getattr(src, name) != getattr(config, name):
            raise PretrainedError(
                f"cannot transfer: the source model has {name}={getattr(src, name)}, the new one "
                f"{getattr(config, name)}"
            )
    config = config.replace(num_classes=len(labels), norm_eps=src.norm_eps, head_eps=src.head_eps)
    features = features or FeatureConfig(
        **{**source.features.to_dict(), "num_mel_bins": config.num_mel_bins,
           "target_length": config.target_length}
    )
    model = AST(config, features=features, labels=labels)
    state = {k: v for k, v in source.state_dict().items() if not k.startswith(("head.", "head_norm."))}
    state["pos_embed"] = adapt_pos_embed(
        source.pos_embed.detach(), src.grid, config.grid, num_prefix=config.num_prefix_tokens,
        method=pos_method,
    )
    fresh = model.state_dict()
    state.update({k: v for k, v in fresh.items() if k.startswith(("head.", "head_norm."))})
    load_state(model, state, source="AudioSet model")
    return model
