"""The client's parts that need no server: options, exit codes, failure causes, config."""

from __future__ import annotations

import argparse
import json

import pytest

from appliance.client import config
from appliance.client.api import ApiError
from appliance.client.commands import (
    FAILED,
    OK,
    REFUSED,
    TIMED_OUT,
    UNREACHABLE,
    exit_code,
    option_pairs,
    report,
)
from appliance.client.convert import FileResult, Request, failure, job_tasks


def test_option_values_are_json_when_they_parse_and_text_otherwise():
    assert option_pairs(["width=100", "strip=true", "page_range=1-3", "fit=max"]) == {
        "width": 100,
        "strip": True,
        "page_range": "1-3",
        "fit": "max",
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        option_pairs(["width"])


def test_the_job_is_upload_convert_export_with_the_options_on_convert(tmp_path):
    tasks = job_tasks(Request("webp", {"width": 10}, tmp_path))
    assert tasks["c"] == {
        "operation": "convert",
        "input": "up",
        "output_format": "webp",
        "width": 10,
    }
    assert tasks["e"] == {"operation": "export/url", "input": "c"}


def test_the_failure_named_is_the_cause_not_the_tasks_after_it():
    job = {
        "tasks": [
            {"status": "finished", "code": None},
            {"status": "error", "code": "INPUT_TASK_FAILED", "message": "an input failed"},
            {"status": "error", "code": "CONVERSION_FAILED", "message": "bad bytes"},
        ]
    }
    assert failure(job) == ("CONVERSION_FAILED", "bad bytes")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ApiError("UNREACHABLE", "no answer"), UNREACHABLE),
        (ApiError("INTERNAL_ERROR", "oops", 500), UNREACHABLE),
        (ApiError("UNAUTHENTICATED", "bad key", 401), REFUSED),
        (ApiError("INVALID_DATA", "bad", 422), REFUSED),
        (ApiError("TIMEOUT", "not yet", 408), TIMED_OUT),
    ],
)
def test_api_errors_map_to_documented_exit_codes(error, code):
    assert exit_code(error) == code


def test_a_run_exits_with_its_worst_kind_of_failure(capsys):
    args = argparse.Namespace(json=True)
    done = FileResult("a", status="finished", outputs=["a.pdf"])
    failed = FileResult("b").fail("CONVERSION_FAILED", "bad")
    refused = FileResult("c").fail("INVALID_DATA", "no such format", 422)
    away = FileResult("d").fail("UNREACHABLE", "down")
    assert report(args, [done]) == OK
    assert report(args, [done, failed]) == FAILED
    assert report(args, [failed, refused]) == REFUSED
    assert report(args, [refused, away]) == UNREACHABLE
    printed = capsys.readouterr()
    assert json.loads(printed.out.split("\n]\n")[0] + "]")[0]["outputs"] == ["a.pdf"]
    assert "appliance: b: CONVERSION_FAILED: bad" in printed.err


def test_flags_win_over_the_environment_over_the_config_file(tmp_path):
    env = {config.CONFIG_VAR: str(tmp_path / "c.json")}
    assert config.load(None, env) == config.ClientConfig(config.DEFAULT_SERVER, None)
    path = config.save(config.ClientConfig("http://file:1", "apl_file"), env)
    assert path.stat().st_mode & 0o777 == 0o600
    assert config.load(None, env) == config.ClientConfig("http://file:1", "apl_file")
    env |= {config.SERVER_VAR: "http://env:2/", config.KEY_VAR: "apl_env"}
    assert config.load(None, env) == config.ClientConfig("http://env:2", "apl_env")
    assert config.load("http://flag:3", env).server == "http://flag:3"


def test_an_unreadable_config_file_is_named(tmp_path):
    bad = tmp_path / "c.json"
    bad.write_text("{not json")
    with pytest.raises(config.ConfigError, match=str(bad)):
        config.load(None, {config.CONFIG_VAR: str(bad)})
