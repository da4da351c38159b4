"""The embedded demo lab: namespaces, veths and the traffic that ``ironpost-tui demo`` shows.

May import: ``engine``, ``config``, ``rules``, ``detectors``, ``kernel``, ``errors``, ``model``.
"""
