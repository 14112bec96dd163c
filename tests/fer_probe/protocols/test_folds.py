import json

import numpy as np
import pytest

from fer_probe.errors import FoldsError
from fer_probe.protocols.folds import inner_split, load_folds, make_folds, save_folds


def data():
    subjects = [str(s) for s in range(1, 11) for _ in range(6)]
    labels = np.tile(np.arange(6), 10)
    return subjects, labels


def test_folds_are_subject_disjoint_complete_and_seeded():
    subjects, labels = data()
    folds = make_folds(subjects, labels, 5, seed=3)
    assert len(folds) == 5
    tested = [s for f in folds for s in f.test_subjects]
    assert sorted(tested, key=int) == [str(s) for s in range(1, 11)]
    for fold in folds:
        assert not set(fold.test_subjects) & set(fold.train_subjects)
        assert set(fold.test_subjects) | set(fold.train_subjects) == set(subjects)
    assert make_folds(subjects, labels, 5, seed=3) == folds
    assert make_folds(subjects, labels, 5, seed=4) != folds


def test_folds_file_round_trip_and_errors(tmp_path):
    subjects, labels = data()
    folds = make_folds(subjects, labels, 5, seed=0)
    save_folds(folds, tmp_path / "folds.json")
    assert load_folds(tmp_path / "folds.json", subjects) == folds
    leaky = json.loads((tmp_path / "folds.json").read_text())
    leaky["folds"][0]["train_subjects"].append(leaky["folds"][0]["test_subjects"][0])
    (tmp_path / "leaky.json").write_text(json.dumps(leaky))
    with pytest.raises(FoldsError, match="both train and test"):
        load_folds(tmp_path / "leaky.json", subjects)
    (tmp_path / "bad.json").write_text("{\"folds\": 3}")
    with pytest.raises(FoldsError, match="expected"):
        load_folds(tmp_path / "bad.json", subjects)
    with pytest.raises(FoldsError, match="more than the 10 subjects"):
        make_folds(subjects, labels, 11, seed=0)


def test_inner_split_is_subject_disjoint():
    subjects, labels = data()
    train, val = inner_split(subjects, labels, np.arange(48), seed=0)
    assert not {subjects[i] for i in train} & {subjects[i] for i in val}
    assert len(train) + len(val) == 48
