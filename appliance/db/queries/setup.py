"""Statements that prepare the single-host appliance's private PostgreSQL, run through psql
(``local_services``) before any pool exists. ``name`` is the appliance's own constant
database name, never input."""

from __future__ import annotations


def database_exists(name: str) -> str:
    """Answers 1 when the database exists."""
    return f"SELECT 1 FROM pg_database WHERE datname = '{name}'"  # noqa: S608 (a constant)


def create_database(name: str) -> str:
    return f'CREATE DATABASE "{name}"'
