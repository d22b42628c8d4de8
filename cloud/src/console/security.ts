import type { Request, RequestHandler, Response } from 'express';
import type { Counter } from 'prom-client';
import type { Principal } from '../auth/principal.js';
import { CsrfError } from './errors.js';
import { sameToken, type Session, type SessionStore } from './session.js';

/**
 * The console's whole security envelope: headers on every response (strict CSP: scripts and styles from this
 * origin's static files only, nothing inline, no framing), the session cookie, and the CSRF check of every
 * state-changing request (the synchronizer token bound to the session, and an Origin of this console).
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

export function securityHeaders(): RequestHandler {
  return (_req, res, next) => {
    res.set({
      'Content-Security-Policy': CONSOLE_CSP,
      'X-Content-Type-Options': 'nosniff',
      'X-Frame-Options': 'DENY',
      'Referrer-Policy': 'same-origin',
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cache-Control': 'no-store',
    });
    next();
  };
}

export interface CookieSettings {
  /** `__Host-` prefix with Secure (the browser then refuses it from any other origin or path). */
  secure: boolean;
}

export function sessionCookieName(c: CookieSettings): string {
  return c.secure ? '__Host-vigil_console' : 'vigil_console';
}

/** Reads one cookie from the Cookie header (no parser dependency; at most 8 KiB looked at). */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.slice(0, 8192).split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

export function setSessionCookie(res: Response, c: CookieSettings, s: Session): void {
  res.cookie(sessionCookieName(c), s.id, {
    httpOnly: true,
    secure: c.secure,
    // Lax: sent on the top-level redirect back from the identity provider, never on cross-site POSTs.
    sameSite: 'lax',
    path: '/',
    expires: new Date(s.expiresAt),
  });
}

export function clearSessionCookie(res: Response, c: CookieSettings): void {
  res.clearCookie(sessionCookieName(c), { httpOnly: true, secure: c.secure, sameSite: 'lax', path: '/' });
}

/** The session of this request (cookie), or undefined. */
export function sessionOf(
  req: Request,
  store: SessionStore,
  c: CookieSettings,
): Promise<Session | undefined> {
  return store.get(readCookie(req.headers.cookie, sessionCookieName(c)));
}

export function consoleSession(res: Response): Session {
  const s = (res.locals as { consoleSession?: Session }).consoleSession;
  if (!s) throw new Error('no console session: the route is not behind requireSession()');
  return s;
}

export function consolePrincipal(res: Response): Principal {
  return consoleSession(res).principal;
}

/** Pages need a session; without one a GET goes to the login, anything else is a 401. */
export function requireSession(store: SessionStore, c: CookieSettings): RequestHandler {
  return async (req, res, next) => {
    const s = await sessionOf(req, store, c);
    if (s === undefined) {
      if (req.method === 'GET' || req.method === 'HEAD') {
        const back = req.originalUrl.startsWith('/console') ? req.originalUrl : '/console';
        res.redirect(303, `/console/login?return_to=${encodeURIComponent(back)}`);
      } else res.status(401).type('text/plain').send('Your console session has ended: log in again.');
      return;
    }
    (res.locals as { consoleSession?: Session }).consoleSession = s;
    next();
  };
}

/** This console's origin as the browser names it, from the configured redirect URL (never from Host). */
export function expectedOrigin(redirectUrl: string): string {
  return new URL(redirectUrl).origin;
}

/**
 * State-changing requests (anything but GET/HEAD): the Origin header must be this console's origin (browsers
 * send it on every POST), and the form's `_csrf` field must equal the session's token. Refusals are counted
 * by reason and answered 403.
 */
export function requireCsrf(origin: string, refused: Counter<'reason'>): RequestHandler {
  return (req, res, next) => {
    if (req.method === 'GET' || req.method === 'HEAD') {
      next();
      return;
    }
    const s = consoleSession(res);
    if (req.get('origin') !== origin) {
      refused.inc({ reason: 'origin' });
      next(new CsrfError('origin'));
      return;
    }
    const sent = (req.body as Record<string, unknown> | undefined)?._csrf;
    if (typeof sent !== 'string' || !sameToken(sent, s.csrf)) {
      refused.inc({ reason: 'token' });
      next(new CsrfError('token'));
      return;
    }
    next();
  };
}
