"""The command-line client (`appliance login|convert|jobs|formats`) against a running
appliance, run as a user would run it: a separate process that knows only the URL and a key."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pyvips

# Its own deployment: it reads every webm conversion of the database as its own.
OWN_DEPLOYMENT = True


def client_env(tmp_path: Path, key: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env["APPLIANCE_CLIENT_CONFIG"] = str(tmp_path / "client.json")
    if key:
        env["APPLIANCE_API_KEY"] = key
    return env


def appliance(env: dict[str, str], *argv: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", *argv],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=180,
    )


def images(tmp_path: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        path = tmp_path / f"in{i}.png"
        pyvips.Image.black(300 + i, 200).bandjoin([128, 200]).cast("uchar").write_to_file(str(path))
        paths.append(path)
    return paths


def test_login_stores_a_working_key_readable_by_its_owner_only(deployment, tmp_path):
    env = client_env(tmp_path)
    done = appliance(env, "login", "--server", deployment.url, stdin=deployment.key() + "\n")
    assert done.returncode == 0, done.stderr
    stored = tmp_path / "client.json"
    assert stored.stat().st_mode & 0o777 == 0o600
    assert json.loads(stored.read_text())["server"] == deployment.url
    listed = appliance(env, "jobs", "list", "--json")  # server and key from the file
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []


def test_login_refuses_a_bad_key_and_stores_nothing(deployment, tmp_path):
    env = client_env(tmp_path)
    done = appliance(env, "login", "--server", deployment.url, "--key", "nope")
    assert done.returncode == 3
    assert done.stderr.startswith("appliance: ")
    assert not (tmp_path / "client.json").exists()


def test_convert_several_files_in_parallel_with_options(deployment, tmp_path):
    env = client_env(tmp_path, deployment.key())
    out = tmp_path / "out"
    files = [str(p) for p in images(tmp_path, 3)]
    done = appliance(
        env, "convert", *files, "--to", "webp", "--option", "width=100",
        "-o", str(out), "--server", deployment.url, "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert [r["input"] for r in results] == files
    assert all(r["status"] == "finished" and r["error_code"] is None for r in results)
    for i, r in enumerate(results):
        assert r["outputs"] == [str(out / f"in{i}.webp")]
        img = pyvips.Image.new_from_file(r["outputs"][0])
        assert img.width == 100 and img.get("vips-loader") == "webpload"


def test_convert_prints_a_line_per_file_and_keeps_existing_outputs(deployment, tmp_path):
    env = client_env(tmp_path, deployment.key())
    (src,) = images(tmp_path, 1)
    args = ("convert", str(src), "--to", "jpg", "-o", str(tmp_path), "--server", deployment.url)
    first = appliance(env, *args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == f"{src} -> {tmp_path / 'in0.jpg'}\n"
    jpg = pyvips.Image.new_from_file(str(tmp_path / "in0.jpg"))
    assert (jpg.get("vips-loader"), jpg.width, jpg.height) == ("jpegload", 300, 200)
    again = appliance(env, *args)
    assert again.returncode == 1
    assert "OUTPUT_EXISTS" in again.stderr
    assert appliance(env, *args, "--overwrite").returncode == 0


def test_a_failed_conversion_exits_1_with_the_tasks_code_and_message(deployment, tmp_path):
    env = client_env(tmp_path, deployment.key())
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 200)
    done = appliance(env, "convert", str(bad), "--to", "webp", "--server", deployment.url, "--json")
    assert done.returncode == 1
    (result,) = json.loads(done.stdout)
    assert result["status"] == "error" and result["error_code"] and result["error_message"]
    assert f"appliance: {bad}: {result['error_code']}: " in done.stderr
    shown = appliance(env, "jobs", "show", result["job_id"], "--server", deployment.url)
    assert shown.returncode == 0 and f"failed: {result['error_code']}" in shown.stdout


def test_exit_codes_for_usage_refusal_and_unreachable(deployment, tmp_path):
    (src,) = images(tmp_path, 1)
    no_key = appliance(client_env(tmp_path), "convert", str(src), "--to", "jpg",
                       "--server", deployment.url)  # fmt: skip
    assert no_key.returncode == 3 and "NO_KEY" in no_key.stderr
    env = client_env(tmp_path, deployment.key())
    missing = appliance(env, "convert", str(tmp_path / "nope.png"), "--to", "jpg")
    assert missing.returncode == 2 and "NO_SUCH_FILE" in missing.stderr
    unknown = appliance(env, "convert", str(src), "--to", "nosuchformat", "--server",
                        deployment.url, "--json")  # fmt: skip
    assert unknown.returncode == 3 and "appliance: " in unknown.stderr
    away = appliance(env, "jobs", "list", "--server", "http://127.0.0.1:9")
    assert away.returncode == 4 and "UNREACHABLE" in away.stderr


def test_jobs_wait_show_list_and_delete(deployment, tmp_path):
    env = client_env(tmp_path, deployment.key())
    (src,) = images(tmp_path, 1)
    done = appliance(env, "convert", str(src), "--to", "tif", "-o", str(tmp_path / "o"),
                     "--server", deployment.url, "--json")  # fmt: skip
    (result,) = json.loads(done.stdout)
    tif = pyvips.Image.new_from_file(result["outputs"][0])
    assert (tif.get("vips-loader"), tif.width, tif.height) == ("tiffload", 300, 200)
    job_id = result["job_id"]
    waited = appliance(env, "jobs", "wait", job_id, "--server", deployment.url, "--json")
    assert waited.returncode == 0 and json.loads(waited.stdout)["status"] == "finished"
    listed = appliance(env, "jobs", "list", "--server", deployment.url)
    assert listed.stdout.startswith(f"{job_id}\tfinished\t")
    gone = appliance(env, "jobs", "delete", job_id, "--server", deployment.url)
    assert gone.returncode == 0
    shown = appliance(env, "jobs", "show", job_id, "--server", deployment.url)
    assert shown.returncode == 3 and "NOT_FOUND" in shown.stderr


def test_formats_lists_what_the_engines_convert(deployment, tmp_path):
    done = appliance(client_env(tmp_path), "formats", "--from", "png", "--server",
                     deployment.url, "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert {"webp", "jpg", "pdf"} <= {r["output_format"] for r in rows}
    assert {r["input_format"] for r in rows} == {"png"}


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    """An mp4 whose conversion to webm (VP9) takes many seconds on this machine, under the
    s3 deployment's 2 MB upload limit."""
    path = tmp_path_factory.mktemp("client-video") / "long.mp4"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25",
         "-t", "30", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "40", str(path)],
        check=True, timeout=120,
    )  # fmt: skip
    return path


def test_ctrl_c_cancels_the_running_job(deployment, tmp_path, long_video):
    env = client_env(tmp_path, deployment.key())
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "convert", str(long_video), "--to", "webm",
         "--server", deployment.url, "-o", str(tmp_path)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # as from a terminal: a suite started in the background (`cmd &` in a script) passes
        # SIGINT ignored to its children, and Python then keeps ignoring it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not deployment.sql(
            "SELECT 1 FROM tasks WHERE operation = 'convert' AND status = 'processing'"
            " AND payload->>'output_format' = 'webm'"
        ):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the client ended or the job never ran: {proc.communicate()}")
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "INTERRUPTED: interrupted: 1 job(s) cancelled" in err
    (row,) = deployment.sql(
        "SELECT status, code FROM tasks WHERE operation = 'convert'"
        " AND payload->>'output_format' = 'webm'"
    )
    assert (row["status"], row["code"]) == ("error", "CANCELLED")


def test_jobs_wait_gives_up_with_exit_5_after_its_timeout(deployment, tmp_path):
    env = client_env(tmp_path, deployment.key())
    made = deployment.client(env["APPLIANCE_API_KEY"]).post(
        "/v2/jobs", json={"tasks": {"up": {"operation": "import/upload"}}}
    )
    job_id = made.json()["data"]["id"]  # waits for an upload that never comes
    done = appliance(env, "jobs", "wait", job_id, "--timeout", "1", "--server", deployment.url)
    assert done.returncode == 5 and "TIMEOUT" in done.stderr
