// request-meal-plan: the app's one way to ask for a meal plan.
//
// A plain function of Request to Response (web-standard APIs only: fetch, Request, Response,
// Headers, TextDecoder, AbortSignal), so the same code runs in Supabase's Deno runtime (index.ts)
// and under Node for the tests (handler.test.ts).
//
// It checks the caller's request, then calls `public.request_meal_plan(request, idempotency_key)`
// through the Data API (PostgREST) *as the caller*: the caller's `Authorization` header is passed
// on unchanged, so the database sees the user's JWT and `auth.uid()` is the owner. The function
// itself holds no privilege beyond the anon key.

export interface HandlerEnv {
  /** The project URL, e.g. https://<ref>.supabase.co (SUPABASE_URL). */
  supabaseUrl: string;
  /** The anon (or publishable) key, sent as `apikey` (SUPABASE_ANON_KEY). */
  anonKey: string;
  /** The app's origin for CORS; "*" when unset. */
  allowedOrigin?: string;
}

/** Largest accepted request body, in bytes. */
export const MAX_BODY_BYTES = 16 * 1024;
/** Longest accepted idempotency key, in characters (code points). */
export const MAX_IDEMPOTENCY_KEY_CHARS = 200;
/** How long to wait for the Data API; above PostgREST's 8 s statement timeout for users. */
export const UPSTREAM_TIMEOUT_MS = 15_000;

export const CORS_ALLOW_HEADERS = "authorization, x-client-info, apikey, content-type";
export const CORS_ALLOW_METHODS = "POST, OPTIONS";

export const MESSAGES = {
  notConfigured: "the meal-plan function is not configured",
  methodNotAllowed: "use POST to request a meal plan",
  missingToken: "sign in to request a meal plan: an Authorization: Bearer <token> header is required",
  signIn: "sign in to request a meal plan",
  tooLarge: `the request body is larger than ${MAX_BODY_BYTES / 1024} KB`,
  unreadable: "the request body could not be read",
  notJson: "the request body must be JSON",
  notDeployed: "request_meal_plan is not deployed: apply the mealworker migrations",
  unavailable: "the meal-plan service is unavailable, try again later",
} as const;

const BODY_SHAPE = '{"request": {...}, "idempotency_key"?: "..."}';
const BODY_FIELDS = new Set(["request", "idempotency_key"]);
const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const BEARER_PATTERN = /^Bearer[ \t]+(\S+)[ \t]*$/i;
const TOO_LARGE = Symbol("too large");

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

interface RpcArguments {
  request: JsonObject;
  idempotency_key?: string;
}

export async function handleRequest(
  req: Request,
  env: HandlerEnv,
  fetchImpl: typeof fetch = fetch,
): Promise<Response> {
  const cors = corsHeaders(env);

  if (req.method === "OPTIONS") {
    return new Response(null, {
      status: 204,
      headers: { ...cors, "Access-Control-Max-Age": "86400" },
    });
  }
  if (req.method !== "POST") {
    return errorResponse(cors, 405, MESSAGES.methodNotAllowed, { Allow: CORS_ALLOW_METHODS });
  }
  if (!env.supabaseUrl || !env.anonKey) {
    console.error("request-meal-plan: SUPABASE_URL or SUPABASE_ANON_KEY is not set");
    return errorResponse(cors, 500, MESSAGES.notConfigured);
  }

  const authorization = req.headers.get("authorization");
  const token = authorization === null ? null : BEARER_PATTERN.exec(authorization)?.[1];
  if (authorization === null || !token) {
    return errorResponse(cors, 401, MESSAGES.missingToken);
  }

  const raw = await readBody(req, MAX_BODY_BYTES);
  if (raw === TOO_LARGE) {
    return errorResponse(cors, 413, MESSAGES.tooLarge);
  }
  if (raw === null) {
    return errorResponse(cors, 400, MESSAGES.unreadable);
  }
  let body: Json;
  try {
    body = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(raw)) as Json;
  } catch {
    return errorResponse(cors, 400, MESSAGES.notJson);
  }
  const args = parseArguments(body);
  if (typeof args === "string") {
    return errorResponse(cors, 400, args);
  }

  return await callRequestMealPlan(args, authorization, token, env, cors, fetchImpl);
}

function corsHeaders(env: HandlerEnv): Record<string, string> {
  const origin = env.allowedOrigin || "*";
  const headers: Record<string, string> = {
    "Access-Control-Allow-Origin": origin,
    "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
    "Access-Control-Allow-Methods": CORS_ALLOW_METHODS,
  };
  if (origin !== "*") {
    headers["Vary"] = "Origin";
  }
  return headers;
}

function jsonResponse(
  cors: Record<string, string>,
  status: number,
  payload: Record<string, string>,
  extra: Record<string, string> = {},
): Response {
  return new Response(JSON.stringify(payload), {
    status,
    headers: {
      ...cors,
      ...extra,
      "Content-Type": "application/json; charset=utf-8",
      "Cache-Control": "no-store",
    },
  });
}

function errorResponse(
  cors: Record<string, string>,
  status: number,
  error: string,
  extra: Record<string, string> = {},
): Response {
  return jsonResponse(cors, status, { error }, extra);
}

/** The body's bytes; TOO_LARGE past `limit` (without reading the rest); null if unreadable. */
async function readBody(req: Request, limit: number): Promise<Uint8Array | typeof TOO_LARGE | null> {
  const declared = req.headers.get("content-length");
  if (declared !== null && /^\s*\d+\s*$/.test(declared) && Number(declared) > limit) {
    return TOO_LARGE;
  }
  if (req.body === null) {
    return new Uint8Array(0);
  }
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        break;
      }
      size += value.byteLength;
      if (size > limit) {
        await reader.cancel().catch(() => undefined);
        return TOO_LARGE;
      }
      chunks.push(value);
    }
  } catch {
    return null;
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}

function isObject(value: Json | undefined): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The RPC's arguments, or a message saying what is wrong with the body. */
function parseArguments(body: Json): RpcArguments | string {
  if (!isObject(body)) {
    return `the request body must be a JSON object ${BODY_SHAPE}`;
  }
  const unknown = Object.keys(body).filter((key) => !BODY_FIELDS.has(key));
  if (unknown.length > 0) {
    return `unknown field ${JSON.stringify(unknown[0])}: the body is ${BODY_SHAPE}`;
  }
  const request = body["request"];
  if (request === undefined) {
    return `request: required: the body is ${BODY_SHAPE}`;
  }
  if (!isObject(request)) {
    return "request: must be a JSON object";
  }
  const key = body["idempotency_key"];
  if (key === undefined || key === null) {
    // Absent: the argument is left out so that the SQL default (null) applies.
    return { request };
  }
  if (typeof key !== "string") {
    return "idempotency_key: must be a string";
  }
  const length = [...key].length;
  if (length < 1 || length > MAX_IDEMPOTENCY_KEY_CHARS) {
    return `idempotency_key: must be 1 to ${MAX_IDEMPOTENCY_KEY_CHARS} characters`;
  }
  return { request, idempotency_key: key };
}

interface PostgrestError {
  code: string | null;
  message: string | null;
  hint: string | null;
}

function postgrestError(payload: Json | undefined): PostgrestError {
  const text = (value: Json | undefined) => (typeof value === "string" ? value : null);
  if (!isObject(payload)) {
    return { code: null, message: null, hint: null };
  }
  return { code: text(payload["code"]), message: text(payload["message"]), hint: text(payload["hint"]) };
}

/** `text` without the caller's token, should a message ever quote it. */
function redact(text: string, token: string): string {
  return text.split(token).join("[redacted]");
}

async function callRequestMealPlan(
  args: RpcArguments,
  authorization: string,
  token: string,
  env: HandlerEnv,
  cors: Record<string, string>,
  fetchImpl: typeof fetch,
): Promise<Response> {
  const url = `${env.supabaseUrl.replace(/\/+$/, "")}/rest/v1/rpc/request_meal_plan`;
  let status: number;
  let text: string;
  try {
    const upstream = await fetchImpl(url, {
      method: "POST",
      headers: {
        apikey: env.anonKey,
        Authorization: authorization,
        "Content-Type": "application/json",
        "Content-Profile": "public",
        Accept: "application/json",
      },
      body: JSON.stringify(args),
      signal: AbortSignal.timeout(UPSTREAM_TIMEOUT_MS),
    });
    status = upstream.status;
    text = await upstream.text();
  } catch (error) {
    const name = error instanceof Error ? error.name : typeof error;
    console.error(`request-meal-plan: the Data API could not be reached (${name})`);
    return errorResponse(cors, 502, MESSAGES.unavailable);
  }

  let payload: Json | undefined;
  try {
    payload = JSON.parse(text) as Json;
  } catch {
    payload = undefined;
  }
  const problem = postgrestError(payload);

  if (status === 200 && typeof payload === "string" && UUID_PATTERN.test(payload)) {
    return jsonResponse(cors, 202, { meal_plan_id: payload.toLowerCase() });
  }
  if (status === 400 && problem.message !== null) {
    return errorResponse(cors, 400, redact(problem.message, token));
  }
  if (status === 401 && problem.code === null && /api key/i.test(problem.message ?? "")) {
    // The API gateway refused the function's own apikey: our configuration, not the caller's.
    console.error(`request-meal-plan: the Data API refused SUPABASE_ANON_KEY (${problem.message})`);
    return errorResponse(cors, 500, MESSAGES.notConfigured);
  }
  if (status === 401 || status === 403) {
    return errorResponse(cors, status, MESSAGES.signIn);
  }
  if (status === 429) {
    const message = redact(problem.message ?? "too many meal plans in progress", token);
    const answer: Record<string, string> = { error: message };
    if (problem.hint !== null) {
      answer["hint"] = redact(problem.hint, token);
    }
    return jsonResponse(cors, 429, answer);
  }
  if (status === 404 && problem.code === "PGRST202") {
    console.error("request-meal-plan: public.request_meal_plan is missing from the schema cache");
    return errorResponse(cors, 500, MESSAGES.notDeployed);
  }
  console.error(
    `request-meal-plan: unexpected answer from the Data API: ${status} ${problem.code ?? ""}`.trim(),
  );
  return errorResponse(cors, 502, MESSAGES.unavailable);
}
