"""Append-only audit trail of enrolments, rollbacks, removals and review decisions (SQLAlchemy).

SQLite by default; any SQLAlchemy URL (e.g. PostgreSQL) works. Rows are only ever
inserted: there is no update or delete path in this module, and on SQLite and
PostgreSQL triggers refuse UPDATE and DELETE on the table. No PHI is stored: scans
are identified by their pixel hash.
"""
from __future__ import annotations

import csv
import datetime as _dt
import io
import json
from pathlib import Path

import sqlalchemy as sa

EVENT_TYPES = ("enroll", "rollback", "remove", "review", "login")
metadata = sa.MetaData()
events = sa.Table(
    "audit_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("event", sa.String(16), nullable=False),
    sa.Column("user", sa.String(128), nullable=False),
    sa.Column("model_version", sa.String(16)),
    sa.Column("domain", sa.String(64)),
    sa.Column("scan_sha256", sa.String(64)),
    sa.Column("score", sa.Float),
    sa.Column("threshold", sa.Float),
    sa.Column("decision", sa.String(32)),       # the model's decision
    sa.Column("action", sa.String(32)),         # the clinician's action or the admin's operation
    sa.Column("comment", sa.Text),
    sa.Column("details", sa.Text),              # JSON
)

_TRIGGERS = {
    "sqlite": ["CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit_events "
               "BEGIN SELECT RAISE(ABORT, 'audit trail is append-only'); END",
               "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit_events "
               "BEGIN SELECT RAISE(ABORT, 'audit trail is append-only'); END"],
    "postgresql": ["CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger AS $$ BEGIN "
                   "RAISE EXCEPTION 'audit trail is append-only'; END $$ LANGUAGE plpgsql",
                   "DROP TRIGGER IF EXISTS audit_no_change ON audit_events",
                   "CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit_events "
                   "FOR EACH ROW EXECUTE FUNCTION audit_append_only()"],
}


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path)}"


class AuditLog:
    def __init__(self, url: str):
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(url, pool_pre_ping=True)
        metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            for stmt in _TRIGGERS.get(self.engine.dialect.name, []):
                conn.exec_driver_sql(stmt)

    def record(self, event: str, user: str, *, model_version=None, domain=None, scan_sha256=None, score=None,
               threshold=None, decision=None, action=None, comment=None, details: dict | None = None) -> int:
        if event not in EVENT_TYPES:
            raise ValueError(f"event must be one of {EVENT_TYPES}")
        row = dict(at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), event=event,
                   user=user or "unknown", model_version=model_version, domain=domain, scan_sha256=scan_sha256,
                   score=None if score is None else float(score),
                   threshold=None if threshold is None else float(threshold), decision=decision, action=action,
                   comment=comment, details=json.dumps(details) if details else None)
        with self.engine.begin() as conn:
            return int(conn.execute(events.insert().values(**row)).inserted_primary_key[0])

    def query(self, event: str | None = None, user: str | None = None, domain: str | None = None,
              limit: int = 10_000) -> list[dict]:
        q = sa.select(events).order_by(events.c.id.desc()).limit(limit)
        if event:
            q = q.where(events.c.event == event)
        if user:
            q = q.where(events.c.user == user)
        if domain:
            q = q.where(events.c.domain == domain)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def to_csv(self, rows: list[dict]) -> str:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=[c.name for c in events.columns])
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()
