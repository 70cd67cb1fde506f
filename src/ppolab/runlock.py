"""One process at a time in a run directory, and what a killed one leaves behind.

    RUN_DIR/.lock   an exclusive ``flock`` held by the process that trains in the directory,
                    holding that process's "PID COMMAND" (for the refusal message)

The kernel drops a ``flock`` when the process holding it dies, SIGKILL included, so a killed
holder never blocks the next run: there is no stale lock to detect. The lock belongs to the
open file, not to its name, so it follows the directory through a rename: a new run directory
is locked under its temporary name and is locked from the moment it exists. The ``.lock`` file
itself is never removed while a run directory lives (removing it would let a second process
lock a new file while the first still holds the old one).

A process killed while writing leaves temporary files (``files.atomic_write`` writes
``.NAME.XXXXXXXX.tmp`` beside the target), and one killed while ``ppolab train --overwrite``
replaces a run directory leaves its staging folder ``.RUN.XXXXXXXX.tmp`` or the old directory set
aside as ``.RUN.replaced-PID`` beside it. :func:`remove_leftovers` removes them, and is only called
while holding the run's lock, so a live writer's files are never touched; a leftover folder is
removed only if its own lock is free (a live process holds the lock of the folder it builds or
removes).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shlex
import shutil
import sys
import time
import weakref
from pathlib import Path

from ppolab.errors import RunDirectoryError
from ppolab.files import fsync_directory

LOCK_NAME = ".lock"
# A refusal retries for this long: a probe (check_can_create, ppolab eval) holds a free lock
# for a few microseconds, and a process that just took the lock writes its pid right after.
RETRY_SECONDS = 0.25

_held: weakref.WeakSet[RunLock] = weakref.WeakSet()


def _forget_in_child() -> None:
    """A forked child (an async env worker) closes its copies of the lock files: closing does
    not release the parent's lock, but a child that outlived its parent would otherwise hold it."""
    for lock in list(_held):
        with contextlib.suppress(OSError):
            os.close(lock._fd)
        lock._fd = -1
    _held.clear()


os.register_at_fork(after_in_child=_forget_in_child)


def _command() -> str:
    argv = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    text = shlex.join(argv).replace("\n", " ")
    return text if len(text) <= 300 else text[:297] + "..."


class RunLock:
    """The lock of one folder (``folder/.lock``), held until :meth:`release`, or until the
    process exits."""

    def __init__(self, fd: int, folder: Path) -> None:
        self._fd, self.folder = fd, folder
        _held.add(self)

    @classmethod
    def try_acquire(cls, folder: Path, create: bool = True) -> RunLock | None:
        """The lock of ``folder`` if no other process holds it, else None. Raises OSError when
        the lock file cannot be opened (or, with ``create=False``, does not exist)."""
        path = folder / LOCK_NAME
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0), 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                opened, now = os.fstat(fd), os.stat(path)
            except BlockingIOError:
                os.close(fd)
                return None
            except BaseException:
                os.close(fd)
                raise
            if (opened.st_dev, opened.st_ino) == (now.st_dev, now.st_ino):
                return cls(fd, folder)
            os.close(fd)  # the folder was replaced (--overwrite) between the open and the lock

    @classmethod
    def acquire(cls, run_dir: Path) -> RunLock:
        """The lock of ``run_dir``, with this process named in it; :class:`RunDirectoryError`
        naming the holder when another process trains there."""
        deadline = time.monotonic() + RETRY_SECONDS
        while True:
            try:
                lock = cls.try_acquire(run_dir)
            except OSError as exc:
                raise RunDirectoryError(f"cannot lock run directory {run_dir}: {exc}") from None
            if lock is not None:
                lock.write_holder()
                return lock
            if time.monotonic() >= deadline:
                raise RunDirectoryError(in_use_message(run_dir))
            time.sleep(0.02)

    def write_holder(self) -> None:
        with contextlib.suppress(OSError):  # the lock is what counts; the text is for messages
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()} {_command()}\n".encode(), 0)

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def release(self) -> None:
        """Unlock (closing the file releases the lock); harmless when already released."""
        if self._fd >= 0:
            _held.discard(self)
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.release()


def holder(run_dir: Path) -> str | None:
    """The holder of ``run_dir``'s lock as written in it ("PID COMMAND"), if a process holds
    it; None when it is free (or the directory has no lock file). Takes no lock itself beyond a
    momentary shared one."""
    try:
        fd = os.open(run_dir / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 4096, 0).decode(errors="replace").strip() or "?"
        except OSError:
            return None
        return None
    finally:
        os.close(fd)


def in_use_message(run_dir: Path) -> str:
    """``run directory X is in use by process PID (COMMAND); ...``: one line."""
    text = ""
    with contextlib.suppress(OSError):
        text = (run_dir / LOCK_NAME).read_text(errors="replace").strip().replace("\n", " ")
    pid, _, command = text.partition(" ")
    who = (f"process {pid} ({command})" if pid.isdigit() and command
           else f"process {pid}" if pid.isdigit() else "another process")
    return f"run directory {run_dir} is in use by {who}; wait for it to finish or stop it"


def check_not_in_use(run_dir: Path) -> None:
    """:class:`RunDirectoryError` if a process trains in ``run_dir`` now (a quick refusal
    before the real :meth:`RunLock.acquire`, which settles it)."""
    deadline = time.monotonic() + RETRY_SECONDS
    while holder(run_dir) is not None:
        if time.monotonic() >= deadline:
            raise RunDirectoryError(in_use_message(run_dir))
        time.sleep(0.02)


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.yaml").is_file()


# --- what killed processes leave behind


def _is_temp_file(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".tmp") and path.is_file() and not path.is_symlink()


def _set_aside_pattern(run_dir: Path) -> re.Pattern[str]:
    # tempfile.mkdtemp's names: 8 characters of [a-z0-9_]; never another run's (its name would
    # have to hold a '.' right there)
    name = re.escape(run_dir.name)
    return re.compile(rf"^\.{name}\.(replaced-\d+|[a-z0-9_]{{8}}\.tmp)$")


def _leftover_folders(run_dir: Path) -> list[Path]:
    pattern = _set_aside_pattern(run_dir)
    try:
        found = [p for p in run_dir.parent.iterdir() if pattern.match(p.name)]
    except OSError:
        return []
    return sorted(p for p in found if p.is_dir() and not p.is_symlink())


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def report(line: str) -> None:
    print(f"ppolab: {line}", file=sys.stderr, flush=True)


def restore_set_aside(run_dir: Path) -> RunLock | None:
    """When ``run_dir`` is missing because a process killed during ``--overwrite`` had renamed it
    aside (``.RUN.replaced-PID``) and not yet renamed the new one in, rename the newest such
    folder back, report it, and return its lock, held (it moved with the folder). None when
    there is nothing to restore."""
    if os.path.lexists(run_dir):
        return None
    candidates = [p for p in _leftover_folders(run_dir)
                  if ".replaced-" in p.name and (p / "config.yaml").is_file()]
    candidates.sort(key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for folder in candidates:
        try:
            lock = RunLock.try_acquire(folder)
        except OSError:
            continue
        if lock is None:
            continue  # a live process is replacing it right now
        try:
            if os.path.lexists(run_dir):
                lock.release()
                return None
            os.rename(folder, run_dir)
            fsync_directory(run_dir.parent)
        except OSError:
            lock.release()
            return None
        lock.folder = run_dir
        lock.write_holder()
        report(f"restored {run_dir} from {folder.name}, where a process killed while replacing it "
               "(--overwrite) had set it aside")
        return lock
    return None


def remove_leftovers(run_dir: Path, inside: bool = True) -> None:
    """Remove, and report on stderr, what killed processes left: temporary files in ``run_dir``,
    its ``checkpoints/`` and ``tensorboard/`` (when ``inside``), and beside it the staging and
    set-aside folders of the same name whose own lock is free. The caller holds the run's lock
    (or, for a run directory that does not exist, is about to create it under lock)."""
    if inside and run_dir.is_dir():
        removed = []
        for folder in (run_dir, run_dir / "checkpoints", run_dir / "tensorboard"):
            try:
                found = sorted(p for p in folder.iterdir() if _is_temp_file(p))
            except OSError:
                continue
            for path in found:
                try:
                    path.unlink()
                except FileNotFoundError:
                    continue
                except OSError:
                    continue  # a read-only directory: leave it, the run does not need it gone
                removed.append(str(path.relative_to(run_dir)))
        if removed:
            report(f"removed {_plural(len(removed), 'temporary file')} left by a killed process in "
                   f"{run_dir}: {', '.join(removed)}")
    removed = []
    for folder in _leftover_folders(run_dir):
        try:
            lock = RunLock.try_acquire(folder)  # creates the lock file in a folder that lacks one
        except OSError:
            continue
        if lock is None:
            continue  # a live process builds or removes it
        try:
            shutil.rmtree(folder)
        except OSError:
            continue
        finally:
            lock.release()
        removed.append(folder.name)
    if removed:
        report(f"removed {_plural(len(removed), 'folder')} left beside {run_dir} by a process killed while "
               f"creating or replacing it: {', '.join(removed)}")


def tidy_if_free(path: Path) -> None:
    """For ``ppolab eval``: when ``path`` is a run directory (or one a killed ``--overwrite`` set
    aside) that no process trains in, restore it / remove its leftovers, and release it again.
    While a process trains there nothing is touched (the files eval reads are written
    atomically); nor when the lock cannot be taken at all (a read-only run directory)."""
    lock = restore_set_aside(path) if not os.path.lexists(path) else None
    if lock is None:
        if not is_run_dir(path):
            return  # a model file, or not a run directory: nothing of ppolab's to tidy
        try:
            lock = RunLock.try_acquire(path)
        except OSError:
            return
        if lock is None:
            return
    try:
        remove_leftovers(path)
    finally:
        lock.release()
