"""Where the client finds its server and key: flags first, then the environment
(``APPLIANCE_API_KEY``, ``APPLIANCE_SERVER``), then the file ``appliance login`` writes
(``$XDG_CONFIG_HOME/appliance/client.json``, mode 0600)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import msgspec

KEY_VAR = "APPLIANCE_API_KEY"
SERVER_VAR = "APPLIANCE_SERVER"
CONFIG_VAR = "APPLIANCE_CLIENT_CONFIG"  # another config file (tests, several appliances)
DEFAULT_SERVER = "http://127.0.0.1:8000"


class ClientConfig(msgspec.Struct):
    server: str = DEFAULT_SERVER
    key: str | None = None


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get(CONFIG_VAR):
        return Path(env[CONFIG_VAR])
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "appliance" / "client.json"


def load(server: str | None, environ: Mapping[str, str] | None = None) -> ClientConfig:
    """The server and key in force: ``server`` (a flag) over the environment over the file."""
    env = os.environ if environ is None else environ
    stored = read_file(config_path(env))
    return ClientConfig(
        server=(server or env.get(SERVER_VAR) or stored.server).rstrip("/"),
        key=env.get(KEY_VAR) or stored.key,
    )


def read_file(path: Path) -> ClientConfig:
    try:
        return msgspec.json.decode(path.read_bytes(), type=ClientConfig)
    except FileNotFoundError:
        return ClientConfig()
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path} is not a client config file: {exc}") from None


def save(config: ClientConfig, environ: Mapping[str, str] | None = None) -> Path:
    """Write the file readable by its owner only (it holds the key)."""
    path = config_path(environ)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(msgspec.to_builtins(config), fh, indent=2)
    os.chmod(path, 0o600)
    return path


class ConfigError(ValueError):
    """The config file cannot be read; the message names it."""
