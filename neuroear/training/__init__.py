"""The training side (needs the 'train' extra: torch, nnAudio, onnx, ...): ``features`` (CQT front
end), ``model`` (``InstrumentNet``), ``music`` (scores) → ``render`` (audio), ``data`` (clips,
mixing, augmentation), ``train``, ``export`` (one ONNX file with its model card).

``data`` and ``music`` are numpy-only; the others import torch."""
