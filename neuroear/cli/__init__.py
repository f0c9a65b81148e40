"""The command line: ``main`` builds the parser from one module per command group
(``analyze``: analyze, evaluate; ``live``: listen, devices; ``training``: train, export, render;
``bench``), with the options and output helpers they share in ``common``."""
