"""Every user mistake: exit code 1, one line on stderr, no traceback. The commands run in-process (CliRunner);
one test runs the real console scripts, where the process boundary (exit status, stderr) is the point."""

import subprocess

import pytest

from tests.helpers import BIN, ENCODER_FIXTURES, assert_one_line_error, run, write_config, write_planted_store

CONFIG_MISTAKES = {
    "unknown top-level key": "datasets: {}\nencoder: {}\n",
    "unknown dataset key": "datasets:\n  demo: {adapter: ravdess, root: ROOT, filter: x}\n",
    "unknown encoder key": "datasets:\n  demo: {adapter: ravdess, root: ROOT}\nencoders:\n  tiny: {famly: vjepa}\n",
    "unknown extraction key": "datasets:\n  demo: {adapter: ravdess, root: ROOT}\nextraction: {clips: 3}\n",
    "malformed yaml": "datasets:\n  demo: {adapter: ravdess, root: ROOT\n",
    "tab indentation": "datasets:\n\tdemo: {}\n",
    "wrong type": "datasets:\n  demo: {adapter: ravdess, root: ROOT}\nextraction: {clips_per_video: many}\n",
    "bad adapter": "datasets:\n  demo: {adapter: youtube, root: ROOT}\n",
    "missing root": "datasets:\n  demo: {adapter: crema_d}\n",
    "root does not exist": "datasets:\n  demo: {adapter: crema_d, root: /no/such/folder}\n",
    "unset variable": "datasets:\n  demo:\n    adapter: ravdess\n    root: ${FER_NO_SUCH_VARIABLE}/x\n",
    "empty file": "",
    "clip stride 0": "datasets:\n  demo: {adapter: ravdess, root: ROOT}\nextraction: {clip_stride: 0}\n",
    "augment not a mapping": "datasets:\n  demo: {adapter: ravdess, root: ROOT}\nextraction: {augment: 3}\n",
    "augment copies wrong type": "datasets:\n  demo: {adapter: ravdess, root: ROOT}\n"
                                 "extraction: {augment: {copies: two}}\n",
    "augment unknown key": "datasets:\n  demo: {adapter: ravdess, root: ROOT}\nextraction: {augment: {copeis: 2}}\n",
    "unknown preset": "datasets:\n  demo: {adapter: ravdess, root: ROOT}\nextraction: {preset: thesis}\n",
}


def test_console_scripts_exit_with_one_line(tmp_path):
    for program, args, needle in ((BIN / "fer-cache", ["info", tmp_path / "nothing.zarr"], "no such store"),
                                  (BIN / "fer-probe", ["report", tmp_path], "config.json")):
        result = subprocess.run([str(program), *map(str, args)], capture_output=True, text=True, timeout=600)
        assert_one_line_error(result, needle)


@pytest.mark.parametrize("kind", sorted(CONFIG_MISTAKES))
def test_config_mistakes(tmp_path, demo_small, kind):
    path = tmp_path / "data.yaml"
    path.write_text(CONFIG_MISTAKES[kind].replace("ROOT", str(demo_small)))
    result = run(BIN / "fer-cache", "scan", "--dataset", "demo", "--config", path)
    assert_one_line_error(result, str(path) if kind != "root does not exist" else "/no/such/folder")


def test_names_files_and_checkpoints(tmp_path, demo_small):
    config = write_config(tmp_path, demo_small, extra="")
    text = config.read_text().replace("encoders:\n", f"encoders:\n  big: {{family: vjepa, arch: vit_huge, checkpoint: "
                                                     f"{tmp_path}/missing.pth.tar}}\n"
                                                     f"  hf: {{family: vjepa2-hf, checkpoint: {tmp_path}}}\n"
                                                     f"  huh: {{family: vjepa, arch: vit_enormous}}\n")
    config.write_text(text)
    (tmp_path / "pickled.pth.tar").write_bytes(b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94.")
    out = tmp_path / "s.zarr"
    common = ["--config", config, "--out", out]
    assert_one_line_error(run(BIN / "fer-cache", "scan", "--dataset", "nope", "--config", config), "unknown dataset")
    assert_one_line_error(run(BIN / "fer-cache", "extract", "--dataset", "demo", "--encoder", "nope", *common),
                          "unknown encoder 'nope'")
    assert_one_line_error(run(BIN / "fer-cache", "extract", "--dataset", "demo", "--encoder", "big", *common),
                          "checkpoint not found", "missing.pth.tar")
    assert_one_line_error(run(BIN / "fer-cache", "extract", "--dataset", "demo", "--encoder", "hf", *common),
                          "config.json")
    assert_one_line_error(run(BIN / "fer-cache", "extract", "--dataset", "demo", "--encoder", "huh", *common),
                          "vit_enormous")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run(BIN / "fer-cache", "scan", "--dataset", "demo", cwd=tmp_path / "empty"),
                          "config file not found")
    assert not out.exists()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    assert_one_line_error(run(BIN / "fer-cache", "extract", "--dataset", "demo", "--encoder", "tiny", "--config",
                              config, "--out", precious, "--overwrite"), "not a fer-cache store")
    assert (precious / "thesis.tex").read_text() == "years of work"
    assert_one_line_error(run(BIN / "fer-cache", "info", tmp_path / "nothing.zarr"), "no such store")
    assert_one_line_error(run(BIN / "fer-cache", "verify", precious), "not a Zarr store")


def probe_inputs(tmp_path):
    """The stores, folders and files the probe mistakes below are made with."""
    inputs = {"store": write_planted_store(tmp_path / "a.zarr"),
              "other": write_planted_store(tmp_path / "b.zarr", encoder_name="another"),
              "incomplete": write_planted_store(tmp_path / "c.zarr", status=[1] * 63 + [2]),
              "one_subject": write_planted_store(tmp_path / "d.zarr", n_subjects=1),
              "folder": tmp_path / "folder", "file": tmp_path / "file.txt", "none": tmp_path / "none.zarr",
              "leaky": tmp_path / "leaky.json", "alien": tmp_path / "alien.json", "nofile": tmp_path / "nofile.json",
              "run": tmp_path / "run", "tmp": tmp_path}
    inputs["folder"].mkdir()
    inputs["file"].write_text("x")
    inputs["leaky"].write_text('{"folds": [{"test_subjects": ["1", "2"], "train_subjects": ["2", "3"]}]}')
    inputs["alien"].write_text('{"folds": [{"test_subjects": ["1001"], "train_subjects": ["3"]}]}')
    return inputs


OUT = ["--out", "{run}", "--epochs", "1"]
PROBE_MISTAKES = {  # name: (arguments with {input} placeholders, what the one line says)
    "a folder that is no store": (["cv", "{folder}", *OUT], ["not a Zarr store"]),
    "a file that is no store": (["cv", "{file}", *OUT], ["not a Zarr store"]),
    "no store there": (["cv", "{none}", *OUT], ["no such store"]),
    "an incomplete store": (["cv", "{incomplete}", *OUT], ["1 failed", "--allow-incomplete"]),
    "more folds than subjects": (["cv", "{store}", "--folds", "20", *OUT], ["more than the 8 subjects"]),
    "a subject in train and test": (["cv", "{store}", "--folds-file", "{leaky}", *OUT], ["both train and test"]),
    "a subject the store lacks": (["cv", "{store}", "--folds-file", "{alien}", *OUT], ["1001"]),
    "no folds file": (["cv", "{store}", "--folds-file", "{nofile}", *OUT], ["not found"]),
    "stores of different encoders": (["cross", "--train", "{store}", "--test", "{other}", *OUT],
                                     ["different encoders"]),
    "an unknown probe": (["cv", "{store}", "--probe", "svm", *OUT], ["probe must be"]),
    "one subject": (["cv", "{one_subject}", *OUT], ["needs at least 2 subjects"]),
    "a file as the run directory": (["cv", "{store}", "--out", "{file}", "--epochs", "1"], ["is a file"]),
    "a report of no run": (["report", "{tmp}"], ["config.json"]),
    "cuda without a GPU": (["cv", "{store}", "--device", "cuda", *OUT], ["no CUDA GPU"]),
}


@pytest.mark.parametrize("name", sorted(PROBE_MISTAKES))
def test_probe_mistakes(tmp_path, name):
    inputs = probe_inputs(tmp_path)
    args, needles = PROBE_MISTAKES[name]
    assert_one_line_error(run(BIN / "fer-probe", *[str(a).format(**inputs) for a in args]), *needles)


def test_overwrite_never_empties_a_folder_that_is_no_run(tmp_path):
    inputs = probe_inputs(tmp_path)
    (inputs["folder"] / "mine.txt").write_text("keep")
    assert_one_line_error(run(BIN / "fer-probe", "cv", inputs["store"], "--out", inputs["folder"], "--epochs", "1",
                              "--overwrite"), "not a fer-probe run directory")
    assert (inputs["folder"] / "mine.txt").read_text() == "keep"


def test_unusable_inputs_and_outputs(tmp_path, demo_small):
    import shutil

    import torch
    (tmp_path / "empty").mkdir()
    (tmp_path / "hf").mkdir()
    shutil.copy(ENCODER_FIXTURES / "vjepa2-hf-tiny" / "config.json", tmp_path / "hf")
    (tmp_path / "hf" / "model.safetensors").write_bytes(b"\x00" * 500)
    (tmp_path / "noise.pth.tar").write_bytes(bytes(range(256)) * 20)
    torch.save({"encoder": {}, "epoch": 3}, tmp_path / "nokey.pth.tar")
    (tmp_path / "latin1.csv").write_bytes(b"path,label,subject\n\xe9t\xe9.mp4,happy,1\n")
    (tmp_path / "a_file").write_text("x")
    config = tmp_path / "data.yaml"
    config.write_text(f"""\
datasets:
  demo: {{adapter: ravdess, root: {demo_small}}}
  empty: {{adapter: ravdess, root: {tmp_path / 'empty'}}}
  latin: {{adapter: manifest, manifest: {tmp_path / 'latin1.csv'}, root: {tmp_path}}}
encoders:
  tiny: {{family: vjepa, checkpoint: null, embed_dim: 48, depth: 1, num_heads: 4, resolution: 32, frames_per_clip: 4}}
  hf: {{family: vjepa2-hf, checkpoint: {tmp_path / 'hf'}}}
  noise: {{family: vjepa, arch: vit_large, checkpoint: {tmp_path / 'noise.pth.tar'}}}
  nokey: {{family: vjepa, arch: vit_large, checkpoint: {tmp_path / 'nokey.pth.tar'}}}
  json: {{family: vjepa, arch: vit_large, checkpoint: {tmp_path / 'config.json'}}}
  v2as1: {{family: vjepa, checkpoint: {ENCODER_FIXTURES / 'vjepa2-tiny' / 'checkpoint.pt'}, num_heads: 4,
          resolution: 64, frames_per_clip: 8}}
""")
    (tmp_path / "config.json").write_text('{"architectures": ["VJEPA2Model"]}')

    def extract(dataset, encoder, out):
        return run(BIN / "fer-cache", "extract", "--dataset", dataset, "--encoder", encoder, "--out", out,
                   "--config", config, "--limit", "2", "--workers", "0")

    store = tmp_path / "s.zarr"
    assert_one_line_error(extract("empty", "tiny", store), "no videos to extract")
    assert_one_line_error(extract("demo", "hf", store), "not a readable safetensors file")
    assert_one_line_error(extract("demo", "noise", store), "refusing to load")
    assert_one_line_error(extract("demo", "nokey", store), "no 'target_encoder' entry", "encoder")
    assert_one_line_error(extract("demo", "json", store), "is a JSON file, not a PyTorch checkpoint")
    assert "weights_only" not in extract("demo", "json", store).stderr
    assert_one_line_error(extract("demo", "v2as1", store), "not V-JEPA 1; use family vjepa2")
    assert_one_line_error(extract("demo", "tiny", "/proc/fer-cache-test.zarr"), "cannot write the store")
    assert_one_line_error(extract("demo", "tiny", tmp_path / "a_file"), "not a fer-cache store")
    assert_one_line_error(run(BIN / "fer-cache", "scan", "--dataset", "latin", "--config", config), "not a UTF-8 CSV")
    assert (tmp_path / "a_file").read_text() == "x"
    assert extract("demo", "tiny", store).returncode == 0
    assert_one_line_error(run(BIN / "fer-cache", "export-h5", store, tmp_path / "no" / "such" / "out.h5"),
                          "does not exist")
    assert_one_line_error(run(BIN / "fer-cache", "export-h5", store, tmp_path / "empty"), "is a folder")


def test_errors_name_the_config_file_given(tmp_path):
    config = tmp_path / "my-datasets.yaml"
    config.write_text("datasets:\n  m: {adapter: manifest, manifest: missing.csv, root: .}\n"
                      "  r: {adapter: ravdess, root: nowhere}\n")
    for dataset in ("m", "r"):
        result = run(BIN / "fer-cache", "scan", "--dataset", dataset, "--config", config)
        assert_one_line_error(result, str(config))
        assert "data.yaml" not in result.stderr


def test_the_new_options_refuse_a_typo_or_a_missing_file_in_one_line(tmp_path, planted_store):
    """--test-store, --test-clips each, verify --repair and fer-cache families: mistakes are one line, exit 1."""
    common = ["--epochs", "1", "--folds", "2", "--num-heads", "4"]
    assert_one_line_error(run(BIN / "fer-probe", "cv", planted_store, "--test-store", tmp_path / "nope.zarr", *common,
                              "--out", tmp_path / "a"), "nope.zarr", "no such store")
    assert_one_line_error(run(BIN / "fer-probe", "cv", planted_store, "--test-clips", "eahc", *common, "--out",
                              tmp_path / "b"), "test_clips", "eahc")
    assert_one_line_error(run(BIN / "fer-cache", "verify", tmp_path / "nope.zarr", "--repair"), "no such store")
    empty = tmp_path / "empty.zarr"
    empty.mkdir()
    assert_one_line_error(run(BIN / "fer-probe", "cv", planted_store, "--test-store", empty, *common, "--out",
                              tmp_path / "c"), "empty.zarr")
    assert run(BIN / "fer-cache", "families").returncode == 0


def test_protocol_option_mistakes(tmp_path, protocol_stores):
    """The paper protocol's options (issue 32): a typo, a clash or a damaged clip count is one line."""
    import shutil

    import zarr
    config, train, dense = protocol_stores
    common = ["extract", "--dataset", "demo", "--encoder", "tiny", "--config", config, "--workers", "0"]
    assert_one_line_error(run(BIN / "fer-cache", *common, "--out", tmp_path / "a.zarr", "--preset", "thesis"),
                          "--preset thesis")
    assert_one_line_error(run(BIN / "fer-cache", *common, "--out", tmp_path / "b.zarr", "--test-out",
                              tmp_path / "b.zarr"), "--test-out")
    assert_one_line_error(run(BIN / "fer-probe", "cv", train, "--train-copies", "augmnted"), "train_copies")
    assert_one_line_error(run(BIN / "fer-probe", "cv", train, "--test-clips", "every"), "test_clips")
    damaged = tmp_path / "dense.zarr"
    shutil.copytree(dense, damaged)
    zarr.open_group(str(damaged), mode="r+")["videos/n_clips"][0] = 999
    assert_one_line_error(run(BIN / "fer-probe", "cv", train, "--test-store", damaged, "--folds", "2", "--out",
                              tmp_path / "r"),
                          "videos/n_clips of video row 0 is 999")
    assert run(BIN / "fer-cache", "verify", damaged).returncode != 0
