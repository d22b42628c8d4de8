import { Command, InvalidArgumentError } from 'commander';
import { CameraSim, checkCameraSimPrerequisites, DEFAULT_PYTHON } from './camera-sim.js';
import type { CameraSimMount } from './camera-sim.js';

// Foreground RTSP test camera for the dev stack: `pnpm -F @vigil/camera-sim start -- --mount cam1=pattern`.

function parseMount(spec: string, prev: CameraSimMount[]): CameraSimMount[] {
  const eq = spec.indexOf('=');
  const name = spec.slice(0, eq);
  const source = spec.slice(eq + 1);
  if (eq <= 0) throw new InvalidArgumentError(`expected NAME=SOURCE, got ${spec}`);
  if (source.startsWith('file:')) return [...prev, { name, source: { kind: 'file', path: source.slice(5) } }];
  const m = /^pattern(?::(\d+)x(\d+)(?:@(\d+))?)?(?::([a-z0-9-]+))?$/.exec(source);
  if (!m)
    throw new InvalidArgumentError(
      `unknown source ${source}: use pattern[:WxH[@FPS]][:STYLE] or file:/abs.mp4`,
    );
  const num = (s: string | undefined): number | undefined => (s === undefined ? undefined : Number(s));
  const style = m[4];
  return [
    ...prev,
    {
      name,
      source: {
        kind: 'pattern',
        width: num(m[1]),
        height: num(m[2]),
        fps: num(m[3]),
        ...(style ? { style } : {}),
      },
    },
  ];
}

const program = new Command('camera-sim')
  .description('A real RTSP test camera on 127.0.0.1 (GStreamer RTSP server). Runs until Ctrl-C.')
  .option('-p, --port <port>', 'TCP port (0 = any free port)', (v) => Number.parseInt(v, 10), 8554)
  .option(
    '-m, --mount <NAME=SOURCE>',
    'repeatable. SOURCE: pattern[:WxH[@FPS]][:STYLE] (default 640x360@15, STYLE a videotestsrc pattern: ' +
      'smpte, ball, snow, ...) or file:/abs/clip.mp4 (H.264 mp4, played at real time from its start per client)',
    parseMount,
    [] as CameraSimMount[],
  )
  .option('--loop', 'loop file mounts (the clip is stream-copied into a long temp file first)')
  .option('--loop-seconds <s>', 'length of a looped stream', Number, 3600)
  .option('--shared', 'one pipeline for all clients instead of one per client')
  .option('--python <path>', 'python with gi + GstRtspServer', DEFAULT_PYTHON)
  .option('-v, --verbose', 'print server output')
  .addHelpText(
    'after',
    '\nExample:\n  camera-sim --port 8554 --mount cam1=pattern --mount lobby=file:/path/clip.mp4 --loop\n' +
      '  ffplay -rtsp_transport tcp rtsp://127.0.0.1:8554/cam1',
  );

program.parse();
const o = program.opts<{
  port: number;
  mount: CameraSimMount[];
  loop?: boolean;
  loopSeconds: number;
  shared?: boolean;
  python: string;
  verbose?: boolean;
}>();

if (o.mount.length === 0) program.error('error: at least one --mount NAME=SOURCE is required');
const pre = checkCameraSimPrerequisites(o.python);
if (!pre.ok) {
  console.error(pre.message);
  process.exit(1);
}
const mounts = o.mount.map((m) =>
  m.source.kind === 'file' && o.loop ? { ...m, source: { ...m.source, loop: true } } : m,
);
const sim = new CameraSim({
  port: o.port,
  mounts,
  python: o.python,
  loopSeconds: o.loopSeconds,
  shared: o.shared ?? false,
  log: o.verbose ? (l) => console.error(`[server] ${l}`) : undefined,
});

let stopping = false;
async function shutdown(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await sim.stop();
  process.exit(0);
}
process.on('SIGINT', () => void shutdown());
process.on('SIGTERM', () => void shutdown());

try {
  await sim.start();
} catch (err) {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
}
for (const m of mounts) console.log(`${m.name}: ${sim.url(m.name)}`);
console.log('camera-sim running; Ctrl-C to stop');
// The server dying on its own (not via Ctrl-C) must not leave a CLI that looks alive.
const poll = setInterval(() => {
  if (!sim.running && !stopping) {
    console.error('camera-sim: server exited unexpectedly\n' + sim.logs());
    clearInterval(poll);
    process.exit(1);
  }
}, 1000);
