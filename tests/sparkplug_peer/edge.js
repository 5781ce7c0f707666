// An independent Sparkplug B edge node for the gateway's tests: Eclipse Tahu's JavaScript payload
// library (sparkplug-payload) over MQTT.js. It knows nothing of the gateway's code.
//
//   node edge.js --broker mqtt://127.0.0.1:1883 --group Plant --node Line-1 --devices Press-1,Press-2
//                [--bdseq 0] [--names-in-data] [--client-id ID]
//
// It connects (MQTT 3.1.1, clean session, its NDEATH as the will), publishes its NBIRTH and a DBIRTH
// per device, then waits for commands on stdin, one JSON object per line:
//   {"cmd": "data", "count": N}        N rounds: an NDATA and a DDATA per live device (aliases only,
//                                      unless --names-in-data), every scalar type, a template, a
//                                      null, a DataSet, Bytes, a Quality property every third round
//   {"cmd": "ddeath", "device": D}     a DDEATH for D (its data stops)
//   {"cmd": "dbirth", "device": D}     a DBIRTH for D (its data resumes)
//   {"cmd": "gap"}                     skip one sequence number (the next message shows a gap)
//   {"cmd": "unknown_alias"}           a DDATA carrying an alias no birth declared
//   {"cmd": "rebirth"}                 NBIRTH and DBIRTHs again, as after a rebirth request
//   {"cmd": "exit"}                    disconnect cleanly (no will) and exit
// An NCMD "Node Control/Rebirth" = true from a host makes it publish its births again.
// Everything it does is printed on stdout as one JSON object per line: {"event": "ready"} (once the
// broker has routed the births: a QoS 1 publish on sparkplug-peer/<client id>/routed after them came
// back acknowledged),
// {"event": "published", "topic", "seq", "metrics": [...]} for every message (values as sent,
// 64-bit integers as text), {"event": "ncmd", ...}, {"event": "rebirth", "reason"}.
"use strict";

const mqtt = require("mqtt");
const Long = require("long");
const { encodePayload, decodePayload } = require("sparkplug-payload").get("spBv1.0");

function option(name, fallback) {
  const index = process.argv.indexOf("--" + name);
  return index >= 0 ? process.argv[index + 1] : fallback;
}

const broker = option("broker", "mqtt://127.0.0.1:1883");
const group = option("group", "Plant");
const node = option("node", "Line-1");
const devices = option("devices", "Press-1,Press-2").split(",").filter(Boolean);
const namesInData = process.argv.includes("--names-in-data");
let bdSeq = Number(option("bdseq", "0"));
const clientId = option("client-id", `edge-${group}-${node}`);

function out(event) {
  process.stdout.write(JSON.stringify(event, (key, value) => (Long.isLong(value) ? value.toString() : value)) + "\n");
}

// --- the metrics ----------------------------------------------------------------------------------------

let nextAlias = 2; // 0: bdSeq, 1: Node Control/Rebirth
const aliases = {}; // "device/name" -> alias
function aliasOf(device, name) {
  const key = `${device}/${name}`;
  if (!(key in aliases)) aliases[key] = nextAlias++;
  return aliases[key];
}

const UINT64_BASE = Long.fromString("9223372036854775808", true); // 2^63: beyond a signed 64-bit integer

// name, type, value at step s (deterministic, so a test can say what must be stored)
const DEVICE_METRICS = [
  ["Nozzle/Temp", "Double", (s) => 200 + s * 0.5],
  ["Motor/Speed", "Float", (s) => s * 1.25],
  ["Counters/Int8", "Int8", (s) => -((s % 100) + 1)],
  ["Counters/Int16", "Int16", (s) => -1000 - s],
  ["Counters/Int32", "Int32", (s) => -100000 - s],
  ["Counters/Int64", "Int64", (s) => Long.fromNumber(-(2 ** 40) - s)],
  ["Counters/UInt8", "UInt8", (s) => 200 + (s % 50)],
  ["Counters/UInt16", "UInt16", (s) => 60000 + s],
  ["Counters/UInt32", "UInt32", (s) => 4000000000 + s],
  ["Counters/UInt64", "UInt64", (s) => UINT64_BASE.add(s * 2048)],
  ["Status/Running", "Boolean", (s) => s % 2 === 0],
  ["Status/Mode", "String", (s) => `auto-${s}`],
  ["Status/Changed", "DateTime", (s) => Long.fromNumber(1700000000000 + s)],
  ["Status/Note", "Text", (s) => `note ${s}`],
  ["Status/Batch", "UUID", (s) => `123e4567-e89b-12d3-a456-${String(426614174000 + s).padStart(12, "0")}`],
];
const NODE_METRICS = [
  ["Properties/Hardware", "String", () => "sparkplug-payload peer"],
  ["Node/Uptime", "Int64", (s) => Long.fromNumber(s)],
];

function deviceMetrics(device, step, ts, birth) {
  const metrics = DEVICE_METRICS.map(([name, type, value]) => ({ name, type, value: value(step) }));
  metrics.push({
    name: "Pump",
    type: "Template",
    value: {
      templateRef: "PumpType",
      isDefinition: false,
      metrics: [
        { name: "Flow", type: "Double", value: 10 + step },
        { name: "On", type: "Boolean", value: step % 3 !== 0 },
      ],
    },
  });
  // A Quality property that is not good every third round (0: Bad, as Ignition publishes it).
  const bad = step % 3 === 2;
  metrics.push({
    name: "Nozzle/Pressure",
    type: "Double",
    value: 5 + step / 4,
    ...(bad ? { properties: { Quality: { type: "Int32", value: 0 } } } : {}),
  });
  metrics.push({ name: "Nozzle/Spare", type: "Double", value: null });
  metrics.push({
    name: "Recipe",
    type: "DataSet",
    value: { numOfColumns: 2, columns: ["step", "setpoint"], types: ["String", "Double"], rows: [["fill", 2.5]] },
  });
  metrics.push({ name: "Blob", type: "Bytes", value: Buffer.from([1, 2, 3]) });
  return finish(device, metrics, ts, birth);
}

function nodeMetrics(step, ts, birth) {
  const metrics = NODE_METRICS.map(([name, type, value]) => ({ name, type, value: value(step) }));
  return finish(null, metrics, ts, birth);
}

function finish(device, metrics, ts, birth) {
  for (const metric of metrics) {
    metric.timestamp = ts;
    metric.alias = aliasOf(device ?? "", metric.name);
    if (!birth && !namesInData) delete metric.name;
  }
  return metrics;
}

// --- publishing ------------------------------------------------------------------------------------------

let seq = 0;
let step = 0;
let lastTs = 0;
const live = new Set();

function now() {
  lastTs = Math.max(Date.now(), lastTs + 1); // every message its own millisecond
  return lastTs;
}

function topic(kind, device) {
  return device ? `spBv1.0/${group}/${kind}/${node}/${device}` : `spBv1.0/${group}/${kind}/${node}`;
}

const writes = []; // publishes not yet written to the socket: "done" waits for them

function send(kind, device, payload, qos = 0) {
  const data = encodePayload(payload);
  writes.push(
    new Promise((resolve) => client.publish(topic(kind, device), Buffer.from(data), { qos, retain: false }, resolve)),
  );
  out({ event: "published", kind, topic: topic(kind, device), device: device ?? null, ...payload });
}

async function flushed() {
  while (writes.length) await writes.shift();
}

// Births go out at QoS 0, which the broker never acknowledges: written to the socket is not yet read
// and routed by the broker (on a loaded machine a client that subscribes a moment later may still
// receive them). A QoS 1 publish after them on the same connection is acknowledged only once the
// broker has read everything before it, so when this resolves every earlier message has gone to the
// subscribers the broker had then, and a client subscribing later will not receive them.
function routed() {
  return new Promise((resolve) => client.publish(`sparkplug-peer/${clientId}/routed`, "", { qos: 1 }, resolve));
}

function nextSeq() {
  const value = seq;
  seq = (seq + 1) % 256;
  return value;
}

function nbirth() {
  seq = 0;
  const ts = now();
  const metrics = [
    { name: "bdSeq", type: "Int64", value: Long.fromNumber(bdSeq), alias: 0, timestamp: ts },
    { name: "Node Control/Rebirth", type: "Boolean", value: false, alias: 1, timestamp: ts },
    ...nodeMetrics(step, ts, true),
  ];
  send("NBIRTH", null, { timestamp: ts, seq: nextSeq(), metrics });
}

function dbirth(device) {
  const ts = now();
  send("DBIRTH", device, { timestamp: ts, seq: nextSeq(), metrics: deviceMetrics(device, step, ts, true) });
  live.add(device);
}

function births(reason) {
  nbirth();
  for (const device of devices) dbirth(device);
  out({ event: "rebirth", reason });
}

function data() {
  step += 1;
  let ts = now();
  send("NDATA", null, { timestamp: ts, seq: nextSeq(), metrics: nodeMetrics(step, ts, false) });
  for (const device of devices) {
    if (!live.has(device)) continue;
    ts = now();
    send("DDATA", device, { timestamp: ts, seq: nextSeq(), metrics: deviceMetrics(device, step, ts, false) });
  }
}

function ndeathPayload() {
  return encodePayload({
    timestamp: Date.now(),
    metrics: [{ name: "bdSeq", type: "Int64", value: Long.fromNumber(bdSeq) }],
  });
}

const client = mqtt.connect(broker, {
  clientId,
  clean: true,
  protocolVersion: 4,
  reconnectPeriod: 500,
  will: { topic: topic("NDEATH"), payload: Buffer.from(ndeathPayload()), qos: 1, retain: false },
});

let connections = 0;
client.on("connect", () => {
  connections += 1;
  client.subscribe([topic("NCMD"), `spBv1.0/${group}/DCMD/${node}/+`], { qos: 0 }, (error) => {
    if (error) {
      out({ event: "error", message: String(error) });
      return;
    }
    births(connections === 1 ? "connect" : "reconnect");
    flushed()
      .then(routed)
      .then(() => out({ event: "ready", bdSeq }));
  });
});
client.on("close", () => {
  // The next connection is a new session: a new bdSeq, in the will too.
  bdSeq = (bdSeq + 1) % 256;
  client.options.will.payload = Buffer.from(ndeathPayload());
});
client.on("error", (error) => out({ event: "error", message: String(error) }));

client.on("message", (incoming, data) => {
  const payload = decodePayload(data);
  out({ event: "ncmd", topic: incoming, metrics: payload.metrics });
  for (const metric of payload.metrics || []) {
    if (metric.name === "Node Control/Rebirth" && metric.value === true) births("ncmd");
  }
  flushed().then(() => out({ event: "flushed" }));
});

// --- commands -----------------------------------------------------------------------------------------

let buffered = "";
let queue = Promise.resolve(); // commands run one after the other
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  buffered += chunk;
  let newline;
  while ((newline = buffered.indexOf("\n")) >= 0) {
    const line = buffered.slice(0, newline).trim();
    buffered = buffered.slice(newline + 1);
    if (line) queue = queue.then(() => handle(JSON.parse(line)));
  }
});

async function handle(command) {
  switch (command.cmd) {
    case "data":
      for (let i = 0; i < (command.count ?? 1); i++) data();
      break;
    case "ddeath":
      live.delete(command.device);
      send("DDEATH", command.device, { timestamp: now(), seq: nextSeq(), metrics: [] });
      break;
    case "dbirth":
      dbirth(command.device);
      break;
    case "gap":
      nextSeq();
      break;
    case "unknown_alias": {
      const ts = now();
      const metrics = [{ alias: 9999, type: "Double", value: 1.5, timestamp: ts }];
      send("DDATA", devices[0], { timestamp: ts, seq: nextSeq(), metrics });
      break;
    }
    case "rebirth":
      births("command");
      break;
    case "exit":
      client.end(false, () => process.exit(0));
      return;
    default:
      out({ event: "error", message: `unknown command ${JSON.stringify(command)}` });
      return;
  }
  await flushed();
  out({ event: "done", cmd: command.cmd });
}
