"use strict";
// Runs on the audio rendering thread: copy the microphone's samples (downmixed to mono) into
// blocks of BLOCK frames and post each to the page, which sends it over the WebSocket.
// Nothing else happens here (like the device callback of `neuroear listen`).

const BLOCK = 1024; // frames per message: 21 ms at 48 kHz, 23 ms at 44.1 kHz

class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.buf = new Float32Array(BLOCK);
    this.n = 0;
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const frames = input[0].length;
    const k = 1 / input.length;
    for (let i = 0; i < frames; i++) {
      let s = 0;
      for (let c = 0; c < input.length; c++) s += input[c][i];
      this.buf[this.n++] = s * k;
      if (this.n === BLOCK) {
        this.port.postMessage(this.buf, [this.buf.buffer]);
        this.buf = new Float32Array(BLOCK);
        this.n = 0;
      }
    }
    return true;
  }
}

registerProcessor("neuroear-capture", CaptureProcessor);
