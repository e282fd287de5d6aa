"""``flakeseg watch``: screen a folder live, as a microscope writes its images into it.

An image is screened once it is completely written: its size and modification time unchanged for
``settle`` seconds, and Pillow can open it. After each image ``flakes.csv``, ``report.html`` (which
reloads itself in the browser while watching) and ``run.json`` are written again, from every image
screened so far, through the same functions as ``flakeseg predict``.

The images already in the folder come first: taken from the records of an earlier run on the same
``--out`` (``predict`` or ``watch``, same settings, file unchanged), else screened; so a restart redoes
nothing. A file that stays unreadable (a ``.png`` that is text) is one ``skipped`` line, again only if
it changes. Ctrl-C or SIGTERM abandons the image being screened (its record, written last, is missing,
so the next run screens it; every file is written atomically), or, arriving while an image's record is
written, waits until the image is counted and listed; then the watch writes the final report and prints
one summary line.

File-system events (inotify and the like) only say *which* files to look at; whether a file is complete
is decided by looking at it. Where events do not arrive (SMB/NFS shares written by another machine)
``poll`` lists the folder every :data:`POLL_SECONDS` instead (watchdog's ``PollingObserver``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from watchdog.events import FileSystemEvent, FileSystemEventHandler

from flakeseg.data.io import image_problem
from flakeseg.errors import DataError, FlakesegError
from flakeseg.inference.predictor import Predictor
from flakeseg.screening.inputs import IMAGE_SUFFIXES, collect_inputs
from flakeseg.screening.screen import (
    ScreenSettings,
    _finished,
    _source_stamp,
    judge_folder,
    output_names,
    prepare,
    screen_one,
    summary_line,
    write_run_outputs,
)
from flakeseg.utils.files import write_json_atomic

__all__ = ["POLL_SECONDS", "REFRESH_SECONDS", "FolderWatcher", "watch_folder"]

#: the browser reloads report.html this often while watching
REFRESH_SECONDS = 10
#: how often ``--poll`` lists the folder
POLL_SECONDS = 1.0
#: the events that can mean a file was written (not ``opened``/``closed_no_write``: our own reads)
_WRITE_EVENTS = {"created", "modified", "closed", "moved", "attrib", "deleted"}


class _Events(FileSystemEventHandler):
    """Hands the paths of watchdog's events (observer thread) to the watching loop (main thread)."""

    def __init__(self, watcher: FolderWatcher):
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in _WRITE_EVENTS:
            return
        if event.is_directory:
            if event.event_type == "deleted" and Path(os.fsdecode(event.src_path)) == self.watcher.folder:
                self.watcher.events.put(None)  # the watched folder itself was deleted
            return
        for raw in (event.src_path, event.dest_path):
            if raw:
                self.watcher.offer(Path(os.fsdecode(raw)))


class FolderWatcher:
    """The state of one watch: which files wait to settle, which are done, and the run's records.

    Only :meth:`offer` is called from another thread (through a queue); the rest runs in one thread.
    """

    def __init__(
        self,
        predictor: Predictor,
        settings: ScreenSettings,
        shown: dict[str, Any],
        folder: Path,
        out: Path,
        *,
        recursive: bool = False,
        settle: float = 2.0,
        coco: Path | None = None,
        console: Console | None = None,
    ):
        self.predictor, self.settings, self.shown = predictor, settings, shown
        self.folder, self.out = folder.absolute(), out
        self.excluded = out.resolve()
        self.recursive, self.settle, self.coco = recursive, settle, coco
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.signature = settings.signature()
        self.events: queue.SimpleQueue[Path | None] = queue.SimpleQueue()  # None: the folder is gone
        self.names: dict[Path, str] = {}
        self.records: dict[Path, dict[str, Any]] = {}  # in the order the images were done
        self.wrote = False  # whether this watch has written the outputs in out
        self.problems: dict[Path, str] = {}
        self.done: dict[Path, tuple[int, int]] = {}  # (size, mtime) at which a file was screened or skipped
        self.waiting: dict[Path, tuple[tuple[int, int], float] | None] = {}  # (size, mtime), seen since
        self.screened = self.reused = 0
        self.last_activity = time.monotonic()
        self.last_write = 0.0
        self.dirty = True  # something new since the outputs were last written
        self.folder_gone = False
        self.folder_line: str | None = None  # the setup check's verdict on the folder so far, when it flags

    # --- which files ----------------------------------------------------------------------------------

    def offer(self, path: Path) -> None:
        """A file that may have changed: looked at by the loop if it could be an input image."""
        name = path.name
        if path.suffix.lower() not in IMAGE_SUFFIXES or name.startswith((".", "~")):
            return  # temporary files (ours: .<name>.tmp; editors', copy tools')
        if not self.recursive and path.parent != self.folder:
            return
        with contextlib.suppress(OSError):
            if path.resolve().is_relative_to(self.excluded):
                return  # our own overlays, when --out lies in the watched folder
        self.events.put(path)

    def name_of(self, path: Path) -> str:
        """The image's output name, fixed once given: its stem, with a hash of its path when another
        image has the same stem (as :func:`output_names` does for a whole run)."""
        if path not in self.names:
            same_stem = [p for p in self.names if p.stem == path.stem]
            self.names[path] = output_names([*same_stem, path])[path]
        return self.names[path]

    # --- the loop -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Queue the images already in the folder (call after the observer started: none is missed)."""
        self.out.mkdir(parents=True, exist_ok=True)
        for stale in self.out.rglob(".*.tmp"):  # temporary files of a run killed while writing
            stale.unlink(missing_ok=True)
        present, notes = collect_inputs([str(self.folder)], exclude=self.out, recursive=self.recursive)
        for line in notes:
            if "--recursive" in line:  # a folder of folders: say so; an empty folder is normal here
                self.console.print(f"[yellow]note:[/yellow] {escape(line)}", highlight=False)
        self.names.update(output_names(present))  # the names `predict` gives them: its records are reused
        for path in present:
            self.offer(path)

    def run(self, idle_exit: float | None = None) -> None:
        """Watch until interrupted (KeyboardInterrupt), the folder is gone, or ``idle_exit`` seconds
        passed with nothing new and nothing waiting."""
        tick = min(0.25, self.settle / 4)
        self.write_outputs(live=True)
        while not self.folder_gone:
            self._take_events(timeout=tick)
            for path, stamp in self._settled():
                self._handle(path, stamp)
                if time.monotonic() - self.last_write >= REFRESH_SECONDS:  # a long backlog
                    self.write_outputs(live=True)
            if self.dirty:
                self.write_outputs(live=True)
            idle = time.monotonic() - self.last_activity
            if idle_exit is not None and not self.waiting and idle >= idle_exit:
                return

    def _take_events(self, timeout: float) -> None:
        paths: list[Path | None] = []
        try:
            paths.append(self.events.get(timeout=timeout))
            while True:
                paths.append(self.events.get_nowait())
        except queue.Empty:
            pass
        for path in paths:
            if path is None:
                self.folder_gone = True
                continue
            self.last_activity = time.monotonic()
            self.waiting.setdefault(path, None)

    def _settled(self) -> list[tuple[Path, tuple[int, int]]]:
        """The waiting files whose size and time stayed the same for ``settle`` seconds."""
        now = time.monotonic()
        ready = []
        for path, seen in list(self.waiting.items()):
            try:
                stat = path.stat()
            except OSError:  # deleted (or moved away) before it settled
                del self.waiting[path]
                continue
            stamp = (stat.st_size, stat.st_mtime_ns)
            # an event of a file already done (touched), or one an earlier run finished: no waiting
            if self.done.get(path) == stamp or (seen is None and self._reuse(path)):
                del self.waiting[path]
            elif seen is None or seen[0] != stamp:
                self.waiting[path] = (stamp, now)
                self.last_activity = now
            elif now - seen[1] >= self.settle:
                del self.waiting[path]
                ready.append((path, stamp))
        return ready

    def _reuse(self, path: Path) -> bool:
        try:
            stamp = _source_stamp(path)
        except OSError:
            return False
        record = _finished(self.out / "records" / f"{self.name_of(path)}.json", self.signature, stamp)
        if record is None:
            return False
        self._done(path, stamp, record)
        self.reused += 1
        return True

    def _done(self, path: Path, stamp: dict[str, Any], record: dict | None, problem: str = "") -> None:
        """Mark ``path`` done at ``stamp``: screened or reused (``record``), else skipped (``problem``)."""
        self.done[path] = (stamp["size"], stamp["mtime_ns"])
        self.records.pop(path, None)
        self.problems.pop(path, None)
        if record is not None:
            self.records[path] = record
        else:
            self.problems[path] = problem
            self.console.print(f"[red]skipped[/red] {escape(problem)}", highlight=False)
        self.dirty = True
        self.last_activity = time.monotonic()

    def _handle(self, path: Path, seen: tuple[int, int]) -> None:
        """Screen one settled file, or say in one line why not."""
        try:
            stamp = _source_stamp(path)
        except OSError:
            return
        if (stamp["size"], stamp["mtime_ns"]) != seen:  # written again meanwhile: wait once more
            self.waiting[path] = None
            return
        problem = image_problem(path)
        if problem is not None:
            self._done(path, stamp, None, problem)
            return
        name = self.name_of(path)
        record_path = self.out / "records" / f"{name}.json"
        try:
            record = screen_one(self.predictor, path, name, self.out, self.settings)
            record.update(signature=self.signature, source_stamp=stamp)
        except (FlakesegError, OSError) as exc:
            self._done(path, stamp, None, _problem_line(path, exc))
            return
        with _committing():
            try:
                write_json_atomic(record_path, record)  # last: the mark of a finished image
            except OSError as exc:
                self._done(path, stamp, None, _problem_line(path, exc))
                return
            self.screened += 1
            self._done(path, stamp, record)
            counts = ", ".join(f"{n} {c}" for c, n in record["counts"].items())
            self.console.print(
                f"[green]screened[/green] {escape(path.name)}: {counts} ({record['seconds']:.1f} s)",
                highlight=False,
            )

    # --- outputs --------------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """The run so far, its setup check judged on the images arrived so far as one folder (a line
        when that verdict changes)."""
        summary = judge_folder(
            {
                "records": list(self.records.values()),
                "problems": list(self.problems.values()),
                "done": self.screened,
                "skipped": self.reused,
                "failed": len(self.problems),
            },
            self.settings.strict,
        )
        if (summary["folder"] is None) != (self.folder_line is None):  # said when the verdict flips
            line = summary["folder"] or "the folder now passes: its images are checked one by one again"
            self.console.print(f"[yellow]setup check[/yellow] {escape(line)}", highlight=False)
        self.folder_line = summary["folder"]
        return summary

    def write_outputs(self, live: bool) -> bool:
        """flakes.csv, report.html (reloading itself if ``live``), run.json and the COCO file; not
        while nothing is screened over an earlier run's (``False`` then)."""
        shown = {**self.shown, "updated": time.strftime("%Y-%m-%d %H:%M:%S")}
        refresh = REFRESH_SECONDS if live else None
        written = write_run_outputs(
            self.out,
            self.summary(),
            self.predictor,
            shown,
            coco=self.coco,
            refresh_seconds=refresh,
            keep_earlier=not self.wrote,  # once this watch wrote them, they are its own to update
        )
        self.wrote = self.wrote or written
        self.dirty = False
        self.last_write = time.monotonic()
        return written


def _problem_line(path: Path, exc: Exception) -> str:
    """The one line a failed image gets in the run's problems: ``<path>: <first line of the error>``."""
    line = str(exc).splitlines()[0] if str(exc) else f"{path}: {type(exc).__name__}"
    return line if str(path) in line else f"{path}: {line}"


class _Interrupts:
    """Ctrl-C and SIGTERM, held back while an image is committed (see :func:`_committing`)."""

    held = False  # inside a commit: an interrupt waits for its end
    pending = False  # one arrived meanwhile


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a service manager, ``kill``) stops the watch as Ctrl-C does; either waits while an
    image is committed (main thread only: signals reach no other)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        if _Interrupts.held:
            _Interrupts.pending = True
            return
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _Interrupts.pending = False


@contextlib.contextmanager
def _committing() -> Iterator[None]:
    """An image's record, its count, its place in the report and its line are written together: an
    interrupt arriving meanwhile stops the watch right after (a record written, then the count lost,
    left a screened image out of the final report)."""
    _Interrupts.held = True
    try:
        yield
    finally:
        _Interrupts.held = False
        if _Interrupts.pending:
            _Interrupts.pending = False
            raise KeyboardInterrupt


def watch_folder(args: argparse.Namespace, folder: Path, console: Console) -> int:
    """``flakeseg watch``: the options of ``flakeseg predict`` (``args``) plus ``poll``, ``settle`` and
    ``idle_exit``; returns the exit status (0 after Ctrl-C, SIGTERM or ``--idle-exit``)."""
    from watchdog.observers import Observer
    from watchdog.observers.polling import PollingObserver

    with _sigterm_as_interrupt():
        try:
            predictor, settings, shown = prepare(args)
        except KeyboardInterrupt:
            console.print("stopped while loading the model; nothing screened", highlight=False)
            return 0
        observer = PollingObserver(timeout=POLL_SECONDS) if args.poll else Observer()
        how = f"polling every {POLL_SECONDS:g} s" if args.poll else "file-system events"
        shown = {**shown, "watching": f"{folder} ({how}, settle {args.settle:g} s)"}
        watcher = FolderWatcher(
            predictor,
            settings,
            shown,
            folder,
            args.out,
            recursive=args.recursive,
            settle=args.settle,
            coco=args.coco,
            console=console,
        )
        try:
            observer.schedule(_Events(watcher), str(watcher.folder), recursive=args.recursive)
            observer.start()
        except OSError as exc:  # e.g. the inotify watch limit
            raise DataError(f"{folder}: cannot watch ({exc}); try --poll") from None
        try:
            watcher.start()
            console.print(
                f"watching {folder} ({how}); Ctrl-C to stop. Report: {args.out / 'report.html'}",
                highlight=False,
            )
            watcher.run(idle_exit=args.idle_exit)
        except KeyboardInterrupt:
            pass  # Ctrl-C or SIGTERM: the image being screened is abandoned, nothing half-written
        finally:
            observer.stop()
        observer.join(timeout=5)
        written = watcher.write_outputs(live=False)
        console.print(
            summary_line(watcher.summary(), predictor.card.flake_classes, args.out, args.coco, written),
            highlight=False,
        )
        if watcher.folder_gone:
            raise DataError(f"{folder}: the folder is gone; stopped watching")
    return 0
