"""The live application: ``sources`` (file, demo) and ``device`` hand blocks to ``loop.run``,
whose ``streamer`` cuts windows with ``framing.Framer``; ``policy`` decides, ``sinks`` write JSON
Lines, ``dashboard`` draws, and ``session`` wires one listening run (``neuroear.listen``)."""
