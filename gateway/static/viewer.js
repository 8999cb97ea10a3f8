// The framecast viewer: one stream's live video (or previews), boxes, detections and health.
//
// Page parameters: ?stream=NAME (default: the first listed by /streams), ?token=T (passed to the
// WebSocket and to /streams), ?video=0 (JPEG previews instead of video), ?previews=0 (no JPEGs:
// boxes on a blank frame when there is no video either).
// Video (video.js) is the default where the page can decode it (WebCodecs: HTTPS or localhost)
// and the stream and gateway send it; otherwise the viewer falls back to previews, and says why.
// Every status field is mirrored as a data-* attribute of #status; window.framecastViewer exposes
// the counters and the (epoch, seq) of the last results drawn, for scripts and tests.

import { subscribe } from "./client.js";
import { Overlay } from "./overlay.js";
import { VideoView, videoSupport } from "./video.js";

const LATENCY_WINDOW = 50; // results in the latency median
const RATE_WINDOW_MS = 5000; // results/s is averaged over this
const SILENT_AFTER_MS = 3000; // no heartbeat for this long: the producer is silent
const PREVIEW_STALE_MS = 2000; // no preview for this long: draw boxes on a blank frame
const SEQ_HISTORY = 5000; // (epoch, seq) pairs kept for inspection
const RECENT_RESULTS = 64; // results kept to match the previews that show them
const VIDEO_STALE_MS = 2000; // no picture for this long: results are drawn as without video

const params = new URLSearchParams(location.search);
const token = params.get("token");
const $ = (id) => document.getElementById(id);
const el = {
  stream: $("stream"),
  previews: $("previews"),
  video: $("video"),
  boxes: $("boxes"),
  frame: $("frame"),
  overlay: $("overlay"),
  placeholder: $("placeholder"),
  detections: $("detections"),
  detectionCount: $("detection-count"),
  message: $("message"),
  status: $("status"),
  connection: $("connection"),
  gateway: $("gateway"),
  streamState: $("stream-state"),
  rate: $("rate"),
  latency: $("latency"),
  seq: $("seq"),
  reconnects: $("reconnects"),
  pictureMode: $("picture-mode"),
  videoFps: $("video-fps"),
  decodeErrors: $("decode-errors"),
};
el.previews.checked = params.get("previews") !== "0";
const support = videoSupport();
el.video.checked = params.get("video") !== "0" && support === "ok";
el.video.disabled = support !== "ok";
if (support !== "ok") {
  el.video.parentElement.title =
    support === "insecure"
      ? "video needs a secure context: open this page over HTTPS (or from localhost)"
      : "this browser has no WebCodecs";
}

const stats = {
  results: 0,
  boxes: 0,
  previews: 0,
  gaps: 0,
  resets: 0,
  latencies: [],
  arrivals: [],
  seqs: [],
  lastStatusAt: 0,
  lastPreviewAt: 0,
  since: 0,
};
window.framecastViewer = stats;
// Tracks, zones, lines and events (overlay.js): drawn over the boxes, listed beside them.
const overlay = new Overlay({ counters: $("counters"), events: $("events"), panel: $("analytics") });
stats.overlay = overlay.state;

let current = null; // stream shown
let lastResult = null;
let drawnResult = null; // the result whose boxes are on the overlay
let previewKey = null; // epoch:seq of the picture on the frame canvas
const recent = new Map(); // epoch:seq -> result, for previews that arrive after or before it
let subscription = null;
let videoFallback = ""; // why video is not shown although asked for ("" while it is)
const paints = []; // times of painted video pictures, for the fps
const video = new VideoView({
  canvas: el.frame,
  onPaint(id, result) {
    paints.push(performance.now());
    el.placeholder.hidden = true;
    if (result) showBoxes(result);
    else clearBoxes(); // the boxes of another picture would be out of place on this one
  },
  onUnsupported(codec, why) {
    fallBack(`this browser cannot decode ${codec} video (${why})`);
  },
});
stats.video = video.stats;

function setField(name, text, cls) {
  const node = el[name];
  node.textContent = text;
  if (cls !== undefined) node.className = cls;
}

function setData(key, value) {
  el.status.dataset[key] = String(value);
}

function showMessage(text) {
  el.message.hidden = !text;
  el.message.textContent = text || "";
}

// ---------------------------------------------------------------- drawing

function sizeCanvases(width, height) {
  for (const canvas of [el.frame, el.overlay]) {
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
  }
  el.frame.parentElement.style.aspectRatio = `${width} / ${height}`;
}

function drawBlankFrame() {
  const ctx = el.frame.getContext("2d");
  ctx.fillStyle = "#24272c";
  ctx.fillRect(0, 0, el.frame.width, el.frame.height);
}

const keyOf = (msg) => `${msg.epoch}:${msg.seq}`;

function previewsLive() {
  return el.previews.checked && performance.now() - stats.lastPreviewAt < PREVIEW_STALE_MS;
}

let previewTicket = 0;

async function drawPreview(preview) {
  if (!lastResult) sizeCanvases(preview.width, preview.height);
  const ticket = ++previewTicket;
  let bitmap;
  try {
    bitmap = await createImageBitmap(preview.jpeg);
  } catch {
    return; // a corrupt JPEG: keep the previous picture
  }
  if (ticket !== previewTicket || preview.stream !== current) {
    // A newer picture (or another stream) came while this one was decoding.
    bitmap.close();
    return;
  }
  // The JPEG may be smaller than the source frame: stretch it over the frame's pixel grid,
  // which is also the grid the boxes are in.
  el.frame.getContext("2d").drawImage(bitmap, 0, 0, el.frame.width, el.frame.height);
  bitmap.close();
  stats.previews += 1;
  stats.lastPreviewAt = performance.now();
  setData("previews", stats.previews);
  el.placeholder.hidden = true;
  // Boxes follow the picture: draw the ones of the result this frame shows (if it came already).
  previewKey = keyOf(preview);
  const shown = recent.get(previewKey);
  if (shown) showBoxes(shown);
}

function clearBoxes() {
  drawnResult = null;
  stats.drawn = null;
  const ctx = el.overlay.getContext("2d");
  ctx.clearRect(0, 0, el.overlay.width, el.overlay.height);
  // Zones and lines hold for every picture: only the boxes belong to one result.
  overlay.draw(ctx, { width: el.overlay.width });
}

function videoLive() {
  return subscription?.video && performance.now() - video.stats.lastPaintAt < VIDEO_STALE_MS;
}

function showBoxes(result) {
  drawnResult = result;
  stats.drawn = { epoch: result.epoch, frame: result.frame, boxes: result.detections.map((d) => d.box) };
  stats.boxes += drawBoxes(result);
  setData("boxes", stats.boxes);
}

// The producer's preview palette and label style (producer/preview.py), so that boxes drawn here
// land on the ones already painted into the JPEG as one annotation, not two.
const COLORS = [
  "rgb(255,200,0)", "rgb(0,160,255)", "rgb(80,220,80)", "rgb(220,80,220)", "rgb(255,60,60)", "rgb(80,255,255)",
];
const utf8 = new TextEncoder();

function colorFor(label) {
  return COLORS[utf8.encode(label).reduce((sum, byte) => sum + byte, 0) % COLORS.length];
}

function labelText(d) {
  const track = d.track === undefined || d.track === null ? "" : ` #${d.track}`;
  return `${d.label.slice(0, 40)}${track} ${d.confidence.toFixed(2)}`;
}

function drawBoxes(result) {
  const ctx = el.overlay.getContext("2d");
  ctx.clearRect(0, 0, el.overlay.width, el.overlay.height);
  if (!el.boxes.checked) return 0;
  const scale = Math.max(1, result.width / 640);
  ctx.lineWidth = Math.max(1, Math.round(result.width / 320));
  // About the size of the producer's Hershey labels, so ours cover theirs.
  ctx.font = `${16 * scale}px system-ui, sans-serif`;
  ctx.textBaseline = "top";
  for (const d of result.detections) {
    const [x1, y1, x2, y2] = d.box;
    const color = colorFor(d.label);
    ctx.strokeStyle = color;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const text = labelText(d);
    const pad = 2 * scale;
    const w = ctx.measureText(text).width + 2 * pad;
    const h = 18 * scale + pad;
    const ty = y1 - h >= 0 ? y1 - h : y1;
    ctx.fillStyle = color;
    ctx.fillRect(x1, ty, w, h);
    ctx.fillStyle = "#000";
    ctx.fillText(text, x1 + pad, ty + pad / 2);
  }
  overlay.draw(ctx, result);
  return result.detections.length;
}

function listDetections(result) {
  el.detections.replaceChildren(
    ...(result.detections.length
      ? result.detections.map((d) => {
          const li = document.createElement("li");
          li.dataset.label = d.label;
          const name = document.createElement("span");
          name.textContent = d.label;
          name.style.color = colorFor(d.label);
          const conf = document.createElement("span");
          conf.className = "confidence";
          conf.textContent = `${(d.confidence * 100).toFixed(0)}%`;
          li.append(name, conf);
          return li;
        })
      : [Object.assign(document.createElement("li"), { className: "empty", textContent: "nothing detected" })]),
  );
  el.detectionCount.textContent = String(result.detections.length);
}

// ---------------------------------------------------------------- messages

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function onResult(result) {
  const now = performance.now();
  // Capture time is the camera host's clock, arrival is this browser's: their offset is included.
  stats.latencies.push(Date.now() - result.captured_at * 1000);
  if (stats.latencies.length > LATENCY_WINDOW) stats.latencies.shift();
  if (!stats.arrivals.length && !stats.since) stats.since = now;
  stats.arrivals.push(now);
  const last = stats.seqs.at(-1);
  if (last && last[0] === result.epoch && result.seq !== last[1] + 1) stats.gaps += 1;
  stats.seqs.push([result.epoch, result.seq]);
  if (stats.seqs.length > SEQ_HISTORY) stats.seqs.shift();
  stats.results += 1;
  lastResult = result;
  overlay.onResult(result);
  recent.set(keyOf(result), result);
  if (recent.size > RECENT_RESULTS) recent.delete(recent.keys().next().value);

  sizeCanvases(result.width, result.height);
  if (subscription?.video) video.result(result); // boxes go up with the picture they belong to
  if (videoLive()) {
    // painted by the video's onPaint
  } else if (!previewsLive()) {
    // No pictures (turned off, or none lately): boxes on a blank frame of the source's size.
    drawBlankFrame();
    showBoxes(result);
  } else if (keyOf(result) === previewKey) {
    showBoxes(result);
  }
  listDetections(result);
  el.placeholder.hidden = true;

  const p50 = median(stats.latencies);
  setField("latency", p50.toFixed(0));
  setField("seq", String(result.seq));
  setData("latencyP50", p50.toFixed(1));
  setData("seq", result.seq);
  setData("epoch", result.epoch);
  setData("results", stats.results);
  setData("gaps", stats.gaps);
}

function onStatus(status) {
  stats.lastStatusAt = performance.now();
  const state = status.state === "offline" ? "offline" : status.active === false ? "paused" : "online";
  const label = state === "paused" ? "paused (no viewers)" : state;
  setField("streamState", label, state);
  setData("streamState", state);
}

function onMessage(msg) {
  if (msg.stream !== undefined && msg.stream !== current) return;
  switch (msg.type) {
    case "result":
      onResult(msg);
      break;
    case "preview":
      if (el.previews.checked) drawPreview(msg);
      break;
    case "video":
      if (subscription.video) video.push(msg);
      break;
    case "status":
      onStatus(msg);
      overlay.onStatus(msg);
      if (subscription.video && msg.state === "online" && !msg.video) fallBack("this stream has no video");
      break;
    case "event":
      overlay.onEvent(msg);
      break;
    case "reset":
      stats.resets += 1;
      setData("resets", stats.resets);
      break;
    case "error":
      showMessage(`${msg.code}: ${msg.message}`);
      break;
    case "subscribed":
      showMessage("");
      if (subscription.video && !msg.video) fallBack("the gateway sends no video");
      break;
    default:
      break;
  }
}

function onState(s) {
  const text = {
    connecting: "connecting",
    open: "connected",
    reconnecting: `reconnecting in ${(s.delay ?? 0).toFixed(1)} s`,
    closed: "closed",
    failed: "disconnected",
  }[s.state];
  setField("connection", text, s.state);
  setField("gateway", s.gateway ?? "–");
  setField("reconnects", String(s.reconnects));
  setData("connection", s.state);
  setData("gateway", s.gateway ?? "");
  setData("reconnects", s.reconnects);
  if (s.state === "failed") showMessage(s.reason);
  if (s.state === "reconnecting") el.connection.title = s.reason ?? "";
}

function tick() {
  const now = performance.now();
  while (stats.arrivals.length && now - stats.arrivals[0] > RATE_WINDOW_MS) stats.arrivals.shift();
  // Until the window is full, average over the time since the stream was first seen.
  const span = Math.min(RATE_WINDOW_MS, Math.max(1000, now - stats.since));
  const rate = stats.arrivals.length / (span / 1000);
  setField("rate", rate.toFixed(1));
  setData("rate", rate.toFixed(1));
  if (stats.lastStatusAt && now - stats.lastStatusAt > SILENT_AFTER_MS) {
    setField("streamState", "no heartbeat", "silent");
    setData("streamState", "silent");
  }
  if (subscription) setData("duplicates", subscription.cursor.duplicates);
  while (paints.length && now - paints[0] > RATE_WINDOW_MS) paints.shift();
  const fps = paints.length / (Math.min(RATE_WINDOW_MS, Math.max(1000, now - (paints[0] ?? now))) / 1000);
  setField("videoFps", fps.toFixed(1));
  setData("videoFps", fps.toFixed(1));
  setField("decodeErrors", String(video.stats.errors), video.stats.errors ? "bad" : "");
  setData("decodeErrors", video.stats.errors);
  setData("videoFrames", video.stats.painted);
  if (video.stats.latencies.length) setData("videoLatencyP50", median(video.stats.latencies).toFixed(1));
  setData("videoSkipped", video.stats.skipped);
  showMode();
}

// ---------------------------------------------------------------- video or previews

function showMode() {
  let mode;
  let text;
  if (subscription?.video) {
    mode = "video";
    text = video.stats.codec ? `video ${video.stats.codec.split(".")[0]}` : "video (waiting)";
  } else if (el.previews.checked) {
    mode = "previews";
    text = "previews";
  } else {
    mode = "none";
    text = "boxes only";
  }
  const why = el.video.checked ? videoFallback : support === "ok" ? "" : el.video.parentElement.title;
  setField("pictureMode", why ? `${text} (${why})` : text, mode);
  setData("videoMode", subscription?.video ? "video" : support === "ok" ? (videoFallback ? "fallback" : "off") : support);
}

function fallBack(why) {
  // Asked for video, cannot have it: previews (if on) instead, and say why in the status bar.
  if (!subscription.video) return;
  videoFallback = why;
  choosePicture();
}

function choosePicture() {
  // What to ask the gateway for: video when wanted and possible, else previews (if on).
  const wantVideo = el.video.checked && !videoFallback;
  subscription.video = wantVideo;
  subscription.previews = !wantVideo && el.previews.checked;
  video.reset();
  // A subscribe on a stream already subscribed replaces its options (and resumes from our
  // position). Not unsubscribe + subscribe: a gateway that sees both at once can release the
  // stream's Redis subscription after taking it again, and go deaf to the stream.
  subscription.add(current);
  if (!wantVideo && !el.previews.checked) drawBlankFrame();
  showMode();
}

// ---------------------------------------------------------------- streams

function streamNames(body) {
  // /streams answers [{"stream": name, "state": ..., ...}, ...]; plain names are accepted too.
  const list = Array.isArray(body) ? body : body?.streams ?? [];
  return list.map((s) => (typeof s === "string" ? s : s.stream)).filter(Boolean);
}

async function listStreams() {
  const url = new URL("streams", location.href);
  if (token) url.searchParams.set("token", token);
  try {
    const response = await fetch(url, { cache: "no-store" });
    if (!response.ok) return [];
    return streamNames(await response.json());
  } catch {
    return [];
  }
}

function fillPicker(names) {
  const all = [...new Set([...names, current])].sort();
  el.stream.replaceChildren(...all.map((name) => new Option(name, name, false, name === current)));
}

function resetView() {
  lastResult = null;
  drawnResult = null;
  previewKey = null;
  recent.clear();
  stats.latencies.length = 0;
  stats.arrivals.length = 0;
  stats.since = 0;
  stats.lastStatusAt = 0;
  stats.lastPreviewAt = 0;
  video.reset();
  el.overlay.getContext("2d").clearRect(0, 0, el.overlay.width, el.overlay.height);
  drawBlankFrame();
  el.detections.replaceChildren();
  overlay.reset();
  el.placeholder.hidden = false;
  setField("streamState", "–", "");
  setField("latency", "–");
  setField("seq", "–");
}

function show(stream) {
  if (stream === current) return;
  const previous = current;
  current = stream;
  setData("stream", stream);
  const url = new URL(location.href);
  url.searchParams.set("stream", stream);
  history.replaceState(null, "", url);
  resetView();
  if (previous) subscription.remove(previous);
  // Another stream may have the video this one lacked: ask again.
  videoFallback = "";
  subscription.video = el.video.checked;
  subscription.previews = !subscription.video && el.previews.checked;
  // Coming back to a stream seen earlier: start from its latest result, not a long replay.
  subscription.cursor.forget(stream);
  subscription.add(stream);
}

async function main() {
  const names = await listStreams();
  current = params.get("stream") || names[0] || "default";
  setData("stream", current);
  fillPicker(names);
  const wantVideo = el.video.checked;
  subscription = subscribe([current], {
    token,
    video: wantVideo,
    previews: !wantVideo && el.previews.checked,
    onMessage,
    onState,
  });
  window.framecastViewer.subscription = subscription;
  showMode();
  el.stream.addEventListener("change", () => show(el.stream.value));
  // Video and previews are negotiated per subscription: ask again with the new choice.
  el.previews.addEventListener("change", choosePicture);
  el.video.addEventListener("change", () => {
    videoFallback = "";
    choosePicture();
  });
  el.boxes.addEventListener("change", () => drawnResult && drawBoxes(drawnResult));
  setInterval(tick, 500);
  // New streams appear as producers start: refresh the picker now and then.
  setInterval(async () => fillPicker(await listStreams()), 10000);
}

main();
