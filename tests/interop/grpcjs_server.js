// An OTLP logs/trace gRPC server on @grpc/grpc-js for the interop suite (tests/interop).
// Requests are taken as raw bytes (no proto-loader): each is appended to --out as one JSON line
// {signal, peer, body (base64)}, and the Python side decodes them.  Prints "PORT <n>" once bound.
"use strict";
const fs = require("fs");
const path = require("path");
const grpc = require(path.join(__dirname, "node_modules", "@grpc", "grpc-js"));

const args = { host: "127.0.0.1", port: 0, out: "", delayMs: 0, maxStreams: 0, maxRecv: 0,
  rejected: 0, maxAgeMs: 0, cert: "", key: "", clientCa: "" };
for (let i = 2; i < process.argv.length; i += 2) {
  const name = process.argv[i].replace(/^--/, "").replace(/-(.)/g, (_, c) => c.toUpperCase());
  const value = process.argv[i + 1];
  args[name] = typeof args[name] === "number" ? Number(value) : value;
}

const identity = (b) => b;
// ExportLogsServiceResponse / ExportTraceServiceResponse with partial_success (field 1):
// rejected count (field 1, varint) and error_message (field 2).
function answer() {
  if (!args.rejected) return Buffer.alloc(0);
  const msg = Buffer.from("rejected by the interop server");
  const varint = [];
  for (let v = args.rejected; ; v = Math.floor(v / 128)) {
    if (v < 128) { varint.push(v); break; }
    varint.push((v % 128) | 128);
  }
  const inner = Buffer.concat([Buffer.from([0x08, ...varint]), Buffer.from([0x12, msg.length]), msg]);
  return Buffer.concat([Buffer.from([0x0a, inner.length]), inner]);
}

function handler(signal) {
  return (call, callback) => {
    const line = JSON.stringify({ signal, peer: call.getPeer(), body: call.request.toString("base64") });
    fs.appendFileSync(args.out, line + "\n");
    setTimeout(() => callback(null, answer()), args.delayMs);
  };
}

function method(service, signal) {
  return {
    path: `/opentelemetry.proto.collector.${service}/Export`, requestStream: false, responseStream: false,
    requestSerialize: identity, requestDeserialize: identity,
    responseSerialize: identity, responseDeserialize: identity, originalName: signal,
  };
}

const options = {};
if (args.maxStreams) options["grpc.max_concurrent_streams"] = args.maxStreams;
if (args.maxRecv) options["grpc.max_receive_message_length"] = args.maxRecv;
if (args.maxAgeMs) {
  options["grpc.max_connection_age_ms"] = args.maxAgeMs;
  options["grpc.max_connection_age_grace_ms"] = 5000;
}
const server = new grpc.Server(options);
server.addService({ Export: method("logs.v1.LogsService", "logs") }, { Export: handler("logs") });
server.addService({ Export: method("trace.v1.TraceService", "traces") }, { Export: handler("traces") });
let creds = grpc.ServerCredentials.createInsecure();
if (args.cert) {
  const ca = args.clientCa ? fs.readFileSync(args.clientCa) : null;
  creds = grpc.ServerCredentials.createSsl(ca,
    [{ private_key: fs.readFileSync(args.key), cert_chain: fs.readFileSync(args.cert) }], !!args.clientCa);
}
const where = args.host.includes(":") ? `[${args.host}]:${args.port}` : `${args.host}:${args.port}`;
server.bindAsync(where, creds, (err, port) => {
  if (err) { console.error(String(err)); process.exit(1); }
  process.stdout.write(`PORT ${port}\n`);
});
process.on("SIGTERM", () => process.exit(0));
