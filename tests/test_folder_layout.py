"""lenet_keras.data.folder_layout: the rules of a messy image folder (links, splits, odd names, FIFOs)."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile

import numpy as np
import pytest

from lenet_keras.data import folder_layout, image_folder
from lenet_keras.errors import UserError
from tests.conftest import call_with_bound
from tests.test_image_folder import CLASSES, config_for, write_class_tree, write_image

NOT_UTF8 = b"caf\xe9"  # Latin-1 "cafe": what an archive from another system gives


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def count(arrays) -> int:
    return sum(len(labels) for _, labels in arrays.values())


def one_line_error(root, *needles) -> str:
    with pytest.raises(UserError) as err:
        image_folder.load_splits(config_for(root))
    message = str(err.value)
    assert "\n" not in message and all(n in message for n in needles), message
    return message


# Links.

def test_a_link_back_up_the_tree_is_not_a_class(tmp_path, caplog):
    root = write_class_tree(str(tmp_path / "photos"), per_class=5)
    os.symlink(".", os.path.join(root, "zz"))
    with caplog.at_level(logging.WARNING):
        arrays, names = image_folder.load_arrays(config_for(root))
    assert names == list(CLASSES) and count(arrays) == 15
    assert any("zz (a folder link back into the tree" in w for w in warnings_of(caplog))


def test_a_link_to_another_class_inside_a_class_is_not_followed(tmp_path, caplog):
    root = write_class_tree(str(tmp_path / "photos"), per_class=5)
    os.symlink("../dog", os.path.join(root, "cat", "more"))
    os.symlink("..", os.path.join(root, "emu", "up"))
    with caplog.at_level(logging.WARNING):
        arrays, _ = image_folder.load_arrays(config_for(root))
    assert count(arrays) == 15
    warnings = warnings_of(caplog)
    assert any("cat/more (a folder link back into the tree" in w for w in warnings), warnings
    assert any("emu/up (a folder link back into the tree" in w for w in warnings), warnings


def test_a_folder_link_out_of_the_tree_is_followed_but_not_round_a_loop(tmp_path, caplog):
    root = write_class_tree(str(tmp_path / "photos"), per_class=5)
    outside = str(tmp_path / "more_cats")
    for i in range(3):
        write_image(os.path.join(outside, f"{i}.png"), np.full((8, 8, 3), i, np.uint8))
    os.symlink(".", os.path.join(outside, "again"))  # a loop outside the tree
    os.symlink(outside, os.path.join(root, "cat", "more"))
    with caplog.at_level(logging.WARNING):
        layout = folder_layout.scan(root)
    assert len(layout.files["all"][0]) == 5 + 3
    assert any("more/again (a folder link that loops" in w for w in layout.skipped), layout.skipped


def test_one_file_under_two_classes_is_an_error_naming_both(tmp_path):
    root = write_class_tree(str(tmp_path / "photos"), per_class=5)
    os.symlink("../dog/001.png", os.path.join(root, "cat", "dup.png"))
    one_line_error(root, "under both cat/ and dog/", "dup.png")


def test_a_hard_link_across_classes_is_the_same_error(tmp_path):
    root = write_class_tree(str(tmp_path / "photos"), per_class=5)
    os.link(os.path.join(root, "emu", "001.png"), os.path.join(root, "dog", "zz.png"))
    one_line_error(root, "under both dog/ and emu/")


def test_one_file_in_two_splits_is_the_same_error(tmp_path):
    root = str(tmp_path / "given")
    for split in ("train", "val", "test"):
        write_class_tree(os.path.join(root, split), per_class=2)
    os.symlink(os.path.join(root, "train", "cat", "000.jpg"), os.path.join(root, "test", "cat", "x.jpg"))
    one_line_error(root, "under both train/cat/ and test/cat/", "test/cat/x.jpg")


@pytest.mark.parametrize("target, link, warning", [
    ("001.png", ("cat", "zz.png"), "cat/zz.png (the same file as"),  # counts once
    ("gone.png", ("dog", "link.png"), "link.png (a broken link"),  # skipped
])
def test_a_link_to_a_listed_or_to_no_file_is_not_an_extra_image(tmp_path, caplog, target, link,
                                                                 warning):
    root = write_class_tree(str(tmp_path / "photos"), per_class=5)
    os.symlink(target, os.path.join(root, *link))
    with caplog.at_level(logging.WARNING):
        arrays, _ = image_folder.load_arrays(config_for(root))
    assert count(arrays) == 15
    assert any(warning in w for w in warnings_of(caplog))


def test_a_tree_given_through_a_link_keeps_its_rules(tmp_path, caplog):
    root = write_class_tree(str(tmp_path / "photos"), per_class=5)
    os.symlink(".", os.path.join(root, "zz"))
    os.symlink(root, str(tmp_path / "via"))
    layout = folder_layout.scan(str(tmp_path / "via"))
    assert layout.class_names == list(CLASSES)


def test_a_very_deep_class_folder_is_walked_without_recursion():
    # Not in tmp_path: pytest removes old ones with shutil.rmtree, which recurses and would fail
    # on this tree if a killed run left it there.
    root = write_class_tree(os.path.join(tempfile.mkdtemp(prefix="deep-"), "photos"), per_class=5)
    folders = [os.path.join(root, "cat")]
    for _ in range(1100):  # deeper than Python's recursion limit (os.makedirs recurses too)
        folders.append(os.path.join(folders[-1], "d"))
        os.mkdir(folders[-1])
    image = write_image(os.path.join(folders[-1], "x.png"), np.zeros((4, 4, 3), np.uint8))
    try:
        assert len(folder_layout.scan(root).files["all"][0]) == 6
    finally:
        os.remove(image)
        for folder in reversed(folders[1:]):
            os.rmdir(folder)
        shutil.rmtree(os.path.dirname(root))


# train/ val/ test/.

def _splits(root, **per_split_classes):
    for split in ("train", "val", "test"):
        for name in per_split_classes.get(split, CLASSES):
            write_image(os.path.join(root, split, name, "a.png"), np.zeros((9, 9, 3), np.uint8))
    return root


def test_every_class_in_every_split_or_one_error_naming_each_gap(tmp_path):
    root = _splits(str(tmp_path / "given"), val=("cat",), test=("cat", "dog"))
    one_line_error(root, "val/ lacks 'dog', 'emu'; test/ lacks 'emu'")


def test_a_folder_beside_the_splits_is_an_error_naming_it(tmp_path):
    root = _splits(str(tmp_path / "given"))
    write_image(os.path.join(root, "extra", "cat", "a.png"), np.zeros((9, 9, 3), np.uint8))
    one_line_error(root, "also 'extra'", "move or remove")


def test_a_file_beside_the_splits_is_named_in_a_warning(tmp_path, caplog):
    root = _splits(str(tmp_path / "given"))
    with open(os.path.join(root, "README.txt"), "w") as f:
        f.write("where these came from")
    with caplog.at_level(logging.WARNING):
        splits = image_folder.load_splits(config_for(root))
    assert splits.train_examples == 3
    assert any("README.txt (a file outside any class folder)" in w for w in warnings_of(caplog))


def test_an_image_beside_the_class_folders_is_named_in_a_warning(tmp_path, caplog):
    root = write_class_tree(str(tmp_path / "photos"), per_class=5)
    write_image(os.path.join(root, "stray.png"), np.zeros((9, 9, 3), np.uint8))
    with caplog.at_level(logging.WARNING):
        arrays, _ = image_folder.load_arrays(config_for(root))
    assert count(arrays) == 15
    assert any("stray.png (a file outside any class folder)" in w for w in warnings_of(caplog))


def test_val_and_validation_both_is_an_error(tmp_path):
    root = _splits(str(tmp_path / "given"))
    os.rename(os.path.join(root, "test"), os.path.join(root, "validation"))
    _splits(root, train=(), val=())
    one_line_error(root, "both val/ and validation/")


def test_split_folders_without_train_are_not_taken_for_classes(tmp_path):
    root = _splits(str(tmp_path / "given"))
    os.rename(os.path.join(root, "train"), os.path.join(root, "training"))
    one_line_error(root, "but no train/")


# Names that are not UTF-8, or not printable.

def test_a_file_name_that_is_not_utf8_is_read_like_any_other(tmp_path, caplog):
    root = write_class_tree(str(tmp_path / "photos"), per_class=5)
    odd = os.path.join(os.fsencode(root), b"dog", NOT_UTF8 + b".png")
    write_image(os.fsdecode(odd), np.zeros((40, 30, 3), np.uint8))
    os.makedirs(os.path.join(os.fsencode(root), b"emu", NOT_UTF8))
    write_image(os.fsdecode(os.path.join(os.fsencode(root), b"emu", NOT_UTF8, b"x.png")),
                np.zeros((9, 9, 3), np.uint8))
    with open(os.path.join(os.fsencode(root), b"cat", b"\xff.png"), "wb") as f:
        f.write(b"not a png")
    with caplog.at_level(logging.WARNING):
        arrays, _ = image_folder.load_arrays(config_for(root))
    assert count(arrays) == 17
    assert any("cat/\\xff.png" in w and "skipping unreadable image" in w
               for w in warnings_of(caplog)), warnings_of(caplog)


def test_a_class_folder_name_that_is_not_utf8_is_refused_naming_it(tmp_path):
    root = write_class_tree(str(tmp_path / "photos"), per_class=5)
    os.rename(os.path.join(root, "emu"), os.fsdecode(os.path.join(os.fsencode(root), NOT_UTF8)))
    one_line_error(root, "caf\\xe9 has a name that is not UTF-8")


@pytest.mark.parametrize("odd", ["\n", "\r", "\t", "\x0b", "\x0c", "\x1c", "\x1e", "\x85", "\x7f",
                                 "\u2028", "\u2029"])
def test_a_class_name_with_a_control_or_line_break_character_is_refused_naming_it(tmp_path, odd):
    """labels.txt holds one name a line, and Python's splitlines() breaks lines at each of these."""
    root = write_class_tree(str(tmp_path / "photos"), per_class=5)
    write_image(os.path.join(root, f"yak{odd}ox", "a.png"), np.zeros((9, 9, 3), np.uint8))
    escaped = odd.encode("unicode_escape").decode()
    one_line_error(root, f"yak{escaped}ox has a control or line-break character in its name "
                   f"({escaped}): rename it")


def test_a_class_name_with_spaces_and_letters_of_any_script_loads(tmp_path):
    root = write_class_tree(str(tmp_path / "photos"), per_class=5)
    os.rename(os.path.join(root, "emu"), os.path.join(root, "sea \u00e9l\u00e9phant \u65e5"))
    assert "sea \u00e9l\u00e9phant \u65e5" in folder_layout.scan(root).class_names


# Files that are not regular files.

def test_a_fifo_named_like_an_image_is_skipped_not_opened(tmp_path, caplog):
    root = write_class_tree(str(tmp_path / "photos"), per_class=5)
    os.mkfifo(os.path.join(root, "cat", "x.png"))
    with caplog.at_level(logging.WARNING):
        arrays, _ = call_with_bound(lambda: image_folder.load_arrays(config_for(root)), root, 30)
    assert count(arrays) == 15
    assert any("cat/x.png (a FIFO, not a regular file)" in w for w in warnings_of(caplog))


def test_sockets_and_devices_are_skipped_with_a_warning(tmp_path, caplog):
    root = write_class_tree(str(tmp_path / "p"), per_class=5)
    os.symlink("/dev/null", os.path.join(root, "dog", "null.png"))
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(os.path.join(root, "emu", "s.jpg"))  # a short path: AF_UNIX allows ~100 bytes
        with caplog.at_level(logging.WARNING):
            arrays, _ = image_folder.load_arrays(config_for(root))
    finally:
        sock.close()
    assert count(arrays) == 15
    warnings = warnings_of(caplog)
    assert any("dog/null.png (a device, not a regular file)" in w for w in warnings), warnings
    assert any("emu/s.jpg (a socket, not a regular file)" in w for w in warnings), warnings


# Progress.

def test_decoding_many_images_logs_a_count_where_stdout_is_not_a_terminal(
        tmp_path, caplog, monkeypatch):
    root = write_class_tree(str(tmp_path / "photos"), per_class=5)
    monkeypatch.setattr(image_folder, "PROGRESS_FROM", 10)
    monkeypatch.setattr(image_folder, "PROGRESS_BATCH", 4)
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    # absl's logger level is global: a test that parsed flags, or a library, may have raised it.
    with caplog.at_level(logging.INFO), caplog.at_level(logging.INFO, logger="absl"):
        image_folder.load_arrays(config_for(root))
    lines = [r.getMessage() for r in caplog.records]
    assert "decoding 15 images" in lines and "decoded 15 of 15 images" in lines, lines


def test_decoding_many_images_shows_a_bar_on_a_terminal(tmp_path, capsys, monkeypatch):
    root = write_class_tree(str(tmp_path / "photos"), per_class=5)
    monkeypatch.setattr(image_folder, "PROGRESS_FROM", 10)
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    image_folder.load_arrays(config_for(root))
    out = capsys.readouterr().out
    assert out.count("15/15") == 1 and "image" in out, out


def test_few_images_show_no_progress(tmp_path, caplog, capsys):
    root = write_class_tree(str(tmp_path / "photos"), per_class=5)
    with caplog.at_level(logging.INFO):
        image_folder.load_arrays(config_for(root))
    assert not any("decod" in r.getMessage() for r in caplog.records)
    assert "15/15" not in capsys.readouterr().out
