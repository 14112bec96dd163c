"""The canonical vocabulary: aliases and case land on one class, unknown names get the closest known one."""

import pytest

from fer_cache.labels import CANONICAL_LABELS, canonical_label, canonical_order, unknown_label_message


@pytest.mark.parametrize("name,canonical", [("Fear", "fearful"), (" ANGER ", "angry"), ("happiness", "happy"),
                                            ("surprise", "surprised"), ("neutral", "neutral"), ("joyful", None)])
def test_aliases_and_case_land_on_one_class(name, canonical):
    assert canonical_label(name) == canonical


def test_a_declared_vocabulary_takes_no_aliases():
    vocabulary = ("Fear", "calm")
    assert canonical_label("fear", vocabulary) == "Fear" and canonical_label("fearful", vocabulary) is None


def test_unknown_names_get_the_closest_known_one_or_the_vocabulary():
    assert unknown_label_message("nuetral") == "label 'nuetral' is not a known class; did you mean neutral?"
    assert unknown_label_message("xyz", ("a", "b")) == "label 'xyz' is not a known class; use one of: a, b"


def test_canonical_order_puts_unknown_names_last_in_their_order():
    assert canonical_order(["sad", "zeta", "neutral", "alpha"]) == ["neutral", "sad", "zeta", "alpha"]
    assert canonical_order(list(reversed(CANONICAL_LABELS))) == list(CANONICAL_LABELS)
