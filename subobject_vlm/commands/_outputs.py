"""An output folder that loses nothing: unique output names, a summary kept current, resumable runs, and
several runs into one folder at once.

Output names (documented in the README, "Command line"):

1. an input's outputs are named after its stem: ``photo.jpg`` -> ``photo.png`` (+ ``photo.npy``, ...);
2. inputs of one folder that share a stem keep their extension: ``photo.jpg.png``, ``photo.png.png``;
3. inputs of different folders that share a name go into subfolders mirroring their folders below the
   inputs' common folder: ``a/x.jpg``, ``b/x.jpg`` -> ``OUT/a/x.png``, ``OUT/b/x.png``;
4. a name still taken (by another output, an input inside ``OUT``, ``summary.json``, or an earlier run's output
   for another input) gets ``~2``, ``~3``, ... in input order; an input keeps the names an earlier run gave it.

Names compare case-insensitively, so a folder copied to a case-insensitive filesystem keeps every file.

``OUT/summary.json`` lists every image done (its outputs, settings, tokens, seconds) and every failure, for
all runs into ``OUT``: each run merges its records into it under a lock, at most once a second and when it
ends, always by atomic replacement. Which inputs own which names is claimed in it before any image is
processed, so two concurrent runs never write the same file. Runs at the same time must share their settings:
a run with other settings into a folder in use is refused (it would rewrite the files the other run records).
With ``resume=True`` an input whose record matches (same settings, same input size and modification time as
when it was read) and whose outputs all exist is skipped.

A run that finds nobody else writing in ``OUT`` first removes the temporaries a killed run left (see
``atomic``): only ours, and only of the files this folder's summary names (``summary.json``, the outputs
recorded or claimed), never another program's files nor anything in folders it did not write.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath

from ..atomic import remove_stale_temporaries, write_json
from ..caching import file_stat

SUMMARY_NAME = "summary.json"
LOCK_NAME = ".subobject-vlm.lock"  # held briefly, to read-merge-write the summary
ACTIVE_NAME = ".subobject-vlm.active"  # held shared by every live run; exclusive = nobody else is writing
FLUSH_SECONDS = 1.0

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one run per folder at a time
    fcntl = None


@contextlib.contextmanager
def _locked(path: Path, mode: int) -> Iterator[None]:
    with open(path, "a+b") as handle:
        if fcntl is not None:
            fcntl.flock(handle, mode)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


def read_summary(out_dir: Path) -> dict:
    """The folder's summary (empty when there is none); a summary that is not ours is a ``ValueError`` naming
    the file and the field at fault."""
    path = out_dir / SUMMARY_NAME
    if not path.exists():
        return {"images": [], "failed": [], "names": {}, "runs": []}
    try:
        summary = json.loads(path.read_text())
        _check_summary(summary)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"{path} is not a summary this command can extend ({error}); choose another --out"
        ) from None
    return summary


def _check_summary(summary: object) -> None:
    """Raise ``ValueError`` naming the first field of a parsed summary whose type is not ours (fills in the
    fields that are missing)."""

    def check(value: object, kind: type, field: str, what: str) -> None:
        if not isinstance(value, kind):
            raise ValueError(f"{field} must be {what}, got {type(value).__name__} {value!r:.40}")

    check(summary, dict, "the file", "a JSON object")
    for key, kind, what in (
        ("images", list, "a list"),
        ("failed", list, "a list"),
        ("names", dict, "an object"),
        ("runs", list, "a list"),
    ):
        check(summary.setdefault(key, kind()), kind, key, what)
    for key in ("images", "failed", "runs"):
        for index, entry in enumerate(summary[key]):
            check(entry, dict, f"{key}[{index}]", "an object")
            for field, kind in (("path", str), ("file", str), ("id", str), ("outputs", list)):
                if field in entry:
                    check(entry[field], kind, f"{key}[{index}].{field}", f"a {kind.__name__}")
            for number, output in enumerate(entry.get("outputs", [])):
                check(output, str, f"{key}[{index}].outputs[{number}]", "a str")
    for owner, name in summary["names"].items():
        check(name, str, f"names[{owner!r}]", "a str")


def _fold(name: str) -> str:
    return name.casefold()


def plan_output_names(
    inputs: Sequence[Path],
    suffixes: Sequence[str],
    out_dir: Path,
    claims: dict[str, str] | None = None,
) -> list[str]:
    """The output name of each input, without suffix, relative to ``out_dir`` (``"x"``, ``"a/x"``,
    ``"x.jpg"``, ``"x~2"``), following the rules in this module's docstring.

    Args:
        inputs: absolute, distinct input paths, in the order they are processed.
        suffixes: what each input writes, appended to its name (``".png"``, ``"_labels.png"``, ``".npy"``).
        claims: ``{input path: name}`` given by earlier runs into ``out_dir``.
    """
    claims = dict(claims or {})
    stems = [p.stem for p in inputs]
    same_folder = {}
    for path in inputs:
        same_folder.setdefault((path.parent, _fold(path.stem)), []).append(path)
    candidates = [
        p.name if len(same_folder[(p.parent, _fold(p.stem))]) > 1 else stem for p, stem in zip(inputs, stems)
    ]
    by_candidate = {}
    for path, candidate in zip(inputs, candidates):
        by_candidate.setdefault(_fold(candidate), []).append(path)
    common = Path(os.path.commonpath([str(p.parent) for p in inputs])) if inputs else out_dir
    for index, (path, candidate) in enumerate(zip(inputs, candidates)):
        if len(by_candidate[_fold(candidate)]) > 1:  # same name in other folders: mirror the folders
            candidates[index] = (path.parent.relative_to(common) / candidate).as_posix()

    taken = {_fold(SUMMARY_NAME), _fold(LOCK_NAME), _fold(ACTIVE_NAME)}
    out_resolved = out_dir.resolve()
    for path in inputs:  # an input inside OUT is never overwritten
        with contextlib.suppress(ValueError):
            taken.add(_fold(path.resolve().relative_to(out_resolved).as_posix()))
    own = {str(p) for p in inputs}
    for owner, name in claims.items():  # earlier runs' outputs for other inputs
        if owner not in own:
            taken.update(_fold(name + suffix) for suffix in suffixes)
            taken.add(_fold(name))

    def free(name: str) -> bool:
        return all(_fold(name + suffix) not in taken for suffix in suffixes)

    names = []
    for path, candidate in zip(inputs, candidates):
        previous = claims.get(str(path))
        if previous is not None and free(previous):
            name = previous
        else:
            name, number = candidate, 1
            while not free(name):
                number += 1
                name = f"{candidate}~{number}"
        taken.update(_fold(name + suffix) for suffix in suffixes)
        names.append(name)
    return names


def check_out_holds_no_inputs(inputs: Sequence[Path], out_dir: Path, allowed: bool) -> None:
    """Refuse an output folder that holds inputs (a rerun would read its own pictures as photos)."""
    if allowed:
        return
    out_resolved = out_dir.resolve()
    inside = [p for p in inputs if p.resolve().is_relative_to(out_resolved)]
    if inside:
        raise ValueError(
            f"--out {out_dir} holds {len(inside)} of the inputs (e.g. {inside[0]}); choose another --out, or "
            "pass --allow-inputs-in-out (inputs are never overwritten)"
        )


def input_fingerprint(path: Path) -> dict:
    """The input's ``caching.file_stat`` as a summary record's fields (``OSError`` when it cannot be read)."""
    stat = file_stat(path)
    if stat is None:
        raise OSError(f"cannot read {path}")
    return {"input_size": stat[0], "input_mtime_ns": stat[1]}


def input_changed(path: Path, fingerprint: dict) -> bool:
    """Whether ``path`` no longer has ``fingerprint`` (replaced, touched or removed since)."""
    try:
        return input_fingerprint(path) != fingerprint
    except OSError:
        return True


class OutputFolder:
    """One run's view of an output folder: ``with OutputFolder(out, "segment", settings, suffixes) as folder:``.

    Entering joins the runs writing into ``out`` (refused when they run with other settings); ``plan`` names the
    outputs and claims them, ``done``/``failed`` record each input, and the summary is merged into
    ``OUT/summary.json`` as images finish and when the block ends.
    """

    def __init__(
        self, out_dir: str | os.PathLike, command: str, settings: dict, suffixes: Sequence[str]
    ) -> None:
        self.out_dir = Path(out_dir)
        self.suffixes = list(suffixes)
        self.settings_key = json.dumps({"command": command, **settings}, sort_keys=True, default=str)
        self.records: dict[str, dict] = {}
        self.failures: dict[str, dict] = {}
        self.claims: dict[str, str] = {}
        self.run = {"id": uuid.uuid4().hex[:12], "command": command, "settings": settings, "started": _now()}
        self._last_flush = self._flush_cost = 0.0
        self._active = None

    def __enter__(self) -> OutputFolder:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._active = open(self.out_dir / ACTIVE_NAME, "a+b")  # noqa: SIM115 - held for the whole run
        try:
            with _locked(self.out_dir / LOCK_NAME, _EXCLUSIVE):  # no other run enters meanwhile
                self._join()
        except BaseException:
            self._active.close()
            raise
        return self

    def _join(self) -> None:
        """Hold ``ACTIVE_NAME`` shared for the run. Every live run holds it so; whoever finds it free is alone:
        it clears the temporaries killed runs left and writes its settings there, which later runs must share
        (the exclusive lock is only ever held under ``LOCK_NAME``, so taking it shared never waits)."""
        if fcntl is None:  # one run per folder at a time
            self._remove_stale_temporaries()
            return
        try:
            fcntl.flock(self._active, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fcntl.flock(self._active, fcntl.LOCK_SH)
            self._active.seek(0)
            running = self._active.read().decode("utf-8", "replace")
            if running != self.settings_key:
                raise ValueError(
                    f"--out {self.out_dir} is in use by another run with other settings: "
                    f"{_differences(running, self.settings_key)}; wait for it to end, or choose another --out"
                ) from None
            return
        self._remove_stale_temporaries()
        self._active.truncate(0)
        self._active.write(self.settings_key.encode())
        self._active.flush()
        fcntl.flock(self._active, fcntl.LOCK_SH)

    def _remove_stale_temporaries(self) -> None:
        """Remove our temporaries of the files this folder's summary names, in the folders holding them."""
        summary = read_summary(self.out_dir)
        destinations = {SUMMARY_NAME, *(name for r in summary["images"] for name in r.get("outputs", []))}
        destinations.update(name + suffix for name in summary["names"].values() for suffix in self.suffixes)
        by_folder: dict[PurePosixPath, set[str]] = {}
        for destination in map(PurePosixPath, destinations):
            if not destination.is_absolute() and ".." not in destination.parts:  # inside OUT only
                by_folder.setdefault(destination.parent, set()).add(destination.name)
        for folder, names in by_folder.items():
            remove_stale_temporaries(self.out_dir / folder, names)

    def __exit__(self, *exc) -> None:
        self.run["finished"] = _now()
        try:
            self.flush(force=True)
        finally:
            if self._active is not None:
                self._active.close()  # releases the shared lock

    def plan(self, inputs: Sequence[Path], resume: bool) -> tuple[list[tuple[Path, list[Path]]], list[Path]]:
        """Claim output names for ``inputs`` (absolute, distinct); returns ``(to_do, already_done)`` where
        ``to_do`` pairs each input with its output paths (one per suffix, parent folders created)."""
        with _locked(self.out_dir / LOCK_NAME, _EXCLUSIVE):
            summary = read_summary(self.out_dir)
            names = plan_output_names(inputs, self.suffixes, self.out_dir, summary["names"])
            summary["names"].update({str(p): name for p, name in zip(inputs, names)})
            write_json(self.out_dir / SUMMARY_NAME, summary)
        self.claims = {str(p): name for p, name in zip(inputs, names)}
        finished = {record.get("path"): record for record in summary["images"]}
        to_do, already_done = [], []
        for path, name in zip(inputs, names):
            outputs = [self.out_dir / (name + suffix) for suffix in self.suffixes]
            record = finished.get(str(path))
            if resume and record is not None and self._is_complete(record, path, outputs):
                already_done.append(path)
                continue
            outputs[0].parent.mkdir(parents=True, exist_ok=True)
            to_do.append((path, outputs))
        return to_do, already_done

    def _is_complete(self, record: dict, path: Path, outputs: list[Path]) -> bool:
        recorded = {k: record.get(k) for k in ("input_size", "input_mtime_ns")}
        return (
            not input_changed(path, recorded)
            and record.get("settings") == self.settings_key
            and record.get("outputs") == [p.relative_to(self.out_dir).as_posix() for p in outputs]
            and all(p.is_file() for p in outputs)
        )

    def done(self, path: Path, given: str, outputs: list[Path], record: dict, fingerprint: dict) -> None:
        """Record an input whose outputs are all written, with the ``input_fingerprint`` it had when read (so a
        file replaced meanwhile no longer matches its record, and ``--resume`` redoes it)."""
        self.records[str(path)] = {
            "file": given,
            "path": str(path),
            "outputs": [p.relative_to(self.out_dir).as_posix() for p in outputs],
            **record,
            **fingerprint,
            "settings": self.settings_key,
        }
        self.failures.pop(str(path), None)
        self.flush()

    def failed(self, path: Path, given: str, error: str) -> None:
        self.failures[str(path)] = {"file": given, "path": str(path), "error": error}
        self.records.pop(str(path), None)
        self.flush()

    def flush(self, force: bool = False) -> None:
        """Merge this run's records into ``summary.json`` (throttled unless ``force``)."""
        # at most once a second, and at most 10 % of the run's time however large the summary grows
        if not force and time.monotonic() - self._last_flush < max(FLUSH_SECONDS, 10 * self._flush_cost):
            return
        start = time.monotonic()
        self.run.update(done=len(self.records), failed=len(self.failures))
        with _locked(self.out_dir / LOCK_NAME, _EXCLUSIVE):
            summary = read_summary(self.out_dir)
            mine = set(self.records) | set(self.failures)
            images = [r for r in summary["images"] if r.get("path") not in mine]
            failed = [r for r in summary["failed"] if r.get("path") not in mine]
            summary["images"] = sorted(images + list(self.records.values()), key=_record_order)
            summary["failed"] = sorted(failed + list(self.failures.values()), key=_record_order)
            summary["names"].update(self.claims)
            summary["runs"] = [r for r in summary["runs"] if r.get("id") != self.run["id"]] + [self.run]
            write_json(self.out_dir / SUMMARY_NAME, summary)
        self._last_flush = time.monotonic()
        self._flush_cost = self._last_flush - start


def _differences(running: str, mine: str) -> str:
    """``it runs max_tokens=4; this run max_tokens=9``: the settings in which two settings keys differ."""
    try:
        theirs, ours = json.loads(running), json.loads(mine)
    except ValueError:
        theirs = None
    if not isinstance(theirs, dict):
        return f"its settings in {ACTIVE_NAME} are unreadable"
    keys = [key for key in sorted(set(theirs) | set(ours)) if theirs.get(key) != ours.get(key)]
    return (
        f"it runs {', '.join(f'{key}={theirs.get(key)!r}' for key in keys)}; "
        f"this run {', '.join(f'{key}={ours.get(key)!r}' for key in keys)}"
    )


def _record_order(record: dict) -> str:
    return str(record.get("path", record.get("file", "")))


_EXCLUSIVE = fcntl.LOCK_EX if fcntl is not None else 0


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class StopRequests:
    """SIGINT / SIGTERM ask the loop to stop after the current file (a second SIGINT stops at once)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous = {}

    def __enter__(self) -> StopRequests:
        for number in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: signals stay as they were
                self._previous[number] = signal.signal(number, self._request)
        return self

    def _request(self, number: int, frame) -> None:
        if self.signal == signal.SIGINT and number == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = number
        name = signal.Signals(number).name
        print(f"\n{name}: finishing the current file, then stopping", file=sys.stderr)

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


__all__ = [
    "SUMMARY_NAME",
    "OutputFolder",
    "StopRequests",
    "check_out_holds_no_inputs",
    "plan_output_names",
    "read_summary",
]
