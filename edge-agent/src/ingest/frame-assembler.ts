/**
 * Cuts a rawvideo byte stream into whole frames of `frameBytes` bytes. ffmpeg's stdout arrives in chunks
 * of any size (often 64 KiB), so a frame may span many chunks and a chunk may end mid-frame.
 * Each frame is copied exactly once: the buffer handed to `onFrame` belongs to the receiver (a frame assembled
 * from chunks is handed over whole and a fresh one started; a frame wholly inside one chunk is copied out, so
 * that keeping it does not pin the chunk).
 */
export class FrameAssembler {
  private pending: Buffer;
  private filled = 0;

  constructor(readonly frameBytes: number) {
    if (!Number.isInteger(frameBytes) || frameBytes <= 0)
      throw new RangeError(`frameBytes must be a positive integer, got ${frameBytes}`);
    this.pending = Buffer.allocUnsafe(frameBytes);
  }

  /** Feeds a chunk; calls `onFrame` once per completed frame, with a buffer the receiver owns. */
  push(chunk: Buffer, onFrame: (frame: Buffer) => void): void {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.filled === 0 && chunk.length - offset >= this.frameBytes) {
        onFrame(Buffer.from(chunk.subarray(offset, offset + this.frameBytes)));
        offset += this.frameBytes;
        continue;
      }
      const n = Math.min(this.frameBytes - this.filled, chunk.length - offset);
      chunk.copy(this.pending, this.filled, offset, offset + n);
      this.filled += n;
      offset += n;
      if (this.filled === this.frameBytes) {
        const frame = this.pending;
        this.pending = Buffer.allocUnsafe(this.frameBytes);
        this.filled = 0;
        onFrame(frame);
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
