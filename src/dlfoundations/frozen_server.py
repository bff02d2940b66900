"""Imported last by the server that CPU workers are forked from (``side_by_side.PRELOAD``):
it freezes the objects the server's imports made (``gc.freeze``). The server then exits in
milliseconds once the sweep's process is gone, instead of collecting torch's and Lightning's
objects for about 1 s of a 2-core CPU, while still holding the sweep's stdout and stderr
(``| tee`` or a caller reading them waited for it); and its forked workers leave those
objects' pages unwritten when they collect. Never imported elsewhere: a process that
freezes keeps every object it made before, cycles included, to its end."""

import gc

gc.freeze()
