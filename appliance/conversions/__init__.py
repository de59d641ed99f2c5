"""The conversion domain: the whole life of a job and its tasks, with no HTTP, no queue and
no SQL text in it. The API (``api/``) and the worker (``jobs/``) both call it; it talks to
storage, the engines and the database layer (``db/queries``).

- ``graph``: a job's tasks checked and planned (``graph.plan``), and the queue classes of
  waiting tasks once an import's file is named;
- ``operation`` and ``operations/``: a task operation is one module declaring its fields,
  formats, check, queue and run; ``operations/enabled.py`` lists them;
- ``task``: the typed task a worker claims, its input files and what a run made;
- ``lifecycle``: what the worker and the API share of a task's life (ends, import ends);
- ``runner``: a task run on a worker (claim, lease, run, end, retry); ``runtime``: what a
  worker process holds;
- ``service``: what the API asks (create, read, list, cancel, retry, delete, upload);
- ``work``: inputs fetched and checked, routes run, outputs checked and kept, the cache;
- ``catalog``: ``GET /v2/operations``; ``files``, ``fetch``: bytes in; ``events``: ends
  announced to sync waiters.
"""
