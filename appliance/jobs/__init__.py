"""Jobs and tasks: validating task graphs, storing them, running them on Dramatiq workers.

Postgres is the source of truth. A task is enqueued after the commit that makes it ready;
the reconciler re-enqueues ready tasks whose message went missing and re-runs tasks whose
worker died, so an accepted job is never lost.
"""
