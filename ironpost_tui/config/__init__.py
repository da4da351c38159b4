"""The operator's files: the TOML configuration, its checks, the rules it holds, and watching it.

``settings`` loads and validates the seed's TOML format; ``store`` writes rule edits back
(whole-file, atomic); ``watch`` notices when the file changed.

May import: ``rules``, ``detectors``, ``kernel``, ``errors``, ``model``.
"""
