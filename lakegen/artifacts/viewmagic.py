"""How a remote weight file's view in the lake's cache starts (a safetensors file cannot: see
:func:`lakegen.artifacts.remote.open_view`). Its own module: every weight file read asks whether it
is a view, and the remote package behind the answer costs 150 ms to import."""

VIEW_MAGIC = b'{"lakegen_view":'
