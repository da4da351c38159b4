"""What the console saw, kept: recordings (record and replay) and exports (CSV, JSON); and packet
captures to pcapng (capture, pcapng_file), from the running program's capture maps.

May import: ``engine``, ``config``, ``detectors``, ``kernel``, ``errors``, ``model``.
"""
