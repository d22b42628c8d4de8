// What the cloud and `vigil release publish` read of a bundle before publishing it: manifest.json, the first tar
// entry, decompressed only as far as it goes. Real archives made by tar(1).
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { bundlePublishRefusal, parseBundleHead, readBundleHead } from '../src/releases/bundle-head.js';

const work = mkdtempSync(join(tmpdir(), 'vigil-bundle-head-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

let n = 0;
/** A .tar.gz of `files` in this order (tar's GNU format, as the release build writes). */
function archive(files: Array<[string, string]>): string {
  const src = join(work, `src-${++n}`);
  mkdirSync(src);
  for (const [name, text] of files) writeFileSync(join(src, name), text);
  const out = join(work, `bundle-${n}.tar.gz`);
  execFileSync('tar', ['--format=gnu', '-czf', out, '-C', src, ...files.map(([f]) => f)]);
  return out;
}

describe('the head of a release bundle', () => {
  it('reads manifest.json when it is the first entry, and refuses a dirty build with what to do', async () => {
    const manifest = JSON.stringify({ version: '1.2.0', commit: 'abc-dirty', dirty: true });
    const dirty = archive([
      ['manifest.json', manifest],
      ['big.bin', 'x'.repeat(1_000_000)],
    ]);
    expect(await readBundleHead(dirty)).toEqual({ kind: 'manifest', text: manifest });
    const refusal = await bundlePublishRefusal(dirty);
    expect(refusal?.reason).toBe('dirty_build');
    expect(refusal?.message).toMatch(
      /uncommitted changes .*commit abc-dirty.*pnpm release:build.*--allow-dirty/s,
    );
    const clean = archive([['manifest.json', JSON.stringify({ version: '1.2.0', dirty: false })]]);
    expect(await bundlePublishRefusal(clean)).toBeUndefined();
  });

  it('a manifest that is not JSON is refused; no manifest first, or not gzip, is not refused here (the device checks the rest)', async () => {
    expect((await bundlePublishRefusal(archive([['manifest.json', '{not json']])))?.reason).toBe(
      'bad_manifest',
    );
    const other = archive([
      ['VERSION', '1.0.0\n'],
      ['manifest.json', JSON.stringify({ dirty: true })],
    ]);
    expect(await readBundleHead(other)).toEqual({ kind: 'no_manifest' });
    writeFileSync(join(work, 'plain.bin'), 'not gzip at all');
    expect(await readBundleHead(join(work, 'plain.bin'))).toEqual({ kind: 'no_manifest' });
    // Cut inside the manifest: no manifest to read.
    const whole = execFileSync('gzip', ['-dc', archive([['manifest.json', 'x'.repeat(2000)]])]);
    writeFileSync(join(work, 'cut.tar.gz'), gzipSync(whole.subarray(0, 1000)));
    expect(await readBundleHead(join(work, 'cut.tar.gz'))).toEqual({ kind: 'no_manifest' });
  });

  it('parseBundleHead needs the whole header and manifest before it answers', () => {
    const tar = execFileSync('gzip', ['-dc', archive([['manifest.json', '{"dirty":false}']])]);
    expect(parseBundleHead(tar.subarray(0, 511))).toEqual({ kind: 'incomplete' });
    expect(parseBundleHead(tar.subarray(0, 520))).toEqual({ kind: 'incomplete' });
    expect(parseBundleHead(tar)).toEqual({ kind: 'manifest', text: '{"dirty":false}' });
  });
});
