import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { ConfigState } from '@vigil/proto';
import { ConfigStatus, SignedConfig, subjectFor } from '@vigil/proto';

/** The cloud's end of config delivery in tests: records ConfigStatus reports, answers polls, pushes configs. */
export class ConfigCloud {
  readonly reports: ConfigStatus[] = [];
  /** Answer to the next polls (undefined = empty message: nothing newer). */
  answer: SignedConfig | undefined;
  private sub: Subscription;

  constructor(
    private readonly nc: NatsConnection,
    private readonly device: { tenantId: string; deviceId: string },
  ) {
    this.sub = nc.subscribe(subjectFor(device.tenantId, device.deviceId, 'status'), {
      callback: (_err, msg) => {
        this.reports.push(ConfigStatus.decode(msg.data));
        msg.respond(this.answer ? SignedConfig.encode(this.answer).finish() : new Uint8Array());
      },
    });
  }

  push(signed: SignedConfig): void {
    this.nc.publish(
      subjectFor(this.device.tenantId, this.device.deviceId, 'cfg'),
      SignedConfig.encode(signed).finish(),
    );
  }

  /** The latest report about `version` in `state`, if any. */
  find(version: bigint, state: ConfigState): ConfigStatus | undefined {
    return this.reports.findLast((r) => r.version === version && r.state === state);
  }

  stop(): void {
    this.sub.unsubscribe();
  }
}
