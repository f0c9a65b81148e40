"""Archives at scale: ``neuroear analyze --engine ray PATH... --out DIR``.

``store`` owns the output folder (one Parquet part per input file, renamed into place, and a
per-file completion marker, so a run can be resumed and never writes a file's windows twice);
``engine`` runs the files through a pool of Ray actors that each load the ONNX session once;
``summary`` turns one file's windows into its summary row. ``ray`` and ``pyarrow`` (the
``archive`` extra) are imported only where they are used.
"""
