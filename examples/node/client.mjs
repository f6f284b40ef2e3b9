// Asks a tiergate sidecar one question over gRPC, with Complete or StreamComplete, and prints the answer on
// stdout and the routing Decision on stderr.
//
//   node client.mjs "Say hello"                                   # Complete
//   node client.mjs --stream --address 127.0.0.1:50051 "Say hello"  # StreamComplete
//   node client.mjs --tool "What is the weather in Paris?"          # a tool loop: the model calls get_weather
//
// The address is --address, else $TIERGATE_ADDRESS, else 127.0.0.1:50051. When $TIERGATE_TOKEN is set, every
// call carries `authorization: Bearer <token>`. On a gRPC error it prints the status code and message and
// exits with status 1.
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

// The repository's contract, loaded at run time: nothing is generated, so it is never stale.
const PROTO_ROOT = fileURLToPath(new URL("../../proto", import.meta.url));

const { values: options, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    address: { type: "string", default: process.env.TIERGATE_ADDRESS || "127.0.0.1:50051" },
    task: { type: "string", default: "default" },
    stream: { type: "boolean", default: false },
    tool: { type: "boolean", default: false }, // offer get_weather and run the calls the model makes
    timeout: { type: "string", default: "30" }, // seconds: the request's whole latency budget
  },
});
if (positionals.length !== 1) {
  console.error(
    "usage: node client.mjs [--address HOST:PORT] [--task NAME] [--stream] [--tool] [--timeout SECONDS] PROMPT",
  );
  process.exit(2);
}

const definition = protoLoader.loadSync("tiergate/v1/tiergate.proto", {
  includeDirs: [PROTO_ROOT],
  longs: String,
  enums: String, // Sensitivity as "PUBLIC", not 1
  defaults: true,
});
const { Tiergate } = grpc.loadPackageDefinition(definition).tiergate.v1;

function callMetadata() {
  const metadata = new grpc.Metadata();
  if (process.env.TIERGATE_TOKEN) {
    metadata.set("authorization", `Bearer ${process.env.TIERGATE_TOKEN}`);
  }
  return metadata;
}

function complete(client, request, callOptions) {
  return new Promise((resolve, reject) => {
    client.Complete(request, callMetadata(), callOptions, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

async function streamComplete(client, request, callOptions) {
  let last = null;
  let printed = false;
  try {
    // A server stream is a Node Readable: iterate it; a non-OK status is thrown.
    for await (const chunk of client.StreamComplete(request, callMetadata(), callOptions)) {
      process.stdout.write(chunk.text);
      printed ||= chunk.text !== "";
      if (chunk.decision) last = chunk; // usage and the Decision ride on the last chunk only
    }
  } finally {
    if (printed) process.stdout.write("\n");
  }
  return last;
}

// The function the model may call: its parameters are a JSON schema (as text).
const WEATHER_TOOL = {
  name: "get_weather",
  description: "Current weather in a city",
  parameters: JSON.stringify({ type: "object", properties: { city: { type: "string" } }, required: ["city"] }),
};

// Runs the tool: a real application would call a weather service here.
function getWeather(args) {
  const { city } = JSON.parse(args);
  return JSON.stringify({ city, celsius: 18 });
}

// Offers the tool, runs each call the model makes, sends the results back: the final answer (four rounds at most).
async function toolLoop(client, request, callOptions) {
  request.tools = [WEATHER_TOOL];
  for (let round = 0; round < 4; round++) {
    const response = await complete(client, request, callOptions);
    if (!response.toolCalls.length) return response;
    request.messages.push({ role: "assistant", toolCalls: response.toolCalls });
    for (const call of response.toolCalls) {
      console.error(`tool_call:   ${call.name} ${call.arguments}`);
      let result;
      try {
        result = getWeather(call.arguments);
      } catch (error) {
        result = JSON.stringify({ error: String(error) });
      }
      request.messages.push({ role: "tool", toolCallId: call.id, content: result });
    }
  }
  throw new Error("the model still calls tools after four rounds");
}

// The same layout as examples/go/main.go.
function printDecision(decision, usage) {
  const d = decision ?? {};
  const u = usage ?? {};
  const lines = [
    `served_by:   ${d.servedBy ?? ""}`,
    `route:       ${d.route ?? ""} (${d.reason ?? ""})`,
    `sensitivity: ${d.sensitivity ?? "SENSITIVITY_UNSPECIFIED"}`,
  ];
  if (d.matchedRules?.length) lines.push(`rules:       ${d.matchedRules.join(", ")}`);
  for (const a of d.attempts ?? []) {
    let line = `attempt:     ${a.model} ${a.outcome} ttft=${a.ttftMs.toFixed(1)}ms latency=${a.latencyMs.toFixed(1)}ms`;
    if (a.hedged) line += " hedged";
    if (a.error) line += ` error=${a.error}`;
    lines.push(line);
  }
  lines.push(
    `tokens:      ${u.inputTokens ?? 0} in, ${u.outputTokens ?? 0} out`,
    `cost_usd:    ${(d.costUsd ?? 0).toFixed(6)}`,
    `overhead_ms: ${(d.overheadMs ?? 0).toFixed(2)}`,
  );
  console.error(lines.join("\n"));
}

// Plaintext, as the sidecar listens on loopback by default; use grpc.credentials.createSsl() for a remote one.
const client = new Tiergate(options.address, grpc.credentials.createInsecure());
const request = { task: options.task, messages: [{ role: "user", content: positionals[0] }] };
const callOptions = { deadline: new Date(Date.now() + Number(options.timeout) * 1000) };
try {
  if (options.tool) {
    const response = await toolLoop(client, request, callOptions);
    console.log(response.text);
    printDecision(response.decision, response.usage);
  } else if (options.stream) {
    const last = await streamComplete(client, request, callOptions);
    printDecision(last?.decision, last?.usage);
  } else {
    const response = await complete(client, request, callOptions);
    console.log(response.text);
    printDecision(response.decision, response.usage);
  }
} catch (error) {
  if (error.code === undefined) throw error; // not a gRPC status: a bug, show the stack
  console.error(`error: ${grpc.status[error.code]}: ${error.details}`);
  process.exitCode = 1;
} finally {
  client.close();
}
