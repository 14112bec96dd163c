"""MARLIN (Cai et al., CVPR 2023): a masked autoencoder of face videos, released as plain `torch.save` dicts. Its
encoder is VideoViT with a stored 1-D sin-cos table, query/value biases and LayerNorm eps 1e-5; this module maps
the two release layouts (`*.encoder.pt`, `*.full.pt`) to VideoViT's key names."""

from pathlib import Path

import torch

from fer_cache.encoders.checkpoint import read_training_checkpoint
from fer_cache.encoders.presets import ArchPreset
from fer_cache.encoders.weights import Weights
from fer_cache.errors import CheckpointError

NOT_THE_ENCODER = ("decoder.", "enc_dec_proj.")  # the .full.pt releases: the pixel decoder, accounted for, not loaded
RENAMES = {"patch_embedding.projection.": "patch_embed.proj.", "pos_embedding.emb": "pos_embed",
           "mlp.layers.0.linear.": "mlp.fc1.", "mlp.layers.1.linear.": "mlp.fc2."}
ARCHITECTURE = {"layernorm_eps": 1e-5, "qkv_bias": True}  # torch's LayerNorm default; a key bias of zeros
PRESETS: dict[str, ArchPreset] = {  # marlin_vit_small/base/large_ytf: 64-channel heads
    "vit_small": ArchPreset(384, 12, 6, 4.0),
    "vit_base": ArchPreset(768, 12, 12, 4.0),
    "vit_large": ArchPreset(1024, 24, 16, 4.0),
}


def read_marlin(path: Path, checkpoint_key: str | None = None) -> Weights:
    """The encoder of a MARLIN release file; any key that is neither encoder nor decoder is refused."""
    weights = read_training_checkpoint(path, checkpoint_key).state
    encoder = {k[len("encoder."):]: v for k, v in weights.items() if k.startswith("encoder.")}
    stray = sorted(k for k in weights if not k.startswith(("encoder.", *NOT_THE_ENCODER)))
    if stray:
        raise CheckpointError(f"{path}: unexpected key '{stray[0]}'" + (f" (+{len(stray) - 1} more)"
                                                                        if len(stray) > 1 else "")
                              + "; a MARLIN release holds encoder.*, and decoder.* in its .full.pt files")
    if not encoder:
        raise CheckpointError(f"{path}: no encoder.* weights; point `checkpoint:` at a MARLIN .encoder.pt or .full.pt "
                              "release file")
    state: dict[str, torch.Tensor] = {}
    for key, value in encoder.items():
        for theirs, ours in RENAMES.items():
            key = key.replace(theirs, ours)
        state[key] = value
    for i in range(len({k.split(".")[1] for k in state if k.startswith("blocks.")})):
        biases = [state.pop(f"blocks.{i}.attn.{name}", None) for name in ("q_bias", "v_bias")]
        if any(b is None for b in biases):
            raise CheckpointError(f"{path}: missing key 'encoder.blocks.{i}.attn.q_bias' or 'v_bias'")
        q_bias, v_bias = biases
        state[f"blocks.{i}.attn.qkv.bias"] = torch.cat([q_bias, torch.zeros_like(v_bias), v_bias])  # [3D], no k bias
    return Weights(state=state, fixed=dict(ARCHITECTURE))
