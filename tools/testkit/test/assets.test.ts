import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findSharedDir } from '../src/index.js';

function ancestors(dir: string): string[] {
  const out: string[] = [];
  for (let d = dirname(dir); ; d = dirname(d)) {
    out.push(d);
    if (dirname(d) === d) return out;
  }
}

// The shared folder is found from the project's root at any depth (main checkout or a deeper worktree), on a
// real directory tree.
describe('findSharedDir', () => {
  const top = mkdtempSync(join(tmpdir(), 'vigil-shared-'));
  afterAll(() => rmSync(top, { recursive: true, force: true }));
  const dirs = (...paths: string[]): void => {
    for (const p of paths) mkdirSync(join(top, p), { recursive: true });
  };

  it('takes <root>/../shared, or the nearest one beside a further ancestor (a worktree)', () => {
    dirs('work/main', 'work/wt/dupes', 'work/shared/standards/cap');
    expect(findSharedDir(join(top, 'work/main'))).toBe(join(top, 'work/shared'));
    expect(findSharedDir(join(top, 'work/wt/dupes'))).toBe(join(top, 'work/shared'));
    // A nearer one wins.
    dirs('work/wt/shared/assets');
    expect(findSharedDir(join(top, 'work/wt/dupes'))).toBe(join(top, 'work/wt/shared'));
  });

  it('passes over a `shared` with neither assets nor standards; none found: <root>/../shared', () => {
    dirs('other/a/shared/docs', 'other/a/b/repo', 'other/shared/assets');
    expect(findSharedDir(join(top, 'other/a/b/repo'))).toBe(join(top, 'other/shared'));
    dirs('lone/x/repo');
    // Above the temp folder the machine's own tree decides: the fallback shows only where it has no shared.
    const machineHasOne = ancestors(top).some(
      (d) => existsSync(join(d, 'shared', 'assets')) || existsSync(join(d, 'shared', 'standards')),
    );
    if (!machineHasOne) expect(findSharedDir(join(top, 'lone/x/repo'))).toBe(join(top, 'lone/x/shared'));
  });
});
