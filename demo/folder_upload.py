"""Folder upload that keeps the class subfolders.

Gradio's directory upload sends only each file's basename (STACK.md fact 1), so `cats/1.png` and `dogs/1.png`
arrive as two `1.png`. The browser still knows every file's `webkitRelativePath`: a capturing `change`
listener (INSTALL_JS, run when the Folder box mounts) remembers them for the directory input, the upload
event's `js=` (UPLOAD_JS) sends them as JSON beside the files, and `rebuild` pairs them by position (the
browser uploads in the input's order, in batches of 1,000, one after another; checked with 1,500 files) and
copies each file to its relative path inside the session's folder.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path

from gradio_client.utils import strip_invalid_filename_characters

from engine.data import MAX_ZIP_FILES
from engine.errors import UserError

# Runs once per page (gr.HTML js_on_load). Only inputs with webkitdirectory are remembered, so the image and
# zip boxes elsewhere on the page never overwrite the list; a drop resets it (a dropped folder carries no paths).
INSTALL_JS = """
if (!window.__snapfitFolder) {
  window.__snapfitFolder = [];
  document.addEventListener('change', (e) => {
    const t = e.target;
    if (t && t.tagName === 'INPUT' && t.type === 'file' && t.webkitdirectory && t.files)
      window.__snapfitFolder = Array.from(t.files).map((f) => f.webkitRelativePath || f.name);
  }, true);
  document.addEventListener('drop', () => { window.__snapfitFolder = []; }, true);
}
"""
UPLOAD_JS = "(files, paths, ...rest) => [files, JSON.stringify(window.__snapfitFolder || []), ...rest]"

_DRIVE = re.compile(r"^[A-Za-z]:")


def safe_parts(relpath: str) -> tuple[str, ...]:
    """A browser-supplied relative path as safe parts: refuses `..`, absolute paths and drive letters; keeps
    unicode and spaces."""
    if not isinstance(relpath, str) or "\x00" in relpath:
        raise UserError("The folder upload sent a file name that is not text; pick the folder again.")
    if relpath.startswith(("/", "\\")) or _DRIVE.match(relpath):
        raise UserError(f"The folder upload contains an absolute path ({relpath}); refused.")
    parts = tuple(p for p in re.split(r"[/\\]", relpath) if p not in ("", "."))
    if ".." in parts:
        raise UserError(f"The folder upload contains an unsafe path ({relpath}); refused.")
    if not parts:
        raise UserError("The folder upload contains an empty file name; pick the folder again.")
    return parts


def parse_relpaths(files: list[str], relpaths_json: str | None) -> list[tuple[str, ...]]:
    """Each uploaded file's relative path, as safe parts, in the upload's order."""
    try:
        relpaths = json.loads(relpaths_json or "[]")
    except json.JSONDecodeError as exc:
        raise UserError("The folder upload's file list could not be read; pick the folder again.") from exc
    if not isinstance(relpaths, list) or len(relpaths) != len(files):
        raise UserError("The folder's file names did not arrive with the files (a dropped folder carries none): "
                        "click the box and choose the folder, or upload a .zip.")
    parts = [safe_parts(r) for r in relpaths]
    for path, p in zip(files, parts):
        # Gradio stores each upload under its (cleaned) basename: a mismatch means the lists are out of step.
        if Path(path).name != strip_invalid_filename_characters(p[-1]):
            raise UserError("The folder's file names did not match the uploaded files; pick the folder again.")
    if all(len(p) == 1 for p in parts):
        raise UserError("These files carry no folder names, so there are no classes: choose a folder that holds "
                        "one subfolder per class (click the box), or upload a .zip.")
    return parts


def rebuild(files: list[str], relpaths_json: str | None, dest: Path, progress=None) -> Path:
    """Recreate the picked folder (class subfolders included) under a fresh folder in `dest`; returns its root.

    When every path starts with the same folder (the one the person picked), that folder is the root.
    """
    files = [str(f) for f in files or []]
    if not files:
        raise UserError("The folder is empty: choose a folder that holds one subfolder of images per class.")
    if len(files) > MAX_ZIP_FILES:
        raise UserError(f"The folder holds {len(files)} files; the limit is {MAX_ZIP_FILES}.")
    parts = parse_relpaths(files, relpaths_json)
    out = Path(dest) / f"folder-{uuid.uuid4().hex[:8]}"
    for n, (src, p) in enumerate(zip(files, parts)):
        target = out.joinpath(*p)
        target.parent.mkdir(parents=True, exist_ok=True)
        _link_or_copy(src, target)
        if progress and (n % 200 == 0 or n == len(files) - 1):
            progress(n + 1, len(files))
    tops = {p[0] for p in parts}
    picked_one = len(tops) == 1 and any(len(p) > 2 for p in parts)
    return out / next(iter(tops)) if picked_one else out


def _link_or_copy(src: str, target: Path) -> None:
    """A hard link costs no disk space; Gradio's upload cache may sit on another file system, then copy."""
    if target.exists():  # the same relative path twice: keep the first
        return
    try:
        os.link(src, target)
    except OSError:
        shutil.copyfile(src, target)

