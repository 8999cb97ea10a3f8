// Tracks, zones and events in the viewer: what a producer with --track and --zones publishes.
//
// One object, fed by viewer.js with the stream's messages (`status`: where the zones and lines
// are; `result`: track ids, occupancy, line totals; `event`: enter/leave/cross) and asked to draw
// over the boxes. It draws, in the frame's pixel grid:
//   - each zone's polygon, translucent, with its name and live occupancy;
//   - each line with an arrow to its `in` side (left to right, walking from its first point to its
//     second) and its in/out totals;
//   - a short trail behind every track (its boxes' bottom centres, the default anchor);
// and keeps two panels: the counters (occupancy, line totals) and the latest events.
// Everything it shows is mirrored in `state` (window.framecastViewer.overlay) for scripts and tests.

const TRAIL_POINTS = 24; // anchor positions kept per track
const TRAIL_IDLE_MS = 3000; // a track unseen for this long loses its trail
const EVENTS_SHOWN = 20; // latest events listed
const ZONE_FILL = "rgba(80, 160, 255, 0.14)";
const ZONE_EDGE = "rgba(80, 160, 255, 0.85)";
const LINE_COLOR = "rgb(255, 200, 0)";
const TRAIL_COLORS = ["#ffc800", "#00a0ff", "#50dc50", "#dc50dc", "#ff3c3c", "#50ffff", "#ff8c00", "#b4b4ff"];

export const trailColor = (track) => TRAIL_COLORS[track % TRAIL_COLORS.length];

function eventText(e) {
  if (e.kind === "cross") return `#${e.track} ${e.label} crossed ${e.line} ${e.direction}`;
  if (e.kind === "enter") return `#${e.track} ${e.label} entered ${e.zone}`;
  const how = e.lost ? "lost in" : "left";
  return `#${e.track} ${e.label} ${how} ${e.zone} after ${(e.dwell ?? 0).toFixed(1)} s`;
}

export class Overlay {
  /**
   * @param {{counters: HTMLElement, events: HTMLElement, panel?: HTMLElement}} elements The counter
   *   list, the event list and the section that holds both (shown once the stream has any).
   */
  constructor({ counters, events, panel = null }) {
    this.el = { counters, events, panel };
    this.state = {
      zones: {}, // name -> [[x, y], ...]
      lines: {}, // name -> [[x1, y1], [x2, y2]]
      occupancy: {},
      crossings: {},
      events: [], // newest first: {epoch, seq, kind, track, label, zone|line, direction, text}
      eventCount: 0,
      tracks: 0, // tracks with a trail now
      drawn: { zones: 0, lines: 0, trails: 0 }, // what the last draw() painted
    };
    this.trails = new Map(); // track -> {points: [[x, y], ...], seenAt}
    this.epoch = undefined; // of the last result: track ids and trails belong to one epoch
  }

  reset() {
    this.trails.clear();
    Object.assign(this.state, { zones: {}, lines: {}, occupancy: {}, crossings: {}, events: [], eventCount: 0, tracks: 0 });
    this.el.events.replaceChildren();
    this.el.counters.replaceChildren();
    if (this.el.panel) this.el.panel.hidden = true;
  }

  onStatus(status) {
    // Heartbeats say where the zones and lines are (absent: none on this stream).
    const zones = status.zones ?? {};
    const lines = status.lines ?? {};
    if (JSON.stringify(zones) === JSON.stringify(this.state.zones) && JSON.stringify(lines) === JSON.stringify(this.state.lines)) return;
    this.state.zones = zones;
    this.state.lines = lines;
    this._counters();
  }

  onResult(result) {
    const now = performance.now();
    // Track ids are unique within an epoch only: a restarted producer's track 1 is someone else.
    if (this.epoch !== undefined && result.epoch !== this.epoch) this.trails.clear();
    this.epoch = result.epoch;
    for (const d of result.detections) {
      if (d.track === undefined || d.track === null) continue;
      const trail = this.trails.get(d.track) ?? { points: [], seenAt: now };
      trail.points.push([(d.box[0] + d.box[2]) / 2, d.box[3]]);
      if (trail.points.length > TRAIL_POINTS) trail.points.shift();
      trail.seenAt = now;
      this.trails.set(d.track, trail);
    }
    for (const [track, trail] of this.trails) if (now - trail.seenAt > TRAIL_IDLE_MS) this.trails.delete(track);
    this.state.tracks = this.trails.size;
    if (result.occupancy) this.state.occupancy = result.occupancy;
    if (result.crossings) this.state.crossings = result.crossings;
    if (result.occupancy || result.crossings) this._counters();
  }

  onEvent(event) {
    const item = {
      epoch: event.epoch,
      seq: event.seq,
      kind: event.kind,
      track: event.track,
      label: event.label,
      zone: event.zone,
      line: event.line,
      direction: event.direction,
      text: eventText(event),
    };
    this.state.events.unshift(item);
    this.state.events.length = Math.min(this.state.events.length, EVENTS_SHOWN);
    this.state.eventCount += 1;
    const li = document.createElement("li");
    li.dataset.kind = event.kind;
    li.dataset.seq = String(event.seq);
    const time = document.createElement("time");
    time.textContent = new Date(event.captured_at * 1000).toLocaleTimeString();
    const what = document.createElement("span");
    what.textContent = item.text;
    what.style.color = trailColor(event.track);
    li.append(time, what);
    this.el.events.prepend(li);
    while (this.el.events.children.length > EVENTS_SHOWN) this.el.events.lastElementChild.remove();
    if (this.el.panel) this.el.panel.hidden = false;
  }

  _counters() {
    const rows = [];
    for (const name of Object.keys(this.state.zones)) {
      rows.push([`zone ${name}`, `${this.state.occupancy[name] ?? 0} inside`, `zone:${name}`]);
    }
    for (const name of Object.keys(this.state.lines)) {
      const c = this.state.crossings[name] ?? { in: 0, out: 0 };
      rows.push([`line ${name}`, `in ${c.in} · out ${c.out}`, `line:${name}`]);
    }
    this.el.counters.replaceChildren(
      ...rows.map(([name, value, key]) => {
        const li = document.createElement("li");
        li.dataset.key = key;
        const left = document.createElement("span");
        left.textContent = name;
        const right = document.createElement("b");
        right.textContent = value;
        li.append(left, right);
        return li;
      }),
    );
    if (this.el.panel) this.el.panel.hidden = rows.length === 0 && this.state.eventCount === 0;
  }

  /** Paint zones, lines and trails over the boxes (same canvas, frame pixels). */
  draw(ctx, result) {
    const scale = Math.max(1, result.width / 640);
    ctx.save();
    ctx.font = `${13 * scale}px system-ui, sans-serif`;
    ctx.textBaseline = "bottom";
    let zones = 0;
    for (const [name, polygon] of Object.entries(this.state.zones)) {
      if (polygon.length < 3) continue;
      ctx.beginPath();
      polygon.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      ctx.closePath();
      ctx.fillStyle = ZONE_FILL;
      ctx.fill();
      ctx.strokeStyle = ZONE_EDGE;
      ctx.lineWidth = 2 * scale;
      ctx.setLineDash([6 * scale, 4 * scale]);
      ctx.stroke();
      ctx.setLineDash([]);
      const [x, y] = polygon[0];
      ctx.fillStyle = ZONE_EDGE;
      ctx.fillText(`${name}: ${this.state.occupancy[name] ?? 0}`, x + 4 * scale, y - 2 * scale);
      zones += 1;
    }
    let lines = 0;
    for (const [name, [[x1, y1], [x2, y2]]] of Object.entries(this.state.lines)) {
      ctx.strokeStyle = LINE_COLOR;
      ctx.fillStyle = LINE_COLOR;
      ctx.lineWidth = 3 * scale;
      ctx.beginPath();
      ctx.moveTo(x1, y1);
      ctx.lineTo(x2, y2);
      ctx.stroke();
      // An arrow from the middle towards the `in` side: the right of first -> second, y down.
      const length = Math.hypot(x2 - x1, y2 - y1) || 1;
      const [nx, ny] = [-(y2 - y1) / length, (x2 - x1) / length];
      const [mx, my] = [(x1 + x2) / 2, (y1 + y2) / 2];
      const tip = [mx + nx * 22 * scale, my + ny * 22 * scale];
      ctx.beginPath();
      ctx.moveTo(mx, my);
      ctx.lineTo(...tip);
      ctx.stroke();
      ctx.beginPath();
      ctx.arc(tip[0], tip[1], 3.5 * scale, 0, 2 * Math.PI);
      ctx.fill();
      const c = this.state.crossings[name] ?? { in: 0, out: 0 };
      ctx.fillText(`${name} in ${c.in} out ${c.out}`, Math.min(x1, x2) + 4 * scale, Math.min(y1, y2) - 4 * scale);
      lines += 1;
    }
    let trails = 0;
    ctx.lineWidth = 2 * scale;
    for (const [track, trail] of this.trails) {
      if (trail.points.length < 2) continue;
      ctx.strokeStyle = trailColor(track);
      ctx.beginPath();
      trail.points.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      ctx.stroke();
      trails += 1;
    }
    ctx.restore();
    this.state.drawn = { zones, lines, trails };
  }
}
