import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isAlive, LogTail, ProcessRegistry, reapRunDir, stopChild, waitForExit } from '../src/index.js';

describe('process registry', () => {
  it('records live children and reaps what an owner left behind', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vigil-reg-'));
    try {
      const reg = new ProcessRegistry(dir);
      const child = reg.spawn('sleep', ['60']);
      expect(child.pid).toBeDefined();
      expect(readdirSync(dir)).toEqual([String(child.pid)]);
      // As if the worker died without cleaning up: the owner of the run dir kills it.
      const reaped = reapRunDir(dir);
      expect(reaped).toHaveLength(1);
      expect(await waitForExit(child, 5_000)).not.toBeNull();
      expect(isAlive(child.pid!)).toBe(false);
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('stops a frozen (SIGSTOPped) child', async () => {
    const reg = new ProcessRegistry(undefined);
    const child = reg.spawn('sleep', ['60']);
    process.kill(child.pid!, 'SIGSTOP');
    await stopChild(child, 2_000);
    expect(child.exitCode !== null || child.signalCode !== null).toBe(true);
  });

  it('keeps a bounded log tail and counts dropped lines', () => {
    const tail = new LogTail(3);
    tail.push('a\nb\nc\nd\ne');
    tail.push('\n');
    expect(tail.dropped).toBe(2);
    expect(tail.text()).toBe('[2 earlier lines dropped]\nc\nd\ne');
  });
});
