import type { Server } from 'node:http';
import express, { type Express, type RequestHandler } from 'express';
import { pino, type Logger } from 'pino';
import type { Registry } from 'prom-client';
import { notFoundHandler, problemErrorHandler } from './problem.js';

export interface ReadinessCheck {
  name: string;
  check: () => Promise<void>;
  /** The roles that need it (default: every role of the process). */
  roles?: readonly string[];
  /** Extra facts shown with the result (e.g. the scheduler's leader status). */
  detail?: () => Record<string, unknown>;
}

/** A router (or any middleware) mounted under a path prefix, e.g. the /v1 API. */
export interface HttpMount {
  path: string;
  handler: RequestHandler;
}

export interface HttpAppOptions {
  /** Mounted after the operational endpoints, in order. */
  mounts?: readonly HttpMount[];
  /** Logs unexpected errors (500s). */
  log?: Logger;
  /** The process's roles: /readyz reports each one's readiness from the checks it needs. */
  roles?: readonly string[];
}

/**
 * Operational endpoints (liveness, readiness with each dependency checked, Prometheus metrics), then the
 * mounted routers; unknown routes and every error end as application/problem+json.
 */
export function createHttpApp(
  metrics: Registry,
  checks: ReadinessCheck[],
  opts: HttpAppOptions = {},
): Express {
  const app = express();
  app.disable('x-powered-by');
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    const results = await Promise.all(
      checks.map(async (c) => {
        const detail = c.detail?.() ?? {};
        try {
          await c.check();
          return { name: c.name, ok: true, ...detail };
        } catch (err) {
          return { name: c.name, ok: false, error: (err as Error).message, ...detail };
        }
      }),
    );
    // A process is ready when every role it runs is: each role needs the checks that name it (or name no role).
    const roles: Record<string, { ready: boolean; needs: string[] }> = {};
    for (const role of opts.roles ?? []) {
      const needs = checks.filter((c) => !c.roles || c.roles.includes(role)).map((c) => c.name);
      roles[role] = { ready: results.every((r) => !needs.includes(r.name) || r.ok), needs };
    }
    const ready = results.every((r) => r.ok);
    res.status(ready ? 200 : 503).json({
      status: ready ? 'ready' : 'not ready',
      ...(opts.roles ? { roles } : {}),
      checks: results,
    });
  });
  app.get('/metrics', async (_req, res) => {
    res.type(metrics.contentType).send(await metrics.metrics());
  });
  for (const m of opts.mounts ?? []) app.use(m.path, m.handler);
  app.use(notFoundHandler);
  app.use(problemErrorHandler(opts.log ?? pino({ level: 'silent' })));
  return app;
}

export interface ServerTimeouts {
  keepAliveTimeoutSeconds: number;
  headersTimeoutSeconds: number;
  requestTimeoutSeconds: number;
}

/**
 * Sets the listening server's timeouts deliberately rather than Node's defaults. Node closes a keep-alive
 * connection idle for keepAliveTimeout (default 5 s, plus 1 s of grace); a request that reaches such a socket as the
 * timer fires (the client reused it, the loaded server had not read it yet) is destroyed unread and the client gets
 * ECONNRESET. A keep-alive above the client's or proxy's idle timeout makes the client close first; the
 * `Keep-Alive: timeout=N` header Node sends tells clients that honour it (Node's Agent with a `timeout`) when.
 */
export function applyServerTimeouts(server: Server, t: ServerTimeouts): void {
  server.keepAliveTimeout = t.keepAliveTimeoutSeconds * 1000;
  server.headersTimeout = t.headersTimeoutSeconds * 1000;
  server.requestTimeout = t.requestTimeoutSeconds * 1000;
}
