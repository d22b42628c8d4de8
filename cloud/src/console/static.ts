import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Router } from 'express';

/*
 * The console's two static files (static/console.js, static/console.css), read once at start and served from
 * memory under a content-hashed URL (cached for a year: a new build has a new URL).
 */
interface Asset {
  url: string;
  type: string;
  body: Buffer;
}

function load(name: string, type: string): Asset {
  const body = readFileSync(new URL(`./static/${name}`, import.meta.url));
  const hash = createHash('sha256').update(body).digest('hex').slice(0, 16);
  const [base, ext] = name.split('.');
  return { url: `/console/static/${base}.${hash}.${ext}`, type, body };
}

export interface ConsoleAssets {
  script: string;
  style: string;
}

export function mountStatic(router: Router): ConsoleAssets {
  const script = load('console.js', 'text/javascript; charset=utf-8');
  const style = load('console.css', 'text/css; charset=utf-8');
  for (const a of [script, style]) {
    router.get(a.url.slice('/console'.length), (_req, res) => {
      res
        .set({ 'Content-Type': a.type, 'Cache-Control': 'public, max-age=31536000, immutable' })
        .send(a.body);
    });
  }
  return { script: script.url, style: style.url };
}
