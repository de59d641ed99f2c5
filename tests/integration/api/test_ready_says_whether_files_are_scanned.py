"""/health/ready says whether imported files are scanned; the API itself needs no clamd (the
workers scan), so clamd's state never makes the API unready."""


def test_ready_says_scanning_is_off_when_it_is(api):
    ready = api.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["virus_scan"] == "off"
