import pytest

from fer_cache.config import DatasetConfig
from fer_cache.inputs.datasets import RAVDESS_LABELS, crema_d, ravdess, scan_dataset
from fer_cache.labels import CANONICAL_LABELS


def touch(root, rel, content=b"x"):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def test_ravdess_names_parse_to_canonical_labels_and_subjects():
    name = ravdess.parse_name("01-01-08-02-01-02-24")
    assert (name.modality, name.emotion, name.actor) == (1, 8, 24)
    assert ravdess.LABEL_NAMES == RAVDESS_LABELS == CANONICAL_LABELS[:8]


@pytest.mark.parametrize("stem,reason", [
    ("01-01-09-01-01-01-01", "emotion code 09"), ("01-01-01-01-01-01-25", "actor code 25"),
    ("01-01-01-01-01-01", "seven two-digit fields"), ("1-1-1-1-1-1-1", "seven two-digit fields"),
    ("04-01-01-01-01-01-01", "modality code 04"), ("01-03-01-01-01-01-01", "vocal channel code 03"),
    ("01-01-01-02-01-01-01", "neutral .emotion 01. has no strong intensity"),
    ("01-02-07-01-01-01-01", "song .vocal channel 02. has no disgust"),
])
def test_ravdess_invalid_names(stem, reason):
    with pytest.raises(ValueError, match=reason):
        ravdess.parse_name(stem)


def test_ravdess_scan_filters_errors_and_order(tmp_path):
    for rel in ["Actor_02/02-01-03-01-01-01-02.mp4", "Actor_01/01-01-05-02-02-02-01.mp4",
                "Actor_01/01-02-05-02-02-02-01.mp4", "Actor_01/03-01-05-02-02-02-01.mp4",
                "Actor_01/bad-name.mp4", "Actor_01/README.txt", "Actor_02/01-01-03-01-01-01-05.mp4"]:
        touch(tmp_path, rel)
    (tmp_path / "Actor_01" / "01-01-01-01-01-01-01.mp4").mkdir()
    result = scan_dataset(DatasetConfig(name="r", adapter="ravdess", root=tmp_path))
    assert [v.id for v in result.videos] == ["01-01-05-02-02-02-01", "02-01-03-01-01-01-02"]
    assert [(v.label_name, v.subject) for v in result.videos] == [("angry", "1"), ("happy", "2")]
    assert result.skipped == 2  # a song video and an audio-only one, excluded by the default filters
    reasons = dict(result.errors)
    assert "seven two-digit fields" in reasons["Actor_01/bad-name.mp4"]
    assert "directory" in reasons["Actor_01/01-01-01-01-01-01-01.mp4"]
    assert "actor 05 but the file is in the folder of actor 02" in reasons["Actor_02/01-01-03-01-01-01-05.mp4"]
    songs = scan_dataset(DatasetConfig(name="r", adapter="ravdess", root=tmp_path, vocal_channel=("song",)))
    assert [v.id for v in songs.videos] == ["01-02-05-02-02-02-01"]


def test_crema_d_names():
    assert crema_d.parse_name("1091_WSI_SAD_LO") == ("1091", "sad")
    assert crema_d.LABEL_NAMES == ("neutral", "happy", "sad", "angry", "fearful", "disgust")
    for stem, reason in [("1000_DFA_ANG_XX", "actor"), ("1001_XXX_ANG_XX", "sentence"),
                         ("1001_DFA_JOY_XX", "emotion"), ("1001_DFA_ANG_ZZ", "level"), ("1001-DFA-ANG-XX", "four")]:
        with pytest.raises(ValueError, match=reason):
            crema_d.parse_name(stem)


def test_crema_d_scan_of_the_real_clips(tmp_path):
    from tests.helpers import CREMA_D
    result = scan_dataset(DatasetConfig(name="c", adapter="crema_d", root=CREMA_D))
    assert [v.label_name for v in result.videos] == ["angry", "disgust", "fearful", "happy", "neutral", "sad"]
    assert {v.subject for v in result.videos} == {"1001"}
    assert not result.errors


def test_manifest_labels_land_on_the_canonical_vocabulary(tmp_path):
    for name in "abcdef":
        touch(tmp_path, f"clips/{name}.mp4")
    (tmp_path / "m.csv").write_text("path,label,subject\nclips/a.mp4,happy,7\nclips/b.mp4,Angry,8\n"
                                    "clips/c.mp4,nuetral,9\nclips/d.mp4,FEAR,9\nclips/e.mp4,joyful,9\n"
                                    "clips/missing.mp4,sad,9\nclips/a.mp4,sad,7\nclips/f.mp4,Surprise,3\n")
    result = scan_dataset(DatasetConfig(name="m", adapter="manifest", root=tmp_path, manifest=tmp_path / "m.csv"))
    assert result.label_names == CANONICAL_LABELS  # typos never become classes
    assert [(v.id, v.label_name, v.subject) for v in result.videos] == [
        ("a", "happy", "7"), ("b", "angry", "8"), ("d", "fearful", "9"), ("f", "surprised", "3")]
    assert [v.label for v in result.videos] == [CANONICAL_LABELS.index(v.label_name) for v in result.videos]
    reasons = dict(result.errors)
    assert "label 'nuetral' is not a known class; did you mean neutral?" in reasons["clips/c.mp4"]
    assert "label 'joyful' is not a known class" in reasons["clips/e.mp4"]
    assert "not found" in reasons["clips/missing.mp4"]
    assert reasons["clips/a.mp4"] == "listed with two labels in m.csv: happy (line 2) and sad (line 8); happy is " \
        "kept: delete the wrong row"  # one file twice is not a duplicate id to rename (issue 23)
    declared = scan_dataset(DatasetConfig(name="m", adapter="manifest", root=tmp_path, manifest=tmp_path / "m.csv",
                                          labels=("sad", "Happy", "nuetral")))
    assert declared.label_names == ("sad", "Happy", "nuetral")  # a declared vocabulary is the whole vocabulary
    assert [(v.id, v.label_name) for v in declared.videos] == [("a", "Happy"), ("c", "nuetral")]
    assert "label 'Angry' is not a known class; use one of: sad, Happy, nuetral" in dict(declared.errors)["clips/b.mp4"]
