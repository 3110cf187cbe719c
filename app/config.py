"""App settings: environment variables, else a TOML config file, else defaults in the user data directory.

PATCHCORECL_STORE   model store directory
PATCHCORECL_DB      SQLAlchemy URL of the audit database (sqlite:///… or postgresql://…)
PATCHCORECL_USERS   TOML file of configured users (hashed passwords; never in the repository)
PATCHCORECL_CONFIG  TOML file with any of: store, database, users, spool
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from core.audit import sqlite_url


@dataclass(frozen=True)
class Settings:
    store: Path
    database: str
    users_file: Path | None
    spool: Path


def load_settings() -> Settings:
    data_dir = Path(platformdirs.user_data_dir("patchcorecl"))
    cfg = {}
    cfg_path = os.environ.get("PATCHCORECL_CONFIG")
    if cfg_path and Path(cfg_path).is_file():
        cfg = tomllib.loads(Path(cfg_path).read_text())
    store = Path(os.environ.get("PATCHCORECL_STORE") or cfg.get("store") or data_dir / "store")
    database = os.environ.get("PATCHCORECL_DB") or cfg.get("database") or sqlite_url(data_dir / "audit.sqlite")
    users = os.environ.get("PATCHCORECL_USERS") or cfg.get("users")
    spool = Path(os.environ.get("PATCHCORECL_SPOOL") or cfg.get("spool") or data_dir / "spool")
    return Settings(store=store, database=database, users_file=Path(users) if users else None, spool=spool)
