import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

/*
 * The V8 bug behind issue 20 (see src/auth/v8-workaround.ts), reduced: an optimized JS function calls a wasm
 * export `(externref) -> externref` (TurboFan inlines the JS-to-Wasm call); the wasm code calls a JS import, which
 * deoptimizes the caller while the wasm frame is on the stack; on return the deoptimizer must rebuild an
 * externref result and aborts ("unreachable code" in Deoptimizer::DoComputeBuiltinContinuation). Each case runs
 * in its own process: the bug kills the process.
 */

// (module (type (func (param externref) (result externref))) (import "m" "f" (func $f (type 0)))
//   (func (export "g") (type 0) local.get 0 call $f))
const WASM = [
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x06, 0x01, 0x60, 0x01, 0x6f, 0x01, 0x6f, 0x02, 0x07,
  0x01, 0x01, 0x6d, 0x01, 0x66, 0x00, 0x00, 0x03, 0x02, 0x01, 0x00, 0x07, 0x05, 0x01, 0x01, 0x67, 0x00, 0x01,
  0x0a, 0x08, 0x01, 0x06, 0x00, 0x20, 0x00, 0x10, 0x00, 0x0b,
];

const WORKAROUND = resolve(import.meta.dirname, '../src/auth/v8-workaround.ts');
const dir = mkdtempSync(join(tmpdir(), 'vigil-v8-deopt-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the reduced sequence in a fresh node; `workaround`: import the cloud's module first. */
function runRepro(workaround: boolean): { status: number | null; signal: string | null; out: string } {
  const file = join(dir, `repro-${workaround ? 'fixed' : 'raw'}.mjs`);
  // The natives syntax (%...) lives in a Function body: tsx never parses it.
  writeFileSync(
    file,
    `${workaround ? `await import(${JSON.stringify(pathToFileURL(WORKAROUND).href)});` : ''}
const bytes = new Uint8Array(${JSON.stringify(WASM)});
let deopt = false;
let caller;
const { exports } = new WebAssembly.Instance(new WebAssembly.Module(bytes), {
  m: { f: (v) => { if (deopt) deoptimize(caller); return v; } },
});
const deoptimize = new Function('fn', '%DeoptimizeFunction(fn)');
const prepare = new Function('fn', '%PrepareFunctionForOptimization(fn)');
const optimizeNext = new Function('fn', '%OptimizeFunctionOnNextCall(fn)');
const g = exports.g;
caller = function caller(o) { return g(o); };
prepare(caller);
caller({});
caller({});
optimizeNext(caller);
caller({});
deopt = true;
const o = {};
process.stdout.write(caller(o) === o ? 'returned the same object' : 'returned something else');
`,
  );
  const res = spawnSync(process.execPath, ['--allow-natives-syntax', '--import', 'tsx', file], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  return { status: res.status, signal: res.signal, out: `${res.stdout}\n${res.stderr}` };
}

describe('V8: lazy deopt of an inlined JS-to-Wasm call returning externref', () => {
  // Documents the bug on the V8 of Node 20 (11.3): if this starts failing after a Node upgrade, check whether
  // the workaround is still needed.
  it.runIf(process.versions.v8.startsWith('11.'))('aborts the process without the workaround', () => {
    const res = runRepro(false);
    expect(res.signal ?? res.status).not.toBe(0);
    expect(res.out).toContain('unreachable code');
    expect(res.out).toContain('DoComputeBuiltinContinuation');
  });

  it('runs clean with the cloud workaround module loaded (src/auth/v8-workaround.ts)', () => {
    const res = runRepro(true);
    expect(res.out).toContain('returned the same object');
    expect(res.signal).toBeNull();
    expect(res.status).toBe(0);
  });
});
