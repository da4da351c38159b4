"""The metrics endpoint's HTTP layer, built to hold under abuse: its limits and the per-source
accounting behind them (``limits``), the request head parser (``head``), basic auth with failed
logins limited per source (``login_guard``) and the answers (``response``).  ``metrics.server``
puts them together on an asyncio loop.

May import: the standard library, ``ironpost_tui.model``, ``ironpost_tui.text`` and
``ironpost_tui.metrics.web_config``; nothing here imports the engine.
"""
