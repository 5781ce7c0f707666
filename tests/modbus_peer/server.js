// An independent Modbus TCP server for the gateway's tests: modbus-serial's ServerTCP.
//
//   node server.js --port 5020 --spec registers.json
//
// registers.json: {"units": {"1": {"holding": {"0": 17254, ...}, "input": {...},
//                                  "coil": {"5": true}, "discrete": {...}}},
//                  "silent": [7], "illegal": {"1": {"holding": [300]}}}
// Registers not listed read as 0; unit ids in "silent" never answer; "illegal" addresses are
// refused with exception 2. Every request received is printed as one JSON line
// {"t" (seconds, monotonic), "unit", "fc", "address", "count"}, so a test can count the reads the gateway planned.
"use strict";

const ModbusRTU = require("modbus-serial");
const fs = require("fs");

function option(name, fallback) {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 ? process.argv[index + 1] : fallback;
}

const port = Number(option("port", "5020"));
const spec = JSON.parse(fs.readFileSync(option("spec"), "utf8"));
const silent = new Set((spec.silent || []).map(Number));

function memory(unit, area) {
  const units = spec.units || {};
  return (units[String(unit)] || {})[area] || {};
}

function illegal(unit, area, address, count) {
  const list = ((spec.illegal || {})[String(unit)] || {})[area] || [];
  return list.some((a) => a >= address && a < address + count);
}

function registers(area) {
  return (address, length, unit, callback) => {
    if (silent.has(unit)) return; // never answers
    if (illegal(unit, area, address, length)) return callback({ modbusErrorCode: 2 });
    const values = memory(unit, area);
    const words = [];
    for (let i = 0; i < length; i++) words.push(Number(values[String(address + i)] || 0));
    callback(null, words);
  };
}

function register(area) {
  const many = registers(area);
  return (address, unit, callback) => many(address, 1, unit, (err, words) => callback(err, words && words[0]));
}

function bit(area) {
  return (address, unit, callback) => {
    if (silent.has(unit)) return;
    if (illegal(unit, area, address, 1)) return callback({ modbusErrorCode: 2 });
    callback(null, Boolean(memory(unit, area)[String(address)]));
  };
}

const vector = {
  getMultipleHoldingRegisters: registers("holding"),
  getHoldingRegister: register("holding"),
  getMultipleInputRegisters: registers("input"),
  getInputRegister: register("input"),
  getCoil: bit("coil"),
  getDiscreteInput: bit("discrete"),
  setRegister: (address, value, unit, callback) => callback(null),
  setCoil: (address, value, unit, callback) => callback(null),
};

const server = new ModbusRTU.ServerTCP(vector, { host: "127.0.0.1", port: port, unitID: 255 });

// The request log: parse the MBAP frames beside the server (a second listener on each socket).
server._server.on("connection", (sock) => {
  let buffer = Buffer.alloc(0);
  sock.on("data", (data) => {
    buffer = Buffer.concat([buffer, data]);
    while (buffer.length >= 12) {
      const length = buffer.readUInt16BE(4);
      if (buffer.length < 6 + length) break;
      const unit = buffer.readUInt8(6);
      const fc = buffer.readUInt8(7);
      const t = Number(process.hrtime.bigint()) / 1e9;
      const line = { t: t, unit: unit, fc: fc, address: buffer.readUInt16BE(8), count: buffer.readUInt16BE(10) };
      process.stdout.write(JSON.stringify(line) + "\n");
      buffer = buffer.subarray(6 + length);
    }
  });
});

server.on("initialized", () => process.stdout.write(`ready modbus://127.0.0.1:${port}\n`));
server.on("socketError", () => {}); // a client that goes away is not an error here
server.on("serverError", (err) => {
  process.stderr.write(`server error: ${err}\n`);
  process.exit(1);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
process.on("SIGINT", () => server.close(() => process.exit(0)));
