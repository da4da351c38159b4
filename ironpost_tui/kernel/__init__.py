"""The kernel side: the BPF program, its maps, the XDP link and the host it runs on.

Compiles and loads ``bpf/ironpost_xdp.c`` (BCC), attaches it through a BPF link (libbpf),
reads the ring buffer and the counters, and cleans up what a run left behind.  The only
package that touches BCC tables or ctypes structures; values leave it as frozen dataclasses.

May import: ``ironpost_tui.errors``, ``ironpost_tui.model``.  Nothing above it.
"""
