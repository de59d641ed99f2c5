"""What the OpenAPI document promises about every route, read from the document itself."""

from appliance.api.app import create_app
from appliance.settings import Settings

SIGNED_OR_PUBLIC = {
    "/v2/upload/{task_id}",
    "/v2/files/{key}",
    "/v2/s/{base_id}",
    "/v2/convert/formats",
    "/v2/operations",
}


def _never(settings):
    raise AssertionError("the lifespan does not run here")


def _document():
    return create_app(_never, Settings.from_env({})).openapi_schema.to_schema()


def _operations():
    for path, item in _document()["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_every_route_that_takes_an_api_key_documents_it_as_a_bearer_token():
    for path, method, operation in _operations():
        wanted = None if path in SIGNED_OR_PUBLIC else [{"api_key": []}]
        assert operation.get("security") == wanted, (method, path)
        if wanted:
            assert "401" in operation["responses"] and "403" in operation["responses"]
    scheme = _document()["components"]["securitySchemes"]["api_key"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")


def test_every_error_answer_is_documented_in_cloudconvert_shape():
    for path, method, operation in _operations():
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                ref = response["content"]["application/json"]["schema"]["$ref"]
                # a signed URL's error may carry its job (JobError: Error and data)
                assert ref.rsplit("/", 1)[1] in ("Error", "JobError"), (method, path, status)
