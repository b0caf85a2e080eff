// The Deno entry point Supabase deploys (`supabase functions deploy request-meal-plan`).
// Everything else lives in handler.ts, which runs under Node for the tests; this file is not run
// under Node.
//
// Supabase sets SUPABASE_URL and SUPABASE_ANON_KEY for every function; ALLOWED_ORIGIN (the app's
// origin, for CORS) is optional: `supabase secrets set ALLOWED_ORIGIN=https://app.example.com`.

import { handleRequest, type HandlerEnv } from "./handler.ts";

// The little of Deno's API used here, so the file type-checks without Deno's own types.
declare const Deno: {
  env: { get(name: string): string | undefined };
  serve(handler: (req: Request) => Response | Promise<Response>): unknown;
};

const env: HandlerEnv = {
  supabaseUrl: Deno.env.get("SUPABASE_URL") ?? "",
  anonKey: Deno.env.get("SUPABASE_ANON_KEY") ?? "",
  allowedOrigin: Deno.env.get("ALLOWED_ORIGIN") || undefined,
};

Deno.serve((req) => handleRequest(req, env));
