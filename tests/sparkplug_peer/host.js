// An independent Sparkplug B host / decoder for the gateway's tests: Eclipse Tahu's JavaScript
// payload library (sparkplug-payload) over MQTT.js. It knows nothing of the gateway's code.
//
//   node host.js --broker mqtt://127.0.0.1:1883 [--filter spBv1.0/#] [--client-id ID]
//
// Prints every message it receives as one JSON object per line:
//   {"event": "message", "topic", "qos", "retain", "payload": {...decoded...}}
// Sparkplug payloads are decoded by sparkplug-payload (64-bit integers as text, bytes as base64),
// with "raw": the same payload from the library's protobuf layer (every oneof field by its name);
// STATE payloads (JSON text in Sparkplug 3.0) are parsed as JSON, anything else is given as text.
// Commands on stdin, one JSON object per line:
//   {"cmd": "publish", "topic": T, "payload": {...Sparkplug payload object...}, "qos": 0}
//   {"cmd": "exit"}
"use strict";

const mqtt = require("mqtt");
const Long = require("long");
const { encodePayload, decodePayload } = require("sparkplug-payload").get("spBv1.0");
// The library's protobuf layer: a data message's values as they are on the wire (its decodePayload
// reads a value through the metric's datatype, which data messages leave out: hosts take it from
// the birth, as the tests do).
const ProtoPayload = require("sparkplug-payload/lib/sparkplugPayloadProto").org.eclipse.tahu.protobuf.Payload;

function option(name, fallback) {
  const index = process.argv.indexOf("--" + name);
  return index >= 0 ? process.argv[index + 1] : fallback;
}

const broker = option("broker", "mqtt://127.0.0.1:1883");
const filter = option("filter", "spBv1.0/#");
const clientId = option("client-id", `host-decoder-${process.pid}`);

function out(event) {
  const text = JSON.stringify(event, function (key, value) {
    if (Long.isLong(value)) return value.toString();
    if (value && value.type === "Buffer" && Array.isArray(value.data)) return Buffer.from(value.data).toString("base64");
    return value;
  });
  process.stdout.write(text + "\n");
}

function decode(topic, data) {
  if (topic.startsWith("spBv1.0/STATE/")) {
    try {
      return JSON.parse(data.toString("utf8"));
    } catch (error) {
      return { text: data.toString("utf8") };
    }
  }
  try {
    const decoded = decodePayload(data);
    decoded.raw = ProtoPayload.toObject(ProtoPayload.decode(data), { longs: String, bytes: String });
    return decoded;
  } catch (error) {
    return { error: String(error), bytes: data.toString("base64") };
  }
}

const client = mqtt.connect(broker, { clientId, clean: true, protocolVersion: 4, reconnectPeriod: 500 });
client.on("connect", () => {
  client.subscribe(filter, { qos: 1 }, (error) => {
    out(error ? { event: "error", message: String(error) } : { event: "ready" });
  });
});
client.on("error", (error) => out({ event: "error", message: String(error) }));
client.on("message", (topic, data, packet) => {
  out({ event: "message", topic, qos: packet.qos, retain: packet.retain, payload: decode(topic, data) });
});

let buffered = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  buffered += chunk;
  let newline;
  while ((newline = buffered.indexOf("\n")) >= 0) {
    const line = buffered.slice(0, newline).trim();
    buffered = buffered.slice(newline + 1);
    if (line) handle(JSON.parse(line));
  }
});

function handle(command) {
  if (command.cmd === "publish") {
    const data = Buffer.from(encodePayload(command.payload));
    client.publish(command.topic, data, { qos: command.qos ?? 0 }, (error) =>
      out(error ? { event: "error", message: String(error) } : { event: "done", cmd: "publish" }),
    );
  } else if (command.cmd === "exit") {
    client.end(false, () => process.exit(0));
  } else {
    out({ event: "error", message: `unknown command ${JSON.stringify(command)}` });
  }
}
