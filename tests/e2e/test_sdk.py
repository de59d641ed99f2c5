"""The official CloudConvert Python SDK, pointed at the appliance, end to end."""

from __future__ import annotations

import cloudconvert
import pyvips


def test_official_sdk_upload_convert_export_download(deployment, png_file, tmp_path):
    cloudconvert.configure(
        api_key=deployment.key(), endpoint=deployment.url, sync_endpoint=deployment.url + "/sync"
    )
    job = cloudconvert.Job.create(
        payload={
            "tasks": {
                "upload-my-file": {"operation": "import/upload"},
                "convert-my-file": {
                    "operation": "convert",
                    "input": "upload-my-file",
                    "output_format": "webp",
                },
                "export-my-file": {"operation": "export/url", "input": "convert-my-file"},
            }
        }
    )
    upload_task = next(t for t in job["tasks"] if t["name"] == "upload-my-file")
    upload_task = cloudconvert.Task.find(id=upload_task["id"])
    assert cloudconvert.Task.upload(file_name=str(png_file), task=upload_task) is True

    job = cloudconvert.Job.wait(id=job["id"])
    assert job["status"] == "finished", job
    export = next(t for t in job["tasks"] if t["name"] == "export-my-file")
    file = export["result"]["files"][0]
    target = tmp_path / file["filename"]
    assert cloudconvert.download(filename=str(target), url=file["url"]) == str(target)
    img = pyvips.Image.new_from_file(str(target))
    assert (img.width, img.height) == (400, 300)
    assert target.read_bytes()[8:12] == b"WEBP"

    listed = cloudconvert.Job.all({"filter[status]": "finished"})
    assert [j["id"] for j in listed] == [job["id"]]
    assert cloudconvert.Task.find(id=export["id"])["status"] == "finished"
    assert cloudconvert.Job.delete(job["id"]) is True
