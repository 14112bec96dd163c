"""Reading official V-JEPA training checkpoints into VideoViT's key names, and the strict copy into the model that
every ViT family shares (each key accounted for, each shape checked, a stored position table verified)."""

import hashlib
from dataclasses import replace
from pathlib import Path

import torch

from fer_cache.encoders.presets import ArchPreset
from fer_cache.encoders.vit import VideoViT, sincos_3d
from fer_cache.encoders.weights import Weights
from fer_cache.errors import CheckpointError

WRAPPER_PREFIXES = ("module.", "backbone.")
FROZEN_KEYS = ("target_encoder", "ema_encoder")  # the EMA encoder that frozen evaluation uses (V-JEPA 1/2, 2.1)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_training_checkpoint(path: Path, checkpoint_key: str | None) -> Weights:
    """The encoder entry of a V-JEPA 1 `.pth.tar` / V-JEPA 2 `.pt` training checkpoint (or a bare state dict), in
    our key names; an entry that holds no encoder (a predictor) is refused, naming the entries that do."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} (download the official release file and point the "
                              "encoder's `checkpoint:` at it)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle refusals and corrupt files all mean: not a loadable checkpoint
        raise CheckpointError(f"{path}: {unloadable_reason(path, exc)}") from exc
    if not isinstance(blob, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, found {type(blob).__name__}")
    if all(isinstance(v, torch.Tensor) for v in blob.values()):
        return Weights(state={strip_prefixes(k): v for k, v in blob.items()})  # a bare state dict
    encoders = sorted((k for k, v in blob.items() if isinstance(v, dict) and holds_encoder(v)),
                      key=lambda k: k not in FROZEN_KEYS)  # the EMA copy that frozen evaluation uses first
    choose = f"set checkpoint_key to {encoders[0]}" if encoders else "it holds no encoder weights"
    if encoders[1:]:
        choose += f" (the {'EMA ' if encoders[0] in FROZEN_KEYS else ''}encoder; also: {', '.join(encoders[1:])})"
    if checkpoint_key not in blob:
        raise CheckpointError(f"{path}: no '{checkpoint_key}' entry; {choose}")
    state = blob[checkpoint_key]
    if not isinstance(state, dict) or not holds_encoder(state):
        what = "the predictor, not an encoder" if "predictor" in str(checkpoint_key) else "not an encoder's weights"
        raise CheckpointError(f"{path}: '{checkpoint_key}' is {what}; {choose}")
    return Weights(state={strip_prefixes(k): v for k, v in state.items()},
                   notes=online_encoder_note(blob, checkpoint_key))


def holds_encoder(state: dict) -> bool:
    """An entry of a training checkpoint holds an encoder if it has a patch embedding (a predictor has none)."""
    return any(strip_prefixes(k) == "patch_embed.proj.weight" for k in state)


def online_encoder_note(blob_keys, checkpoint_key: str | None) -> tuple[str, ...]:
    """`encoder` is the online encoder where the file also holds its EMA (target) copy, which frozen evaluation uses."""
    frozen = [k for k in FROZEN_KEYS if k in blob_keys]
    if checkpoint_key == "encoder" and frozen:
        return (f"checkpoint_key encoder chose the online encoder; the frozen evaluation uses {frozen[0]}",)
    return ()


def unloadable_reason(path: Path, exc: Exception) -> str:
    """Why torch.load refused a file, in our words (never torch's advice to turn the safety check off)."""
    with open(path, "rb") as f:
        head = f.read(64).lstrip()
    if "Weights only load failed" in str(exc) and (head[:2] == b"PK" or head[:1] == b"\x80"):
        return ("holds Python objects beyond tensors; refusing to load it (loading them could run code): export "
                "its state dict of tensors, or use the official release file")
    if head[:1] in (b"{", b"["):
        return "is a JSON file, not a PyTorch checkpoint; point `checkpoint:` at the .pth.tar or .pt file"
    return "is not a readable PyTorch checkpoint (damaged, truncated or another format); refusing to load it"


def read_vjepa21_checkpoint(path: Path, checkpoint_key: str | None) -> Weights:
    """A V-JEPA 2.1 checkpoint: V-JEPA 2's layout plus image-only weights that a video encoder does not use; built
    with a video modality embedding unless the checkpoint was trained without one."""
    weights = read_training_checkpoint(path, checkpoint_key)
    state = weights.state
    for key in [k for k in state if k == "img_mod_embed" or k.startswith("patch_embed_img.")]:
        del state[key]  # the image path (single frames); accepted, not needed for video
    return replace(weights, fixed={"modality_embed": "video_mod_embed" in state})


def strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def infer_dims(state: dict[str, torch.Tensor], presets: dict[str, ArchPreset]) -> dict:
    """Width, depth, MLP ratio, patch and tubelet read off the weights; heads from the family's preset of that
    width and depth (the weights cannot tell how the width is split)."""
    dims: dict = {}
    patch = state.get("patch_embed.proj.weight")
    if patch is not None and patch.ndim == 5:
        dims.update(embed_dim=patch.shape[0], tubelet_size=patch.shape[2], patch_size=patch.shape[3])
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    if depth:
        dims["depth"] = depth
    fc1 = state.get("blocks.0.mlp.fc1.weight")
    if fc1 is not None and "embed_dim" in dims:
        dims["mlp_ratio"] = fc1.shape[0] / dims["embed_dim"]
    for preset in presets.values():
        if (preset.embed_dim, preset.depth) == (dims.get("embed_dim"), dims.get("depth")):
            dims["num_heads"] = preset.num_heads
    return dims


def load_state_strict(model: VideoViT, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy `state` into `model`; any missing, unexpected or mis-shaped key is an error naming it."""
    state = dict(state)
    stored_pos = state.pop("pos_embed", None)
    expected = {k: v for k, v in model.state_dict().items() if k != "pos_embed"}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        raise CheckpointError(f"{source}: missing key '{missing[0]}'" + (f" (+{len(missing) - 1} more)"
                                                                         if len(missing) > 1 else ""))
    if unexpected:
        raise CheckpointError(f"{source}: unexpected key '{unexpected[0]}'" + (f" (+{len(unexpected) - 1} more)"
                                                                               if len(unexpected) > 1 else ""))
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(f"{source}: key '{key}' has shape {tuple(value.shape)}, the model expects "
                                  f"{tuple(expected[key].shape)} (check arch/embed_dim/patch_size/tubelet_size)")
    if model.pos_embed is not None and stored_pos is not None:
        check_pos_embed(model, stored_pos, source)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)


def check_position_table(state: dict[str, torch.Tensor], cfg, *, source: str) -> None:
    """A stored position table (V-JEPA 1, MARLIN) is trained for one grid; a resolution or frame count that gives
    another grid is refused."""
    if "pos_embed" not in state or state["pos_embed"].shape[1] == cfg.num_tokens:
        return
    trained = stored_grid(state["pos_embed"], cfg) if cfg.positions == "sincos3d" else None
    where = f"trained at {trained[1]} px and {trained[0]} frames" if trained else "trained on another grid"
    raise CheckpointError(f"{source}: its position table has {state['pos_embed'].shape[1]} tokens ({where}), "
                          f"but resolution {cfg.resolution} and frames_per_clip {cfg.frames_per_clip} give "
                          f"{cfg.num_tokens}; set the encoder's resolution and frames_per_clip to the checkpoint's")


def stored_grid(stored: torch.Tensor, cfg) -> tuple[int, int] | None:
    """(frames, resolution) whose sin-cos table equals the stored one, searched over common sizes."""
    for frames in range(cfg.tubelet_size, 129, cfg.tubelet_size):
        for resolution in range(cfg.patch_size, 1025, cfg.patch_size):
            grid = (frames // cfg.tubelet_size, resolution // cfg.patch_size, resolution // cfg.patch_size)
            if grid[0] * grid[1] * grid[2] != stored.shape[1]:
                continue
            table = sincos_3d(cfg.embed_dim, grid, cfg.uniform_power)
            if (stored.float() - table).abs().max() < 1e-4:
                return frames, resolution
    return None


def check_pos_embed(model: VideoViT, stored: torch.Tensor, source: str) -> None:
    """The fixed sin-cos table is regenerated; it must agree with the stored one."""
    cfg = model.cfg
    if stored.shape[-1] != cfg.embed_dim:
        raise CheckpointError(f"{source}: key 'pos_embed' has width {stored.shape[-1]}, expected {cfg.embed_dim}")
    regenerated = model.position_table(cfg.token_grid)
    error = (stored.float() - regenerated).abs().max().item()
    if error > 1e-4:
        hint = "check uniform_power" if cfg.positions == "sincos3d" else "is it a checkpoint of another family?"
        raise CheckpointError(f"{source}: stored 'pos_embed' differs from the family's sin-cos table by {error:.3g}; "
                              f"{hint}")
