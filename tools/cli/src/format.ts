import { DetectionEvent } from '@vigil/proto';

/** A plain text table: a header row, then rows; columns padded to their widest cell. */
export function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** Cuts `s` to `max` characters with an ellipsis. */
export function clip(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** Classic hex dump (offset, 16 bytes in hex, printable ASCII) of the first `max` bytes. */
export function hexDump(data: Uint8Array, max = 256): string {
  const lines: string[] = [];
  const end = Math.min(data.length, max);
  for (let off = 0; off < end; off += 16) {
    const chunk = data.subarray(off, Math.min(off + 16, end));
    const hex = Array.from(chunk, (b) => b.toString(16).padStart(2, '0')).join(' ');
    const ascii = Array.from(chunk, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${off.toString(16).padStart(8, '0')}  ${hex.padEnd(47)}  |${ascii}|`);
  }
  if (data.length > end) lines.push(`... ${data.length - end} more bytes`);
  return lines.join('\n');
}

/**
 * A DetectionEvent as readable JSON (proto3 JSON: enum names, ISO time), an inline snapshot shown by its
 * size instead of kilobytes of base64.
 */
export function eventView(ev: DetectionEvent): Record<string, unknown> {
  const json = DetectionEvent.toJSON(ev) as Record<string, unknown>;
  if (ev.snapshot?.$case === 'snapshotInline')
    json.snapshotInline = `<${ev.snapshot.value.length} bytes of JPEG>`;
  return json;
}
