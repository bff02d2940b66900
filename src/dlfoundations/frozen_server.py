"""What the server that CPU workers are forked from imports (``side_by_side.PRELOAD``): the
modules a worker runs (a job's training, a fused group), imported with the garbage collector
paused and then frozen (``imports_frozen``: about 1 s sooner on the 2-core CPU, which every
sweep on workers waits for before its first job). Frozen, the server also exits in
milliseconds once the sweep's process is gone, instead of collecting torch's and Lightning's
objects for about 1 s while still holding the sweep's stdout and stderr (``| tee`` or a
caller reading them waited for it); and its forked workers leave those objects' pages
unwritten when they collect."""

from dlfoundations.environment import imports_frozen

with imports_frozen("dlfoundations.run.train"):
    import dlfoundations.fused.group  # noqa: F401
    import dlfoundations.fused.launch  # noqa: F401
    import dlfoundations.run.train  # noqa: F401
