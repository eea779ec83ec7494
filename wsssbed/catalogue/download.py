"""Resumable, retried HTTP downloads with a running sha256.

Why not pooch: its downloaders start over from byte 0 after any failure and need the
hash before the first download; WSSS-BED's archives are several GB and catalogued
unpinned until a first copy is verified. This module adds what that needs to urllib:

- the transfer is written to `<target>.part`; a retry, or a later run, asks for the
  rest with `Range: bytes=<have>-` and `If-Range` (the server's ETag or Last-Modified,
  kept in `<target>.part.json`, written atomically), so a changed file restarts from
  zero instead of splicing two versions; a state file that does not read as such
  (emptied by a kill or a full disk before atomic writes) restarts from zero too;
- transient failures (connection errors, timeouts, short bodies, HTTP 408/429/5xx) are
  retried with exponential backoff; other HTTP errors end it at once;
- `target` appears only when every byte has arrived (renamed from the `.part`).

A server is a stranger too, so every download is bounded:

- **size**: at most `max_bytes` (default `MAX_BYTES`, 64 GiB; the WSSS-BED archives are a
  few GB) and never closer than `RESERVE_BYTES` to filling the disk. A `Content-Length`
  beyond that is refused before a byte is written; a body that runs past it (a chunked
  or endless response) is cut there. The `.part` is deleted either way, as it is when
  the disk fills anyway; the message names the file.
- **time**: the whole download, retries included, must finish within `DEADLINE_S`
  (12 hours; the `.part` is then deleted), and a transfer slower than `MIN_RATE` bytes/s
  over any `STALL_S` window (a server dripping one byte every 20 s) is an interrupted
  attempt: retried, resuming the `.part`, like a dropped connection. Reads use
  `read1`, so a trickle never blocks a read for longer than the socket timeout.
"""

from __future__ import annotations

import errno
import http.client
import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wsssbed.errors import WsssbedError
from wsssbed.io.digest import file_sha256
from wsssbed.io.imageio import write_text

Progress = Callable[[int, int], None]
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
ATTEMPTS = 5
BACKOFF_S = 1.0
TIMEOUT_S = 60.0
CHUNK = 1 << 20
MAX_BYTES = 64 * 2**30
RESERVE_BYTES = 256 * 2**20  # free space a download always leaves on the disk
DEADLINE_S = 12 * 3600.0
STALL_S = 60.0
MIN_RATE = 1024  # bytes per second, averaged over STALL_S
STATE_BYTES = 1 << 16  # a download state file holds an address and a validator


class DownloadError(WsssbedError):
    """A download that failed for good (after its retries, or at once when permanent)."""


class _Transient(Exception):
    """A failure worth another attempt."""


def _user_agent() -> str:
    from wsssbed import __version__

    return f"wsssbed/{__version__}"


def _validator(headers) -> str:
    return headers.get("ETag") or headers.get("Last-Modified") or ""


@dataclass(frozen=True)
class _Limits:
    """What one download may cost: bytes (including what a `.part` holds) and time."""

    max_bytes: int
    deadline: float  # time.monotonic() by which everything must have arrived
    what: str  # why max_bytes is what it is, for messages

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise _TooMuch(f"did not finish within {DEADLINE_S:,.0f} s")


class _TooMuch(Exception):
    """A limit of `_Limits` was reached: the download ends and its `.part` is deleted."""


def _room(partial: Path, limits: _Limits) -> tuple[int, str]:
    """Most bytes the `.part` may reach: the limit, or the free space minus the reserve."""
    free = shutil.disk_usage(partial.parent).free
    room = _size(partial) + free - RESERVE_BYTES
    if room < limits.max_bytes:
        return room, f"the free space of the disk, less {RESERVE_BYTES:,} bytes kept free"
    return limits.max_bytes, limits.what


def _state(state_file: Path) -> dict[str, str]:
    """What a `.part.json` says (`url`, `validator`); empty when it is missing or does not
    read as such (then the download restarts from zero: nothing is spliced)."""
    try:
        with open(state_file, "rb") as handle:
            data = handle.read(STATE_BYTES + 1)
        state = json.loads(data) if len(data) <= STATE_BYTES else None
    except (OSError, ValueError):
        return {}
    if not isinstance(state, dict) or not all(
        isinstance(state.get(key), str) for key in ("url", "validator")
    ):
        return {}
    return state


def _attempt(url: str, partial: Path, progress: Progress | None, limits: _Limits) -> None:
    """One request: continue `partial` when the server honours the range, else restart."""
    state_file = partial.with_name(partial.name + ".json")
    have = partial.stat().st_size if partial.exists() else 0
    state = _state(state_file) if have else {}
    headers = {"User-Agent": _user_agent()}
    if have and state.get("url") == url:
        headers["Range"] = f"bytes={have}-"
        if state.get("validator"):
            headers["If-Range"] = state["validator"]
    else:
        have = 0
    limit, why = _room(partial, limits)
    try:
        request = urllib.request.Request(url, headers=headers)
        timeout = max(min(TIMEOUT_S, limits.deadline - time.monotonic()), 0.001)
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416:  # our range starts at or past the end: the file changed size
            partial.unlink(missing_ok=True)
            raise _Transient("the server refused the resume range; starting over") from exc
        if exc.code in TRANSIENT_STATUS:
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from exc
        raise DownloadError(f"HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise _Transient(str(getattr(exc, "reason", exc))) from exc
    with response:
        content_range = response.headers.get("Content-Range") or ""
        resumed = response.status == 206 and content_range.startswith(f"bytes {have}-")
        if not resumed:
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else 0
        if total > limit:
            raise _TooMuch(f"the server announces {total:,} bytes, more than {limit:,} "
                           f"({why})")  # fmt: skip
        write_text(state_file, json.dumps({"url": url, "validator": _validator(response.headers)}))
        try:
            with open(partial, "ab" if resumed else "wb") as sink:
                done = _receive(response, sink, have, total, progress, limits, (limit, why))
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _TooMuch(f"the disk filled while writing {partial}") from exc
            if not isinstance(exc, (TimeoutError, ConnectionError)):
                raise DownloadError(f"cannot write {partial}: {exc}") from exc
            raise _Transient(f"connection lost after {_size(partial):,} bytes: {exc!r}") from exc
        except http.client.HTTPException as exc:
            raise _Transient(f"connection lost after {_size(partial):,} bytes: {exc!r}") from exc
    if total and done != total:
        raise _Transient(f"the connection closed after {done:,} of {total:,} bytes")


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _receive(
    response, sink, done: int, total: int, progress: Progress | None, limits: _Limits,
    room: tuple[int, str],
) -> int:  # fmt: skip
    """Write the body to `sink` within the limits; returns the bytes the file then holds.
    A transfer slower than `MIN_RATE` over `STALL_S` is transient (retried)."""
    limit, why = room
    window_start, window_bytes = time.monotonic(), 0
    while chunk := response.read1(CHUNK):
        done += len(chunk)
        if done > limit:
            raise _TooMuch(f"the server sent more than {limit:,} bytes ({why})")
        sink.write(chunk)
        if progress is not None:
            progress(done, total or done)
        limits.check_time()
        window_bytes += len(chunk)
        elapsed = time.monotonic() - window_start
        if elapsed >= STALL_S:
            if window_bytes < MIN_RATE * elapsed:
                raise _Transient(f"the transfer stalled: {window_bytes:,} bytes in "
                                 f"{elapsed:.0f} s")  # fmt: skip
            window_start, window_bytes = time.monotonic(), 0
    return done


def written_files(target: Path) -> tuple[Path, Path, Path]:
    """The files `download` writes for `target`: the file itself, its `.part` and the
    `.part.json` state beside it."""
    partial = target.with_name(target.name + ".part")
    return target, partial, partial.with_name(partial.name + ".json")


def download(
    url: str, target: Path, progress: Progress | None = None, *, max_bytes: int | None = None
) -> str:
    """Download `url` to `target`, resuming a `.part` left by an earlier try.

    Args:
        max_bytes: the most the file may hold (a manifest's declared size); None:
            `MAX_BYTES`.

    Returns:
        the sha256 of `target` as 64 hex digits.

    Raises:
        DownloadError: naming the address and the last failure; over the size limit or
            the deadline, or with the disk full, the `.part` is deleted.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    _, partial, state_file = written_files(target)
    what = "the documented maximum, MAX_BYTES" if max_bytes is None else "the declared size"
    limits = _Limits(max_bytes or MAX_BYTES, time.monotonic() + DEADLINE_S, what)
    reason = ""
    try:
        for attempt in range(ATTEMPTS):
            if attempt:
                time.sleep(min(BACKOFF_S * 2 ** (attempt - 1),
                               max(limits.deadline - time.monotonic(), 0)))  # fmt: skip
            limits.check_time()
            try:
                _attempt(url, partial, progress, limits)
                break
            except _Transient as exc:
                reason = str(exc)
            except DownloadError as exc:
                raise DownloadError(f"download of {url} failed: {exc}") from None
        else:
            raise DownloadError(f"download of {url} failed after {ATTEMPTS} attempts: {reason}")
    except _TooMuch as exc:
        partial.unlink(missing_ok=True)
        state_file.unlink(missing_ok=True)
        raise DownloadError(
            f"download of {url} into {target} stopped: {exc}; the partial file was deleted"
        ) from None
    partial.rename(target)
    state_file.unlink(missing_ok=True)
    return file_sha256(target)
