import { describe, expect, it } from 'vitest';
import { backoffDelay } from '../src/lib/backoff.js';
import { inputOptions, redactUrl } from '../src/ingest/ffmpeg-args.js';
import { FrameAssembler } from '../src/ingest/frame-assembler.js';
import { LatestSlot } from '../src/ingest/latest-slot.js';

describe('backoffDelay', () => {
  const policy = { initialMs: 500, maxMs: 30_000, jitter: 0.5 };
  it('doubles per attempt and caps at maxMs', () => {
    const top = () => 0.999999;
    expect(backoffDelay(0, policy, top)).toBe(500);
    expect(backoffDelay(1, policy, top)).toBe(1000);
    expect(backoffDelay(5, policy, top)).toBe(16_000);
    expect(backoffDelay(6, policy, top)).toBe(30_000);
    expect(backoffDelay(1_000, policy, top)).toBe(30_000);
  });
  it('jitters within [exp*(1-jitter), exp]', () => {
    expect(backoffDelay(3, policy, () => 0)).toBe(2000);
    for (let i = 0; i < 100; i++) {
      const d = backoffDelay(3, policy);
      expect(d).toBeGreaterThanOrEqual(2000);
      expect(d).toBeLessThanOrEqual(4000);
    }
  });
});

describe('FrameAssembler', () => {
  it('cuts frames across arbitrary chunk boundaries', () => {
    const frameBytes = 12;
    const stream = Buffer.from(Array.from({ length: 12 * 5 + 7 }, (_, i) => i % 251));
    for (const chunkSize of [1, 5, 12, 13, 40, 100]) {
      const asm = new FrameAssembler(frameBytes);
      const frames: Buffer[] = [];
      for (let o = 0; o < stream.length; o += chunkSize) {
        asm.push(stream.subarray(o, o + chunkSize), (f) => frames.push(Buffer.from(f)));
      }
      expect(frames).toHaveLength(5);
      frames.forEach((f, i) => expect(f.equals(stream.subarray(i * 12, i * 12 + 12))).toBe(true));
      expect(asm.partialBytes).toBe(7);
    }
  });
  it('hands over frames the receiver owns: later chunks never overwrite a kept frame', () => {
    const stream = Buffer.from(Array.from({ length: 8 * 4 }, (_, i) => i));
    for (const chunkSize of [3, 8, 32]) {
      const asm = new FrameAssembler(8);
      const kept: Buffer[] = [];
      for (let o = 0; o < stream.length; o += chunkSize) {
        const chunk = Buffer.from(stream.subarray(o, o + chunkSize));
        asm.push(chunk, (f) => kept.push(f));
        chunk.fill(0xff); // the pipe's buffer is reused or freed after the call
      }
      expect(kept.map((f) => [...f])).toEqual(
        [0, 1, 2, 3].map((i) => [...stream.subarray(i * 8, i * 8 + 8)]),
      );
    }
  });
  it('rejects a nonsensical frame size', () => {
    expect(() => new FrameAssembler(0)).toThrow(/positive integer/);
  });
});

describe('LatestSlot', () => {
  it('keeps only the newest item and counts the ones it replaced', () => {
    const slot = new LatestSlot<number>();
    slot.offer(1);
    slot.offer(2);
    slot.offer(3);
    expect(slot.take()).toBe(3);
    expect(slot.take()).toBeUndefined();
    expect(slot.dropped).toBe(2);
    expect(slot.offered).toBe(3);
  });
  it('hands an item straight to a waiting consumer', async () => {
    const slot = new LatestSlot<string>();
    const next = slot.next();
    slot.offer('a');
    await expect(next).resolves.toBe('a');
    expect(slot.dropped).toBe(0);
  });
});

describe('ffmpeg arguments', () => {
  it('use TCP, a socket timeout and a small probe for RTSP', () => {
    const args = inputOptions({
      id: 'c',
      url: 'rtsp://h/x',
      transport: 'tcp',
      width: 1,
      height: 1,
      fps: 1,
      ioTimeoutMs: 5000,
      realtime: true,
      loop: true,
    });
    expect(args).toEqual(
      expect.arrayContaining(['-rtsp_transport', 'tcp', '-timeout', '5000000', '-probesize', '32']),
    );
  });
  it('loop and pace files like a live camera', () => {
    const args = inputOptions({
      id: 'c',
      url: '/v.mp4',
      transport: 'tcp',
      width: 1,
      height: 1,
      fps: 1,
      ioTimeoutMs: 5000,
      realtime: true,
      loop: true,
    });
    expect(args).toEqual(['-threads', '1', '-stream_loop', '-1', '-re']);
  });
  it('never log camera credentials', () => {
    expect(redactUrl('rtsp://admin:secret@10.0.0.5:554/s1')).toBe('rtsp://***@10.0.0.5:554/s1');
  });
});
