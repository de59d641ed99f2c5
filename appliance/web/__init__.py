"""The web UI at ``/``: server-rendered pages (Jinja templates, htmx for the small in-page
updates, one script of our own for drag and drop, uploads and live progress) for people who
sign in with an e-mail and a password. Handlers are thin: conversions go through the same
``JobService`` as the API, with the signed-in user's id, so the UI reaches nothing the API
would not give that user's key."""
