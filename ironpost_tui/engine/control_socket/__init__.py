"""The command line's way into a running controller: a root-only Unix socket per interface.

``protocol`` is what goes over it (one JSON line each way, versioned, checked field by field);
``server`` serves the socket in a thread (who may connect, how much, how long); ``desk`` does
what a request asks through the engine's rule controller, as the console does.  The client is
``ironpost_tui.ctl``, a layer up.

May import: ``config``, ``rules``, ``detectors``, ``kernel``, ``errors``, ``model``, ``text``, and
the engine beside it.  Never Textual, Rich or plotext.
"""
