"""The one rule every long-running command (simulate, experiment, train, study) follows for its
output folder, so that no run loses or mixes results.

* A folder belongs to one configuration, saved beside the results as ``config.json``. Running the
  same configuration again resumes; another is refused with the fields that differ.
* Nothing is written before the inputs have been validated: callers validate first, then
  :func:`claim` the folder (which is the first write).
* Writes are atomic (:func:`write_atomic`: a temporary file, then a rename) or append-only
  records that are checked on read (:func:`read_records`): a last record cut short by a kill is
  dropped, so its work is done again rather than trusted.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable
from pathlib import Path

from adaptive_resnet.errors import UserInputError

CONFIG = "config.json"


def check_writable_target(out: str | Path, what: str = "output folder") -> Path:
    """Refuse ``out`` when it cannot become a folder (a file is there, or a parent is a file),
    before any work starts."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserInputError(f"{what} {out} is a file, not a folder")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserInputError(f"{what} {out}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK):
                raise UserInputError(f"{what} {out}: {parent} is not writable")
            break
    return out


def differences(saved: object, wanted: object, prefix: str = "") -> list[str]:
    """Dotted paths of the fields where two JSON-like documents differ."""
    if isinstance(saved, dict) and isinstance(wanted, dict):
        out = []
        for key in list(dict.fromkeys([*saved, *wanted])):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in saved or key not in wanted:
                out.append(path)
            else:
                out += differences(saved[key], wanted[key], path)
        return out
    return [] if saved == wanted else [prefix or "(the whole configuration)"]


def saved_config(out: str | Path) -> dict | None:
    """The configuration a folder's run was started with, or None when it holds none."""
    path = Path(out) / CONFIG
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserInputError(f"{path} is not readable JSON ({type(exc).__name__}); the folder's run cannot be resumed: "
                             f"use a new folder") from None


def claim(out: str | Path, identity: dict, what: str = "run", ignore: tuple[str, ...] = (),
          normalise: Callable[[dict], dict] | None = None) -> bool:
    """Make ``out`` the folder of the run ``identity`` (a JSON-able document of everything that
    determines its results). Returns True when the folder already holds this run (resume),
    False when it is new (``config.json`` is then written). Fields in ``ignore`` (top-level
    keys that do not change results, such as thread counts) may differ on resume. ``normalise``
    turns a saved document into today's form before comparing (fields added since, with their
    defaults), so that older runs stay resumable.

    Raises a one-line :class:`UserInputError` for a folder holding another run, or files but no
    run of ours.
    """
    out = check_writable_target(out)
    identity = json.loads(json.dumps(identity))  # the form it is saved in (tuples as lists, ...)
    saved = saved_config(out)
    if saved is not None and normalise is not None:
        saved = json.loads(json.dumps(normalise(saved)))
    if saved is not None:
        diff = [d for d in differences(saved, identity) if d.split(".")[0] not in ignore]
        if diff:
            shown = ", ".join(diff[:6]) + (f" and {len(diff) - 6} more" if len(diff) > 6 else "")
            raise UserInputError(f"{out} holds a {what} with another configuration (differs in: {shown}); "
                                 f"use a new folder, or remove it to start again")
        if any(k in ignore for k in identity):
            write_atomic(out / CONFIG, json.dumps(identity, indent=2) + "\n")
        return True
    if out.is_dir() and any(out.iterdir()):
        first = sorted(p.name for p in out.iterdir())[0]
        raise UserInputError(f"{out} is not empty (it holds {first}, but no {CONFIG} of a {what}); use a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / CONFIG, json.dumps(identity, indent=2) + "\n")
    return False


def write_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader (or a kill) sees the old file or the new one,
    never a part."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def start_records(path: str | Path, fields: list[str], rows: list[dict] = ()) -> None:
    """A new append-only CSV of records with columns ``fields``: the header and ``rows``
    (records finished elsewhere), in one atomic write."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buf.getvalue())


def append_record(path: str | Path, fields: list[str], row: dict) -> None:
    """Append one record, flushed to disk before returning (the run's progress is what is on disk)."""
    buf = io.StringIO()
    csv.DictWriter(buf, fieldnames=fields, lineterminator="\n").writerow(row)
    with Path(path).open("a", encoding="utf-8", newline="") as fh:
        fh.write(buf.getvalue())
        fh.flush()
        os.fsync(fh.fileno())


def read_records(path: str | Path, fields: list[str], key: str | None = None) -> list[dict]:
    """The complete records of an append-only CSV written by :func:`append_record`.

    A last record that was cut short (no final newline, or fields missing) is not done: it is
    dropped and the file rewritten without it, so the caller recomputes it. Damage anywhere else, or a header other
    than ``fields``, is an error: the folder cannot be trusted. With ``key``, that column must
    count 1, 2, 3, ... (rounds, points).
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    if not lines or next(csv.reader([lines[0]]), []) != fields:
        raise UserInputError(f"{path}: its header is not this run's columns; use a new folder")
    # Records end in a newline, written last: whatever follows the last newline was cut short.
    body, rows = lines[1:-1], []
    dropped = lines[-1] != ""
    for i, line in enumerate(body):
        values = next(csv.reader([line]), [])
        ok = len(values) == len(fields) and (key is None or values[fields.index(key)] == str(len(rows) + 1))
        if not ok:
            if i == len(body) - 1:
                dropped = True
                break
            raise UserInputError(f"{path}:{i + 2}: a damaged record before the last one; the run cannot be resumed: use a new folder")
        rows.append(dict(zip(fields, values, strict=True)))
    if dropped:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_atomic(path, buf.getvalue())
    return rows
