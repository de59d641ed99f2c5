from urllib.parse import urlsplit

from appliance.settings import Settings
from appliance.storage.s3 import S3Storage

BASE = {
    "APPLIANCE_STORAGE": "s3",
    "APPLIANCE_S3_ENDPOINT": "10.0.0.5:9000",
    "APPLIANCE_S3_ACCESS_KEY": "a",
    "APPLIANCE_S3_SECRET_KEY": "b",
}


def test_presigned_urls_use_the_internal_endpoint_by_default():
    url = S3Storage.from_settings(Settings.from_env(BASE)).download_url("k/x", "a.png", 60)
    assert urlsplit(url).netloc == "10.0.0.5:9000" and url.startswith("http://")
    assert "response-content-disposition" in url


def test_presigned_urls_can_name_the_public_host():
    s = Settings.from_env({**BASE, "APPLIANCE_S3_PUBLIC_URL": "https://files.example.com"})
    url = S3Storage.from_settings(s).download_url("k/x", "a.png", 60)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("https", "files.example.com")
    assert "X-Amz-Signature" in url
