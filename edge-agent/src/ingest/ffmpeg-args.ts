import type { DetectorPlugin } from '../detect/types.js';

export interface CameraSource {
  id: string;
  /** rtsp://, rtsps:// or a file path / file:// URL. */
  url: string;
  transport: 'tcp' | 'udp';
  /** Output size: the detector's input size (ffmpeg scales, so detection never resizes). */
  width: number;
  height: number;
  /** Detection frames per second (ffmpeg drops the rest before conversion). */
  fps: number;
  /** ffmpeg's socket I/O timeout: a frozen camera makes ffmpeg exit instead of hanging forever. */
  ioTimeoutMs: number;
  /** For files: pace at the native frame rate (like a live camera). */
  realtime: boolean;
  /** For files: replay forever; false: play once, then the camera is `ended` (no respawn). */
  loop: boolean;
  /**
   * The camera's model content size (LetterboxMeta content of a width x height frame): ffmpeg scales each frame
   * to it as well, so that detection only converts (RgbFrame.scaled). Absent: detection resizes in JS.
   */
  scaled?: { width: number; height: number };
}

/** The camera's source with ffmpeg also scaling to its detector's content size; unchanged without one. */
export function withModelScale<T extends CameraSource>(
  src: T,
  plugin: Pick<DetectorPlugin, 'geometry'> | undefined,
): T {
  if (!plugin) return src;
  const g = plugin.geometry(src.width, src.height);
  return { ...src, scaled: { width: g.contentWidth, height: g.contentHeight } };
}

/** Where the parts of one rawvideo frame from ffmpeg are. */
export interface FrameLayout {
  /** Bytes per frame on the pipe. */
  frameBytes: number;
  /** The analysis frame: the first width*height*3 bytes. */
  frameSize: number;
  /** The scaled copy, when made: `height` rows of `stride` bytes after the frame, the image left-aligned. */
  scaled?: { offset: number; width: number; height: number; stride: number };
}

/**
 * The scaled copy rides in the same rawvideo frame, stacked below the analysis frame (padded to its width):
 * one pipe and one frame boundary, so the two can never drift apart. Made only when it fits that width and is
 * not the frame itself (then detection converts the frame directly).
 */
export function frameLayout(src: CameraSource): FrameLayout {
  const frameSize = src.width * src.height * 3;
  const s = src.scaled;
  if (
    !s ||
    !(s.width > 0 && s.height > 0 && s.width <= src.width) ||
    (s.width === src.width && s.height === src.height)
  )
    return { frameBytes: frameSize, frameSize };
  const stride = src.width * 3;
  return {
    frameBytes: frameSize + s.height * stride,
    frameSize,
    scaled: { offset: frameSize, width: s.width, height: s.height, stride },
  };
}

export function isNetworkSource(url: string): boolean {
  return /^rtsps?:\/\//i.test(url);
}

/**
 * One decoder thread per camera: the box runs one ffmpeg per camera, so the cores are shared across cameras
 * anyway, and frame threading adds synchronisation, memory and a frame of latency per thread (720p15 H.264:
 * ~2.3 ms of CPU per decoded frame single-threaded, less than with automatic threads; BENCHMARKS.md).
 */
const decoderOptions = ['-threads', '1'];

/** Input options for ffmpeg: fast first frame, bounded I/O wait. */
export function inputOptions(src: CameraSource): string[] {
  if (isNetworkSource(src.url)) {
    return [
      ...decoderOptions,
      '-rtsp_transport',
      src.transport,
      '-timeout',
      String(src.ioTimeoutMs * 1000), // microseconds
      // Small probe: the first frame arrives in ~0.5 s instead of ~2.4 s.
      '-probesize',
      '32',
      '-analyzeduration',
      '0',
      '-fflags',
      'nobuffer',
      '-flags',
      'low_delay',
    ];
  }
  return [...decoderOptions, ...(src.loop ? ['-stream_loop', '-1'] : []), ...(src.realtime ? ['-re'] : [])];
}

/** Output options: scaled rgb24 rawvideo at the detection rate on stdout, no audio. */
export function outputOptions(src: CameraSource): string[] {
  const { width: W, height: H } = src;
  const frame = `scale=${W}:${H}:flags=fast_bilinear`;
  const s = frameLayout(src).scaled;
  // The model's copy is scaled from the analysis frame, not from the source: the same picture the JS resize
  // would sample (boxes map back to the frame alike), and a small second scale instead of a full-size one.
  const vf = s
    ? `fps=${src.fps},${frame},split=2[f][m];[m]scale=${s.width}:${s.height}:flags=bilinear,format=rgb24` +
      `${s.width < W ? `,pad=${W}:${s.height}:0:0` : ''}[mo];[f]format=rgb24[fo];[fo][mo]vstack`
    : `fps=${src.fps},${frame}`;
  return [
    '-an',
    '-sn',
    '-dn',
    // One filter thread: at 5 fps on small frames the thread hand-offs cost more than they save, and an edge box
    // runs one ffmpeg per camera (see decoderOptions).
    '-filter_threads',
    '1',
    '-vf',
    vf,
    '-pix_fmt',
    'rgb24',
    '-f',
    'rawvideo',
  ];
}

/** Strips credentials from a camera URL for logs and status reports. */
export function redactUrl(url: string): string {
  return url.replace(/^(\w+:\/\/)[^@/]*@/, '$1***@');
}
