// The benchmark's second receiver: an OTLP logs/trace server on @grpc/grpc-js (the interop suite's
// package, installed by tests/interop/install.sh), so that delivery is also measured against a
// server nobody here wrote.  It counts log records and spans by walking the protobuf wire format
// (nothing is decoded beyond the lengths) and answers the same line protocol on its control port
// as benchmarks/_receiver_proc.py: "reset", "wait N TIMEOUT", "count", "quit".
// Prints one JSON line {"grpc": port, "proxy": port, "control": port} once both ports listen
// ("proxy" is the gRPC port itself: nothing counts bytes here).  Exits when stdin closes.
"use strict";
const net = require("net");
const path = require("path");
const grpc = require(path.join(__dirname, "..", "tests", "interop", "node_modules", "@grpc", "grpc-js"));

let logs = 0;
let spans = 0;
let requests = 0;
let waiters = [];

// Count the elements of repeated field `want` inside each length-delimited field `outer` of buf.
function readVarint(buf, pos) {
  let value = 0;
  let shift = 0;
  for (;;) {
    const b = buf[pos++];
    value += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) return [value, pos];
    shift += 7;
  }
}

function fields(buf, number, visit) {
  let pos = 0;
  while (pos < buf.length) {
    let key;
    [key, pos] = readVarint(buf, pos);
    const wire = key & 7;
    if (wire === 0) {
      [, pos] = readVarint(buf, pos);
    } else if (wire === 1) {
      pos += 8;
    } else if (wire === 5) {
      pos += 4;
    } else if (wire === 2) {
      let len;
      [len, pos] = readVarint(buf, pos);
      if (Math.floor(key / 8) === number) visit(buf.subarray(pos, pos + len));
      pos += len;
    } else {
      throw new Error(`wire type ${wire}`);
    }
  }
}

// Export*ServiceRequest: field 1 resource_*, in it field 2 scope_*, in it field 2 the items.
function countItems(body) {
  let n = 0;
  fields(body, 1, (resource) => fields(resource, 2, (scope) => fields(scope, 2, () => { n += 1; })));
  return n;
}

function settle() {
  waiters = waiters.filter((w) => {
    if (logs < w.n) return true;
    clearTimeout(w.timer);
    w.done(true);
    return false;
  });
}

function handler(kind) {
  return (call, callback) => {
    requests += 1;
    const n = countItems(call.request);
    if (kind === "logs") logs += n; else spans += n;
    settle();
    callback(null, Buffer.alloc(0));
  };
}

const identity = (b) => b;
function method(service) {
  return {
    path: `/opentelemetry.proto.collector.${service}/Export`, requestStream: false, responseStream: false,
    requestSerialize: identity, requestDeserialize: identity,
    responseSerialize: identity, responseDeserialize: identity,
  };
}

const counters = () => ({ logs, spans, requests, bytes: null });

const control = net.createServer((sock) => {
  let pending = "";
  sock.on("data", (data) => {
    pending += data.toString();
    let nl;
    while ((nl = pending.indexOf("\n")) >= 0) {
      const words = pending.slice(0, nl).trim().split(/\s+/);
      pending = pending.slice(nl + 1);
      const reply = (answer) => sock.write(JSON.stringify(answer) + "\n");
      if (words[0] === "reset") {
        logs = 0; spans = 0; requests = 0;
        reply({ ok: true });
      } else if (words[0] === "wait") {
        const n = Number(words[1]);
        if (logs >= n) { reply({ ok: true, ...counters() }); continue; }
        const w = { n, done: (ok) => reply({ ok, ...counters() }) };
        w.timer = setTimeout(() => { waiters = waiters.filter((x) => x !== w); w.done(false); },
          Number(words[2]) * 1000);
        waiters.push(w);
      } else if (words[0] === "count") {
        reply({ ok: true, ...counters() });
      } else if (words[0] === "quit") {
        reply({ ok: true });
        process.exit(0);
      } else {
        reply({ ok: false, error: `unknown command ${words[0]}` });
      }
    }
  });
  sock.on("error", () => {});
});

const server = new grpc.Server();
server.addService({ Export: method("logs.v1.LogsService") }, { Export: handler("logs") });
server.addService({ Export: method("trace.v1.TraceService") }, { Export: handler("traces") });
server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) { console.error(String(err)); process.exit(1); }
  control.listen(0, "127.0.0.1", () => {
    process.stdout.write(JSON.stringify({ grpc: port, proxy: port, control: control.address().port }) + "\n");
  });
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
