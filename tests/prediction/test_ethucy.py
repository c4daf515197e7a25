"""ETH/UCY adapter: windows cut from small files written here, bad files, fold layout."""

from __future__ import annotations

import random

import pytest
import torch

from prediction.ethucy import SCENES, TrackFormatError, fold_files, load_split, scene_windows

FIRST = 780  # frame id of grid step 0


def pos(agent: int, step: int) -> tuple[float, float]:
    """A distinct, non-round world position for each (agent, grid step)."""
    return (agent + 0.25 * step + 0.013, -agent + 0.5 * step - 7.1)


def rows_for(spans: dict[int, range]) -> list[tuple[int, int, float, float]]:
    return [(FIRST + 10 * s, a, *pos(a, s)) for a, steps in spans.items() for s in steps]


def write(path, rows, shuffle=True):
    """Tab-separated rows in a random order (the loader must not rely on file order)."""
    rows = list(rows)
    if shuffle:
        random.Random(0).shuffle(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{f}\t{a}.0\t{x!r}\t{y!r}\n" for f, a, x, y in rows))
    return path


# Grid steps 0..8. Agent 7 walks through steps 0..6, 2 through 2..5, 5 through 4..8.
SPANS = {7: range(0, 7), 2: range(2, 6), 5: range(4, 9)}


@pytest.fixture
def three_agents(tmp_path):
    return write(tmp_path / "three.txt", rows_for(SPANS))


def test_one_window_per_current_frame_that_fits(three_agents):
    # history 3 + horizon 2: current steps 2..6 fit inside grid steps 0..8.
    w = scene_windows(three_agents, history=3, horizon=2)
    w.validate()
    assert w.xy.shape == (5, 3, 5, 2) and w.xy.dtype == torch.float32
    assert w.history == 3 and w.horizon == 2 and w.dt == pytest.approx(0.4)
    # Slots hold the agents present now, in agent-id order: {2, 7}, {2, 7}, {2, 5, 7}, {2, 5, 7}, {5, 7}.
    expected_valid = [[1, 1, 0], [1, 1, 0], [1, 1, 1], [1, 1, 1], [1, 1, 0]]
    assert w.valid.tolist() == [[bool(v) for v in row] for row in expected_valid]


def test_slots_hold_each_agents_positions_and_masks(three_agents):
    w = scene_windows(three_agents, history=3, horizon=2)
    window = 2  # current grid step 4, window grid steps 2..6
    for slot, agent in enumerate([2, 5, 7]):
        for j, step in enumerate(range(2, 7)):
            observed = step in SPANS[agent]
            assert bool(w.present[window, slot, j]) == observed
            want = torch.tensor(pos(agent, step) if observed else (0.0, 0.0), dtype=torch.float32)
            assert torch.equal(w.xy[window, slot, j], want)  # exact: the file's value as float32
    assert w.scored()[window].tolist() == [False, False, True]  # only agent 7 spans all 5 steps


def test_pedestrian_class_and_size_for_agents(three_agents):
    w = scene_windows(three_agents, history=3, horizon=2)
    assert torch.equal(w.class_probs[w.valid], torch.tensor([[0.0, 1.0, 0.0]]).expand(int(w.valid.sum()), 3))
    assert torch.all(w.size[w.valid] == 0.5)


def test_stride_and_max_agents(three_agents):
    assert scene_windows(three_agents, history=3, horizon=2, stride=2).valid.shape[0] == 3  # steps 2, 4, 6
    assert scene_windows(three_agents, history=3, horizon=2, max_agents=3).valid.shape == (5, 3)
    with pytest.raises(ValueError, match=r"three\.txt: window at frame 820 has 3 agents.*max_agents=2"):
        scene_windows(three_agents, history=3, horizon=2, max_agents=2)


def test_frames_without_anyone_give_no_window(tmp_path):
    path = write(tmp_path / "gap.txt", rows_for({1: range(0, 4), 2: range(6, 10)}))
    w = scene_windows(path, history=2, horizon=1)
    assert w.valid.shape == (6, 1)  # current steps 1, 2, 3, 6, 7, 8; steps 4, 5 are empty
    # The window at step 6 sees agent 2 appear: absent one step ago.
    assert w.present[3, 0].tolist() == [False, True, True]
    assert torch.equal(w.xy[3, 0, 1], torch.tensor(pos(2, 6), dtype=torch.float32))


def test_default_protocol_windows(tmp_path):
    path = write(tmp_path / "long.txt", rows_for({4: range(0, 25)}))
    w = scene_windows(path)
    assert w.xy.shape == (25 - 20 + 1, 1, 20, 2)
    assert w.scored().all()
    short = scene_windows(write(tmp_path / "short.txt", rows_for({4: range(0, 19)})))
    assert short.xy.shape == (0, 0, 20, 2)


def test_non_contiguous_track_names_file_agent_and_frames(tmp_path):
    rows = [(780, 4, 0.0, 0.0), (790, 4, 1.0, 0.0), (810, 4, 2.0, 0.0), (780, 1, 5.0, 5.0)]
    path = write(tmp_path / "holes.txt", rows, shuffle=False)
    with pytest.raises(TrackFormatError, match=r"holes\.txt: agent 4 jumps from frame 790 to frame 810"):
        scene_windows(path)


def test_off_grid_frame_names_file_agent_and_frame(tmp_path):
    rows = [(780, 1, 0.0, 0.0), (790, 1, 1.0, 0.0), (795, 3, 2.0, 0.0)]
    path = write(tmp_path / "offgrid.txt", rows, shuffle=False)
    with pytest.raises(TrackFormatError, match=r"offgrid\.txt: agent 3 has frame id 795.*first frame 780"):
        scene_windows(path)


@pytest.mark.parametrize(
    "bad_line,message",
    [
        ("800\t3.0\t1.0", "expected 4 columns"),
        ("800\t3.0\t1.0\t2.0\t9", "expected 4 columns"),
        ("800\tthree\t1.0\t2.0", r"agent id \(column 2\) is not a number"),
        ("800\t3.0\t1.0\tx", r"y \(column 4\) is not a number"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path, bad_line, message):
    path = write(tmp_path / "bad.txt", rows_for({1: range(0, 3)}), shuffle=False)
    path.write_text(path.read_text() + bad_line + "\n")  # line 4
    with pytest.raises(TrackFormatError, match=message) as err:
        scene_windows(path)
    assert f"{path}:4:" in str(err.value)


def test_window_arguments_are_checked(three_agents):
    with pytest.raises(ValueError, match="history >= 2"):
        scene_windows(three_agents, history=1)
    with pytest.raises(ValueError, match="max_agents"):
        scene_windows(three_agents, max_agents=0)


# -- folds ---------------------------------------------------------------
@pytest.fixture
def root(tmp_path):
    write(tmp_path / "zara1" / "test" / "b_wide.txt", rows_for(SPANS))
    write(tmp_path / "zara1" / "test" / "a_one.txt", rows_for({9: range(0, 6)}))
    (tmp_path / "zara1" / "test" / "notes.md").write_text("not a track file")
    (tmp_path / "eth" / "val").mkdir(parents=True)
    return tmp_path


def test_fold_files_lists_text_files_by_name(root):
    assert [p.name for p in fold_files(root, "zara1", "test")] == ["a_one.txt", "b_wide.txt"]
    assert SCENES == ("eth", "hotel", "univ", "zara1", "zara2")


@pytest.mark.parametrize(
    "scene,split,error,message",
    [
        ("zara3", "test", ValueError, "scene must be one of"),
        ("zara1", "dev", ValueError, "split must be one of"),
        ("hotel", "test", FileNotFoundError, r"hotel[/\\]test"),
        ("eth", "val", FileNotFoundError, r"no \.txt files in .*eth[/\\]val"),
    ],
)
def test_fold_files_errors(root, scene, split, error, message):
    with pytest.raises(error, match=message):
        fold_files(root, scene, split)


def test_fold_files_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        fold_files(tmp_path / "nowhere", "eth", "test")


def test_load_split_concatenates_files_and_keeps_sources(root):
    split = load_split(root, "zara1", "test", history=3, horizon=2)
    split.windows.validate()
    # a_one: steps 0..5 -> current steps 2, 3 (2 windows, 1 slot); b_wide: 5 windows of 3 slots.
    assert split.files == ("a_one.txt", "b_wide.txt")
    assert split.window_counts() == {"a_one.txt": 2, "b_wide.txt": 5}
    assert split.file_index.tolist() == [0, 0, 1, 1, 1, 1, 1]
    assert split.current_frame.tolist() == [800, 810, 800, 810, 820, 830, 840]
    assert split.windows.xy.shape == (7, 3, 5, 2)
    assert split.windows.valid[:2].tolist() == [[True, False, False]] * 2  # padded to the widest file
    alone = scene_windows(root / "zara1" / "test" / "b_wide.txt", history=3, horizon=2)
    assert torch.equal(split.windows.xy[2:], alone.xy)


def test_load_split_without_any_window_is_an_error(tmp_path):
    write(tmp_path / "eth" / "test" / "tiny.txt", rows_for({1: range(0, 3)}))
    with pytest.raises(ValueError, match="no window of 20 steps in any file of eth/test"):
        load_split(tmp_path, "eth", "test")
