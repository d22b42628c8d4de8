import { spawn } from 'node:child_process';
import type { RawRgb } from '../../src/media/redact.js';

/** Decodes a clip to rgb24 frames at its own size (ffmpeg, every `every`th frame). */
export async function clipFrames(path: string, width: number, height: number, every = 1): Promise<RawRgb[]> {
  const ff = spawn(
    'ffmpeg',
    ['-v', 'error', '-i', path, '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${width}x${height}`, '-'],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const chunks: Buffer[] = [];
  let err = '';
  ff.stdout.on('data', (c: Buffer) => chunks.push(c));
  ff.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const code = await new Promise<number | null>((resolve) => ff.on('close', resolve));
  if (code !== 0) throw new Error(`ffmpeg failed (${code}): ${err}`);
  const all = Buffer.concat(chunks);
  const size = width * height * 3;
  const frames: RawRgb[] = [];
  for (let i = 0, n = 0; (i + 1) * size <= all.length; i++)
    if (i % every === 0) frames[n++] = { data: all.subarray(i * size, (i + 1) * size), width, height };
  return frames;
}
