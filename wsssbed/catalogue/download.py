"""Resumable, retried HTTP downloads with a running sha256.

Why not pooch: its downloaders start over from byte 0 after any failure and need the
hash before the first download; WSSS-BED's archives are several GB and catalogued
unpinned until a first copy is verified. This module adds what that needs to urllib:

- the transfer is written to `<target>.part`; a retry, or a later run, asks for the
  rest with `Range: bytes=<have>-` and `If-Range` (the server's ETag or Last-Modified,
  kept in `<target>.part.json`), so a changed file restarts from zero instead of
  splicing two versions;
- transient failures (connection errors, timeouts, short bodies, HTTP 408/429/5xx) are
  retried with exponential backoff; other HTTP errors end it at once;
- `target` appears only when every byte has arrived (renamed from the `.part`).
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from wsssbed.errors import WsssbedError
from wsssbed.io.digest import file_sha256

Progress = Callable[[int, int], None]
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
ATTEMPTS = 5
BACKOFF_S = 1.0
TIMEOUT_S = 60.0
CHUNK = 1 << 20


class DownloadError(WsssbedError):
    """A download that failed for good (after its retries, or at once when permanent)."""


class _Transient(Exception):
    """A failure worth another attempt."""


def _user_agent() -> str:
    from wsssbed import __version__

    return f"wsssbed/{__version__}"


def _validator(headers) -> str:
    return headers.get("ETag") or headers.get("Last-Modified") or ""


def _attempt(url: str, partial: Path, progress: Progress | None) -> None:
    """One request: continue `partial` when the server honours the range, else restart."""
    state_file = partial.with_name(partial.name + ".json")
    have = partial.stat().st_size if partial.exists() else 0
    state = json.loads(state_file.read_text()) if have and state_file.exists() else {}
    headers = {"User-Agent": _user_agent()}
    if have and state.get("url") == url:
        headers["Range"] = f"bytes={have}-"
        if state.get("validator"):
            headers["If-Range"] = state["validator"]
    else:
        have = 0
    try:
        request = urllib.request.Request(url, headers=headers)
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
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
        state_file.write_text(json.dumps({"url": url, "validator": _validator(response.headers)}))
        done = have
        try:
            with open(partial, "ab" if resumed else "wb") as sink:
                while chunk := response.read(CHUNK):
                    sink.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total or done)
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, OSError) and not isinstance(exc, (TimeoutError, ConnectionError)):
                raise DownloadError(f"cannot write {partial}: {exc}") from exc
            raise _Transient(f"connection lost after {done:,} bytes: {exc!r}") from exc
    if total and done != total:
        raise _Transient(f"the connection closed after {done:,} of {total:,} bytes")


def download(url: str, target: Path, progress: Progress | None = None) -> str:
    """Download `url` to `target`, resuming a `.part` left by an earlier try.

    Returns:
        the sha256 of `target` as 64 hex digits.

    Raises:
        DownloadError: naming the address and the last failure.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    reason = ""
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(BACKOFF_S * 2 ** (attempt - 1))
        try:
            _attempt(url, partial, progress)
            break
        except _Transient as exc:
            reason = str(exc)
        except DownloadError as exc:
            raise DownloadError(f"download of {url} failed: {exc}") from None
    else:
        raise DownloadError(f"download of {url} failed after {ATTEMPTS} attempts: {reason}")
    partial.rename(target)
    partial.with_name(partial.name + ".json").unlink(missing_ok=True)
    return file_sha256(target)
