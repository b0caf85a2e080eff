// PM2 process file for the mealworker worker (`mealworker work`).
//
// Install (scripts/setup-vps.sh --pm2 does all of this for you), as the mealworker user, with the
// package installed in /opt/meal-plan-worker/.venv and this file copied to /opt/meal-plan-worker:
//
//   pm2 start ecosystem.config.js --env production   # start the worker
//   pm2 save                                          # remember the process list...
//   sudo pm2 startup systemd -u mealworker --hp /opt/meal-plan-worker   # ...and restore it at boot
//
// Day to day: `pm2 status`, `pm2 logs mealworker`, `pm2 restart mealworker`, `pm2 stop mealworker`.
//
// Secrets (OPENAI_API_KEY, SUPABASE_SERVICE_ROLE_KEY, DATABASE_URL, UNSPLASH_ACCESS_KEY) stay in
// /opt/meal-plan-worker/.env, which mealworker reads itself from its working directory (cwd below).
// Never put them in this file. Note that anything set in the env blocks below reaches the worker
// as an environment variable and so wins over the same setting in .env.
//
// One instance in fork mode: the worker runs MAX_CONCURRENT_JOBS jobs at once by itself. To scale,
// run more worker processes or more VPSes, each with its own WORKER_ID (set it in each .env).

"use strict";

const APP_DIR = "/opt/meal-plan-worker";

module.exports = {
  apps: [
    {
      name: "mealworker",
      cwd: APP_DIR, // so the worker finds .env and LOG_DIR (default logs/) here
      script: `${APP_DIR}/.venv/bin/mealworker`,
      args: ["work"],
      interpreter: "none", // a console script, not a Node program
      exec_mode: "fork",
      instances: 1,

      // Stopping: PM2 sends SIGINT, which the worker treats like SIGTERM: running jobs get up to
      // SHUTDOWN_GRACE_SECONDS (default 30) to finish, the rest go back to the queue, and it
      // exits 0. PM2 sends SIGKILL after kill_timeout, so keep it above the grace period:
      // 45000 ms with SHUTDOWN_GRACE_SECONDS=30 (raise both together).
      kill_timeout: 45000,

      // Restarting: always, after a crash or a non-zero exit, waiting 100 ms, then longer and
      // longer (up to 15 s) while it keeps failing; the delay resets once it stays up.
      autorestart: true,
      exp_backoff_restart_delay: 100,
      // A graceful restart (same kill_timeout) when the worker grows past this.
      max_memory_restart: "400M",

      // PM2's capture of stdout/stderr, next to the worker's own logs/combined.log and
      // logs/error.log. Rotate them with pm2-logrotate or logrotate.
      out_file: `${APP_DIR}/logs/pm2-out.log`,
      error_file: `${APP_DIR}/logs/pm2-error.log`,
      merge_logs: true,
      time: true, // prefix each line with a timestamp

      // Non-secret settings only; these win over .env (change LOG_LEVEL here, not there).
      // `pm2 start ecosystem.config.js` uses env; `--env production` adds env_production on top.
      env: {
        PYTHONUNBUFFERED: "1",
        LOG_LEVEL: "INFO",
        LOG_FORMAT: "rich", // human-readable lines
      },
      env_production: {
        LOG_LEVEL: "INFO",
        LOG_FORMAT: "json", // one JSON object a line, for log shippers
      },
    },
  ],
};
