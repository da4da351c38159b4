"""The engine and its loop: one tick reads the kernel, feeds the detectors, publishes a snapshot.

``engine`` owns the datapath and the rule controller; ``snapshot`` is the immutable value a
tick publishes; ``reload`` moves a running engine to its configuration file again;
``supervisor`` is the agent loop written once (start, then steps: panic, reload, tick);
``auto_blocker`` turns detectors' alerts into auto-block rules as ``rules.auto_block`` allows;
``feed`` is what a front end polls (the Source protocol); ``live`` adapts the supervisor for
the console; ``headless`` runs it as a service.

May import: ``config``, ``rules``, ``detectors``, ``kernel``, ``errors``, ``model``.
Never Textual, Rich or plotext.
"""
