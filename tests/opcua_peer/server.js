#!/usr/bin/env node
// An independent OPC UA server for the gateway's tests: node-opcua, not asyncua.
//
// A small injection-molding line in its own namespace (urn:peer:node-opcua:press-line),
// below Objects/PressLine:
//   Temperature (Double, smooth), CycleCounter (UInt32, +1 every 500 ms), Running (Boolean),
//   Recipe (String), Pressure (AnalogItem Double, EURange 0..1000), ZoneTemperatures (Double[3]),
//   Ramp (Double, +1 every 100 ms: deadband tests), BrokenSensor (always BadSensorFailure),
//   FlakySensor (Good and BadSensorFailure by turns, 1 s each), Tags/Tag0000… (--items N Doubles,
//   changing every second).
// Writable, for the gateway's writes: Setpoint (Double, the machine takes 0..300 and refuses
//   anything else with BadOutOfRange), RecipeSelected (String), Clamped (Double: the machine
//   keeps at most 100, so a higher value reads back as 100). Refusing: SerialNumber (String,
//   read-only: BadNotWritable), Locked (Double, writable but not by this user: BadUserAccessDenied).
//
// Options: --port P, --pki DIR, --extra-namespaces K (shifts the namespace index),
// --items N, --max-nodes-per-read N, --max-monitored-items-per-call N, --max-sessions N,
// --user name:password (repeatable; anonymous is then refused), --status-file FILE (live
// session / subscription / monitored item counts as JSON), --log-sessions (one line per session
// created, activated or closed, with the number of sessions open then, and one per session
// refused). Prints "ready <url>" when listening.
"use strict";

const fs = require("fs");
const path = require("path");
const {
    OPCUAServer,
    OPCUACertificateManager,
    Variant,
    VariantArrayType,
    DataType,
    DataValue,
    StatusCodes,
    standardUnits,
} = require("node-opcua");

const NAMESPACE = "urn:peer:node-opcua:press-line";

function parseArgs(argv) {
    const args = { port: 4840, items: 0, extraNamespaces: 0, users: {}, maxSessions: 10 };
    for (let i = 0; i < argv.length; i++) {
        const key = argv[i];
        const value = argv[i + 1];
        const take = () => {
            i += 1;
            return value;
        };
        switch (key) {
            case "--port": args.port = parseInt(take(), 10); break;
            case "--pki": args.pki = take(); break;
            case "--items": args.items = parseInt(take(), 10); break;
            case "--extra-namespaces": args.extraNamespaces = parseInt(take(), 10); break;
            case "--max-nodes-per-read": args.maxNodesPerRead = parseInt(take(), 10); break;
            case "--max-monitored-items-per-call": args.maxMonitoredItemsPerCall = parseInt(take(), 10); break;
            case "--max-sessions": args.maxSessions = parseInt(take(), 10); break;
            case "--status-file": args.statusFile = take(); break;
            case "--log-sessions": args.logSessions = true; break;
            case "--user": {
                const [name, password] = take().split(":");
                args.users[name] = password;
                break;
            }
            default:
                throw new Error(`unknown option ${key}`);
        }
    }
    return args;
}

function variable(namespace, parent, name, dataType, value, extra = {}) {
    const node = namespace.addVariable({
        componentOf: parent,
        browseName: name,
        nodeId: `s=PressLine.${name}`,
        dataType,
        ...(extra.arrayType !== undefined ? { valueRank: 1, arrayDimensions: [value.length] } : {}),
    });
    setValue(node, dataType, value, StatusCodes.Good, extra);
    return node;
}

function setValue(node, dataType, value, statusCode = StatusCodes.Good, extra = {}) {
    const now = new Date();
    node.setValueFromSource(new Variant({ dataType, value, ...extra }), statusCode, now);
}

function writeStatus(file, engine) {
    const sessions = engine.getSessions();
    let monitoredItems = 0;
    for (const session of sessions) {
        monitoredItems += session.currentMonitoredItemCount;
    }
    const status = {
        sessions: engine.currentSessionCount,
        sessions_created: engine.cumulatedSessionCount,
        subscriptions: engine.currentSubscriptionCount,
        monitored_items: monitoredItems,
        rejected_sessions: engine.rejectedSessionCount,
    };
    fs.writeFileSync(file + ".tmp", JSON.stringify(status));
    fs.renameSync(file + ".tmp", file);
}

// What a reconnect storm test reads: the sessions this server holds, from its own events (a set
// of its own, so the count does not depend on when the engine updates its diagnostics).
function logSessions(server, maxSessions) {
    const open = new Set();
    const id = (session) => session.nodeId.toString();
    server.on("create_session", (session) => {
        open.add(id(session));
        console.log(`session created ${id(session)} open=${open.size}`);
    });
    server.on("session_activated", (session) => console.log(`session activated ${id(session)} open=${open.size}`));
    server.on("session_closed", (session, deleteSubscriptions) => {
        open.delete(id(session));
        console.log(`session closed ${id(session)} deleteSubscriptions=${deleteSubscriptions} open=${open.size}`);
    });
    // node-opcua counts a CreateSession refused for want of room (BadTooManySessions) with the
    // security rejections; this server has no security, so with every session in use it is that.
    const engine = server.engine;
    const refuse = engine.incrementSecurityRejectedSessionCount.bind(engine);
    engine.incrementSecurityRejectedSessionCount = () => {
        const why = open.size >= maxSessions ? "BadTooManySessions" : "a security check";
        console.log(`session refused (${why}) open=${open.size}`);
        refuse();
    };
}

async function main() {
    const args = parseArgs(process.argv.slice(2));
    const pki = args.pki || path.join(require("os").tmpdir(), "gateway-opcua-peer-pki");
    const certificateManager = new OPCUACertificateManager({
        rootFolder: pki,
        automaticallyAcceptUnknownCertificate: true,
    });
    const users = args.users;
    const hasUsers = Object.keys(users).length > 0;
    const operationLimits = {};
    if (args.maxNodesPerRead) operationLimits.maxNodesPerRead = args.maxNodesPerRead;
    if (args.maxMonitoredItemsPerCall) operationLimits.maxMonitoredItemsPerCall = args.maxMonitoredItemsPerCall;
    const server = new OPCUAServer({
        port: args.port,
        hostname: "127.0.0.1",
        resourcePath: "/",
        serverCertificateManager: certificateManager,
        allowAnonymous: !hasUsers,
        userManager: hasUsers ? { isValidUser: (name, password) => users[name] === password } : undefined,
        serverCapabilities: { maxSessions: args.maxSessions, operationLimits },
        buildInfo: { productName: "gateway-test-peer", manufacturerName: "node-opcua" },
        serverInfo: { applicationUri: "urn:peer:node-opcua:server" },
    });
    await server.initialize();
    const addressSpace = server.engine.addressSpace;
    for (let k = 0; k < args.extraNamespaces; k++) {
        addressSpace.registerNamespace(`urn:peer:padding:${k}`);
    }
    const namespace = addressSpace.registerNamespace(NAMESPACE);
    const line = namespace.addObject({
        organizedBy: addressSpace.rootFolder.objects,
        browseName: "PressLine",
        nodeId: "s=PressLine",
    });
    const temperature = variable(namespace, line, "Temperature", DataType.Double, 220.0);
    const counter = variable(namespace, line, "CycleCounter", DataType.UInt32, 0);
    const running = variable(namespace, line, "Running", DataType.Boolean, true);
    variable(namespace, line, "Recipe", DataType.String, "PP-CAP-28 rev 4");
    const zones = variable(namespace, line, "ZoneTemperatures", DataType.Double, new Float64Array([215.0, 225.0, 235.0]), {
        arrayType: VariantArrayType.Array,
    });
    const ramp = variable(namespace, line, "Ramp", DataType.Double, 0.0);
    const broken = variable(namespace, line, "BrokenSensor", DataType.Double, 0.0);
    const flaky = variable(namespace, line, "FlakySensor", DataType.Double, 1.0);
    // Writable variables: each keeps what a client wrote, as a controller's parameter does.
    const written = { Setpoint: 180.0, RecipeSelected: "PP-CAP-28", Clamped: 50.0, Locked: 1.0 };
    const held = (name, dataType, check) =>
        namespace.addVariable({
            componentOf: line,
            browseName: name,
            nodeId: `s=PressLine.${name}`,
            dataType,
            accessLevel: "CurrentRead | CurrentWrite",
            userAccessLevel: name === "Locked" ? "CurrentRead" : "CurrentRead | CurrentWrite",
            value: {
                get: () => new Variant({ dataType, value: written[name] }),
                set: (variant) => {
                    const status = check ? check(variant.value) : StatusCodes.Good;
                    if (status === StatusCodes.Good) {
                        written[name] = name === "Clamped" ? Math.min(variant.value, 100) : variant.value;
                    }
                    return status;
                },
            },
        });
    held("Setpoint", DataType.Double, (v) => (v >= 0 && v <= 300 ? StatusCodes.Good : StatusCodes.BadOutOfRange));
    held("RecipeSelected", DataType.String);
    held("Clamped", DataType.Double);
    held("Locked", DataType.Double);
    namespace.addVariable({
        componentOf: line,
        browseName: "SerialNumber",
        nodeId: "s=PressLine.SerialNumber",
        dataType: DataType.String,
        accessLevel: "CurrentRead",
        userAccessLevel: "CurrentRead",
        value: new Variant({ dataType: DataType.String, value: "NP-2024-0815" }),
    });
    const pressure = namespace.addAnalogDataItem({
        componentOf: line,
        browseName: "Pressure",
        nodeId: "s=PressLine.Pressure",
        dataType: "Double",
        engineeringUnitsRange: { low: 0, high: 1000 },
        engineeringUnits: standardUnits.bar,
        value: new Variant({ dataType: DataType.Double, value: 500.0 }),
    });
    const tags = [];
    if (args.items > 0) {
        const folder = namespace.addObject({ componentOf: line, browseName: "Tags", nodeId: "s=PressLine.Tags" });
        for (let i = 0; i < args.items; i++) {
            const name = `Tag${String(i).padStart(4, "0")}`;
            tags.push(
                namespace.addVariable({
                    componentOf: folder,
                    browseName: name,
                    nodeId: `s=PressLine.Tags.${name}`,
                    dataType: DataType.Double,
                })
            );
            setValue(tags[i], DataType.Double, i);
        }
    }
    setValue(broken, DataType.Double, 0.0, StatusCodes.BadSensorFailure);

    let t = 0;
    let rampValue = 0;
    setInterval(() => {
        rampValue += 1;
        setValue(ramp, DataType.Double, rampValue);
    }, 100);
    setInterval(() => {
        t += 0.5;
        setValue(counter, DataType.UInt32, Math.floor(t * 2));
        setValue(temperature, DataType.Double, Math.round((220 + 5 * Math.sin(t / 5)) * 1000) / 1000);
        setValue(pressure, DataType.Double, Math.round((500 + 300 * Math.sin(t)) * 10) / 10);
        const zoneValues = [215 + Math.sin(t), 225 + Math.cos(t), 235 + Math.sin(t / 2)].map((z) => Math.round(z * 1000) / 1000);
        setValue(zones, DataType.Double, new Float64Array(zoneValues), StatusCodes.Good, {
            arrayType: VariantArrayType.Array,
        });
        setValue(running, DataType.Boolean, Math.floor(t / 10) % 4 !== 3);
        const bad = Math.floor(t) % 2 === 1;
        setValue(flaky, DataType.Double, bad ? 0.0 : 1.0 + t, bad ? StatusCodes.BadSensorFailure : StatusCodes.Good);
    }, 500);
    setInterval(() => {
        for (let i = 0; i < tags.length; i++) {
            setValue(tags[i], DataType.Double, Math.round((i + Math.sin(t + i)) * 1000) / 1000);
        }
    }, 1000);
    if (args.statusFile) {
        setInterval(() => writeStatus(args.statusFile, server.engine), 200);
    }

    if (args.logSessions) {
        logSessions(server, args.maxSessions);
    }
    await server.start();
    const url = server.getEndpointUrl();
    console.log(`ready ${url} namespace ${NAMESPACE} = ns=${namespace.index}`);
    const stop = async () => {
        await server.shutdown(0);
        process.exit(0);
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
}

main().catch((err) => {
    console.error(err);
    process.exit(1);
});
