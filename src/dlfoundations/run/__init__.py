"""One run of the lab: checked (``checks``), built and trained (``train``) or evaluated
(``evaluate``), in a folder it claims (``folder``), with checkpoints read as data
(``checkpoints``, ``rebuild``), signals handled at any point (``interrupts``), its lines
printed and kept (``console``), and what the scripts share around it (``cli``)."""
