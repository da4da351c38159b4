"""The headless agent's outputs: Prometheus metrics, the HTTP(S) endpoint, its web config, logs.

``collector`` reads the latest snapshot at scrape time; ``endpoint`` and ``server`` serve it, with the
limits, request parser and login guard of ``http/`` against abusive clients.

May import: ``engine``, ``config``, ``rules``, ``detectors``, ``kernel``, ``errors``, ``model``.
"""
