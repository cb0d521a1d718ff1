// A webhook receiver for dispatch-api's events, with nothing but Node's own
// modules. It checks every delivery as the Standard Webhooks specification
// says (https://www.standardwebhooks.com/):
//
//   webhook-id         the event id (the deduplication key)
//   webhook-timestamp  seconds since the epoch when it was signed
//   webhook-signature  one or more "v1,<base64 HMAC-SHA-256>" separated by spaces
//
// the HMAC being of "<webhook-id>.<webhook-timestamp>.<raw body>" keyed with
// the endpoint's secret ("whsec_<base64>": the key is the decoded base64).
// A request is accepted (204) only if one of its v1 signatures matches
// (compared in constant time) and its timestamp is within 5 minutes of now;
// anything else gets 401 and is not handled. An event already handled (a
// retry, or a delivery again after a replay) is answered 204 and not handled
// twice. Each event handled is printed as one JSON line: its CloudEvent.
//
//   WEBHOOK_SECRET=whsec_... node webhook-receiver.mjs [--port 8080] [--host 127.0.0.1]
//
// The secret comes from the environment, never the command line (which any
// user of the machine can read). Answer quickly: the sender waits for the
// answer, and retries a delivery that times out.
import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";
import { parseArgs } from "node:util";

const TOLERANCE_SECONDS = 5 * 60;
const MAX_BODY_BYTES = 1024 * 1024;

const { values: opt } = parseArgs({
  options: {
    port: { type: "string", default: process.env.PORT ?? "8080" },
    host: { type: "string", default: process.env.HOST ?? "127.0.0.1" },
  },
});
const secret = process.env.WEBHOOK_SECRET ?? "";
if (!secret.startsWith("whsec_")) {
  console.error("set WEBHOOK_SECRET to the endpoint's secret (whsec_...)");
  process.exit(2);
}
const key = Buffer.from(secret.slice("whsec_".length), "base64");

/** Whether the headers sign `body` (a Buffer) with the key, now. */
function verified(headers, body) {
  const id = headers["webhook-id"];
  const timestamp = headers["webhook-timestamp"];
  const signatures = headers["webhook-signature"];
  if (!id || !timestamp || !signatures || !/^\d+$/.test(timestamp)) return false;
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > TOLERANCE_SECONDS) return false;
  const expected = Buffer.from(
    "v1," + createHmac("sha256", key).update(`${id}.${timestamp}.`).update(body).digest("base64"),
  );
  // Several signatures during a secret's rotation; versions other than v1
  // never match. Compared in constant time, as the exact text sent.
  return signatures.split(" ").some((entry) => {
    const given = Buffer.from(entry);
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}

// The ids handled so far (in memory here: a real receiver keeps them with
// what it did, in the same transaction, and forgets them after a few days).
const handled = new Set();

const server = createServer((req, res) => {
  const answer = (status) => res.writeHead(status).end();
  if (req.method !== "POST") return answer(405);
  const chunks = [];
  let size = 0;
  req.on("data", (chunk) => {
    if (res.headersSent) return;
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      res.on("finish", () => req.destroy());
      res.writeHead(413, { connection: "close" }).end();
    } else {
      chunks.push(chunk);
    }
  });
  req.on("end", () => {
    if (res.headersSent) return;
    const body = Buffer.concat(chunks);
    if (!verified(req.headers, body)) return answer(401);
    const id = req.headers["webhook-id"];
    if (handled.has(id)) return answer(204);
    let event;
    try {
      event = JSON.parse(body.toString("utf8"));
    } catch {
      return answer(400);
    }
    handled.add(id);
    // Handle the event here: `event.type` is `dev.dispatch.<aggregate>.<event>.v<major>`,
    // `event.subject` the aggregate's id, `event.data.payload` the event's fields.
    process.stdout.write(JSON.stringify(event) + "\n");
    answer(204);
  });
});

server.listen(Number(opt.port), opt.host, () => {
  const { address, port } = server.address();
  console.error(`listening on http://${address}:${port}`);
});
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => server.close(() => process.exit(0)));
