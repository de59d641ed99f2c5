"""Statements that prepare the single-host appliance's private PostgreSQL before any pool
exists: through psql (a test harness's server, which trusts its clients) or in single-user mode
(``appliance up``'s, which lets in only the application role with its password). Names are the
appliance's own constants, never input; a password reaches the server only as its SCRAM
verifier."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

SCRAM_ITERATIONS = 4096  # PostgreSQL's own default (scram_iterations)


def database_exists(name: str) -> str:
    """Answers 1 when the database exists."""
    return f"SELECT 1 FROM pg_database WHERE datname = '{name}'"  # noqa: S608 (a constant)


def count_databases(name: str) -> str:
    """One column ``n``: 1 when the database exists, else 0."""
    return f"SELECT count(*) AS n FROM pg_database WHERE datname = '{name}'"  # noqa: S608


def create_database(name: str) -> str:
    return f'CREATE DATABASE "{name}"'


def ensure_login_role(role: str, verifier: str) -> str:
    """The role exists, may log in with the password ``verifier`` stands for, and holds no
    privilege beyond its own objects (an earlier grant is taken back)."""
    return (
        f"DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN "
        f'CREATE ROLE "{role}"; END IF; END$$;\n\n'
        f'ALTER ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION '
        f"NOBYPASSRLS PASSWORD '{verifier}'"
    )


def database_owner(name: str, role: str) -> str:
    return f'ALTER DATABASE "{name}" OWNER TO "{role}"'


def hand_over_objects(role: str) -> str:
    """Give ``role`` the public schema and every table, view, sequence, routine and type in it
    (a cluster made before passwords had its superuser own what the migrations made);
    sequences of a column and indexes follow their table."""
    return f"""ALTER SCHEMA public OWNER TO "{role}";

DO $$
DECLARE stmt text;
BEGIN
  FOR stmt IN
    SELECT format('ALTER %s %s OWNER TO "{role}"',
                  CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                                 WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END,
                  c.oid::regclass)
      FROM pg_class c
     WHERE c.relnamespace = 'public'::regnamespace
       AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
       AND c.relowner <> '{role}'::regrole
       AND NOT EXISTS (SELECT FROM pg_depend d
                        WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                          AND d.deptype IN ('a', 'i') AND c.relkind = 'S')
    UNION ALL
    SELECT format('ALTER ROUTINE %s OWNER TO "{role}"', p.oid::regprocedure)
      FROM pg_proc p
     WHERE p.pronamespace = 'public'::regnamespace AND p.proowner <> '{role}'::regrole
    UNION ALL
    SELECT format('ALTER TYPE %s OWNER TO "{role}"', t.oid::regtype)
      FROM pg_type t
     WHERE t.typnamespace = 'public'::regnamespace AND t.typowner <> '{role}'::regrole
       AND t.typtype IN ('e', 'd', 'r')
  LOOP
    EXECUTE stmt;
  END LOOP;
END$$"""  # noqa: S608 (a constant role name)


def scram_verifier(password: str, iterations: int = SCRAM_ITERATIONS) -> str:
    """What PostgreSQL stores for a scram-sha-256 password (RFC 5802, RFC 7677), made here so
    the password itself never reaches the server, its logs or its error messages. An ASCII
    password is its own SASLprep form."""
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
