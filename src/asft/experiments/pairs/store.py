"""The side files of ``asft pairs``: what a run has made so far, so that a rerun resumes.

Each is a JSON Lines file appended to as work finishes (a line cut short by a crash is
dropped on open, :class:`asft.evaluate.mt_bench.JsonlLog`). Its first line records the
settings it was made with, ``{"settings": {...}}``; a rerun with other settings in the same
place is refused with the fields that differ, never mixed in. Every other line is one
prompt's record, keyed by the prompt's ``index`` and carrying ``sha``, the hash of what it was
made from (the prompt; for scores, the samples too): a record whose hash differs (the source
changed) is refused, not reused. A file that holds only its settings line (its run failed
before making anything) is simply started again with the new settings.
"""

from __future__ import annotations

from pathlib import Path

from asft import atomic
from asft.errors import AsftError
from asft.evaluate.mt_bench import JsonlLog

_ADVICE = "rerun with the same settings, choose another -o, or delete that file to start over"


def _differences(saved: dict, now: dict) -> str:
    keys = [k for k in dict.fromkeys([*saved, *now]) if saved.get(k) != now.get(k)]
    return "; ".join(f"{k}: {saved.get(k)!r} there, {now.get(k)!r} now" for k in keys)


class SideFile:
    """One side file: records by prompt index, made with ``settings``.

    Args:
        path: the file (created with its settings line when missing or empty).
        settings: what its records depend on (JSON values only: compared after a round trip).
        fields: the record keys besides ``index`` and ``sha`` that must be there.
    """

    def __init__(self, path: str | Path, settings: dict, fields: tuple[str, ...]):
        self.log = JsonlLog(path)
        self.path = self.log.path
        try:
            entries = self.log.entries()
        except ValueError as err:
            raise AsftError(f"{err}; {_ADVICE}") from None
        if len(entries) == 1 and entries[0][1].get("settings") not in (None, settings):
            # only the settings of a run that made nothing (it failed before its first
            # record): nothing to lose, so the new settings replace them
            atomic.write_text(self.path, "")
            entries = []
        if not entries:
            self.log.append({"settings": settings})
            entries = self.log.entries()
        where, header = entries[0]
        if header.get("settings") != settings:
            if not isinstance(header.get("settings"), dict):
                raise AsftError(f"{where}: not a settings line (not written by asft pairs?); "
                                f"{_ADVICE}")
            diff = _differences(header["settings"], settings)
            raise AsftError(f"{self.path} was made with other settings ({diff}); {_ADVICE}")
        self.records: dict[int, dict] = {}
        for where, record in entries[1:]:
            index = record.get("index")
            if (not isinstance(index, int) or isinstance(index, bool)
                    or not isinstance(record.get("sha"), str) or any(k not in record for k in fields)):
                raise AsftError(f"{where}: not a record of this file (expected index, sha, "
                                f"{', '.join(fields)}); {_ADVICE}")
            self.records[index] = record

    def get(self, index: int, sha: str, origin: str) -> dict | None:
        """The saved record of prompt ``index``, None when there is none; AsftError when it
        was made from something else (``sha`` differs)."""
        record = self.records.get(index)
        if record is not None and record["sha"] != sha:
            raise AsftError(f"{self.path}: the record of prompt {index + 1} ({origin}) was made "
                            f"from another prompt or other samples; {_ADVICE}")
        return record

    def add(self, record: dict) -> None:
        """Append ``record`` (with ``index`` and ``sha``), flushed before returning."""
        self.log.append(record)
        self.records[record["index"]] = record
