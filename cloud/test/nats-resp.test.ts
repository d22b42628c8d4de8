// Why no Vigil NATS user has a response permission (`resp` / allow_responses): on nats-server 2.10 a user
// with one may publish to ANY reply subject it received, even one its own deny list names. A requester that
// picks the reply subject `$JS.API.STREAM.DELETE.JOBS` makes such a responder delete the stream. The cloud
// therefore answers devices only from the responder user (publish `_DEVINBOX.>` only, no `resp`) and checks
// every reply first (fleet/device-reply.ts). This pins the server behaviour that decision rests on.
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { natsConfig, useNats } from '@vigil/testkit';

describe('nats-server response permissions (the reason the cloud has none)', () => {
  const nats = useNats({
    config: natsConfig({
      jetstream: true,
      extra: [
        'authorization {',
        '  users = [',
        '    { user: responder, password: r, permissions: {',
        '        publish: { allow: ["vigil.>"], deny: ["$JS.API.>"] }, subscribe: { allow: ["vigil.>"] },',
        '        allow_responses: { max: 1 } } }',
        '    { user: admin, password: a }',
        '  ]',
        '}',
      ].join('\n'),
    }),
  });

  it('allow_responses lets a user answer onto a subject its deny list names: a requester deletes a stream', async () => {
    const url = `127.0.0.1:${nats().port}`;
    const admin = await connect({ servers: [url], user: 'admin', pass: 'a' });
    const responder = await connect({ servers: [url], user: 'responder', pass: 'r' });
    try {
      const jsm = await jetstreamManager(admin);
      await jsm.streams.add({ name: 'JOBS', subjects: ['jobs.>'] });
      // Its deny list holds: a direct publish into the JetStream API is refused.
      const denied = new Promise<string>((resolve) => {
        void (async () => {
          for await (const s of responder.status()) if (s.type === 'error') resolve(String(s.error));
        })();
      });
      responder.publish('$JS.API.STREAM.DELETE.JOBS', '');
      expect(await denied).toMatch(/Permissions Violation for Publish to "\$JS\.API\.STREAM\.DELETE\.JOBS"/);
      expect((await jsm.streams.info('JOBS')).config.name).toBe('JOBS');

      // The same subject as the reply of a request it answers goes through.
      let answered = 0;
      responder.subscribe('vigil.req', {
        callback: (_e, m) => {
          answered++;
          m.respond(new Uint8Array(0));
        },
      });
      await responder.flush();
      admin.publish('vigil.req', 'x', { reply: '$JS.API.STREAM.DELETE.JOBS' });
      await admin.flush();
      await expect
        .poll(async () =>
          jsm.streams.info('JOBS').then(
            () => 'exists',
            (e: Error) => e.message,
          ),
        )
        .toMatch(/stream not found/);
      expect(answered).toBe(1);
    } finally {
      await admin.close();
      await responder.close();
    }
  });
});
