"""data.yaml -> frozen dataclasses. Defaults live here only (an encoder entry's in `encoder_entry.py`); every mistake
names its key and line. The encoder family is checked where the encoder is built (`fer_cache.encoders`)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from fer_cache.encoder_entry import ENCODER_SETTINGS, EncoderConfig
from fer_cache.errors import ConfigError
from fer_cache.protocol import AugmentConfig, check_augment, preset_extraction

ADAPTERS = ("ravdess", "crema_d", "manifest", "dfew", "ferv39k", "mafw")
SOURCES = {"dfew": ("frames", "videos"), "mafw": ("frames", "videos"), "ferv39k": ("frames",)}  # official releases
DTYPES = ("float16", "bfloat16", "int8", "float32")  # float32: twice the bytes, for checks against references
COMPRESSORS = ("zstd", "blosc", "none")


@dataclass(kw_only=True, frozen=True)
class DatasetConfig:
    name: str
    adapter: str
    root: Path
    manifest: Path | None = None
    modality: tuple[int, ...] | None = None  # RAVDESS filter; None: 1 and 2 (video with and without audio)
    vocal_channel: tuple[str, ...] | None = None  # RAVDESS filter; None: speech
    labels: tuple[str, ...] | None = None  # manifest: the whole label vocabulary, in order
    source: str | None = None  # dfew/mafw/ferv39k: face-crop `frames` (default) or original `videos`
    line: int = 0
    config_file: str = "data.yaml"  # the config file that defined it, for messages


@dataclass(kw_only=True, frozen=True)
class ExtractionConfig:
    frames_per_clip: int = 16
    frame_step: int = 4
    clips_per_video: int | str = 8  # or "all": every clip start at clip_stride (a dense test store)
    clip_stride: int = 1  # frames between clip starts with clips_per_video all (1 as the reference's evaluation)
    spatial_views: int = 1
    resize: int | None = None  # short side before cropping; None: the encoder's resolution
    dtype: str = "float16"
    compressor: str = "none"  # float16 tokens compress by ~8-10% at 4-5x slower reads (benchmarks/bench_store.py)
    face_crop: bool = False  # one detected face box per clip, cropped before resizing (needs fer-jepa[face])
    face_margin: float = 0.25
    rank: int | None = None  # a compact store: tokens as coordinates on a rank-R principal basis (fer-cache compact)
    basis_videos: int = 32  # videos encoded first, the basis fitted on their tokens
    basis_tokens: int = 200_000  # tokens of those videos the basis is fitted on
    basis_seed: int = 0
    augment: AugmentConfig | None = None
    preset: str | None = None  # "paper": the reference's training sampling; its test sampling is test_extraction()
    resize_ratio: float | None = None  # short side = crop x ratio where resize is None (the paper's test: 256/224)

    @property
    def dense(self) -> bool:
        return self.clips_per_video == "all"


@dataclass(kw_only=True, frozen=True)
class Config:
    path: Path
    datasets: dict[str, DatasetConfig] = field(default_factory=dict)
    encoders: dict[str, EncoderConfig] = field(default_factory=dict)
    extraction: ExtractionConfig = field(default_factory=ExtractionConfig)

    def dataset(self, name: str) -> DatasetConfig:
        if name not in self.datasets:
            known = ", ".join(sorted(self.datasets)) or "none"
            raise ConfigError(f"{self.path}: unknown dataset '{name}'; datasets defined there: {known}")
        return self.datasets[name]

    def encoder(self, name: str) -> EncoderConfig:
        if name not in self.encoders:
            known = ", ".join(sorted(self.encoders)) or "none"
            raise ConfigError(f"{self.path}: unknown encoder '{name}'; encoders defined there: {known}")
        return self.encoders[name]

    def extraction_for(self, encoder: EncoderConfig) -> ExtractionConfig:
        """An encoder entry's frames_per_clip overrides the extraction default."""
        if encoder.frames_per_clip is not None:
            return replace(self.extraction, frames_per_clip=encoder.frames_per_clip)
        return self.extraction


class _Located(dict):
    """A YAML mapping that remembers the line of each key."""
    lines: dict[str, int]


def _to_python(loader: yaml.SafeLoader, node: yaml.Node):
    if isinstance(node, yaml.MappingNode):
        out = _Located()
        out.lines = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            out[str(key)] = _to_python(loader, value_node)
            out.lines[str(key)] = key_node.start_mark.line + 1
        return out
    return loader.construct_object(node, deep=True)


def parse_yaml(text: str, source: str) -> _Located:
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = _to_python(loader, node) if node is not None else _Located()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}{where}: malformed YAML ({problem}); fix the syntax there") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with datasets/encoders/extraction at the top")
    if not hasattr(data, "lines"):
        data = _Located(data)
        data.lines = {}
    return data


_VAR = re.compile(r"\$\{([^}]+)\}")


def expand_path(value, base: Path, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected a path, got {value!r}")

    def substitute(match: re.Match) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(f"{where}: environment variable ${{{name}}} is not set; export it or edit the path")
        return os.environ[name]

    path = Path(os.path.expanduser(_VAR.sub(substitute, value)))
    return path if path.is_absolute() else (base / path)


def _check_keys(entry, allowed: set[str], where: str, *, source: str) -> None:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {entry!r}")
    for key in entry:
        if key not in allowed:
            line = getattr(entry, "lines", {}).get(key, "?")
            raise ConfigError(f"{source} line {line}: unknown key '{key}' ({where}); allowed: "
                              f"{', '.join(sorted(allowed))}")


def _typed(value, kind, key: str, *, where: str):
    if value is None:
        return None
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: '{key}' must be true or false, got {value!r}")
        return value
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: '{key}' must be an integer, got {value!r}")
    if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(f"{where}: '{key}' must be a number, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise ConfigError(f"{where}: '{key}' must be a string, got {value!r}")
    return kind(value)


def _as_list(value, key: str, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        value = [value]
    return value


def _dataset(name: str, entry, base: Path, *, source: str, line: int) -> DatasetConfig:
    where = f"{source} line {line} (datasets.{name})"
    _check_keys(entry, {"adapter", "root", "manifest", "modality", "vocal_channel", "labels", "source"},
                f"datasets.{name}", source=source)
    adapter = entry.get("adapter")
    if adapter not in ADAPTERS:
        raise ConfigError(f"{where}: 'adapter' must be one of {', '.join(ADAPTERS)}, got {adapter!r}")
    if "root" not in entry:
        raise ConfigError(f"{where}: missing 'root', the folder that holds the videos")
    root = expand_path(entry["root"], base, where)
    manifest = None
    if adapter == "manifest":
        if "manifest" not in entry:
            raise ConfigError(f"{where}: adapter manifest needs 'manifest: file.csv' (columns path,label,subject)")
        manifest = expand_path(entry["manifest"], base, where)
    modality = vocal = None
    if "modality" in entry:
        try:
            modality = tuple(int(m) for m in _as_list(entry["modality"], "modality", where))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: 'modality' must list RAVDESS modality codes such as [1, 2]") from exc
    if "vocal_channel" in entry:
        names = {"1": "speech", "01": "speech", "speech": "speech", "2": "song", "02": "song", "song": "song"}
        raw = [str(v).lower() for v in _as_list(entry["vocal_channel"], "vocal_channel", where)]
        if any(v not in names for v in raw):
            raise ConfigError(f"{where}: 'vocal_channel' must list speech and/or song, got {entry['vocal_channel']!r}")
        vocal = tuple(names[v] for v in raw)
    labels = tuple(str(v) for v in _as_list(entry["labels"], "labels", where)) if "labels" in entry else None
    if labels is not None and (not labels or len(set(labels)) != len(labels)):
        raise ConfigError(f"{where}: 'labels' must list distinct class names, got {entry['labels']!r}")
    data_source = entry.get("source")
    if data_source is not None and data_source not in SOURCES.get(adapter, ()):
        allowed = " or ".join(SOURCES[adapter]) if adapter in SOURCES else "nothing (only dfew, ferv39k, mafw take it)"
        raise ConfigError(f"{where}: 'source' must be {allowed}, got {data_source!r}")
    return DatasetConfig(name=name, adapter=adapter, root=root, manifest=manifest, modality=modality,
                         vocal_channel=vocal, labels=labels, source=data_source, line=line, config_file=source)


def _encoder(name: str, entry, base: Path, *, source: str, line: int) -> EncoderConfig:
    where = f"{source} line {line} (encoders.{name})"
    _check_keys(entry, set(ENCODER_SETTINGS) | {"checkpoint"}, f"encoders.{name}", source=source)
    values = {key: _typed(entry[key], kind, key, where=where) for key, kind in ENCODER_SETTINGS.items() if key in entry}
    checkpoint = entry.get("checkpoint")
    checkpoint = expand_path(checkpoint, base, where) if checkpoint is not None else None
    return EncoderConfig(name=name, checkpoint=checkpoint, line=line, config_file=source,
                         key_lines=dict(getattr(entry, "lines", {})),
                         **{k: v for k, v in values.items() if v is not None})


_EXTRACTION_TYPES = {"frames_per_clip": int, "frame_step": int, "clips_per_video": int, "clip_stride": int,
                     "spatial_views": int, "resize": int, "dtype": str, "compressor": str, "face_crop": bool,
                     "face_margin": float, "rank": int, "basis_videos": int, "basis_tokens": int, "basis_seed": int,
                     "preset": str}
_AUGMENT_TYPES = {"policy": str, "copies": int, "seed": int}


def _extraction(entry, source: str, line: int) -> ExtractionConfig:
    where = f"{source} line {line} (extraction)"
    _check_keys(entry, set(_EXTRACTION_TYPES) | {"augment"}, "extraction", source=source)
    typed = dict(_EXTRACTION_TYPES)
    if isinstance(entry.get("clips_per_video"), str):  # all, or a mistake check_extraction names
        typed["clips_per_video"] = str
    values = {key: _typed(entry[key], kind, key, where=where) for key, kind in typed.items() if key in entry}
    if entry.get("augment") is not None:
        augment = entry["augment"]
        if not isinstance(augment, dict):
            raise ConfigError(f"{where}: 'augment' must be a mapping such as {{copies: 4, seed: 0}}, got {augment!r}")
        _check_keys(augment, set(_AUGMENT_TYPES), "extraction.augment", source=source)
        values["augment"] = AugmentConfig(**{k: _typed(augment[k], kind, k, where=f"{where} augment")
                                             for k, kind in _AUGMENT_TYPES.items() if k in augment})
    values = {k: v for k, v in values.items() if v is not None}
    if "preset" in values:
        values = preset_extraction(values["preset"], values, where=where)
    return check_extraction(ExtractionConfig(**values), where)


def check_extraction(cfg: ExtractionConfig, where: str) -> ExtractionConfig:
    if cfg.spatial_views not in (1, 3):
        raise ConfigError(f"{where}: 'spatial_views' must be 1 or 3, got {cfg.spatial_views}")
    if cfg.dtype not in DTYPES:
        raise ConfigError(f"{where}: 'dtype' must be one of {', '.join(DTYPES)}, got {cfg.dtype!r}")
    if cfg.compressor not in COMPRESSORS:
        raise ConfigError(f"{where}: 'compressor' must be one of {', '.join(COMPRESSORS)}, got {cfg.compressor!r}")
    if isinstance(cfg.clips_per_video, str) and cfg.clips_per_video != "all":
        raise ConfigError(f"{where}: 'clips_per_video' must be a number or all (every clip start), got "
                          f"{cfg.clips_per_video!r}")
    for key in ("frames_per_clip", "frame_step", "clips_per_video", "clip_stride"):
        if not (cfg.dense and key == "clips_per_video") and getattr(cfg, key) < 1:
            raise ConfigError(f"{where}: '{key}' must be at least 1")
    if cfg.augment is not None:
        check_augment(cfg, where)
    if cfg.face_crop and cfg.spatial_views != 1:
        raise ConfigError(f"{where}: 'face_crop' cuts one face box per clip; use it with spatial_views 1")
    if not 0 <= cfg.face_margin <= 2:
        raise ConfigError(f"{where}: 'face_margin' must be between 0 and 2 (a fraction of the face box), got "
                          f"{cfg.face_margin}")
    if cfg.rank is not None and (cfg.rank < 1 or cfg.dtype not in ("int8", "float16")):
        raise ConfigError(f"{where}: 'rank' must be at least 1, with dtype int8 or float16 (compact stores hold "
                          f"their coordinates as int8 or float16), got rank {cfg.rank} with dtype {cfg.dtype}")
    if cfg.basis_videos < 1 or cfg.basis_tokens < 2:
        raise ConfigError(f"{where}: 'basis_videos' must be at least 1 and 'basis_tokens' at least 2")
    return cfg


def load_config(path: str | Path = "data.yaml") -> Config:
    """Read and check a data.yaml; relative paths in it are relative to the file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}; name another config file or create data.yaml "
                          "(see the README)")
    source = str(path)
    data = parse_yaml(path.read_text(), source)
    _check_keys(data, {"datasets", "encoders", "extraction"}, "top level", source=source)
    base = path.resolve().parent
    datasets, encoders = {}, {}
    for section, builder, out in (("datasets", _dataset, datasets), ("encoders", _encoder, encoders)):
        entries = data.get(section) or {}
        if not isinstance(entries, dict):
            raise ConfigError(f"{source} line {data.lines.get(section, '?')}: '{section}' must be a mapping of "
                              "names to entries")
        for name, entry in entries.items():
            out[name] = builder(str(name), entry, base, source=source, line=getattr(entries, "lines", {}).get(name, 0))
    extraction = _extraction(data.get("extraction") or {}, source, data.lines.get("extraction", 0))
    return Config(path=path, datasets=datasets, encoders=encoders, extraction=extraction)
