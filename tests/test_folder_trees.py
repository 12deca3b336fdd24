"""Property: whatever image-folder tree a user has, loading it trains on it or says why in one line.

hypothesis builds messy trees (names of any bytes, links into and out of the tree and round loops,
empty classes, FIFOs, hard links, stray files, odd and broken images, with or without train/ val/
test/) and checks that ``image_folder.load_splits`` either succeeds with every file under at most
one class, or raises a one-line UserError; that it never raises anything else, never hangs (a
bound, with FIFOs released after it) and never changes a file. Each run draws new trees; a failure
prints the tree and a seed to replay it with (``pytest --hypothesis-seed=N``).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import socket
import stat
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from lenet_keras.data import folder_layout, image_folder
from lenet_keras.errors import UserError
from tests.conftest import call_with_bound
from tests.test_image_folder import config_for


def _encoded(pixels, fmt: str = "PNG", mode=None) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(pixels) if mode is None else Image.fromarray(pixels).convert(mode)
    image.save(buffer, format=fmt)
    return buffer.getvalue()


_noise = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
IMAGES = {
    "rgb": _encoded(_noise),
    "jpeg": _encoded(_noise, "JPEG"),
    "1x1": _encoded(_noise[:1, :1]),
    "gray": _encoded(_noise[..., 0]),
    "alpha": _encoded(_noise, mode="RGBA"),
    "palette": _encoded(_noise, mode="P"),
    "cmyk-jpeg": _encoded(_noise, "JPEG", mode="CMYK"),
    "16-bit": _encoded(_noise[..., 0].astype(np.uint16) * 257),
    "wide": _encoded(np.zeros((1, 2000, 3), np.uint8)),
    "tall": _encoded(np.zeros((1500, 2, 3), np.uint8)),
    "truncated": _encoded(_noise)[:40],
    "empty": b"",
    "text": b"not an image\n",
}
GOOD = ("rgb", "jpeg", "gray")

ODD_NAMES = [b"cat", b"dog", b"caf\xe9", b"\xff\xfe", b"a\nb", b"tab\there", b" ", b"-rf", b"x.png",
             b"train", b"val", b"validation", b"test", b".hidden", b"$\\nope$", "\u65e5\u672c".encode()]
names = st.one_of(
    st.sampled_from(ODD_NAMES),
    st.binary(min_size=1, max_size=6).map(  # any bytes a file name may have
        lambda b: b"_" if b in (b".", b"..") else b.replace(b"/", b"_").replace(b"\0", b"_")),
)
# Mostly names a class can have, so that many trees load and decoding is exercised too.
_friendly = st.sampled_from([b"cat", b"dog", b"emu", b"yak", b"ox", b"\xc3\xa9t\xc3\xa9", b"b c"])
class_names = st.integers(0, 4).flatmap(lambda i: names if i == 0 else _friendly)
files = st.tuples(names, st.sampled_from([b".png", b".jpg", b".JPEG", b".txt", b""]),
                  st.sampled_from(sorted(IMAGES)))
EXTRAS = ("loop-top", "loop-up", "sibling", "file-link", "hard-link", "fifo", "socket", "device",
          "broken", "self-link",
          "stray-file", "stray-dir", "empty-class", "outside", "outside-loop", "split-link")


@st.composite
def trees(draw):
    """A plan: (kind, relative bytes path, argument) operations that build one tree."""
    split = draw(st.booleans())
    classes = draw(st.lists(_friendly, min_size=2, max_size=4, unique=True))
    if draw(st.integers(0, 4)) == 0:  # one class of any name, now and then
        classes = sorted(set(classes + [draw(names)]))
    plan = []
    for top in ([b"train", b"val", b"test"] if split else [b""]):
        whole = draw(st.sampled_from([True] * 5 + [False]))  # mostly every class in every split
        mine = classes if whole else draw(st.lists(st.sampled_from(classes), unique=True))
        for name in mine:
            folder = os.path.join(top, name)
            plan.append(("dir", folder, None))
            good = draw(st.integers(3, 5))  # enough to split; "empty-class" gives empty ones
            plan += [("file", os.path.join(folder, b"g%d.png" % i), GOOD[i % 3]) for i in range(good)]
            for stem, ext, content in draw(st.lists(files, max_size=3)):
                sub = draw(st.sampled_from([b"", b"", b"sub"]))
                plan.append(("file", os.path.join(folder, sub, stem + ext), content))
    for extra in draw(st.lists(st.sampled_from(EXTRAS), max_size=3)):
        plan.append(("extra", extra, (draw(st.integers(0, 7)), draw(st.integers(0, 7)),
                                      draw(class_names))))
    return plan


def _class_dirs(root: bytes):
    return sorted(os.path.relpath(p, root) for p, _, _ in os.walk(root)
                  if p != root and os.path.basename(p) not in (b"train", b"val", b"test", b"sub"))


def _extra(root: bytes, outside: bytes, kind: str, a: int, b: int, name: bytes) -> None:
    dirs = _class_dirs(root)
    here = os.path.join(root, dirs[a % len(dirs)]) if dirs else root
    there = os.path.join(root, dirs[b % len(dirs)]) if dirs else root
    images = [os.path.join(there, f) for f in sorted(os.listdir(there))
              if os.path.isfile(os.path.join(there, f))]
    if kind == "loop-top":
        os.symlink(b".", os.path.join(root, name))
    elif kind == "loop-up":
        os.symlink(b"..", os.path.join(here, name))
    elif kind == "sibling":
        os.symlink(os.path.relpath(there, here), os.path.join(here, name))
    elif kind == "file-link" and images:
        os.symlink(images[a % len(images)], os.path.join(here, name + b".png"))
    elif kind == "hard-link" and images:
        os.link(images[b % len(images)], os.path.join(here, name + b".jpg"))
    elif kind == "fifo":
        os.mkfifo(os.path.join(here, name + b".png"))
    elif kind == "socket":
        with socket.socket(socket.AF_UNIX) as sock:  # the socket file outlives the socket
            try:
                sock.bind(os.path.join(here, name + b".jpg"))
            except OSError:  # the name is taken, or the path too long for AF_UNIX (~108 bytes)
                pass
    elif kind == "device":
        os.symlink(b"/dev/zero", os.path.join(here, name + b".png"))  # endless, if it were read
    elif kind == "self-link":  # ELOOP when followed
        os.symlink(name + b".png", os.path.join(here, name + b".png"))
    elif kind == "broken":
        os.symlink(b"no-such-file.png", os.path.join(here, name + b".png"))
    elif kind == "stray-file":
        with open(os.path.join(root, name + b".txt"), "wb") as f:
            f.write(b"notes")
    elif kind == "stray-dir":
        os.makedirs(os.path.join(root, name, b"cls"))
        with open(os.path.join(root, name, b"cls", b"a.png"), "wb") as f:
            f.write(IMAGES["rgb"])
    elif kind == "empty-class":
        os.makedirs(os.path.join(here, name))
    elif kind in ("outside", "outside-loop"):
        os.makedirs(outside, exist_ok=True)
        for i in range(3):
            with open(os.path.join(outside, b"o%d.png" % i), "wb") as f:
                f.write(IMAGES[GOOD[i]])
        if kind == "outside-loop":
            os.symlink(b".", os.path.join(outside, b"loop"))
        os.symlink(outside, os.path.join(here if a % 2 else root, name))
    elif kind == "split-link":
        # In a tree with splits given the split folder is there already: the link takes its place.
        split = os.path.join(root, b"val" if a % 2 else b"test")
        if os.path.isdir(split) and not os.path.islink(split):
            shutil.rmtree(split)
        os.symlink(b"train", split)


def build(plan, base: bytes) -> bytes:
    root, outside = os.path.join(base, b"photos"), os.path.join(base, b"outside")
    os.makedirs(root)
    for kind, path, arg in plan:
        try:
            if kind == "dir":
                os.makedirs(os.path.join(root, path), exist_ok=True)
            elif kind == "file":
                os.makedirs(os.path.dirname(os.path.join(root, path)), exist_ok=True)
                with open(os.path.join(root, path), "xb") as f:
                    f.write(IMAGES[arg])
            else:
                _extra(root, outside, path, *arg)
        except (FileExistsError, IsADirectoryError, NotADirectoryError):
            pass  # two draws picked one name: the first one stays
    return root


def snapshot(base: bytes) -> dict:
    """Every entry's type, mode, size, mtime, link target and content hash (regular files only:
    a FIFO is never opened)."""
    state = {}
    for parent, dirs, names_ in os.walk(base):
        for name in dirs + names_:
            path = os.path.join(parent, name)
            info = os.lstat(path)
            entry = [info.st_mode, info.st_size, info.st_mtime_ns]
            if stat.S_ISLNK(info.st_mode):
                entry.append(os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                with open(path, "rb") as f:
                    entry.append(hashlib.sha256(f.read()).hexdigest())
            state[path] = entry
    return state


class _Messages(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def check_tree(plan) -> str:
    """Builds ``plan``, loads it and checks the property; "loaded" or the error's last words."""
    base = tempfile.mkdtemp(prefix="folder-tree-").encode()
    handler = _Messages()
    logging.getLogger("absl").addHandler(handler)
    try:
        root = build(plan, base)
        before = snapshot(base)
        config = config_for(os.fsdecode(root))
        try:
            splits = call_with_bound(lambda: image_folder.load_splits(config), os.fsdecode(base))
        except UserError as err:
            message = str(err)
            assert message and "\n" not in message and "\r" not in message, repr(message)
            message.encode("utf-8")  # printable anywhere: no undecodable name leaked into it
            outcome = "error: " + message[-60:]  # what to do: says which rule it was
        else:
            layout = folder_layout.scan(os.fsdecode(root))
            owners = {}
            for split, per_class in layout.files.items():
                for index, paths in per_class.items():
                    for path in paths:
                        info = os.stat(path)
                        owner = owners.setdefault((info.st_dev, info.st_ino), (split, index))
                        assert owner == (split, index), f"{path!r} under {owner} and {split, index}"
            assert len(splits.class_names) >= 2
            assert not any(map(folder_layout.unfit_class_name, splits.class_names))
            total = splits.train_examples + splits.val_examples + splits.test_examples
            assert 0 < total <= len(owners)
            outcome = "loaded"
        for message in handler.messages:  # a log line is one line, whatever the names
            assert "\n" not in message, repr(message)
            message.encode("utf-8")
        assert snapshot(base) == before, "loading changed the files on disk"
        return outcome
    finally:
        logging.getLogger("absl").removeHandler(handler)
        shutil.rmtree(base, ignore_errors=True)


# A deadline would flake on a shared 2-core machine and cannot stop a hang anyway (hypothesis only
# measures calls that return); call_with_bound is the bound. 20 trees take 2-8 s.
@settings(max_examples=20, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(trees())
def test_any_tree_loads_or_fails_in_one_line(plan):
    event(check_tree(plan))  # --hypothesis-show-statistics: how many trees loaded, which errors


ONE_LABEL = "a file has one label: remove the link or the copy you did not mean"
NOT_UTF8 = "a class name goes into metrics.json, the report and the exported model, one name a line)"
EXPECTED = {"file-link": ONE_LABEL, "hard-link": ONE_LABEL, "stray-dir": NOT_UTF8}


@pytest.mark.parametrize("extra", EXTRAS)
def test_each_oddity_at_least_once(extra):
    """The property's oddities, each once in a tree that is otherwise fine, on every run."""
    plan = [("file", b"%s/g%d.png" % (name, i), GOOD[i % 3]) for name in (b"a", b"b") for i in range(4)]
    plan.append(("file", b"a/caf\xe9.png", "alpha"))
    outcome = check_tree(plan + [("extra", extra, (1, 0, b"\xff"))])
    expected = EXPECTED.get(extra)
    assert outcome == ("loaded" if expected is None else "error: " + expected[-60:]), outcome


@pytest.mark.parametrize("split", [b"val", b"test"])
def test_a_split_linked_to_train_is_not_followed_and_named_missing(tmp_path, split):
    """``val -> train`` in a tree with splits given (docs/data.md, rule 1 and the split rows): the
    link leads back into the tree, so it is not followed, and the split it stood for is missing:
    one error that names the link, so "no val/" does not contradict what ``ls`` shows."""
    plan = [("file", b"%s/%s/g%d.png" % (top, name, i), GOOD[i % 3])
            for top in (b"train", b"val", b"test") for name in (b"a", b"b") for i in range(3)]
    root = build(plan + [("extra", "split-link", (1 if split == b"val" else 0, 0, b"x"))],
                 os.fsencode(tmp_path))
    link = os.path.join(root, split)
    assert os.path.islink(link) and os.readlink(link) == b"train"
    assert sorted(os.listdir(root)) == [b"test", b"train", b"val"]
    with pytest.raises(UserError) as caught:
        image_folder.load_splits(config_for(os.fsdecode(root)))
    name = os.fsdecode(split)
    assert (f"but no {name}/ ({name}/: a folder link back into the tree, not followed: a split "
            "needs its own images): give all of train/, val/ and test/") in str(caught.value)
