"""Gotenberg-compatible routes (``/forms/...``, ``/health``, ``/version``): each turns its
multipart form into a job of the appliance's own task operations, so limits, quotas,
scanning, encryption at rest, audit and usage apply as they do to ``/v2/jobs``.

``fields`` holds Gotenberg 8's field mapping (form -> tasks, ``/forms/pdfengines/*`` and the
conversions); ``stages`` Gotenberg 9's stages and ``v9`` its routes (``/forms/pdf/*``, and
``stages`` and the ``native*`` names on the conversions), the table of every route; ``form``
reads the multipart body; ``routes`` runs the job and answers as Gotenberg does; ``webhook``
reads Gotenberg's webhook headers and ``conversions.gotenberg_delivery`` sends what they ask
for.
"""
