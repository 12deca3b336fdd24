"""The rules of an image folder: which files are whose images, decided before anything is decoded.

    photos/cat/001.jpg  photos/dog/a.png ...                        -> classes, split automatically
    photos/train/cat/...  photos/val/cat/...  photos/test/cat/...   -> splits given

The rules (docs/data.md lists them with what each breaks):

- A folder link is followed only if it leads out of the tree, and never into a folder it is already
  inside: ``photos/zz -> .`` or ``cat/more -> ../dog`` would give a class the images of others, and
  a loop would never end. Such a link is skipped with a warning.
- One file, one label: a file reached under two classes (through a link, or a hard link; files are
  told apart by device and inode, i.e. their real identity) is an error naming both. Under one class
  it is counted once. With splits given, one file in two splits is the same error: it would be
  tested on what it trained on.
- With ``train/ val/ test/``: every class has a folder in every split, else one error names every
  missing one. Any other folder beside them is an error (its images were meant for something, and
  we cannot tell what); a file there is named in a warning (a README or a labels.csv is common).
- A class folder's name must be UTF-8 text without control or line-break characters: it becomes the
  class name in metrics.json, the report, the exported model and LiteRT's labels.txt (one name a
  line). Files and folders inside a class may have any bytes for names: they are only read, and
  messages show their bytes escaped (``\\xe9``).
- Only regular files (or links to them) are opened; a FIFO, socket or device is skipped with a
  warning, as is a broken link. Hidden names (``.x``) are skipped silently.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import unicodedata
from typing import Dict, List, Optional, Tuple

from lenet_keras.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
# The sub-folders that mean "splits given"; the first name of each is the one we ask for.
SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "validation"), "test": ("test",)}


@dataclasses.dataclass
class Layout:
    """Where each class's image files are, per split; ``split_given`` says which layout it was."""

    class_names: List[str]
    split_given: bool
    # split ("all" when not given, else train/val/test) -> class index -> sorted image paths
    files: Dict[str, Dict[int, List[str]]]
    ignored: List[str]  # files in class folders that are not PNG/JPEG by their name
    skipped: List[str]  # "<path> (<why>)", shown: links not followed, non-regular files, ...


def shown(path: str) -> str:
    """``path`` fit for a one-line message: undecodable bytes as ``\\xNN``, controls escaped."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")  # a byte that was not UTF-8 is a lone surrogate here: it fails
    except UnicodeEncodeError:
        return False
    return True


def unfit_class_name(name: str) -> Optional[str]:
    """Why ``name`` cannot be a class name, or None: every output must carry it as one line of text.

    labels.txt holds one name a line, and readers split lines on more than ``\\n`` (Python's
    ``splitlines`` also on ``\\r``, ``\\x0b``, ``\\x0c``, ``\\x1c``-``\\x1e``, ``\\x85``,
    U+2028, U+2029): a name holding one would shift every later label by one.
    """
    if not is_utf8(name):
        return "a name that is not UTF-8"
    odd = sorted({c for c in name if unicodedata.category(c) in ("Cc", "Zl", "Zp")})
    if odd:
        return f"a control or line-break character in its name ({shown(''.join(odd))})"
    return None


def _contains(folder: str, path: str) -> bool:
    """Whether real path ``path`` is ``folder`` or inside it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
             (stat.S_ISBLK, "a device"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


class _Walk:
    """One walk over the tree: remembers every image's owner so no file gets two labels."""

    def __init__(self, root: str):
        self.root = os.path.realpath(root)
        self.ignored: List[str] = []
        self.skipped: List[str] = []
        self.owner: Dict[Tuple[int, int], Tuple[str, str]] = {}  # (dev, inode) -> (label, path)

    def entries(self, folder: str) -> List[Tuple[str, str, os.stat_result]]:
        """(name, path, stat following links) of ``folder``'s visible entries, sorted by name; a
        broken link left out with a warning. Nothing is opened, so a FIFO cannot block here."""
        try:
            with os.scandir(folder) as it:
                names = sorted(entry.name for entry in it if not entry.name.startswith("."))
        except OSError as exc:
            raise UserError(f"cannot read folder {shown(folder)} ({exc.strerror}): "
                            "make it readable or remove it") from None
        result = []
        for name in names:
            path = os.path.join(folder, name)
            try:
                info = os.stat(path)
            except OSError as exc:
                self.skipped.append(f"{shown(path)} (a broken link or unreadable: {exc.strerror})")
                continue
            result.append((name, path, info))
        return result

    def followed(self, path: str, chain: List[str]) -> Optional[str]:
        """Folder ``path``'s real path if it is walked, None if it is a link into the tree or round
        a loop. ``chain``: the real folders it is in, innermost last."""
        if not os.path.islink(path):
            # Known without realpath, which would lstat every component: quadratic in the depth.
            return os.path.join(chain[-1], os.path.basename(path))
        real = os.path.realpath(path)
        if _contains(self.root, real) or _contains(real, self.root):
            self.skipped.append(f"{shown(path)} (a folder link back into the tree: not followed)")
            return None
        if any(_contains(real, inside) for inside in chain):
            self.skipped.append(f"{shown(path)} (a folder link that loops: not followed)")
            return None
        return real

    def images(self, folder: str, label: str) -> List[str]:
        """Every PNG/JPEG file under class folder ``folder``: a folder's own files (sorted), then
        its sub-folders' (os.walk's order). A stack, not recursion: no depth is too deep."""
        found: List[str] = []
        stack = [(folder, [os.path.realpath(folder)])]  # a folder and the real folders it is in
        while stack:
            current, chain = stack.pop()
            subfolders = []
            for name, path, info in self.entries(current):
                if stat.S_ISDIR(info.st_mode):
                    real = self.followed(path, chain)
                    if real is not None:
                        subfolders.append((path, chain + [real]))
                elif not stat.S_ISREG(info.st_mode):
                    self.skipped.append(f"{shown(path)} ({_kind(info.st_mode)}, not a regular file)")
                elif not name.lower().endswith(IMAGE_EXTENSIONS):
                    self.ignored.append(path)
                elif self.owned(path, info, label):
                    found.append(path)
            stack.extend(reversed(subfolders))
        return found

    def owned(self, path: str, info: os.stat_result, label: str) -> bool:
        """Whether ``path`` is a new image of ``label``; UserError if another label has it."""
        first_label, first_path = self.owner.setdefault((info.st_dev, info.st_ino), (label, path))
        if first_label != label:
            raise UserError(
                f"{shown(path)} is the same file as {shown(first_path)}: it would count under "
                f"both {shown(first_label)}/ and {shown(label)}/, but a file has one label: "
                "remove the link or the copy you did not mean"
            )
        if first_path != path:
            self.skipped.append(f"{shown(path)} (the same file as {shown(first_path)})")
            return False
        return True

    def class_folders(self, folder: str) -> List[str]:
        """The class folder names in ``folder``; a file there is named in a warning."""
        names = []
        for name, path, info in self.entries(folder):
            if not stat.S_ISDIR(info.st_mode):
                kind = "a file" if stat.S_ISREG(info.st_mode) else _kind(info.st_mode)
                self.skipped.append(f"{shown(path)} ({kind} outside any class folder)")
            elif self.followed(path, [os.path.realpath(folder)]) is not None:
                why = unfit_class_name(name)
                if why:
                    raise UserError(
                        f"class folder {shown(path)} has {why}: rename it (a class name goes into "
                        "metrics.json, the report and the exported model, one name a line)"
                    )
                names.append(name)
        return names

    def class_files(self, folder: str, class_names: List[str], label: str) -> Dict[int, List[str]]:
        files = {}
        for index, name in enumerate(class_names):
            path = os.path.join(folder, name)
            files[index] = self.images(path, label + name)
            if not files[index]:
                raise UserError(
                    f"class folder {shown(path)} has no PNG/JPEG images: add some or remove the "
                    "folder"
                )
        return files


def _require_classes(class_names: List[str], folder: str) -> None:
    if not class_names:
        raise UserError(f"{shown(folder)} has no class sub-folders: put each class's images in "
                        f"{shown(folder)}/<class name>/")
    if len(class_names) < 2:
        raise UserError(
            f"{shown(folder)} has one class folder only ({class_names[0]!r}): a classifier needs "
            "at least 2, so add a sub-folder of images for each other class"
        )


def _split_folders(root: str, top: List[str]) -> Dict[str, str]:
    """split -> its folder's name; raises UserError unless the top level is exactly the splits."""
    given = {split: [name for name in names if name in top] for split, names in SPLIT_FOLDERS.items()}
    both = [names for names in given.values() if len(names) > 1]
    if both:
        raise UserError(f"{shown(root)} has both {both[0][0]}/ and {both[0][1]}/: keep one")
    missing = [names[0] + "/" for split, names in SPLIT_FOLDERS.items() if not given[split]]
    if missing:
        # `val -> train` is there to see but was not followed (a link back into the tree): say so,
        # or "no val/" contradicts what `ls` shows.
        links = [name for split, names in SPLIT_FOLDERS.items() if not given[split]
                 for name in names if os.path.islink(os.path.join(root, name))]
        why = (f" ({', '.join(n + '/' for n in links)}: a folder link back into the tree, not "
               "followed: a split needs its own images)") if links else ""
        raise UserError(
            f"{shown(root)} has {', '.join(n[0] + '/' for n in given.values() if n)} but no "
            f"{' or '.join(missing)}{why}: give all of train/, val/ and test/, or none of them to "
            "split val and test off automatically"
        )
    splits = {split: names[0] for split, names in given.items()}
    others = sorted(set(top) - set(splits.values()))
    if others:
        raise UserError(
            f"{shown(root)} has train/, val/ and test/ and also {', '.join(map(repr, others))}: "
            "with splits given every class goes inside each split, so move or remove the others"
        )
    return splits


def _missing_classes(root: str, splits: Dict[str, str], per_split: Dict[str, List[str]]) -> None:
    every = sorted(set().union(*per_split.values()))
    missing = [
        f"{splits[split]}/ lacks {', '.join(map(repr, sorted(set(every) - set(names))))}"
        for split, names in per_split.items() if set(names) != set(every)
    ]
    if missing:
        raise UserError(
            f"{shown(root)}: every class needs a folder in each of train/, val/ and test/, but "
            f"{'; '.join(missing)}: add the missing class folders (with images)"
        )


def scan(root: str) -> Layout:
    """Checks the folder's structure (no decoding) and lists its image files; raises UserError."""
    if not os.path.isdir(root):
        raise UserError(f"{shown(root)} is not a folder: pass a folder of <class>/<image> files")
    walk = _Walk(root)
    top = walk.class_folders(root)
    if not any(name in top for names in SPLIT_FOLDERS.values() for name in names):
        _require_classes(top, root)
        files = {"all": walk.class_files(root, top, "")}
        return Layout(top, False, files, walk.ignored, walk.skipped)

    splits = _split_folders(root, top)
    per_split = {split: walk.class_folders(os.path.join(root, name))
                 for split, name in splits.items()}
    _require_classes(per_split["train"], os.path.join(root, splits["train"]))
    _missing_classes(root, splits, per_split)
    class_names = per_split["train"]
    files = {split: walk.class_files(os.path.join(root, name), class_names, name + "/")
             for split, name in splits.items()}
    return Layout(class_names, True, files, walk.ignored, walk.skipped)
