"""Shipped weights are found by one documented order: an explicit path, $DRIVESTACK_WEIGHTS, the checkout's
weights/, the user's cache; when none has them, the error lists every place it looked."""

from __future__ import annotations

import pytest

from core import weights
from core.weights import WeightsNotFound, find_weights


@pytest.fixture
def places(tmp_path, monkeypatch):
    folders = {name: tmp_path / name for name in ("variable", "checkout", "cache")}
    monkeypatch.setenv(weights.WEIGHTS_VARIABLE, str(folders["variable"]))
    monkeypatch.setattr(weights, "CHECKOUT_WEIGHTS", folders["checkout"])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folders["cache"] = tmp_path / "xdg" / "drivestack" / "weights"
    return folders


def _put(folder, name="stack.safetensors"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(b"w")
    return folder / name


def test_the_first_place_holding_the_file_wins_in_the_documented_order(places):
    cache = _put(places["cache"])
    assert find_weights("stack.safetensors") == cache
    checkout = _put(places["checkout"])
    assert find_weights("stack.safetensors") == checkout
    variable = _put(places["variable"])
    assert find_weights("stack.safetensors") == variable
    explicit = _put(places["cache"], "mine.safetensors")
    assert find_weights("stack.safetensors", explicit) == explicit


def test_not_found_lists_every_place_and_how_to_reproduce(places, monkeypatch):
    monkeypatch.delenv(weights.WEIGHTS_VARIABLE)
    with pytest.raises(WeightsNotFound) as caught:
        find_weights("stack.safetensors", reproduce="make stack-weights")
    message = str(caught.value)
    assert "$DRIVESTACK_WEIGHTS (not set)" in message
    assert str(places["checkout"]) in message and str(places["cache"]) in message
    assert "make stack-weights" in message


def test_an_explicit_path_that_does_not_exist_is_named_not_searched_around(places, tmp_path):
    _put(places["checkout"])
    with pytest.raises(FileNotFoundError, match=r"typo\.safetensors: no such file"):
        find_weights("stack.safetensors", tmp_path / "typo.safetensors")
