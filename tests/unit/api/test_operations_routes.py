"""The single-task routes and their OpenAPI entries come from the enabled operations list."""

from appliance.api.app import create_app
from appliance.conversions.operations.enabled import ENABLED
from appliance.settings import Settings


def _never(settings):
    raise AssertionError("the lifespan does not run here")


def test_every_enabled_operation_has_its_single_task_route_described_in_the_schema():
    schema = create_app(_never, Settings.from_env({})).openapi_schema.to_schema()
    for op in ENABLED:
        post = schema["paths"][f"/v2/{op.name}"]["post"]
        assert post["operationId"] == f"create_{op.name.replace('/', '_')}_task"
        assert post["description"] == op.describe()
    rotate = schema["paths"]["/v2/pdf/rotate-pages"]["post"]["description"]
    assert "Required fields: input, rotation." in rotate and "Takes pdf." in rotate
