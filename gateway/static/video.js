// Live video for the viewer: FCV1 frames (docs/protocol.md) decoded with WebCodecs into a canvas,
// each painted picture handed back with its identity so the viewer draws the boxes of the result
// computed on that very picture (same epoch and source frame index).
//
// The decoder only ever gets a chain that starts at a keyframe: a delta frame that does not follow
// the previous one (joined mid-group, a lost frame, a new epoch) waits for the next keyframe and is
// counted as skipped, never fed to the decoder. Decoder errors are counted, and decoding restarts
// at the next keyframe. WebCodecs exists only in a secure context (HTTPS, or localhost): see
// videoSupport().

const HOLD_MS = 120; // a decoded picture waits at most this long for its result before it is shown
// Frames queued in the decoder: past this it is behind for good, skip to a keyframe. A decoder
// starved for a moment (a busy machine) catches up by itself in milliseconds once it runs; skipping
// then would throw away the queue and the rest of the group (8 here cost a 0.5 s starvation on a
// loaded 2-core machine 20 frames, 1.4 s of picture). 30 is 1-2 s of video at 15-30 fps.
const MAX_DECODE_QUEUE = 30;
const RESULTS_KEPT = 64; // results kept to pair with pictures that come after them

/**
 * Whether this page can decode video: "ok", "insecure" (not a secure context: plain HTTP from
 * another host, where browsers hide WebCodecs) or "unsupported" (no WebCodecs in this browser).
 */
export function videoSupport() {
  if (!globalThis.isSecureContext) return "insecure";
  if (typeof globalThis.VideoDecoder !== "function" || typeof globalThis.EncodedVideoChunk !== "function") {
    return "unsupported";
  }
  return "ok";
}

const keyOf = (epoch, frame) => `${epoch}:${frame}`;

export class VideoView {
  /**
   * @param {object} options
   * @param {HTMLCanvasElement} options.canvas Where pictures are painted (stretched to its size).
   * @param {(id: object, result: object|undefined) => void} options.onPaint Called after each
   *   picture is painted, with its identity `{epoch, frame, captured_at, seq}` and the result of
   *   that picture if it came; called again with the result if it comes after the picture.
   * @param {(codec: string, why: string) => void} [options.onUnsupported] The stream's codec
   *   cannot be decoded here.
   *
   * The canvas fires a `framecast:paint` CustomEvent right after each picture is drawn on it,
   * once per picture, its `detail` the picture's identity (as for onPaint).
   */
  constructor({ canvas, onPaint, onUnsupported = () => {} }) {
    this.canvas = canvas;
    this.onPaint = onPaint;
    this.onUnsupported = onUnsupported;
    this.stats = {
      received: 0,
      painted: 0,
      skipped: 0,
      errors: 0,
      synced: 0,
      codec: "",
      lastPaintAt: 0,
      pairs: [],
      // capture -> painted, ms, of the last 50 pictures (the camera host's clock against this one's)
      latencies: [],
    };
    this._decoder = null;
    this._config = "";
    this._expect = null; // {epoch, seq} of the frame that continues the chain
    this._ids = new Map(); // chunk timestamp -> identity
    this._clock = 0;
    this._held = null; // {picture, id, timer}
    this._shown = null; // identity of the picture on the canvas
    this._results = new Map();
  }

  /** A video message from the client (decodeVideo's shape). */
  push(msg) {
    this.stats.received += 1;
    const follows = this._expect && msg.epoch === this._expect.epoch && msg.seq === this._expect.seq;
    if (!msg.key && (!follows || !this._decoder)) {
      this.stats.skipped += 1;
      this._expect = null;
      return;
    }
    if (msg.key && !this._configure(msg)) return;
    if (this._decoder.decodeQueueSize > MAX_DECODE_QUEUE) {
      // This browser decodes slower than the stream comes: catch up at the next keyframe.
      this._restart();
      this.stats.skipped += 1;
      return;
    }
    const timestamp = ++this._clock;
    this._ids.set(timestamp, { epoch: msg.epoch, frame: msg.frame, captured_at: msg.captured_at, seq: msg.seq });
    try {
      this._decoder.decode(new EncodedVideoChunk({ type: msg.key ? "key" : "delta", timestamp, data: msg.data }));
    } catch (error) {
      this._failed(error);
      return;
    }
    this._expect = { epoch: msg.epoch, seq: msg.seq + 1 };
  }

  /** A result of the stream: kept to pair with its picture, or drawn at once over it. */
  result(result) {
    const key = keyOf(result.epoch, result.frame);
    this._results.set(key, result);
    if (this._results.size > RESULTS_KEPT) this._results.delete(this._results.keys().next().value);
    if (this._held && keyOf(this._held.id.epoch, this._held.id.frame) === key) this._paintHeld();
    else if (this._shown && keyOf(this._shown.epoch, this._shown.frame) === key) this._paired(this._shown, result);
  }

  /** Forget the stream (another one is shown): the next picture starts at a keyframe. */
  reset() {
    this._restart();
    this._results.clear();
    this._shown = null;
    Object.assign(this.stats, { lastPaintAt: 0 });
  }

  // ---------------------------------------------------------------- decoder

  _configure(msg) {
    const config = `${msg.codec}|${msg.width}x${msg.height}`;
    if (this._decoder && this._decoder.state === "configured" && config === this._config) return true;
    this._restart();
    const decoder = new VideoDecoder({
      output: (picture) => this._output(decoder, picture),
      error: (error) => this._decoder === decoder && this._failed(error),
    });
    const settings = { codec: msg.codec, codedWidth: msg.width, codedHeight: msg.height, optimizeForLatency: true };
    if (msg.description?.byteLength) settings.description = msg.description;
    try {
      decoder.configure(settings);
    } catch (error) {
      // An invalid configuration throws at once; an unsupported one reports through `error`.
      this.stats.errors += 1;
      this.onUnsupported(msg.codec, String(error));
      return false;
    }
    VideoDecoder.isConfigSupported(settings).then(
      ({ supported }) => supported || this.onUnsupported(msg.codec, "this browser cannot decode it"),
      () => {},
    );
    this._decoder = decoder;
    this._config = config;
    this.stats.codec = msg.codec;
    return true;
  }

  _restart() {
    if (this._decoder && this._decoder.state !== "closed") this._decoder.close();
    this._decoder = null;
    this._config = "";
    this._expect = null;
    this._ids.clear();
    if (this._held) {
      clearTimeout(this._held.timer);
      this._held.picture.close();
      this._held = null;
    }
  }

  _failed(error) {
    this.stats.errors += 1;
    this.stats.lastError = String(error);
    this._restart(); // a decoder that failed is closed: the next keyframe opens another
  }

  // ---------------------------------------------------------------- painting

  _output(decoder, picture) {
    const id = this._ids.get(picture.timestamp);
    this._ids.delete(picture.timestamp);
    if (decoder !== this._decoder || !id) {
      picture.close();
      return;
    }
    if (this._held) this._paintHeld(); // a newer picture is here: the older one goes up now
    const result = this._results.get(keyOf(id.epoch, id.frame));
    this._held = { picture, id, timer: null };
    if (result) {
      this._paintHeld();
    } else {
      const held = this._held;
      held.timer = setTimeout(() => this._held === held && this._paintHeld(), HOLD_MS);
    }
  }

  _paintHeld() {
    const { picture, id, timer } = this._held;
    this._held = null;
    clearTimeout(timer);
    const ctx = this.canvas.getContext("2d");
    ctx.drawImage(picture, 0, 0, this.canvas.width, this.canvas.height);
    picture.close();
    this.stats.painted += 1;
    this.stats.lastPaintAt = performance.now();
    this.stats.latencies.push(Date.now() - id.captured_at * 1000);
    if (this.stats.latencies.length > 50) this.stats.latencies.shift();
    this._shown = id;
    // Once per picture, while the canvas holds exactly it (boxes live on another canvas): for a
    // page that records or checks what was shown, e.g. every picture of a frame-index range.
    this.canvas.dispatchEvent(new CustomEvent("framecast:paint", { detail: { ...id } }));
    const result = this._results.get(keyOf(id.epoch, id.frame));
    if (result) this._paired(id, result);
    else this.onPaint(id, undefined);
  }

  _paired(id, result) {
    this.stats.synced += 1;
    this.stats.pairs.push([id.frame, result.frame]);
    if (this.stats.pairs.length > 256) this.stats.pairs.shift();
    this.onPaint(id, result);
  }
}
