import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { asset } from '@vigil/testkit';
import { runAgent } from './helpers/agent-harness.js';

const clip = asset('videos/person-bicycle-car.mp4');
const model = asset('models/FastestDet.onnx');

describe.skipIf(!clip || !model)('a corrupt or mismatched model', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-badmodel-'));
  let run: Awaited<ReturnType<typeof runAgent>> | undefined;
  afterAll(async () => {
    await run?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is reported clearly while the other cameras keep detecting', async () => {
    const corrupt = join(dir, 'corrupt.onnx');
    writeFileSync(corrupt, randomBytes(50_000));
    run = await runAgent({
      models: [
        { name: 'good', type: 'fastestdet', path: model! },
        { name: 'broken', type: 'yolox', path: corrupt },
        { name: 'tampered', type: 'fastestdet', path: model!, sha256: '0'.repeat(64) },
      ],
      cameras: [
        { id: 'ok', url: clip!, fps: 5, detect: { model: 'good' } },
        { id: 'a', url: clip!, fps: 5, detect: { model: 'broken' } },
        { id: 'b', url: clip!, fps: 5, detect: { model: 'tampered' } },
      ],
    });
    const status = () => Object.fromEntries(run!.agent.cameraStatus().map((c) => [c.cameraId, c]));
    await expect.poll(() => status().ok?.framesProcessed ?? 0, { timeout: 15_000 }).toBeGreaterThan(5);
    // The cameras whose model failed still stream (their frames are counted), and say why they do not detect.
    await expect.poll(() => status().a?.framesDecoded ?? 0, { timeout: 15_000 }).toBeGreaterThan(5);
    expect(status().a?.framesProcessed).toBe(0);
    expect(status().a?.detectError).toMatch(/MODEL_INVALID|not a valid ONNX|protobuf/i);
    expect(status().a?.detectError).toContain(corrupt);
    expect(status().b?.detectError).toMatch(/sha256/i);
    const health = await fetch(`http://127.0.0.1:${run.agent.httpPort}/healthz`);
    expect(health.status).toBe(503);
    const body = (await health.json()) as {
      models: { loaded: string[]; failed: Array<{ name: string; error: string }> };
      checks: { models: { ok: boolean; detail: string } };
    };
    expect(body.models.loaded).toEqual(['good']);
    expect(body.models.failed.map((f) => f.name).sort()).toEqual(['broken', 'tampered']);
    // vigil-updater's gate would refuse to commit this release: the models check names the failures.
    expect(body.checks.models.ok).toBe(false);
    expect(body.checks.models.detail).toMatch(/model (broken|tampered) failed/);
  }, 40_000);
});
