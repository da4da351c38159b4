"""The Textual console: widgets over a Source (live engine or recording).

``screens/`` holds the screens and modals, ``widgets/`` the panes and bars; the modules
beside them are the app, its messages, and Textual-free helpers (format, state, filters).
Only the console imports this package; the core and the headless agent never do.

May import: everything below it.  The only package that imports Textual, Rich or plotext.
"""
