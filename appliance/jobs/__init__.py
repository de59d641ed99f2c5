"""The queue side: the Dramatiq broker and actors, the dispatcher that enqueues ready tasks,
the worker's wiring and the reconciler.

Postgres is the source of truth. A task is enqueued after the commit that makes it ready;
the reconciler re-enqueues ready tasks whose message went missing and re-runs tasks whose
worker died, so an accepted job is never lost. What a task does is the domain's
(``appliance.conversions``).
"""
