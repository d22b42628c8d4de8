/**
 * Cuts a rawvideo byte stream into whole frames of `frameBytes` bytes. ffmpeg's stdout arrives in chunks
 * of any size (often 64 KiB), so a frame may span many chunks and a chunk may end mid-frame.
 * Copies only when a frame spans chunks; a frame wholly inside a chunk is returned as a view.
 */
export class FrameAssembler {
  private pending: Buffer;
  private filled = 0;

  constructor(readonly frameBytes: number) {
    if (!Number.isInteger(frameBytes) || frameBytes <= 0)
      throw new RangeError(`frameBytes must be a positive integer, got ${frameBytes}`);
    this.pending = Buffer.allocUnsafe(frameBytes);
  }

  /** Feeds a chunk; calls `onFrame` once per completed frame (the buffer is only valid during the call). */
  push(chunk: Buffer, onFrame: (frame: Buffer) => void): void {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.filled === 0 && chunk.length - offset >= this.frameBytes) {
        onFrame(chunk.subarray(offset, offset + this.frameBytes));
        offset += this.frameBytes;
        continue;
      }
      const n = Math.min(this.frameBytes - this.filled, chunk.length - offset);
      chunk.copy(this.pending, this.filled, offset, offset + n);
      this.filled += n;
      offset += n;
      if (this.filled === this.frameBytes) {
        onFrame(this.pending);
        this.filled = 0;
      }
    }
  }

  /** Bytes of an incomplete frame held back (a torn frame when the stream ends). */
  get partialBytes(): number {
    return this.filled;
  }

  reset(): void {
    this.filled = 0;
  }
}
