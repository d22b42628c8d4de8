import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { agentConfigSchema, cameraSchema, detectSchema } from '../src/config/schema.js';

// The agent's configuration table in README.md states defaults; the zod schema is what runs. This reads the
// table and compares every default it states as a value with the schema's. Descriptive defaults ("required",
// "from the enrolled identity", placeholders like `<dataDir>/identity`) are not values and are left alone.

const README = resolve(import.meta.dirname, '../../README.md');

interface Row {
  keys: string[];
  defaults: string[];
}

/** The rows of the table under `### Agent`. */
function agentTable(): Row[] {
  const text = readFileSync(README, 'utf8');
  const start = text.indexOf('### Agent (');
  expect(start).toBeGreaterThan(0);
  const lines = text.slice(start).split('\n');
  const first = lines.findIndex((l) => l.startsWith('| key'));
  const rows: Row[] = [];
  for (const line of lines.slice(first + 2)) {
    if (!line.startsWith('|')) break;
    const [, key, def] = line.split('|').map((c) => c.trim());
    rows.push({ keys: expandKeys(key!), defaults: splitTop(def!) });
  }
  return rows;
}

/** "`http.host`, `port`" -> ["http.host", "http.port"]: a name without a dot is a sibling of the previous. */
function expandKeys(cell: string): string[] {
  const names = [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
  const out: string[] = [];
  for (const n of names) {
    const prev = out.at(-1);
    out.push(n.includes('.') || prev === undefined ? n : `${prev.slice(0, prev.lastIndexOf('.') + 1)}${n}`);
  }
  return out;
}

/** Splits a default cell on ", " outside backticks and braces. */
function splitTop(cell: string): string[] {
  const items: string[] = [];
  let depth = 0;
  let tick = false;
  let cur = '';
  for (let i = 0; i < cell.length; i++) {
    const c = cell[i]!;
    if (c === '`') tick = !tick;
    else if (!tick && c === '{') depth++;
    else if (!tick && c === '}') depth--;
    if (!tick && depth === 0 && c === ',' && cell[i + 1] === ' ') {
      items.push(cur.trim());
      cur = '';
      i++;
      continue;
    }
    cur += c;
  }
  items.push(cur.trim());
  return items;
}

type Stated = { value: unknown } | { literal: string } | undefined;

/** What a default cell item states: a literal, a number, "none" (no value), or nothing checkable. */
function stated(item: string): Stated {
  const literal = /^`([^`]*)`$/.exec(item);
  if (literal) return literal[1]!.includes('<') ? undefined : { literal: literal[1]! };
  if (/^none\b/.test(item)) return { value: undefined };
  const mib = /^(\d+) MiB$/.exec(item);
  if (mib) return { value: Number(mib[1]) * 1024 * 1024 };
  if (/^\d{1,3}(,\d{3})*$/.test(item)) return { value: Number(item.replaceAll(',', '')) };
  return undefined;
}

// Defaults of the top level, of a camera and of its detect section (fields the schema requires, supplied
// here, are skipped: their README default is "required" or "none").
const top = agentConfigSchema.parse({}) as Record<string, unknown>;
const camera = cameraSchema.parse({ id: 'c', url: 'u' }) as Record<string, unknown>;
const detect = detectSchema.parse({ model: 'm' }) as Record<string, unknown>;
const SUPPLIED = new Set(['cameras[].id', 'cameras[].url', 'cameras[].detect.model']);

function schemaDefault(key: string): unknown {
  const [root, path] = key.startsWith('cameras[].detect.')
    ? [detect, key.slice('cameras[].detect.'.length)]
    : key.startsWith('cameras[].')
      ? [camera, key.slice('cameras[].'.length)]
      : [top, key.replace(/\[\]$/, '')];
  return path.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k], root);
}

const compact = (s: string): string => s.replace(/["\s]/g, '');

describe('README: the agent configuration table', () => {
  const rows = agentTable();

  it('is found and lists the camera size', () => {
    expect(rows.length).toBeGreaterThan(30);
    expect(rows.flatMap((r) => r.keys)).toEqual(
      expect.arrayContaining(['cameras[].width', 'cameras[].height']),
    );
  });

  it('states the defaults the schema has', () => {
    let checked = 0;
    const wrong: string[] = [];
    for (const row of rows) {
      const items = row.defaults.map(stated);
      // One descriptive cell for several keys ("required with `nats`"): nothing to compare.
      if (items.length !== row.keys.length) {
        expect(
          items.filter((i) => i !== undefined && 'literal' in i),
          row.keys.join(),
        ).toEqual([]);
        continue;
      }
      row.keys.forEach((key, i) => {
        const item = items[i];
        if (item === undefined || SUPPLIED.has(key)) return;
        const actual = schemaDefault(key);
        checked++;
        const ok =
          'literal' in item
            ? actual !== undefined && compact(JSON.stringify(actual)) === compact(item.literal)
            : actual === item.value;
        if (!ok)
          wrong.push(`${key}: README ${JSON.stringify(row.defaults[i])}, schema ${JSON.stringify(actual)}`);
      });
    }
    console.log(`[readme] ${checked} defaults checked`);
    expect(wrong).toEqual([]);
    expect(checked).toBeGreaterThan(40);
  });
});
