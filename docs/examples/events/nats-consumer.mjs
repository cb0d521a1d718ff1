// A JetStream consumer of dispatch-api's events: reads the stream with a
// durable consumer, parses each message as a CloudEvent, skips an event it
// has already handled (the CloudEvent `id` is the event id, the
// deduplication key), prints one JSON line per event and acknowledges it.
//
//   node nats-consumer.mjs [--server nats://127.0.0.1:4222] [--stream DISPATCH_EVENTS]
//                          [--durable dispatch-example] [--subject 'dispatch.events.job.>']
//                          [--count N]
//
// Each option also has an environment variable: NATS_URL, DISPATCH_NATS_STREAM,
// NATS_DURABLE, NATS_SUBJECT, COUNT. `--count N` stops after N distinct events
// (without it, it runs until interrupted).
//
// Delivery is at least once: the service may publish an event again after a
// crash (JetStream drops a re-publish within its duplicate window, but not
// after it), and JetStream redelivers a message whose acknowledgement it did
// not get. This example remembers the ids it has seen in memory; a real
// consumer records them (or the last `globalposition` handled per subject)
// in the same transaction as whatever it does with the event.
import { parseArgs } from "node:util";
import { connect } from "@nats-io/transport-node";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";

const { values: opt } = parseArgs({
  options: {
    server: { type: "string", default: process.env.NATS_URL ?? "nats://127.0.0.1:4222" },
    stream: { type: "string", default: process.env.DISPATCH_NATS_STREAM ?? "DISPATCH_EVENTS" },
    durable: { type: "string", default: process.env.NATS_DURABLE ?? "dispatch-example" },
    subject: { type: "string", default: process.env.NATS_SUBJECT },
    count: { type: "string", default: process.env.COUNT },
  },
});
const count = opt.count === undefined ? Infinity : Number(opt.count);
if (!(count > 0)) throw new Error(`--count must be a positive number, not ${opt.count}`);

const nc = await connect({ servers: opt.server, name: "dispatch-example-consumer" });

// The durable consumer remembers what was acknowledged across restarts; it
// is created (or updated) here, reading the stream from its beginning.
const jsm = await jetstreamManager(nc);
await jsm.consumers.add(opt.stream, {
  durable_name: opt.durable,
  ack_policy: AckPolicy.Explicit,
  deliver_policy: DeliverPolicy.All,
  ...(opt.subject ? { filter_subject: opt.subject } : {}),
});
const consumer = await jetstream(nc).consumers.get(opt.stream, opt.durable);
const messages = await consumer.consume({ max_messages: 256 });
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => messages.stop());

const seen = new Set();
for await (const m of messages) {
  let event;
  try {
    event = m.json();
  } catch (e) {
    // Not JSON: it will never parse, so tell JetStream not to redeliver it.
    console.error(`stream sequence ${m.seq}: not JSON (${e.message}); terminated`);
    m.term();
    continue;
  }
  if (event?.specversion !== "1.0" || typeof event.id !== "string") {
    console.error(`stream sequence ${m.seq}: not a CloudEvent; terminated`);
    m.term();
    continue;
  }
  if (!seen.has(event.id)) {
    seen.add(event.id);
    // Handle the event here: `event.type` is `dev.dispatch.<aggregate>.<event>.v<major>`,
    // `event.subject` the aggregate's id, `event.data.payload` the event's fields.
    process.stdout.write(JSON.stringify(event) + "\n");
  }
  // Acknowledge only once handled: a crash before this gets the message again.
  m.ack();
  if (seen.size >= count) break;
}

// Sends the last acknowledgements before closing.
await nc.drain();
