// Receive screening-dialer webhooks and verify them (Standard Webhooks) with Node's own crypto:
// no npm packages. Node 18 or later.
//
//   WEBHOOK_SECRET=whsec_... node verify_webhook.mjs          # http://127.0.0.1:8787/
//   HOST=0.0.0.0 PORT=9000 WEBHOOK_SECRET=whsec_... node verify_webhook.mjs
//
// PORT=0 picks a free port; the first line printed says which. `verify()` is exported, so the
// same check can be imported into an Express / Fastify / Koa handler: pass it the RAW body
// (a Buffer, before any JSON body parser) and the request headers.
//
// What a receiver has to get right:
// 1. Verify over the raw body bytes. The signed content is `${webhook-id}.${webhook-timestamp}.`
//    followed by the body; the key is the base64 after `whsec_`; the header holds one or more
//    space-separated `v1,<base64 HMAC-SHA256>` values. Compare in constant time.
// 2. Reject a webhook-timestamp more than 5 minutes off your clock.
// 3. De-duplicate by webhook-id (the same on every retry): answer 2xx, do not act twice.
//    (In memory here; in production a unique-keyed table, written with the effect.)
// 4. Answer 2xx within 15 s; never 410 unless you want the endpoint disabled.

import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";
import { pathToFileURL } from "node:url";

const TOLERANCE_S = 5 * 60;
const MAX_BODY = 5 * 1024 * 1024;

export class WebhookVerificationError extends Error {}

/**
 * Verify one delivery; returns the parsed event {type, timestamp, data} or throws
 * WebhookVerificationError. `rawBody` is a Buffer, `headers` has lower-case names (as Node's are).
 */
export function verify(secret, rawBody, headers, nowMs = Date.now()) {
  const id = headers["webhook-id"];
  const timestamp = headers["webhook-timestamp"];
  const signatures = headers["webhook-signature"];
  if (!id || !timestamp || !signatures) {
    throw new WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature");
  }
  if (!/^\d+$/.test(timestamp) || Math.abs(nowMs / 1000 - Number(timestamp)) > TOLERANCE_S) {
    throw new WebhookVerificationError("webhook-timestamp missing or more than 5 minutes off");
  }
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  const expected = createHmac("sha256", key)
    .update(`${id}.${timestamp}.`)
    .update(rawBody)
    .digest();
  for (const entry of signatures.split(" ")) {
    const [version, value] = entry.split(",");
    if (version !== "v1" || !value) continue;
    const given = Buffer.from(value, "base64");
    if (given.length === expected.length && timingSafeEqual(given, expected)) {
      return JSON.parse(rawBody.toString("utf8"));
    }
  }
  throw new WebhookVerificationError("no matching signature");
}

const seen = new Set();

function log(fields) {
  console.log(JSON.stringify(fields));
}

// Your code: update the CRM. `event` is {type, timestamp, data}.
function handleEvent(webhookId, event) {
  const { type, data } = event;
  if (type === "screening.completed") {
    // data: the final CandidateData
    log({ event: "accepted", webhook_id: webhookId, type, call_id: data.call_id, status: data.status });
  } else if (type === "screening.attempt") {
    log({ event: "accepted", webhook_id: webhookId, type, call_id: data.call_id, outcome: data.outcome });
  } else if (type === "screening.retry_scheduled") {
    log({ event: "accepted", webhook_id: webhookId, type, call_id: data.call_id, retry_at: data.retry_at });
  } else {
    // "webhook.test" from `dialer webhooks test`, or a type added later: accept it
    log({ event: "accepted", webhook_id: webhookId, type });
  }
}

function serve(secret, host, port) {
  const server = createServer((req, res) => {
    const chunks = [];
    let size = 0;
    req.on("data", (chunk) => {
      size += chunk.length;
      if (size <= MAX_BODY) chunks.push(chunk);
    });
    req.on("end", () => {
      if (req.method !== "POST") return reply(res, 405, "POST only");
      if (size > MAX_BODY) return reply(res, 413, "body too large");
      let event;
      try {
        event = verify(secret, Buffer.concat(chunks), req.headers);
      } catch (err) {
        log({ event: "rejected", webhook_id: req.headers["webhook-id"] ?? null, reason: err.message });
        return reply(res, 401, "invalid signature");
      }
      const webhookId = req.headers["webhook-id"];
      if (seen.has(webhookId)) {
        log({ event: "duplicate", webhook_id: webhookId });
        return reply(res, 200, "already processed");
      }
      seen.add(webhookId);
      handleEvent(webhookId, event);
      reply(res, 204);
    });
  });
  server.listen(port, host, () => {
    const address = server.address();
    console.log(`listening on http://${address.address}:${address.port}/`);
  });
  return server;
}

function reply(res, status, text = "") {
  res.writeHead(status, { "content-length": Buffer.byteLength(text) });
  res.end(text);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const secret = process.env.WEBHOOK_SECRET ?? "";
  if (!secret.startsWith("whsec_")) {
    console.error("set WEBHOOK_SECRET to the endpoint's whsec_... secret");
    process.exit(2);
  }
  serve(secret, process.env.HOST ?? "127.0.0.1", Number(process.env.PORT ?? 8787));
}
