import uuid

import pytest

from appliance.conversions.lifecycle import IMPORT_TRIES, ImportRouting
from appliance.conversions.task import Outcome, OutFile
from appliance.engines.enabled import enabled_engines
from appliance.engines.registry import Registry
from appliance.errors import RetryableError

REGISTRY = Registry(enabled_engines())


def _outcome(name):
    return Outcome({"files": [{"filename": name}]}, [OutFile("0" * 64, 10, name)])


def _convert(queue="light", **payload):
    return {
        "id": str(uuid.uuid4()),
        "operation": "convert",
        "queue": queue,
        "payload": {"output_format": "pdf", **payload},
    }


def test_the_dependents_move_to_the_queue_their_input_needs_and_are_named_as_routed():
    light, declared = _convert(), _convert(input_format="png")
    routing = ImportRouting(REGISTRY, _outcome("report.docx"), [light, declared])
    task = uuid.uuid4()
    args = routing.args(task, 2)
    assert args[0] == task and args[1] == 2
    route = [{"from": "docx", "to": "pdf", "engine": "libreoffice"}]
    # the route planned for the named file travels with the task; a declared format chose
    # both at creation
    assert args[4].obj == {light["id"]: {"queue": "office", "routes": {"docx": route}}}
    assert args[5] == [uuid.UUID(light["id"]), uuid.UUID(declared["id"])]


def test_a_stale_answer_brings_the_dependents_the_next_call_works_from():
    routing = ImportRouting(REGISTRY, _outcome("report.docx"))
    assert routing.more(None)
    assert routing.args("t", None)[5] == []
    late = _convert()
    assert routing.more({"stale": True, "dependents": [late]})
    assert routing.args("t", None)[5] == [uuid.UUID(late["id"])]
    assert not routing.more({"stale": False, "dependents": None})


def test_an_import_that_gains_dependents_on_every_try_gives_up():
    routing = ImportRouting(REGISTRY, _outcome("a.docx"))
    for _ in range(IMPORT_TRIES):
        routing.args("t", None)
    with pytest.raises(RetryableError):
        routing.args("t", None)
