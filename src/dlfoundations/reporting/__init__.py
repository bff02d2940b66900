"""A sweep's results as a person reads them: the jobs and their swept axes (``jobs``), tables
(``tables``), figures (``figures``), written into the sweep folder (``summary``)."""
