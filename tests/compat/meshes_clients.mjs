// Sends exactly what the official Meshes clients send (DESIGN.md §3.3), so the
// gateway is tested against their wire behaviour: @mesheshq/events for ingest
// (publishable key) and @mesheshq/api for management (HS256 machine token).
//
//   node meshes_clients.mjs <apiBaseUrl ending in /api/v1> <orgId> <accessKey> <secretKey> <receiverUrl>
import { SignJWT } from "jose";

const [apiBaseUrl, orgId, accessKey, secretKey, receiverUrl] = process.argv.slice(2);
const CLIENT = "meshes-gateway-compat/1.0";

// --- @mesheshq/api -----------------------------------------------------------
const UUID_V1_5 = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;
if (!UUID_V1_5.test(orgId)) throw new Error("orgId must be a UUID v1-5");
if (!/^mk_[A-Za-z0-9_-]{22,}$/.test(accessKey)) throw new Error("bad access key");
if (!/^[A-Za-z0-9_-]{43,}$/.test(secretKey)) throw new Error("bad secret key");

async function machineToken() {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ org: orgId })
    .setProtectedHeader({ alg: "HS256", typ: "JWT", kid: accessKey })
    .setIssuer(`urn:meshes:m2m:${accessKey}`)
    .setAudience("meshes-api")
    .setIssuedAt(now)
    .setExpirationTime(now + 30)
    .sign(new TextEncoder().encode(secretKey));
}

async function api(method, path, body) {
  const headers = {
    Authorization: `Bearer ${await machineToken()}`,
    "X-Meshes-Client": CLIENT,
  };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(`${apiBaseUrl}${path}`, init);
  const text = await resp.text();
  const data = (resp.headers.get("content-type") || "").includes("json") ? JSON.parse(text) : text;
  if (!resp.ok) throw new Error(`${method} ${path}: ${resp.status} ${text}`);
  return { status: resp.status, data };
}

// --- @mesheshq/events ---------------------------------------------------------
const KEY_PATTERN = /^mesh_pub_([A-Za-z0-9\-.]+)_([A-Za-z0-9\-.]+)_([^_]+)$/;

async function ingest(publishableKey, path, body, extraHeaders = {}) {
  if (!KEY_PATTERN.test(publishableKey)) throw new Error("invalid publishable key format");
  const resp = await fetch(`${apiBaseUrl}${path}`, {
    method: "POST",
    headers: {
      "X-Meshes-Publishable-Key": publishableKey,
      "X-Meshes-Client": CLIENT,
      "Content-Type": "application/json",
      Accept: "application/json",
      ...extraHeaders,
    },
    body: JSON.stringify(body),
  });
  const text = await resp.text();
  let data = text;
  try { data = JSON.parse(text); } catch { /* the client keeps text */ }
  if (resp.status < 200 || resp.status >= 300) throw new Error(`${path}: ${resp.status} ${text}`);
  return { status: resp.status, data };
}

function emit(key, event, headers) {
  if (!event.payload || Object.keys(event.payload).length === 0) throw new Error("payload required");
  return ingest(key, "/events", event, headers);
}

function emitBatch(key, events) {
  if (events.length > 100) throw new Error("at most 100 events");
  return ingest(key, "/events/bulk", events);
}

// --- the flow -----------------------------------------------------------------
const ws = await api("POST", "/workspaces", { name: `compat-${Date.now()}` });
const workspace = ws.data.workspace;
const conn = await api("POST", "/connections", {
  workspace: workspace.id,
  type: "webhook",
  name: "compat receiver",
  metadata: { url: receiverUrl },
});
const rule = await api("POST", "/rules", {
  workspace: workspace.id,
  connection: conn.data.connection.id,
  event: "user.*",
  metadata: { action: "send_webhook" },
});
const key = workspace.publishable_key.public_key;
const one = await emit(
  key,
  { event: "user.signup", payload: { email: "ada@example.com", first_name: "Ada" } },
  { "Idempotency-Key": "compat-1" },
);
const again = await emit(
  key,
  { event: "user.signup", payload: { email: "ada@example.com", first_name: "Ada" } },
  { "Idempotency-Key": "compat-1" },
);
const batch = await emitBatch(
  key,
  Array.from({ length: 100 }, (_, i) => ({ event: "user.updated", payload: { email: `u${i}@example.com` } })),
);
const listed = await api("GET", `/workspaces/${workspace.id}/events?limit=5`);
const got = await api("GET", `/events/${one.data.event.id}`);
const payload = await api("GET", `/events/${one.data.event.id}/payload`);
const rules = await api("GET", "/rules");
// A second connection, used by a rule, deleted the way the Go client does it.
const spare = await api("POST", "/connections", {
  workspace: workspace.id,
  type: "webhook",
  name: "spare",
  metadata: { url: receiverUrl, skip_test: true },
});
await api("POST", "/rules", {
  workspace: workspace.id,
  connection: spare.data.connection.id,
  event: "never.*",
  metadata: { action: "send_webhook" },
});
const deleted = await api("DELETE", `/connections/${spare.data.connection.id}`, { force_delete: true });

console.log(JSON.stringify({
  workspace_status: ws.status,
  connection_status: conn.status,
  rule_status: rule.status,
  emit_status: one.status,
  same_answer: JSON.stringify(one.data) === JSON.stringify(again.data),
  batch_status: batch.status,
  batch_count: batch.data.count,
  listed_keys: Object.keys(listed.data).sort(),
  listed_count: listed.data.count,
  event_status: got.data.status,
  payload_email: payload.data.payload.email,
  rules_count: rules.data.count,
  deleted: deleted.data,
  spare_id: spare.data.connection.id,
}));
