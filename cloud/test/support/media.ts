// Media test helpers: a real JPEG and valid MediaObjects as the agent builds them.
import { createHash } from 'node:crypto';
import { MediaObject } from '@vigil/proto';
import { uuidv7, type TestDevice } from './ingest-stack.js';

/** A real 8x8 JPEG (made with sharp, quality 50). */
export const TINY_JPEG = Buffer.from(
  '/9j/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERXRTc4UG1RV19iZ2hnPk1xeXBkeFxlZ2P/2wBDARESEhgVGC8aGi9jQjhCY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2P/wAARCAAIAAgDASIAAhEBAxEB/8QAFQABAQAAAAAAAAAAAAAAAAAAAAX/xAAUEAEAAAAAAAAAAAAAAAAAAAAA/8QAFQEBAQAAAAAAAAAAAAAAAAAAAwb/xAAUEQEAAAAAAAAAAAAAAAAAAAAA/9oADAMBAAIRAxEAPwCSABTv/9k=',
  'base64',
);

export const sha256Hex = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** `data` and its matching sha256. */
export const withData = (data: Buffer): Partial<MediaObject> => ({ data, sha256: sha256Hex(data) });

/** A valid media object of `device` on camera cam1 (TINY_JPEG unless `overrides.data`), captured `at`. */
export function makeMedia(
  device: TestDevice,
  overrides: Partial<MediaObject> = {},
  at = new Date(Date.now() - 1000),
): MediaObject {
  const data = overrides.data ?? TINY_JPEG;
  return MediaObject.fromPartial({
    mediaId: uuidv7(at.getTime()),
    tenantId: device.tenantId,
    siteId: device.siteId,
    deviceId: device.deviceId,
    cameraId: 'cam1',
    eventId: uuidv7(at.getTime()),
    capturedAt: at,
    contentType: 'image/jpeg',
    sha256: sha256Hex(data),
    data,
    redacted: true,
    ...overrides,
  });
}
