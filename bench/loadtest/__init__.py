"""The bundled load test: Locust, headless, against any appliance's base URL.

    scripts/loadtest --url https://convert.example.com --make-keys 100 --users 100 \\
        --spawn-rate 10 --run-time 5m --out bench/out/loadtest

``locustfile.py`` models the clients (jobs of small files of several families waited for by
polling or by the sync API and downloaded; a read-only mix of status polls, lists and the
format list); ``report.py`` turns Locust's CSV history and the sampled queue depth into PNG
plots. Keys for the simulated users come from ``--keys FILE`` (one per line) or are made with
``--make-keys N`` on a host that holds the appliance's settings (as ``appliance keys create``).
"""
