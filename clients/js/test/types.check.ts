// Compiled (never run) by `tsc -p test`: the declarations accept the documented usage and
// reject misuse. Each @ts-expect-error fails the compile if the line it covers stops being an error.

import {
  CLOSE_GOING_AWAY,
  Cursor,
  type Message,
  type Position,
  type StateChange,
  backoff,
  decodePreview,
  subscribe,
  websocketUrl,
} from "@framecast/client";

const since: Record<string, Position> = { cam1: { epoch: "e", seq: 41 } };
const sub = subscribe(["cam1"], {
  url: websocketUrl("http://127.0.0.1:8080/ws", { token: "t" }),
  previews: true,
  since,
  delays: () => backoff({ initial: 0.5, maximum: 5 }),
  maxAttempts: 10,
  onMessage(msg: Message) {
    if (msg.type === "result") {
      const seq: number = msg.seq;
      const labels: string[] = msg.detections.map((d) => d.label);
      const tracks: (number | undefined)[] = msg.detections.map((d) => d.track);
      const inHall: number | undefined = msg.occupancy?.hall;
      const doorIn: number | undefined = msg.crossings?.door.in;
      void [seq, labels, tracks, inHall, doorIn];
    } else if (msg.type === "event") {
      if (msg.kind === "cross") {
        const direction: "in" | "out" = msg.direction;
        const line: string = msg.line;
        void [direction, line];
      } else if (msg.kind === "leave") {
        const lost: boolean = msg.lost;
        const dwell: number = msg.dwell;
        void [lost, dwell];
      } else {
        const zone: string = msg.zone;
        void zone;
      }
      const track: number = msg.track;
      void track;
    } else if (msg.type === "preview") {
      const jpeg: Blob = msg.jpeg;
      void jpeg;
    }
  },
  onState(change: StateChange) {
    const gateway: string | null = change.gateway;
    void [gateway, change.reason, change.delay];
  },
});
sub.add("cam2", { since: { epoch: "e", seq: 1 } });
sub.remove("cam1");
const position: Position | undefined = sub.cursor.position("cam2");
const code: 1001 = CLOSE_GOING_AWAY;
const preview = decodePreview(new ArrayBuffer(8));
const accepted: boolean = new Cursor(since).accept({ type: "result", stream: "cam1", epoch: "e", seq: 42 });
void [position, code, preview?.jpeg, accepted];
sub.close();

const counter = subscribe(["door"], {
  kinds: ["event", "status"],
  maxRate: 2,
  eventSince: { door: { epoch: "e", seq: 17 } },
});
const eventPosition: Position | undefined = counter.cursor.eventPosition("door");
void [eventPosition, counter.kinds, counter.maxRate];
counter.close();

// @ts-expect-error not a kind
subscribe(["cam1"], { kinds: ["video"] });
// @ts-expect-error a rate is a number
subscribe(["cam1"], { maxRate: "2" });
// @ts-expect-error streams are names, not a number
subscribe(1);
// @ts-expect-error unknown option
subscribe(["cam1"], { reconnect: true });
// @ts-expect-error state is read-only
sub.state = "open";
