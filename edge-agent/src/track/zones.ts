/**
 * Zone membership of one track with hysteresis: membership of a zone flips only after the ground point
 * (bottom-centre of the box) was on the other side of the zone's edge for `frames` consecutive observations,
 * so one jittery box across the edge fires nothing.
 */
import { bottomCenter, pointInPolygon, type Box } from '../lib/geometry.js';
import type { ZoneDef } from './types.js';

export interface ZoneChange {
  zone: string;
  entered: boolean;
}

export function zoneApplies(zone: ZoneDef, label: string): boolean {
  return zone.labels === undefined || zone.labels.includes(label);
}

function contains(zone: ZoneDef, box: Box): boolean {
  return zone.polygon.length >= 3 && pointInPolygon(bottomCenter(box), zone.polygon);
}

export class ZoneMembership {
  private readonly inside: boolean[];
  private readonly pending: number[];

  /** Starts from the first observation directly (nothing to be hysteretic about yet). */
  constructor(
    private readonly zones: readonly ZoneDef[],
    private readonly label: string,
    private readonly frames: number,
    box: Box,
  ) {
    this.inside = zones.map((z) => zoneApplies(z, label) && contains(z, box));
    this.pending = zones.map(() => 0);
  }

  /** Folds in one observed box; returns the membership flips, in the order of the zones. */
  observe(box: Box): ZoneChange[] {
    const changes: ZoneChange[] = [];
    this.zones.forEach((z, i) => {
      if (!zoneApplies(z, this.label)) return;
      const now = contains(z, box);
      if (now === this.inside[i]) {
        this.pending[i] = 0;
        return;
      }
      const n = (this.pending[i] ?? 0) + 1;
      if (n >= this.frames) {
        this.inside[i] = now;
        this.pending[i] = 0;
        changes.push({ zone: z.id, entered: now });
      } else {
        this.pending[i] = n;
      }
    });
    return changes;
  }

  /** Ids of the zones the track is in, in the order of the zones. */
  current(): string[] {
    return this.zones.flatMap((z, i) => (this.inside[i] ? [z.id] : []));
  }
}
