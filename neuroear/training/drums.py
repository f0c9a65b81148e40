"""Drum-kit scores for rendered training audio: grooves and fills on General MIDI percussion keys.

``music.compose("drums", DRUM_PROGRAM, ...)`` comes here; ``render`` plays the notes on the drum
channel (MIDI channel 10) of a kit preset.
"""

from __future__ import annotations

import numpy as np

from neuroear.training.music import CC_REVERB, CC_VOLUME, Score, tidy

HIT_SECONDS = 0.25  # s a drum hit counts as sounding (the skin and cymbal decay of a hit)

# GM percussion keys
KICK, SNARE, RIM, CLOSED_HAT, PEDAL_HAT, OPEN_HAT, RIDE, CRASH = 36, 38, 37, 42, 44, 46, 51, 49
TOMS = (41, 43, 45, 47, 48, 50)


def compose_drums(*, seconds: float, rng: np.random.Generator) -> Score:
    """A drum-kit performance filling ``seconds`` (s): grooves of 2–4 bars (rock, backbeat with
    eighth or sixteenth hats, half-time, shuffle, ride patterns, four-on-the-floor), a fill with
    toms and a crash now and then, humanised timing and velocity, sometimes rests between.

    Notes are GM percussion keys on the drum channel; each hit lasts ``HIT_SECONDS``.
    """
    sc = Score()
    sc.ccs.append((0.0, CC_VOLUME, int(rng.integers(85, 128))))
    sc.ccs.append((0.0, CC_REVERB, int(rng.integers(0, 70))))
    t = float(rng.uniform(0.0, 2.0)) if rng.random() < 0.3 else 0.0
    while t < seconds - 0.5:
        spq = 60.0 / rng.uniform(70.0, 180.0)
        groove = str(rng.choice(["rock", "sixteenths", "halftime", "shuffle", "ride", "four"]))
        cymbal = RIDE if groove == "ride" else int(rng.choice([CLOSED_HAT, CLOSED_HAT, OPEN_HAT, PEDAL_HAT]))
        bars = int(rng.integers(2, 5))
        base = rng.uniform(60, 115)
        hits: list[tuple[float, int, float]] = []  # (time q, key, velocity offset)
        if rng.random() < 0.5:
            hits.append((0.0, CRASH, 10))
        for bar in range(bars):
            b0 = 4.0 * bar
            sub = {"sixteenths": 0.25, "shuffle": 2 / 3}.get(groove, 0.5)
            q = 0.0
            while q < 4.0 - 1e-6:
                hits.append((b0 + q, cymbal, -6 if abs(q - round(q)) > 1e-6 else 0))
                q += sub if groove != "shuffle" else (2 / 3 if abs(q - round(q)) < 1e-6 else 1 / 3)
            kicks = {"four": [0, 1, 2, 3], "halftime": [0, 2.5]}.get(groove, [0, 2] + ([2.5] if rng.random() < 0.5 else []) + ([1.5] if rng.random() < 0.3 else []))
            snares = [2] if groove == "halftime" else [1, 3]
            hits += [(b0 + k, KICK, 4) for k in kicks] + [(b0 + k, SNARE, 8) for k in snares]
            if rng.random() < 0.2:
                hits.append((b0 + 3.75, SNARE, -20))  # ghost note
        if rng.random() < 0.4:  # a fill over the last beat(s)
            f0 = 4.0 * bars - float(rng.choice([1.0, 2.0]))
            hits = [h for h in hits if h[0] < f0 or h[1] == KICK]
            toms = sorted(rng.choice(TOMS, size=3, replace=False), reverse=True)
            for i, q in enumerate(np.arange(f0, 4.0 * bars, 0.25)):
                hits.append((float(q), int(toms[min(i * 3 // max(1, int((4.0 * bars - f0) / 0.25)), 2)]) if i % 3 else SNARE, 0))
        for q, key, dv in hits:
            on = t + q * spq + rng.normal(0.0, 0.006)
            if on < 0:
                continue
            v = int(np.clip(round(base + dv + rng.normal(0.0, 6.0)), 1, 127))
            sc.notes.append((on, on + HIT_SECONDS, int(key), v))
        sc.pieces.append(f"drums:{groove}")
        t += 4.0 * bars * spq + (rng.uniform(0.0, 0.3) if rng.random() < 0.7 else rng.uniform(0.5, 3.0))
    tidy(sc, seconds)
    return sc
