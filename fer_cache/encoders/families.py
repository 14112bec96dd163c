"""The encoder families as one table. Each entry carries its behaviour: how to read and strictly map its
checkpoint, how to build its model, how to recognise its checkpoints (so a mis-declared one is refused naming the
right family), how its frames are normalised, its presets and what it was pretrained to do.

A new family is one `Family` entry here, plus a reader (and a model module where the architecture is new).
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fer_cache.encoders.building import build_vit
from fer_cache.encoders.checkpoint import read_training_checkpoint, read_vjepa21_checkpoint
from fer_cache.encoders.framewise import frame_wise, read_image_directory
from fer_cache.encoders.hf import read_hf_videomae, read_hf_vjepa2
from fer_cache.encoders.marlin import PRESETS as MARLIN_PRESETS
from fer_cache.encoders.marlin import read_marlin
from fer_cache.encoders.presets import PRESETS as VJEPA_PRESETS
from fer_cache.encoders.presets import VIDEOMAE_PRESETS, VJEPA21_PRESETS, ArchPreset
from fer_cache.encoders.weights import IMAGENET, UNIT, Evidence, Normalisation, Weights, preprocessor_normalisation

Objective = Literal["latent prediction", "pixel reconstruction", "image-text contrastive", "self-distillation"]
Layout = Literal["file", "directory"]  # a checkpoint file, or a Hugging Face directory
CLIP_MEAN_STD = Normalisation((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
HALF = Normalisation((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


@dataclass(frozen=True, kw_only=True)
class Family:
    name: str  # what data.yaml's `family:` says
    title: str  # what people call it
    objective: Objective  # how it was pretrained: the contrast the paper draws
    checkpoint_format: str  # what `checkpoint:` points at, for the families table
    layout: Layout
    read: Callable[[Path, str | None], Weights]  # checkpoint -> weights in the model's key names
    build: Callable[..., object]  # (entry, family, weights or None, *, identity, seed) -> the encoder module
    claims: Callable[[Evidence], bool]  # is this checkpoint one of ours?
    normalisation: Callable[[Path | None], Normalisation] = lambda path: IMAGENET
    evidence: str  # what its checkpoints hold that others do not, said when refusing a mis-declared one
    presets: dict[str, ArchPreset]
    architecture: dict  # VideoViT switches fixed by the family (positions, norms, modality embedding)
    default_key: str | None = None  # the checkpoint entry that holds the frozen encoder (training checkpoints)
    outputs: tuple[str, ...] = ("last",)
    head_dim: int | None = None  # heads = width / head_dim when no preset of that width and depth says otherwise
    uses_uniform_power: bool = False
    sampling: str = ""  # how its releases are used, as a hint to the user


def model_type(*names: str) -> Callable[[Evidence], bool]:
    return lambda evidence: evidence.model_type in names


def vjepa_keys(*, table: bool) -> Callable[[Evidence], bool]:
    """V-JEPA 1 stores a position table, V-JEPA 2 has none; neither has V-JEPA 2.1's per-layer norms."""
    return lambda e: (e.has("patch_embed.proj.weight") and e.has("pos_embed") == table
                      and not e.has_prefix("norms_block.") and not e.has("video_mod_embed"))


def own_normalisation(default: Normalisation) -> Callable[[Path | None], Normalisation]:
    return lambda path: preprocessor_normalisation(path, default)


def image_family(name: str, title: str, objective: Objective, *, model_class: str, positions: str,
                 model_types: tuple[str, ...], normalisation: Normalisation, sampling: str) -> Family:
    """A frame-wise family: a Hugging Face image-model directory whose vision tower encodes each frame alone."""
    return Family(name=name, title=title, objective=objective, layout="directory", read=read_image_directory,
                  checkpoint_format=f"Hugging Face directory (model_type {model_types[0]})",
                  build=frame_wise(model_class, positions), claims=model_type(*model_types),
                  normalisation=own_normalisation(normalisation), architecture={}, presets={},
                  outputs=("last", "cls"), sampling=sampling,
                  evidence=f"a Hugging Face {title} directory (model_type {model_types[0]})")


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family(name="vjepa", title="V-JEPA 1", objective="latent prediction", layout="file", read=read_training_checkpoint,
           checkpoint_format="training checkpoint .pth.tar (target_encoder)", build=build_vit,
           claims=vjepa_keys(table=True), architecture={"positions": "sincos3d"}, presets=VJEPA_PRESETS,
           default_key="target_encoder", uses_uniform_power=True, sampling="16 frames at 224 or 384 px",
           evidence="it has a 'pos_embed' table, as V-JEPA 1 checkpoints do"),
    Family(name="vjepa2", title="V-JEPA 2", objective="latent prediction", layout="file", read=read_training_checkpoint,
           checkpoint_format="training checkpoint .pt (target_encoder)", build=build_vit,
           claims=vjepa_keys(table=False), architecture={"positions": "rope"}, presets=VJEPA_PRESETS,
           default_key="target_encoder", sampling="64 frames at 256 or 384 px (any grid: rotary positions)",
           evidence="no 'pos_embed' in the weights and no 'norms_block', as in V-JEPA 2 checkpoints (rotary "
                    "positions)"),
    Family(name="vjepa2-hf", title="V-JEPA 2 (Hugging Face)", objective="latent prediction", layout="directory",
           read=read_hf_vjepa2, checkpoint_format="Hugging Face directory (model_type vjepa2)", build=build_vit,
           claims=model_type("vjepa2"), architecture={"positions": "rope"}, presets=VJEPA_PRESETS,
           sampling="its config.json's frames and crop", evidence="a Hugging Face V-JEPA 2 directory (model_type "
                                                                  "vjepa2)"),
    Family(name="vjepa2.1", title="V-JEPA 2.1", objective="latent prediction", layout="file",
           read=read_vjepa21_checkpoint, checkpoint_format="training checkpoint .pt (ema_encoder or target_encoder)",
           build=build_vit, claims=lambda e: e.has_prefix("norms_block.") or e.has("video_mod_embed"),
           architecture={"positions": "rope", "modality_embed": True, "final_norm": "per_layer",
                         "rope_grid": "pretraining", "rope_interleaved": True},
           presets=VJEPA21_PRESETS, default_key="target_encoder", outputs=("last", "hierarchical"), head_dim=64,
           sampling="16 frames at 256 or 384 px",
           evidence="it has 'norms_block' LayerNorms and a 'video_mod_embed', as V-JEPA 2.1 checkpoints do"),
    Family(name="videomae", title="VideoMAE", objective="pixel reconstruction", layout="directory",
           read=read_hf_videomae, checkpoint_format="Hugging Face directory (model_type videomae)", build=build_vit,
           claims=model_type("videomae"), architecture={"positions": "sincos1d"}, presets=VIDEOMAE_PRESETS,
           sampling="16 frames at 224 px (its config.json's grid)",
           evidence="a Hugging Face VideoMAE directory (model_type videomae)"),
    Family(name="marlin", title="MARLIN", objective="pixel reconstruction", layout="file", read=read_marlin,
           checkpoint_format="release state dict .encoder.pt or .full.pt", build=build_vit,
           claims=lambda e: e.has("encoder.patch_embedding.projection.weight"),
           normalisation=lambda path: UNIT, architecture={"positions": "sincos1d"}, presets=MARLIN_PRESETS,
           head_dim=64, sampling="16 frames at 224 px, face crops (frames in [0, 1], no mean/std)",
           evidence="it holds 'encoder.patch_embedding' and 'encoder.pos_embedding', as MARLIN releases do"),
    image_family("clip", "CLIP", "image-text contrastive", model_class="CLIPVisionModel", positions="flag",
                 model_types=("clip", "clip_vision_model"), normalisation=CLIP_MEAN_STD,
                 sampling="frame by frame at the directory's crop size"),
    image_family("siglip", "SigLIP", "image-text contrastive", model_class="SiglipVisionModel", positions="flag",
                 model_types=("siglip", "siglip_vision_model"), normalisation=HALF,
                 sampling="frame by frame at the directory's crop size"),
    image_family("dinov2", "DINOv2", "self-distillation", model_class="Dinov2Model", positions="always",
                 model_types=("dinov2",), normalisation=IMAGENET,
                 sampling="frame by frame at 224 px (position table interpolated from 518)"),
    image_family("dinov3", "DINOv3", "self-distillation", model_class="DINOv3ViTModel", positions="rope",
                 model_types=("dinov3_vit",), normalisation=IMAGENET,
                 sampling="frame by frame at the directory's size (rotary positions: any size)"),
)}


def claimant(evidence: Evidence | None) -> Family | None:
    """The family whose checkpoints look like this, or None where none (or the evidence is unreadable)."""
    if evidence is None:
        return None
    return next((f for f in FAMILIES.values() if f.claims(evidence)), None)
