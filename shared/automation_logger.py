"""AutomationLogger: the seed's per-run log files, plus the same lines in the database.

Lines are added to the caller's session and written to the files only after that
session commits, so a rolled-back batch leaves no line behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from shared.models import AutomationRun, RunLogLine

_PENDING = "automation_log_pending"


# How a resumed run's log line starts; the notify consumer reads it to tell a real pause or failure,
# resumed since, from a forged one.
RESUMED_FROM = "Run resumed ({state})"

@dataclass(frozen=True)
class RunRef:
    """Enough of a run to log about it (and to charge it) without loading the row."""

    pk: int
    run_id: str
    site_id: int
    account_id: int

    @classmethod
    def of(cls, run: AutomationRun, account_id: int) -> RunRef:
        return cls(pk=run.id, run_id=run.run_id, site_id=run.site_id, account_id=account_id)


def run_log_dir(log_root: Path, account_id: int, site_id: int, run_id: str) -> Path:
    """`{root}/{account_id}/{site_id}/{run_id}/`, the seed's layout."""
    return log_root / str(account_id) / str(site_id) / run_id


def log_file_name(stage: int) -> str:
    return "automation_run.log" if stage == 0 else f"stage_{stage}.log"


class AutomationLogger:
    """Writes `automation_run.log` and `stage_N.log` for a run; stage lines go to both."""

    def __init__(self, log_root: Path) -> None:
        self.log_root = log_root

    def _line(self, session: AsyncSession, run: RunRef, stage: int, message: str, level: str = "INFO") -> None:
        session.add(RunLogLine(run_id=run.pk, stage=stage, level=level, message=message))
        self.file_line(session, run, stage, message, level)

    def file_line(self, session: AsyncSession, run: RunRef, stage: int, message: str, level: str = "INFO") -> None:
        """Only the file copy of a line, written after `session` commits, for a caller that inserts the
        line's `run_log_lines` row in a statement of its own (the batch finish statement does, to save
        the insert's round trip)."""
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        folder = run_log_dir(self.log_root, run.account_id, run.site_id, run.run_id)
        text = f"[{stamp}] {level} {message}\n"
        pending = session.sync_session.info.setdefault(_PENDING, [])
        pending.append((folder / log_file_name(0), text))
        if stage:
            pending.append((folder / log_file_name(stage), text))

    def start_run(self, session: AsyncSession, run: RunRef, trigger: str, detail: str) -> None:
        self._line(session, run, 0, f"Run {run.run_id} started ({trigger}): {detail}")

    def run_event(self, session: AsyncSession, run: RunRef, message: str, level: str = "INFO") -> None:
        self._line(session, run, 0, message, level)

    def log_stage_start(self, session: AsyncSession, run: RunRef, stage: int, detail: str) -> None:
        self._line(session, run, stage, f"Stage {stage} started: {detail}")

    def log_stage_progress(self, session: AsyncSession, run: RunRef, stage: int, detail: str) -> None:
        self._line(session, run, stage, self.progress_message(stage, detail))

    @staticmethod
    def progress_message(stage: int, detail: str) -> str:
        return f"Stage {stage} progress: {detail}"

    def log_stage_complete(self, session: AsyncSession, run: RunRef, stage: int, detail: str) -> None:
        self._line(session, run, stage, f"Stage {stage} completed: {detail}")

    def log_stage_error(self, session: AsyncSession, run: RunRef, stage: int, detail: str) -> None:
        self._line(session, run, stage, f"Stage {stage} error: {detail}", level="ERROR")


def _write_pending(session: Session) -> None:
    for path, text in session.info.pop(_PENDING, []):
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(text)


def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


event.listen(Session, "after_commit", _write_pending)
event.listen(Session, "after_rollback", _drop_pending)
