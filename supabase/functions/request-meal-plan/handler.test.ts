// handleRequest against a real PostgREST-compatible server (Supabase's Data API, a local
// Supabase stack, or the Python suite's FakePostgrest: tests/process/test_edge_function.py).
//
// Environment:
//   SUPABASE_URL       the project URL (the Data API is at <url>/rest/v1); unset: all skipped
//   SUPABASE_ANON_KEY  the project's anon key
//   USER_JWT_A         a signed-in user's access token
//   USER_JWT_B         another user's token (used for the in-flight limit)
//   BAD_JWT            a token the server must refuse (e.g. signed with another secret)
//
// The plans created here are cancelled afterwards (rpc/cancel_meal_plan as their owner), so the
// tests can be run again against the same database.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, describe, test } from "node:test";

import {
  CORS_ALLOW_HEADERS,
  CORS_ALLOW_METHODS,
  MAX_BODY_BYTES,
  MESSAGES,
  handleRequest,
  type HandlerEnv,
} from "./handler.ts";

const SUPABASE_URL = process.env["SUPABASE_URL"] ?? "";
const skip = SUPABASE_URL
  ? false
  : "SUPABASE_URL is not set: these tests need a PostgREST-compatible server";
const TEST_TIMEOUT_MS = 30_000;
const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const FUNCTION_URL = "https://project.supabase.co/functions/v1/request-meal-plan";
const VALID_REQUEST = { days: 3, meals: ["breakfast", "dinner"], diet: ["vegetarian"] };

function required(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} must be set along with SUPABASE_URL`);
  }
  return value;
}

// Read lazily: when the suite is skipped nothing else needs to be set.
const config = {
  get env(): HandlerEnv {
    return { supabaseUrl: SUPABASE_URL, anonKey: required("SUPABASE_ANON_KEY") };
  },
  get userA(): string {
    return required("USER_JWT_A");
  },
  get userB(): string {
    return required("USER_JWT_B");
  },
  get badJwt(): string {
    return required("BAD_JWT");
  },
};

interface Outcome {
  status: number;
  headers: Headers;
  text: string;
  json: Record<string, unknown>;
  /** How many times the handler called the Data API. */
  upstreamCalls: number;
}

interface CallOptions {
  method?: string;
  /** The bearer token; null sends no Authorization header. */
  token?: string | null;
  authorization?: string;
  /** A string is sent as is; anything else as JSON. */
  body?: unknown;
  headers?: Record<string, string>;
  env?: Partial<HandlerEnv>;
}

async function call(options: CallOptions = {}): Promise<Outcome> {
  const method = options.method ?? "POST";
  const headers = new Headers(options.headers);
  const token = options.token === undefined ? config.userA : options.token;
  if (options.authorization !== undefined) {
    headers.set("Authorization", options.authorization);
  } else if (token !== null) {
    headers.set("Authorization", `Bearer ${token}`);
  }
  let body: string | undefined;
  if (options.body !== undefined) {
    body = typeof options.body === "string" ? options.body : JSON.stringify(options.body);
    headers.set("Content-Type", "application/json");
  }
  const req = new Request(FUNCTION_URL, { method, headers, body });

  let upstreamCalls = 0;
  const countingFetch: typeof fetch = (input, init) => {
    upstreamCalls += 1;
    return fetch(input, init);
  };
  const res = await handleRequest(req, { ...config.env, ...options.env }, countingFetch);
  const text = await res.text();

  // Every answer carries CORS headers, and none repeats the caller's credentials.
  assert.ok(res.headers.get("access-control-allow-origin"), "CORS header missing");
  const secret = options.authorization?.split(" ").slice(1).join(" ").trim() ?? token;
  if (secret && secret.length >= 8) {
    assert.ok(!text.includes(secret), `the response echoes the caller's token: ${text}`);
  }
  let json: Record<string, unknown> = {};
  if (res.status !== 204) {
    assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
    json = JSON.parse(text) as Record<string, unknown>;
    if (res.status >= 400) {
      assert.equal(typeof json["error"], "string", `no "error" in ${text}`);
    }
  }
  return { status: res.status, headers: res.headers, text, json, upstreamCalls };
}

/** A test of the suite: skipped, each one, when SUPABASE_URL is unset. */
function it(name: string, fn: () => Promise<void>): void {
  test(name, { skip, timeout: TEST_TIMEOUT_MS }, fn);
}

/** Plans to cancel afterwards, with their owner's token. */
const created: Array<{ id: string; token: string }> = [];

async function requestPlan(token: string, body: unknown): Promise<Outcome> {
  const outcome = await call({ token, body });
  if (outcome.status === 202) {
    created.push({ id: String(outcome.json["meal_plan_id"]), token });
  }
  return outcome;
}

describe("request-meal-plan", () => {
  after(async () => {
    for (const { id, token } of created) {
      const res = await fetch(`${SUPABASE_URL.replace(/\/+$/, "")}/rest/v1/rpc/cancel_meal_plan`, {
        method: "POST",
        headers: {
          apikey: config.env.anonKey,
          Authorization: `Bearer ${token}`,
          "Content-Type": "application/json",
        },
        body: JSON.stringify({ meal_plan_id: id }),
      });
      assert.equal(res.status, 200, `cancelling ${id}: ${await res.text()}`);
    }
  });

  it("answers a CORS preflight without calling the Data API", async () => {
    const outcome = await call({
      method: "OPTIONS",
      token: null,
      headers: {
        Origin: "https://app.example.com",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, apikey, x-client-info",
      },
    });
    assert.equal(outcome.status, 204);
    assert.equal(outcome.text, "");
    assert.equal(outcome.headers.get("access-control-allow-origin"), "*");
    assert.equal(outcome.headers.get("access-control-allow-headers"), CORS_ALLOW_HEADERS);
    assert.equal(outcome.headers.get("access-control-allow-methods"), CORS_ALLOW_METHODS);
    assert.equal(outcome.upstreamCalls, 0);

    const pinned = await call({
      method: "OPTIONS",
      token: null,
      env: { allowedOrigin: "https://app.example.com" },
    });
    assert.equal(pinned.status, 204);
    assert.equal(pinned.headers.get("access-control-allow-origin"), "https://app.example.com");
  });

  it("refuses other methods than POST with 405", async () => {
    for (const method of ["GET", "PUT", "DELETE", "PATCH"]) {
      const outcome = await call({ method, body: method === "GET" ? undefined : { request: {} } });
      assert.equal(outcome.status, 405, method);
      assert.equal(outcome.json["error"], MESSAGES.methodNotAllowed);
      assert.equal(outcome.headers.get("allow"), "POST, OPTIONS");
      assert.equal(outcome.upstreamCalls, 0);
    }
  });

  it("requires a bearer token", async () => {
    const missing = await call({ token: null, body: { request: VALID_REQUEST } });
    assert.equal(missing.status, 401);
    assert.match(String(missing.json["error"]), /sign in/);
    assert.equal(missing.upstreamCalls, 0);

    for (const authorization of ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "token abc"]) {
      const outcome = await call({ authorization, body: { request: VALID_REQUEST } });
      assert.equal(outcome.status, 401, authorization);
      assert.equal(outcome.upstreamCalls, 0);
    }
  });

  it("refuses a body that is not JSON", async () => {
    for (const body of ["{not json", "", "request=1", '{"request": {}']) {
      const outcome = await call({ body });
      assert.equal(outcome.status, 400, JSON.stringify(body));
      assert.equal(outcome.json["error"], MESSAGES.notJson);
      assert.equal(outcome.upstreamCalls, 0);
    }
  });

  it("refuses a body of the wrong shape", async () => {
    const cases: Array<[unknown, RegExp]> = [
      [[VALID_REQUEST], /must be a JSON object/],
      ['"days=3"', /must be a JSON object/],
      ["null", /must be a JSON object/],
      [{}, /^request: required/],
      [{ request: [1, 2] }, /^request: must be a JSON object/],
      [{ request: "days=3" }, /^request: must be a JSON object/],
      [{ request: null }, /^request: must be a JSON object/],
      [{ request: 7 }, /^request: must be a JSON object/],
      [{ request: VALID_REQUEST, idempotency_key: "" }, /^idempotency_key: /],
      [{ request: VALID_REQUEST, idempotency_key: "k".repeat(201) }, /^idempotency_key: /],
      [{ request: VALID_REQUEST, idempotency_key: 42 }, /^idempotency_key: must be a string/],
      [{ request: VALID_REQUEST, idempotencyKey: "abc" }, /unknown field "idempotencyKey"/],
    ];
    for (const [body, expected] of cases) {
      const outcome = await call({ body });
      assert.equal(outcome.status, 400, JSON.stringify(body));
      assert.match(String(outcome.json["error"]), expected);
      assert.equal(outcome.upstreamCalls, 0);
    }
  });

  it("refuses a body over 16 KB with 413", async () => {
    const body = JSON.stringify({ request: { notes: "x".repeat(MAX_BODY_BYTES) } });
    assert.ok(body.length > MAX_BODY_BYTES);
    const outcome = await call({ body });
    assert.equal(outcome.status, 413);
    assert.match(String(outcome.json["error"]), /16 KB/);
    assert.equal(outcome.upstreamCalls, 0);

    const declared = await call({ body, headers: { "Content-Length": String(body.length) } });
    assert.equal(declared.status, 413);
  });

  it("accepts a valid request with 202 and the plan's id", async () => {
    const outcome = await requestPlan(config.userA, { request: VALID_REQUEST });
    assert.equal(outcome.status, 202, outcome.text);
    assert.deepEqual(Object.keys(outcome.json), ["meal_plan_id"]);
    assert.match(String(outcome.json["meal_plan_id"]), UUID_PATTERN);
    assert.equal(outcome.upstreamCalls, 1);
    assert.equal(outcome.headers.get("access-control-allow-origin"), "*");

    // An empty request is valid too: every field has a default.
    const defaults = await requestPlan(config.userA, { request: {}, idempotency_key: null });
    assert.equal(defaults.status, 202, defaults.text);
    assert.notEqual(defaults.json["meal_plan_id"], outcome.json["meal_plan_id"]);
  });

  it("gives the same id for the same idempotency key", async () => {
    const body = { request: VALID_REQUEST, idempotency_key: `edge-test-${randomUUID()}` };
    const first = await requestPlan(config.userA, body);
    assert.equal(first.status, 202, first.text);
    const second = await requestPlan(config.userA, body);
    assert.equal(second.status, 202, second.text);
    assert.match(String(first.json["meal_plan_id"]), UUID_PATTERN);
    assert.equal(second.json["meal_plan_id"], first.json["meal_plan_id"]);
  });

  it("passes the database's refusal of an invalid request on as 400", async () => {
    const outcome = await call({ body: { request: { days: 30 } } });
    assert.equal(outcome.status, 400, outcome.text);
    assert.equal(outcome.upstreamCalls, 1);
    assert.deepEqual(Object.keys(outcome.json), ["error"]);
    assert.match(String(outcome.json["error"]), /^invalid meal-plan request: days: /);

    const unknown = await call({ body: { request: { dayz: 3 } } });
    assert.equal(unknown.status, 400, unknown.text);
    assert.match(String(unknown.json["error"]), /dayz: unknown field/);
  });

  it("answers 429 for a user's 4th plan in flight", async () => {
    // Up to three of user B's plans may be pending or generating at once.
    let refused: Outcome | undefined;
    let accepted = 0;
    for (let attempt = 0; attempt < 4 && refused === undefined; attempt += 1) {
      const outcome = await requestPlan(config.userB, { request: VALID_REQUEST });
      if (outcome.status === 429) {
        refused = outcome;
      } else {
        assert.equal(outcome.status, 202, outcome.text);
        accepted += 1;
      }
    }
    assert.ok(refused, `all of ${accepted} requests were accepted`);
    assert.match(String(refused.json["error"]), /^too many meal plans in progress \(3 of 3\)$/);
    assert.equal(typeof refused.json["hint"], "string");
    assert.equal(refused.upstreamCalls, 1);
  });

  it("answers 401 for a token the server refuses", async () => {
    const bad = await call({ token: config.badJwt, body: { request: VALID_REQUEST } });
    assert.equal(bad.status, 401, bad.text);
    assert.deepEqual(bad.json, { error: MESSAGES.signIn });
    assert.equal(bad.upstreamCalls, 1);

    // supabase-js sends the anon key as the token when nobody is signed in.
    const anon = await call({ token: config.env.anonKey, body: { request: VALID_REQUEST } });
    assert.equal(anon.status, 401, anon.text);
    assert.deepEqual(anon.json, { error: MESSAGES.signIn });
  });

  it("answers 502 when the Data API cannot be reached", async () => {
    const outcome = await call({
      body: { request: VALID_REQUEST },
      env: { supabaseUrl: "http://127.0.0.1:9" },
    });
    assert.equal(outcome.status, 502, outcome.text);
    assert.deepEqual(outcome.json, { error: MESSAGES.unavailable });
    assert.equal(outcome.upstreamCalls, 1);
  });

  it("answers 500 when its own configuration is wrong", async () => {
    const wrongKey = await call({ body: { request: VALID_REQUEST }, env: { anonKey: "not-the-anon-key" } });
    assert.equal(wrongKey.status, 500, wrongKey.text);
    assert.deepEqual(wrongKey.json, { error: MESSAGES.notConfigured });

    const unset = await call({ body: { request: VALID_REQUEST }, env: { supabaseUrl: "" } });
    assert.equal(unset.status, 500, unset.text);
    assert.equal(unset.upstreamCalls, 0);
  });
});
