"""The command line for scripts: ``ironpost-tui block|unblock|rules|alerts|capture IFACE``.

``client`` talks to the running controller of an interface over its socket (the protocol is
``engine.control_socket.protocol``); ``show`` prints what it answers, as text for people or JSON
for scripts; ``commands`` parses the command lines; ``capture`` runs a capture beside the running
program (records.capture), naming rules through the controller when one answers.

May import: ``records`` and everything below it.  Never Textual, Rich or plotext: a fail2ban action
runs it hundreds of times and must not pay for the console.
"""
