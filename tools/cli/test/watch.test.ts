import { describe, expect, it } from 'vitest';
import { useCliCloud } from './support/cloud.js';

// `vigil events watch` against the real cloud: events published by a device, committed by ingest, arrive on the
// websocket stream and are printed.
describe('vigil events watch (against the cloud)', () => {
  const { cloud, cli, publish } = useCliCloud();

  it('prints the matching events as they are committed, then stops at --count', async () => {
    const watching = cli(
      'events',
      'watch',
      '--tenant',
      'acme',
      '--camera',
      'door',
      '--count',
      '2',
      '--seconds',
      '30',
    );
    // connected once the cloud counts the stream
    await expect
      .poll(async () =>
        /^vigil_cloud_realtime_connections 1$/m.test(
          await (await fetch(`http://127.0.0.1:${cloud().httpPort}/metrics`)).text(),
        ),
      )
      .toBe(true);
    const a = await publish('door', 'person');
    await publish('yard', 'person'); // filtered out
    const b = await publish('door', 'car');
    const r = await watching;
    expect(r.code, r.err).toBe(0);
    const lines = r.out.split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(new RegExp(`^\\S+Z  ${a}  gw-1  door  person  0\\.75  start$`));
    expect(lines[1]).toContain(`${b}  gw-1  door  car`);
    expect(r.err).toContain('watching /v1/stream?camera=door');
  });

  it('stops after --seconds with nothing to show, and says why a stream is refused', async () => {
    const quiet = await cli(
      '--json',
      'events',
      'watch',
      '--tenant',
      'acme',
      '--label',
      'zebra',
      '--seconds',
      '1',
    );
    expect(quiet).toMatchObject({ code: 0, out: '' });
    const refused = await cli('events', 'watch', '--tenant', 'acme', '--role', 'installer', '--seconds', '5');
    expect(refused.code).toBe(1);
    expect(refused.err).toContain('the cloud refused the stream: 403');
  });
});
