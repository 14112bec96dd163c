"""Which checkpoint is this: reading an entry's checkpoint through its family, refusing one that another family
claims (naming it), and the checkpoint's sha256 that a store records."""

import hashlib
from pathlib import Path

import torch

from fer_cache.encoder_entry import EncoderConfig
from fer_cache.encoders.checkpoint import sha256_file, strip_prefixes
from fer_cache.encoders.families import FAMILIES, Family, claimant
from fer_cache.encoders.weights import Evidence, Weights, directory_config
from fer_cache.errors import CheckpointError


def read_weights(spec: EncoderConfig, family: Family) -> Weights | None:
    """The weights of an entry's checkpoint (None: seeded random weights); a checkpoint that another family claims
    is refused in one line that names that family."""
    kind = "a Hugging Face directory (config.json + model.safetensors)" if family.layout == "directory" else \
        "a checkpoint file"
    if spec.checkpoint is None:
        if family.layout == "directory":
            raise CheckpointError(f"{spec.where('checkpoint')}: family {family.name} needs `checkpoint`: {kind}")
        return None
    path = Path(spec.checkpoint)
    other = claimant(evidence_of(path, spec.checkpoint_key or family.default_key))
    if other is not None and other is not family:
        raise CheckpointError(f"{path}: {other.evidence}, not {family.title}; use family {other.name}")
    if path.is_dir() != (family.layout == "directory") and (path.is_dir() or path.is_file()):
        what = "directory" if path.is_dir() else "file"
        readers = [f.name for f in FAMILIES.values() if f.layout == ("directory" if path.is_dir() else "file")]
        raise CheckpointError(f"{path} is a {what}, but family {family.name} reads {kind}; families that read a "
                              f"{what}: {', '.join(readers)}")
    return family.read(path, spec.checkpoint_key or family.default_key)


def evidence_of(path: Path, key: str | None) -> Evidence | None:
    """How a checkpoint looks from outside (model_type, tensor names), or None where it cannot be read: the family's
    reader then says why."""
    if path.is_dir():
        config = directory_config(path) or {}
        return Evidence(config.get("model_type"), frozenset(safetensors_keys(path / "model.safetensors")))
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - unreadable here means: let the reader explain
        return None
    if not isinstance(blob, dict):
        return None
    entries = [blob[k] for k in (key, "target_encoder", "ema_encoder", "encoder") if isinstance(blob.get(k), dict)]
    state = entries[0] if entries else blob
    return Evidence(None, frozenset(strip_prefixes(k) for k, v in state.items() if isinstance(v, torch.Tensor)))


def safetensors_keys(file: Path) -> list[str]:
    from safetensors import safe_open
    try:
        with safe_open(str(file), framework="pt") as f:
            return list(f.keys())
    except Exception:  # noqa: BLE001 - a missing or damaged file: the reader says so
        return []


_SHA_CACHE: dict[tuple[str, float, int], str] = {}


def fingerprint_checkpoint(path: Path) -> str:
    """sha256 of a checkpoint file (or of a HF directory's files), computed once per process."""
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    key = (str(path.resolve()), max(p.stat().st_mtime for p in files), sum(p.stat().st_size for p in files))
    if key not in _SHA_CACHE:
        hashes = [sha256_file(p) for p in files]
        _SHA_CACHE[key] = hashes[0] if len(hashes) == 1 else hashlib.sha256("".join(hashes).encode()).hexdigest()
    return _SHA_CACHE[key]
