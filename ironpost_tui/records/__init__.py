"""What the console saw, kept: recordings (record and replay) and exports (CSV, JSON).

May import: ``engine``, ``config``, ``detectors``, ``kernel``, ``errors``, ``model``.
"""
