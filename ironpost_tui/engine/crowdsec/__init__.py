"""ironpost as a CrowdSec bouncer: the LAPI's decision stream becomes drop rules of their own
(``crowdsec:VALUE``, never saved).

``decisions`` reads the stream's JSON into values (hostile input: anything malformed is dropped and
counted); ``lapi`` is the HTTP client (httpx, a timeout on every call, the LAPI's CA configurable);
``bouncer`` pulls in its own thread and hands batches to the engine's tick, which applies them within
a time budget, so the tick never waits on the LAPI nor on a 100,000-decision startup stream.

May import what ``engine`` may.
"""
