"""The local web page: ``neuroear serve``.

``server`` is the FastAPI app (files → JSON Lines through ``analyze.analyze_file``, the model
card, the static page); ``uploads`` streams a multipart upload to a private temporary file
under a size limit; ``livesocket`` runs the browser's microphone through the streaming loop of
``neuroear listen``. ``static/`` is the page (HTML, JS, CSS: nothing fetched from the internet).

FastAPI, uvicorn and python-multipart are the ``web`` extra; they are imported by these
modules only, so ``import neuroear`` never needs them.
"""
