"""Virus scanning: every imported file goes through ClamAV's daemon (clamd) before any engine
sees it, and an infected one is refused (``VirusFound``, code VIRUS_FOUND).

``clamd`` is the wire client (INSTREAM over clamd's Unix socket or TCP), ``scanner`` the
policy the imports call (wait for a daemon that is down or still loading, fail closed),
``daemon`` starts a private clamd for ``appliance up`` and for the tests.
"""
