import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { describe, expect, it } from 'vitest';
import {
  Box,
  CameraState,
  DetectionEvent,
  DeviceConfig,
  DeviceHealth,
  Heartbeat,
  Priority,
  SignedConfig,
  TrackPhase,
} from '../src/index.js';

// Floats are float32 on the wire, so test values are exactly representable (binary fractions) to compare exactly.
// Dates carry whole milliseconds because the generated code maps Timestamp to Date.
function fullEvent(snapshot: DetectionEvent['snapshot']): DetectionEvent {
  return DetectionEvent.create({
    eventId: '0190f5b2-7c1e-7a3b-8c4d-5e6f7a8b9c0d',
    tenantId: 'acme',
    siteId: 'depot-1',
    deviceId: 'gw-001',
    cameraId: 'cam-gate',
    occurredAt: new Date('2025-01-02T03:04:05.678Z'),
    trackId: 'trk-42',
    phase: TrackPhase.TRACK_PHASE_ZONE_ENTER,
    label: 'person',
    score: 0.875,
    box: { x: 0.125, y: 0.25, w: 0.5, h: 0.375 },
    zones: ['gate', 'yard'],
    triggerZone: 'gate',
    model: { name: 'yolox-s', version: '1.2.0', sha256: 'ab'.repeat(32) },
    snapshot,
    priority: Priority.PRIORITY_HIGH,
    trace: {
      traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      tracestate: 'vigil=edge',
    },
    attributes: { 'acme.plate': 'AB-123', 'acme.color': 'red' },
  });
}

describe('DetectionEvent', () => {
  it('round-trips every field with an inline snapshot', () => {
    const event = fullEvent({
      $case: 'snapshotInline',
      value: Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10]),
    });
    const decoded = DetectionEvent.decode(DetectionEvent.encode(event).finish());
    expect(decoded).toStrictEqual(event);
    expect(decoded.occurredAt).toBeInstanceOf(Date);
    expect(decoded.snapshot?.$case === 'snapshotInline' && decoded.snapshot.value).toEqual(
      Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10]),
    );
  });

  it('round-trips a snapshot reference with a 64-bit size', () => {
    const event = fullEvent({
      $case: 'snapshotRef',
      value: {
        mediaId: '0190f5b2-7c1e-7a3b-8c4d-000000000001',
        contentType: 'image/jpeg',
        sha256: 'cd'.repeat(32),
        sizeBytes: 2n ** 40n + 7n, // beyond 2^32 and Number-safe range checks
      },
    });
    const decoded = DetectionEvent.decode(DetectionEvent.encode(event).finish());
    expect(decoded).toStrictEqual(event);
    expect(decoded.snapshot?.$case === 'snapshotRef' && decoded.snapshot.value.sizeBytes).toBe(
      2n ** 40n + 7n,
    );
  });

  it('decodes an empty buffer to defaults', () => {
    expect(DetectionEvent.decode(new Uint8Array())).toStrictEqual(DetectionEvent.create());
  });
});

describe('forward compatibility (unknownFields)', () => {
  // A newer agent may send fields this build does not know. The cloud must be able to forward such a message
  // (e.g. to the dead-letter stream or a replay) without silently stripping them.
  it('preserves unknown fields, also nested ones, through decode and re-encode byte for byte', () => {
    const event = fullEvent(undefined);
    const box = event.box ?? Box.create();
    // Box with an extra field 9 (string), as a newer schema would write it.
    const newerBox = Box.encode(box);
    newerBox.uint32((9 << 3) | WireType.LengthDelimited).string('rotated');
    const newerBoxBytes = newerBox.finish();

    // The event without its box, then the newer box as field 22, then two unknown top-level fields.
    const writer = DetectionEvent.encode({ ...event, box: undefined });
    const known = writer.finish();
    const newer = new BinaryWriter();
    newer.raw(known.subarray(0, indexOfField(known, 23))); // fields 1..21 keep canonical order
    newer.uint32((22 << 3) | WireType.LengthDelimited).bytes(newerBoxBytes);
    newer.raw(known.subarray(indexOfField(known, 23)));
    newer.uint32((900 << 3) | WireType.LengthDelimited).string('from the future');
    newer.uint32((901 << 3) | WireType.Varint).uint64(123456789012345n);
    const wire = newer.finish();

    const decoded = DetectionEvent.decode(wire);
    expect(decoded.eventId).toBe(event.eventId);
    expect(decoded.box).toMatchObject({ x: 0.125, y: 0.25, w: 0.5, h: 0.375 });
    // Keys are full tags (field << 3 | wire type), values the raw encoded field values.
    expect(Object.keys(decoded._unknownFields ?? {}).map(Number)).toEqual([(900 << 3) | 2, (901 << 3) | 0]);
    expect(Object.keys(decoded.box?._unknownFields ?? {}).map(Number)).toEqual([(9 << 3) | 2]);

    const reencoded = DetectionEvent.encode(decoded).finish();
    expect(Buffer.from(reencoded).equals(Buffer.from(wire))).toBe(true);
    expect(readStringField(reencoded, 900)).toBe('from the future');
  });

  it('keeps enum values it does not know', () => {
    const wire = new BinaryWriter()
      .uint32((11 << 3) | WireType.Varint)
      .int32(42)
      .finish();
    const decoded = DetectionEvent.decode(wire);
    expect(decoded.phase as number).toBe(42);
    expect(Buffer.from(DetectionEvent.encode(decoded).finish()).equals(Buffer.from(wire))).toBe(true);
  });
});

describe('Heartbeat', () => {
  it('round-trips', () => {
    const hb = Heartbeat.create({
      deviceId: 'gw-001',
      tenantId: 'acme',
      siteId: 'depot-1',
      sentAt: new Date('2025-01-02T03:04:05.006Z'),
      agentVersion: '0.3.1',
      uptimeSeconds: 86_400n * 400n,
      configVersion: 17n,
      health: DeviceHealth.DEVICE_HEALTH_DEGRADED,
      cameras: [
        {
          cameraId: 'cam-gate',
          state: CameraState.CAMERA_STATE_STREAMING,
          framesDecoded: 5_000_000_000n,
          framesDropped: 12n,
          fps: 5,
          lastFrameAt: new Date('2025-01-02T03:04:05.000Z'),
          lastError: '',
          restarts: 3,
        },
        {
          cameraId: 'cam-yard',
          state: CameraState.CAMERA_STATE_BACKING_OFF,
          framesDecoded: 0n,
          framesDropped: 0n,
          fps: 0,
          lastError: 'ffmpeg exited with code 0',
          restarts: 7,
        },
      ],
      buffer: {
        pendingEvents: 250n,
        pendingBytes: 3_145_728n,
        capacityBytes: 1_073_741_824n,
        oldestPendingAt: new Date('2025-01-02T02:00:00.000Z'),
        evictedEvents: 1n,
      },
      cpuPercent: 37.5,
      memoryRssBytes: 268_435_456n,
      memoryTotalBytes: 4_294_967_296n,
      diskFreeBytes: 10_737_418_240n,
      attributes: { kernel: '6.1.0' },
    });
    expect(Heartbeat.decode(Heartbeat.encode(hb).finish())).toStrictEqual(hb);
  });
});

describe('SignedConfig', () => {
  const config = DeviceConfig.create({
    version: 9n,
    tenantId: 'acme',
    deviceId: 'gw-001',
    issuedAt: new Date('2025-01-01T00:00:00.000Z'),
    expiresAt: new Date('2025-01-08T00:00:00.000Z'),
    cameras: [
      {
        id: 'cam-gate',
        url: 'rtsp://10.0.0.5:554/stream1',
        enabled: true,
        detectFps: 5,
        width: 640,
        height: 640,
        modelName: 'yolox-s',
        zones: [
          {
            id: 'gate',
            name: 'Main gate',
            polygon: {
              points: [
                { x: 0, y: 0.5 },
                { x: 0.5, y: 0.5 },
                { x: 0.25, y: 1 },
              ],
            },
          },
        ],
        classThresholds: { person: 0.5, car: 0.625 },
        defaultThreshold: 0.25,
        masks: [
          {
            points: [
              { x: 0.75, y: 0 },
              { x: 1, y: 0 },
              { x: 1, y: 0.25 },
            ],
          },
        ],
        labels: ['person', 'car'],
      },
    ],
    models: [
      {
        name: 'yolox-s',
        type: 'yolox',
        uri: 'https://models.example/yolox_s.onnx',
        sha256: 'ef'.repeat(32),
        version: '1.2.0',
        classNames: ['person', 'bicycle', 'car'],
        inputWidth: 640,
        inputHeight: 640,
      },
    ],
    buffer: {
      maxBytes: 1_073_741_824n,
      maxEvents: 100_000n,
      ttlSeconds: 604_800,
      inlineSnapshotMaxBytes: 65_536,
    },
    retention: { eventDays: 30, mediaDays: 7, localMediaHours: 24 },
    privacy: { redactFaces: true, faceModelName: 'yunet', disableSnapshots: false },
  });

  it('round-trips the envelope and the DeviceConfig carried in its JWS payload', () => {
    // Shape of a compact JWS; the signature is not verified here (that belongs to the config capability).
    const payload = Buffer.from(DeviceConfig.encode(config).finish()).toString('base64url');
    const header = Buffer.from(JSON.stringify({ alg: 'EdDSA', kid: 'cfg-2025-01' })).toString('base64url');
    const signed = SignedConfig.create({
      jws: `${header}.${payload}.c2lnbmF0dXJl`,
      keyId: 'cfg-2025-01',
      version: 9n,
    });

    const decoded = SignedConfig.decode(SignedConfig.encode(signed).finish());
    expect(decoded).toStrictEqual(signed);

    const [, body] = decoded.jws.split('.');
    expect(body).toBeDefined();
    const inner = DeviceConfig.decode(Buffer.from(body ?? '', 'base64url'));
    expect(inner).toStrictEqual(config);
    expect(inner.version).toBe(decoded.version);
  });
});

/** Byte offset of the first occurrence of a top-level field, or the end of the message. */
function indexOfField(bytes: Uint8Array, fieldNo: number): number {
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const start = reader.pos;
    const [no, wireType] = reader.tag();
    if (no === fieldNo) return start;
    reader.skip(wireType);
  }
  return bytes.length;
}

/** Value of a top-level length-delimited field read as a string, or undefined. */
function readStringField(bytes: Uint8Array, fieldNo: number): string | undefined {
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [no, wireType] = reader.tag();
    if (no === fieldNo && wireType === WireType.LengthDelimited) return reader.string();
    reader.skip(wireType);
  }
  return undefined;
}
