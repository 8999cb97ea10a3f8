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
      void [seq, labels];
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

// @ts-expect-error streams are names, not a number
subscribe(1);
// @ts-expect-error unknown option
subscribe(["cam1"], { reconnect: true });
// @ts-expect-error state is read-only
sub.state = "open";
